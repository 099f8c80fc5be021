package debugapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/actuatorapi"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sim"
)

// mockHardware marks mock devices in the registry (docs/api.md §16.1).
const mockHardware = "MOCK_ESP32"

// mockSensor is docs/api.md §16.1 MockSensor, as requested and as persisted.
type mockSensor struct {
	GPIO           int     `json:"gpio" api:"required,min=0,max=39"`
	SensorType     string  `json:"sensor_type" api:"required,min=1,max=50"`
	Name           string  `json:"name,omitempty" api:"max=100"`
	RawValue       float64 `json:"raw_value" api:"min=-1e9,max=1e9"`
	Unit           string  `json:"unit,omitempty" api:"max=20"`
	Quality        string  `json:"quality" api:"min=1,max=20,default=good"`
	RawMode        bool    `json:"raw_mode" api:"default=true"`
	IntervalSecs   int     `json:"interval_seconds" api:"min=1,max=3600,default=30"`
	Pattern        string  `json:"variation_pattern" api:"min=1,max=10,enum=constant|random|drift,default=constant"`
	VariationRange float64 `json:"variation_range" api:"min=0,max=1e9"`
}

func (ms mockSensor) spec() sim.SensorSpec {
	rawMode := ms.RawMode
	return sim.SensorSpec{
		GPIO:     ms.GPIO,
		Type:     ms.SensorType,
		Base:     ms.RawValue,
		Pattern:  ms.Pattern,
		Range:    ms.VariationRange,
		Interval: time.Duration(ms.IntervalSecs) * time.Second,
		Unit:     ms.Unit,
		Quality:  ms.Quality,
		RawMode:  &rawMode,
	}
}

func (ms mockSensor) config(espID string) sensor.Config {
	return sensor.Config{
		EspID:          espID,
		GPIO:           ms.GPIO,
		SensorType:     ms.SensorType,
		Name:           ms.Name,
		Enabled:        true,
		ProcessingMode: "raw",
	}
}

// mockDef is docs/api.md §16.1 MockESPCreate and the mock's persisted definition
// (device metadata simulation_config, docs/domain.md §10.1).
type mockDef struct {
	EspID         string         `json:"esp_id" api:"required,min=1,max=31,pattern=esp_id"`
	Name          string         `json:"name" api:"max=100"`
	ZoneID        string         `json:"zone_id,omitempty" api:"max=32"`
	ZoneName      string         `json:"zone_name,omitempty" api:"max=100"`
	MasterZoneID  string         `json:"master_zone_id,omitempty" api:"max=32"`
	Sensors       []mockSensor   `json:"sensors" api:"max=20"`
	Actuators     []mockActuator `json:"actuators" api:"max=12"`
	AutoHeartbeat bool           `json:"auto_heartbeat"`
	HeartbeatSecs int            `json:"heartbeat_interval_seconds" api:"min=5,max=300,default=60"`
}

// Validate refuses two mock actuators, or a mock actuator and sensor, on one pin.
func (def *mockDef) Validate(b *api.Body) {
	used := map[int]bool{}
	for _, ms := range def.Sensors {
		used[ms.GPIO] = true
	}
	for _, ma := range def.Actuators {
		if used[ma.GPIO] {
			b.Fail("actuators", fmt.Sprintf("GPIO %d is used twice", ma.GPIO), "value_error")
		}
		used[ma.GPIO] = true
	}
}

// in is def with the device's current zone, which the simulated node
// believes it is in when it starts: the zone given at creation, or one
// assigned since (docs/api.md §9).
func (def mockDef) in(dev device.Device) mockDef {
	def.ZoneID, def.MasterZoneID = dev.ZoneID, dev.MasterZoneID
	return def
}

// without is def without the sensor on gpio.
func (def mockDef) without(gpio int) mockDef {
	kept := make([]mockSensor, 0, len(def.Sensors))
	for _, x := range def.Sensors {
		if x.GPIO != gpio {
			kept = append(kept, x)
		}
	}
	def.Sensors = kept
	return def
}

// metadata is def as the device metadata stores it.
func (def mockDef) metadata() map[string]any {
	var cfg map[string]any
	raw, _ := json.Marshal(def)
	_ = json.Unmarshal(raw, &cfg)
	return cfg
}

func mockDefOf(d device.Device) (mockDef, bool) {
	var def mockDef
	raw, ok := d.Metadata["simulation_config"]
	if !ok || d.HardwareType != mockHardware {
		return def, false
	}
	b, _ := json.Marshal(raw)
	return def, json.Unmarshal(b, &def) == nil
}

// mockSensorState is a sensor of MockESPResponse.
type mockSensorState struct {
	GPIO       int     `json:"gpio"`
	SensorType string  `json:"sensor_type"`
	Name       *string `json:"name"`
	SubzoneID  *string `json:"subzone_id"`
	RawValue   float64 `json:"raw_value"`
	Unit       string  `json:"unit"`
	Quality    string  `json:"quality"`
	RawMode    bool    `json:"raw_mode"`
	LastRead   *string `json:"last_read"`
}

// mockActuatorState is an actuator of MockESPResponse.
type mockActuatorState struct {
	GPIO             int     `json:"gpio"`
	ActuatorType     string  `json:"actuator_type"`
	Name             *string `json:"name"`
	State            bool    `json:"state"`
	PWMValue         float64 `json:"pwm_value"`
	EmergencyStopped bool    `json:"emergency_stopped"`
	LastCommand      *string `json:"last_command"`
}

// mockResponse is docs/api.md §16.1 MockESPResponse.
type mockResponse struct {
	EspID                    string              `json:"esp_id"`
	Name                     *string             `json:"name"`
	ZoneID                   *string             `json:"zone_id"`
	ZoneName                 *string             `json:"zone_name"`
	MasterZoneID             *string             `json:"master_zone_id"`
	SubzoneID                *string             `json:"subzone_id"`
	SystemState              any                 `json:"system_state"`
	Sensors                  []mockSensorState   `json:"sensors"`
	Actuators                []mockActuatorState `json:"actuators"`
	AutoHeartbeat            bool                `json:"auto_heartbeat"`
	HeapFree                 any                 `json:"heap_free"`
	WifiRSSI                 any                 `json:"wifi_rssi"`
	Uptime                   any                 `json:"uptime"`
	LastHeartbeat            any                 `json:"last_heartbeat"`
	CreatedAt                *string             `json:"created_at"`
	Connected                bool                `json:"connected"`
	HardwareType             string              `json:"hardware_type"`
	Status                   string              `json:"status"`
	HeartbeatIntervalSeconds int                 `json:"heartbeat_interval_seconds"`
}

func (d *Debug) mockJSON(dev device.Device, def mockDef) mockResponse {
	sensors := make([]mockSensorState, 0, len(def.Sensors))
	for _, ms := range def.Sensors {
		sensors = append(sensors, mockSensorState{
			GPIO:       ms.GPIO,
			SensorType: ms.SensorType,
			Name:       api.NullString(ms.Name),
			RawValue:   ms.RawValue,
			Unit:       ms.Unit,
			Quality:    ms.Quality,
			RawMode:    ms.RawMode,
		})
	}
	md := dev.Metadata
	return mockResponse{
		EspID:                    dev.DeviceID,
		Name:                     api.NullString(dev.Name),
		ZoneID:                   api.NullString(dev.ZoneID),
		ZoneName:                 api.NullString(dev.ZoneName),
		MasterZoneID:             api.NullString(dev.MasterZoneID),
		SystemState:              md["system_state"],
		Sensors:                  sensors,
		Actuators:                d.mockActuators(dev.DeviceID),
		AutoHeartbeat:            def.AutoHeartbeat,
		HeapFree:                 md["last_heap_free"],
		WifiRSSI:                 md["last_wifi_rssi"],
		Uptime:                   md["last_uptime"],
		LastHeartbeat:            md["last_heartbeat"],
		CreatedAt:                api.Timestamp(dev.CreatedAt),
		Connected:                d.mocks.node(dev.DeviceID) != nil,
		HardwareType:             mockHardware,
		Status:                   dev.Status,
		HeartbeatIntervalSeconds: def.HeartbeatSecs,
	}
}

type mockList struct {
	Success bool           `json:"success"`
	Data    []mockResponse `json:"data"`
	Total   int            `json:"total"`
}

// commandResponse is docs/api.md §16.1 CommandResponse.
type commandResponse struct {
	Success bool   `json:"success"`
	EspID   string `json:"esp_id"`
	Command string `json:"command"`
	Result  any    `json:"result"`
}

// simulationResponse answers the commands that have no result.
type simulationResponse struct {
	Success bool   `json:"success"`
	EspID   string `json:"esp_id"`
	Command string `json:"command"`
}

type heartbeatResponse struct {
	Success          bool           `json:"success"`
	EspID            string         `json:"esp_id"`
	Timestamp        int64          `json:"timestamp"`
	MessagePublished bool           `json:"message_published"`
	Payload          map[string]any `json:"payload"`
}

type messagesResponse struct {
	Success  bool          `json:"success"`
	Messages []sim.Message `json:"messages"`
	Total    int           `json:"total"`
}

type sensorValueRequest struct {
	RawValue float64 `json:"raw_value" api:"required,min=-1e9,max=1e9"`
	Publish  bool    `json:"publish" api:"default=true"`
}

type batchRequest struct {
	Publish bool           `json:"publish" api:"default=true"`
	Values  map[string]any `json:"values"`

	parsed map[int]float64
}

func (q *batchRequest) Validate(b *api.Body) {
	if len(q.Values) < 1 || len(q.Values) > 40 {
		b.Fail("values", "1-40 entries of gpio → number", "value_error")
	}
	q.parsed = map[int]float64{}
	for k, v := range q.Values {
		g, err := strconv.Atoi(k)
		f, isNum := v.(float64)
		if err != nil || g < 0 || g > 39 || !isNum {
			b.Fail("values", "keys are GPIO numbers 0-39 and values numbers", "value_error")
			return
		}
		q.parsed[g] = f
	}
}

// mockActuator is docs/api.md §16.1 MockActuator.
type mockActuator struct {
	GPIO         int     `json:"gpio" api:"required,min=0,max=39"`
	ActuatorType string  `json:"actuator_type" api:"min=1,max=20,enum=relay|pump|valve|pwm|digital|servo,default=relay"`
	Name         string  `json:"name,omitempty" api:"max=100"`
	State        bool    `json:"state"`
	PWMValue     float64 `json:"pwm_value" api:"min=0,max=1"`
	MinValue     float64 `json:"min_value" api:"min=0,max=1,default=0"`
	MaxValue     float64 `json:"max_value" api:"min=0,max=1,default=1"`
}

// Validate applies the hub's actuator field rules (docs/domain.md §4.2), so
// that a mock is refused before anything of it is created.
func (ma *mockActuator) Validate(b *api.Body) {
	for _, fe := range actuator.CheckFields(ma.config("")) {
		if !b.Failed(fe.Field) {
			b.Fail(fe.Field, fe.Msg, fe.Type)
		}
	}
}

// config is the hub's actuator config for a mock actuator given at creation:
// the mock's actuators are configured in the hub like any device's, so
// commands, bounds and latches apply to them (docs/decisions/0009).
func (ma mockActuator) config(espID string) actuator.Config {
	return actuator.Config{
		EspID:              espID,
		GPIO:               ma.GPIO,
		Type:               ma.ActuatorType,
		Name:               ma.Name,
		Enabled:            true,
		MinValue:           ma.MinValue,
		MaxValue:           ma.MaxValue,
		MaxRuntimeSeconds:  3600,
		ValveTravelSeconds: 5,
	}
}

type actuatorStateRequest struct {
	State    bool    `json:"state"`
	PWMValue float64 `json:"pwm_value" api:"min=0,max=1"`
	Publish  bool    `json:"publish" api:"default=true"`
}

// stateRequest sets one of the firmware's system states (the enum is one tag, hence the long line).
type stateRequest struct {
	State string `json:"state" api:"required,min=1,max=30,enum=BOOT|WIFI_SETUP|WIFI_CONNECTED|MQTT_CONNECTING|MQTT_CONNECTED|AWAITING_USER_CONFIG|ZONE_CONFIGURED|SENSORS_CONFIGURED|OPERATIONAL|LIBRARY_DOWNLOADING|SAFE_MODE|ERROR"`
}

func (d *Debug) mockRoutes() {
	const (
		list = "/api/v1/debug/mock-esp"
		one  = list + "/{esp_id}"
	)
	d.admin("POST", list, "Create a simulated device", d.createMock, mockDef{}, mockResponse{})
	d.admin("GET", list, "List simulated devices", d.listMocks, nil, mockList{})
	d.admin("GET", one, "Get a simulated device", d.withMock(d.getMock), nil, mockResponse{})
	d.admin("DELETE", one, "Stop and delete a simulated device", d.withMock(d.deleteMock), nil, nil)
	d.admin("POST", one+"/simulation/start", "Start the simulation", d.withMock(d.simulation(true)),
		nil, simulationResponse{})
	d.admin("POST", one+"/simulation/stop", "Stop the simulation", d.withMock(d.simulation(false)),
		nil, simulationResponse{})
	d.admin("POST", one+"/heartbeat", "Publish one heartbeat now", d.withMock(d.heartbeat), nil, heartbeatResponse{})

	setValue := pinCommand(d, "set_sensor_value", func(n node, g int, q *sensorValueRequest) (bool, any) {
		return n.SetOverride(g, q.RawValue, q.Publish), map[string]any{"gpio": g, "raw_value": q.RawValue}
	})
	d.admin("POST", one+"/sensors/{gpio}/value", "Override a simulated sensor's value", setValue,
		sensorValueRequest{}, commandResponse{})
	d.admin("POST", one+"/sensors/{gpio}", "Override a simulated sensor's value (alias)", setValue,
		sensorValueRequest{}, commandResponse{})
	d.admin("DELETE", one+"/sensors/{gpio}/value", "Remove a value override", d.withMock(d.clearValue),
		nil, simulationResponse{})
	d.admin("POST", one+"/state", "Set the simulated system state", d.withMock(d.setState),
		stateRequest{}, commandResponse{})
	d.admin("POST", one+"/sensors", "Add a simulated sensor", d.withMock(d.addSensor), mockSensor{}, commandResponse{})
	d.admin("DELETE", one+"/sensors/{gpio}", "Remove a simulated sensor", d.withMock(d.removeSensor),
		nil, commandResponse{})
	d.admin("POST", one+"/sensors/batch", "Override several sensor values", d.withMock(d.batchValues),
		batchRequest{}, commandResponse{})
	d.admin("POST", one+"/actuators", "Add a simulated actuator", d.withMock(d.addActuator),
		mockActuator{}, commandResponse{})
	d.admin("POST", one+"/actuators/{gpio}", "Set a simulated actuator's state (publishes its status)",
		pinCommand(d, "set_actuator", func(n node, g int, q *actuatorStateRequest) (bool, any) {
			return n.SetActuator(g, "", q.State, q.PWMValue, q.Publish), map[string]any{"gpio": g, "state": q.State}
		}), actuatorStateRequest{}, commandResponse{})
	d.admin("POST", one+"/actuators/{gpio}/command", "Command a simulated actuator through the hub's command path",
		d.commandActuator, mockCommandRequest{}, mockCommandResponse{})
	d.admin("POST", one+"/auto-heartbeat", "Switch automatic heartbeats", d.withMock(d.autoHeartbeat),
		nil, commandResponse{})
	d.admin("POST", one+"/emergency-stop", "The mock's own emergency state (not the hub's latch)",
		d.withMock(d.emergency("emergency-stop", true)), nil, commandResponse{})
	d.admin("POST", one+"/clear-emergency", "The mock's own emergency state (not the hub's latch)",
		d.withMock(d.emergency("clear-emergency", false)), nil, commandResponse{})
	d.admin("GET", one+"/messages", "The mock's last messages", d.withMock(d.messages), nil, messagesResponse{})
	d.admin("DELETE", one+"/messages", "Clear the mock's message log", d.withMock(d.clearMessages), nil, nil)
}

// mockHandler is a handler for a route whose {esp_id} names a mock device.
type mockHandler func(w http.ResponseWriter, r *http.Request, dev device.Device, def mockDef)

// withMock loads the path's device (422, 404) and answers 404 unless it is a mock.
func (d *Debug) withMock(h mockHandler) api.Authed {
	return func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
		if dev, def, ok := d.mockFromPath(w, r); ok {
			h(w, r, dev, def)
		}
	}
}

// mockFromPath is the mock device the path names; it has answered 422 or
// 404 when it reports false.
func (d *Debug) mockFromPath(w http.ResponseWriter, r *http.Request) (device.Device, mockDef, bool) {
	dev, ok := d.srv.DeviceFromPath(w, r)
	if !ok {
		return dev, mockDef{}, false
	}
	def, ok := mockDefOf(dev)
	if !ok {
		api.WriteError(w, r, http.StatusNotFound, "ESP_NOT_FOUND",
			"ESP device '"+dev.DeviceID+"' is not a simulated device", nil)
	}
	return dev, def, ok
}

// pinCommand is the shape of the commands on one pin of a running mock: a
// body, the {gpio} path parameter, one call on the node, a CommandResponse.
func pinCommand[T any](d *Debug, command string, apply func(n node, gpio int, req *T) (bool, any)) api.Authed {
	return d.withMock(func(w http.ResponseWriter, r *http.Request, dev device.Device, _ mockDef) {
		var req T
		if !api.Decode(w, r, &req) {
			return
		}
		g, ok := api.PathGPIO(w, r)
		if !ok {
			return
		}
		n := d.mocks.node(dev.DeviceID)
		ok = n != nil
		var result any
		if ok {
			ok, result = apply(n, g, &req)
		}
		commandReply(w, r, dev.DeviceID, command, ok, result)
	})
}

// commandReply answers a CommandResponse, or 409 when the command found no
// running simulation to act on.
func commandReply(w http.ResponseWriter, r *http.Request, id, command string, ok bool, result any) {
	if !ok {
		notRunning(w, r)
		return
	}
	api.WriteJSON(w, http.StatusOK, commandResponse{
		Success: true,
		EspID:   id,
		Command: command,
		Result:  result,
	})
}

func notRunning(w http.ResponseWriter, r *http.Request) {
	api.WriteError(w, r, http.StatusConflict, "SIMULATION_NOT_RUNNING", "start the simulation first", nil)
}

func (d *Debug) createMock(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var def mockDef
	if !api.Decode(w, r, &def) {
		return
	}
	if d.mocks.full() {
		api.WriteError(w, r, http.StatusConflict, "LIMIT_EXCEEDED", "mock device limit reached", nil)
		return
	}

	reg := device.Registration{
		DeviceID:     def.EspID,
		Name:         def.Name,
		ZoneID:       def.ZoneID,
		ZoneName:     def.ZoneName,
		HardwareType: mockHardware,
	}
	if _, err := d.devices.Register(r.Context(), reg, p.User.Username); err != nil {
		d.srv.DeviceError(w, r, def.EspID, err)
		return
	}
	for _, ms := range def.Sensors {
		_, _, err := d.sensors.Upsert(r.Context(), ms.config(def.EspID))
		if err != nil && !errors.Is(err, sensor.ErrUnsupportedType) {
			d.srv.SensorError(w, r, err)
			return
		}
	}

	for _, ma := range def.Actuators {
		if d.actuators == nil {
			break
		}
		if _, err := d.actuators.Upsert(r.Context(), ma.config(def.EspID)); actuatorapi.WriteConfigError(w, r, d.srv, err) {
			return
		}
	}

	state := "stopped"
	if def.AutoHeartbeat {
		state = "running"
	}
	patch := device.Patch{
		Metadata: map[string]any{"simulation_config": def.metadata(), "simulation_state": state},
	}
	if def.MasterZoneID != "" {
		patch.MasterZoneID = &def.MasterZoneID
	}
	dev, err := d.devices.Update(r.Context(), def.EspID, patch)
	if err != nil {
		d.srv.Internal(w, r, err)
		return
	}
	if def.AutoHeartbeat {
		if err := d.mocks.start(r.Context(), def.in(dev)); err != nil {
			d.srv.Internal(w, r, err)
			return
		}
	}
	api.WriteJSON(w, http.StatusCreated, d.mockJSON(dev, def))
}

func (d *Debug) listMocks(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := []mockResponse{}
	for _, dev := range d.devices.List() {
		if def, ok := mockDefOf(dev); ok {
			out = append(out, d.mockJSON(dev, def))
		}
	}
	api.WriteJSON(w, http.StatusOK, mockList{Success: true, Data: out, Total: len(out)})
}

func (d *Debug) getMock(w http.ResponseWriter, _ *http.Request, dev device.Device, def mockDef) {
	api.WriteJSON(w, http.StatusOK, d.mockJSON(dev, def))
}

func (d *Debug) deleteMock(w http.ResponseWriter, r *http.Request, dev device.Device, _ mockDef) {
	d.mocks.stop(dev.DeviceID)
	if err := d.devices.Delete(r.Context(), dev.DeviceID, "mock"); err != nil {
		d.srv.DeviceError(w, r, dev.DeviceID, err)
		return
	}
	_ = d.sensors.DeleteDevice(r.Context(), dev.DeviceID)
	w.WriteHeader(http.StatusNoContent)
}

// simulation starts or stops a mock and remembers it for the next hub start.
func (d *Debug) simulation(start bool) mockHandler {
	action, state := "stop", "stopped"
	if start {
		action, state = "start", "running"
	}
	return func(w http.ResponseWriter, r *http.Request, dev device.Device, def mockDef) {
		if start {
			if err := d.mocks.start(r.Context(), def.in(dev)); err != nil {
				d.srv.Internal(w, r, err)
				return
			}
		} else {
			d.mocks.stop(dev.DeviceID)
		}
		_, _ = d.devices.Update(r.Context(), dev.DeviceID,
			device.Patch{Metadata: map[string]any{"simulation_state": state}})
		api.WriteJSON(w, http.StatusOK, simulationResponse{
			Success: true,
			EspID:   dev.DeviceID,
			Command: "simulation_" + action,
		})
	}
}

func (d *Debug) heartbeat(w http.ResponseWriter, r *http.Request, dev device.Device, _ mockDef) {
	n := d.mocks.node(dev.DeviceID)
	if n == nil {
		notRunning(w, r)
		return
	}
	hb, ok := n.HeartbeatNow()
	if !ok {
		api.WriteError(w, r, http.StatusServiceUnavailable, "MQTT_UNAVAILABLE", "the simulated device is not connected", nil)
		return
	}
	api.WriteJSON(w, http.StatusOK, heartbeatResponse{
		Success:          true,
		EspID:            dev.DeviceID,
		Timestamp:        time.Now().Unix(),
		MessagePublished: true,
		Payload:          hb,
	})
}

func (d *Debug) clearValue(w http.ResponseWriter, r *http.Request, dev device.Device, _ mockDef) {
	g, ok := api.PathGPIO(w, r)
	if !ok {
		return
	}
	if n := d.mocks.node(dev.DeviceID); n != nil {
		n.ClearOverride(g)
	}
	api.WriteJSON(w, http.StatusOK, simulationResponse{Success: true, EspID: dev.DeviceID, Command: "clear_sensor_value"})
}

func (d *Debug) setState(w http.ResponseWriter, r *http.Request, dev device.Device, _ mockDef) {
	var req stateRequest
	if !api.Decode(w, r, &req) {
		return
	}
	n := d.mocks.node(dev.DeviceID)
	commandReply(w, r, dev.DeviceID, "set_state", n != nil && n.SetState(req.State), req.State)
}

// saveDef persists a changed mock definition in the device metadata.
func (d *Debug) saveDef(ctx context.Context, def mockDef) error {
	_, err := d.devices.Update(ctx, def.EspID, device.Patch{Metadata: map[string]any{"simulation_config": def.metadata()}})
	return err
}

func (d *Debug) addSensor(w http.ResponseWriter, r *http.Request, dev device.Device, def mockDef) {
	var ms mockSensor
	if !api.Decode(w, r, &ms) {
		return
	}
	if _, _, err := d.sensors.Upsert(r.Context(), ms.config(dev.DeviceID)); d.srv.SensorError(w, r, err) {
		return
	}

	def = def.without(ms.GPIO)
	def.Sensors = append(def.Sensors, ms)
	if err := d.saveDef(r.Context(), def); err != nil {
		d.srv.Internal(w, r, err)
		return
	}
	if n := d.mocks.node(dev.DeviceID); n != nil {
		n.AddSensor(ms.spec())
	}
	commandReply(w, r, dev.DeviceID, "add_sensor", true, map[string]any{"gpio": ms.GPIO})
}

func (d *Debug) removeSensor(w http.ResponseWriter, r *http.Request, dev device.Device, def mockDef) {
	g, ok := api.PathGPIO(w, r)
	if !ok {
		return
	}
	if err := d.saveDef(r.Context(), def.without(g)); err != nil {
		d.srv.Internal(w, r, err)
		return
	}

	for _, c := range d.sensors.ByDevice(dev.DeviceID) {
		if c.GPIO == g {
			_, _ = d.sensors.Delete(r.Context(), c.ID)
		}
	}
	if n := d.mocks.node(dev.DeviceID); n != nil {
		n.RemoveSensor(g)
	}
	commandReply(w, r, dev.DeviceID, "remove_sensor", true, map[string]any{"gpio": g})
}

func (d *Debug) batchValues(w http.ResponseWriter, r *http.Request, dev device.Device, _ mockDef) {
	var req batchRequest
	if !api.Decode(w, r, &req) {
		return
	}
	n := d.mocks.node(dev.DeviceID)
	ok := n != nil
	for g, v := range req.parsed {
		ok = ok && n.SetOverride(g, v, req.Publish)
	}
	commandReply(w, r, dev.DeviceID, "set_sensor_values", ok, map[string]any{"count": len(req.parsed)})
}

func (d *Debug) addActuator(w http.ResponseWriter, r *http.Request, dev device.Device, _ mockDef) {
	var req mockActuator
	if !api.Decode(w, r, &req) {
		return
	}
	n := d.mocks.node(dev.DeviceID)
	ok := n != nil && n.SetActuator(req.GPIO, req.ActuatorType, req.State, req.PWMValue, true)
	commandReply(w, r, dev.DeviceID, "add_actuator", ok, map[string]any{"gpio": req.GPIO})
}

func (d *Debug) autoHeartbeat(w http.ResponseWriter, r *http.Request, dev device.Device, def mockDef) {
	q := api.NewQuery(r)
	enabled := q.Bool("enabled", true)
	interval := q.Int("interval_seconds", 60, 5, 300)
	if q.Done(w, r) {
		return
	}

	def.AutoHeartbeat, def.HeartbeatSecs = enabled, interval
	if err := d.saveDef(r.Context(), def); err != nil {
		d.srv.Internal(w, r, err)
		return
	}
	n := d.mocks.node(dev.DeviceID)
	ok := n != nil && n.SetHeartbeat(enabled, time.Duration(interval)*time.Second)
	commandReply(w, r, dev.DeviceID, "auto_heartbeat", ok,
		map[string]any{"enabled": enabled, "interval_seconds": interval})
}

// emergency sets the mock's own emergency state; the hub's latch is not involved.
func (d *Debug) emergency(command string, stop bool) mockHandler {
	return func(w http.ResponseWriter, r *http.Request, dev device.Device, _ mockDef) {
		n := d.mocks.node(dev.DeviceID)
		commandReply(w, r, dev.DeviceID, command, n != nil && n.EmergencyStop(stop), nil)
	}
}

func (d *Debug) messages(w http.ResponseWriter, r *http.Request, dev device.Device, _ mockDef) {
	q := api.NewQuery(r)
	limit := q.Int("limit", 100, 1, 500)
	if q.Done(w, r) {
		return
	}
	msgs := []sim.Message{}
	if n := d.mocks.node(dev.DeviceID); n != nil {
		msgs = append(msgs, n.Messages(limit)...)
	}
	api.WriteJSON(w, http.StatusOK, messagesResponse{Success: true, Messages: msgs, Total: len(msgs)})
}

func (d *Debug) clearMessages(w http.ResponseWriter, _ *http.Request, dev device.Device, _ mockDef) {
	if n := d.mocks.node(dev.DeviceID); n != nil {
		n.ClearMessages()
	}
	w.WriteHeader(http.StatusNoContent)
}
