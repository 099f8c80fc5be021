package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sim"
)

// mockSensor is API §16.1 MockSensor.
type mockSensor struct {
	GPIO           int      `json:"gpio"`
	SensorType     string   `json:"sensor_type"`
	Name           string   `json:"name,omitempty"`
	RawValue       float64  `json:"raw_value"`
	Unit           string   `json:"unit,omitempty"`
	Quality        string   `json:"quality"`
	RawMode        bool     `json:"raw_mode"`
	IntervalSecs   int      `json:"interval_seconds"`
	Pattern        string   `json:"variation_pattern"`
	VariationRange float64  `json:"variation_range"`
	MinValue       *float64 `json:"min_value,omitempty"`
	MaxValue       *float64 `json:"max_value,omitempty"`
}

// mockDef is a mock device's persisted definition (device metadata
// simulation_config, DOMAIN §10.1).
type mockDef struct {
	EspID         string       `json:"esp_id"`
	Name          string       `json:"name"`
	Sensors       []mockSensor `json:"sensors"`
	AutoHeartbeat bool         `json:"auto_heartbeat"`
	HeartbeatSecs int          `json:"heartbeat_interval_seconds"`
}

type mockRun struct {
	node   *sim.Node
	cancel context.CancelFunc
}

// mocks runs simulated devices inside the hub over its real broker.
type mocks struct {
	mu      sync.Mutex
	running map[string]*mockRun
	wg      sync.WaitGroup
	limit   int
}

func (s *Server) mockRoutes() {
	s.mocks = &mocks{running: map[string]*mockRun{}, limit: 100}
	defer s.mockMoreRoutes()
	p := "/api/v1/debug/mock-esp"
	s.protected("POST", p, auth.RoleAdmin, "Create a simulated device", "debug", s.createMock)
	s.protected("GET", p, auth.RoleAdmin, "List simulated devices", "debug", s.listMocks)
	s.protected("GET", p+"/{esp_id}", auth.RoleAdmin, "Get a simulated device", "debug", s.withMock(func(w http.ResponseWriter, _ *http.Request, d device.Device, def mockDef) {
		WriteJSON(w, http.StatusOK, s.mockJSON(d, def))
	}))
	s.protected("DELETE", p+"/{esp_id}", auth.RoleAdmin, "Stop and delete a simulated device", "debug", s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, _ mockDef) {
		s.stopMock(d.DeviceID)
		if err := s.devices.Delete(r.Context(), d.DeviceID, "mock"); err != nil {
			s.deviceError(w, r, d.DeviceID, err)
			return
		}
		_ = s.sensors.DeleteDevice(r.Context(), d.DeviceID)
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, action := range []string{"start", "stop"} {
		action := action
		s.protected("POST", p+"/{esp_id}/simulation/"+action, auth.RoleAdmin, "Start or stop the simulation", "debug",
			s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, def mockDef) {
				if action == "start" {
					s.startMock(def)
				} else {
					s.stopMock(d.DeviceID)
				}
				_, _ = s.devices.Update(r.Context(), d.DeviceID, device.Patch{Metadata: map[string]any{"simulation_state": map[bool]string{true: "running", false: "stopped"}[action == "start"]}})
				WriteJSON(w, http.StatusOK, map[string]any{"success": true, "esp_id": d.DeviceID, "command": "simulation_" + action})
			}))
	}
	s.protected("POST", p+"/{esp_id}/heartbeat", auth.RoleAdmin, "Publish one heartbeat now", "debug", s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, _ mockDef) {
		n := s.mockNode(d.DeviceID)
		if n == nil {
			WriteError(w, r, http.StatusConflict, "SIMULATION_NOT_RUNNING", "start the simulation first", nil)
			return
		}
		hb, ok := n.HeartbeatNow()
		if !ok {
			WriteError(w, r, http.StatusServiceUnavailable, "MQTT_UNAVAILABLE", "the simulated device is not connected", nil)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"success": true, "esp_id": d.DeviceID, "timestamp": time.Now().Unix(), "message_published": true, "payload": hb})
	}))
	setValue := s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, _ mockDef) {
		b, ok := readBody(w, r)
		if !ok {
			return
		}
		v, _ := b.number("raw_value", true, -1e9, 1e9)
		publish := b.boolean("publish", true)
		if b.done(w, r) {
			return
		}
		g, ok := gpioFromPath(w, r)
		if !ok {
			return
		}
		n := s.mockNode(d.DeviceID)
		mockCommand(w, r, d.DeviceID, "set_sensor_value", n != nil && n.SetOverride(g, v, publish), map[string]any{"gpio": g, "raw_value": v})
	})
	s.protected("POST", p+"/{esp_id}/sensors/{gpio}/value", auth.RoleAdmin, "Override a simulated sensor's value", "debug", setValue)
	s.protected("POST", p+"/{esp_id}/sensors/{gpio}", auth.RoleAdmin, "Override a simulated sensor's value (alias)", "debug", setValue)
	s.protected("DELETE", p+"/{esp_id}/sensors/{gpio}/value", auth.RoleAdmin, "Remove a value override", "debug", s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, _ mockDef) {
		g, ok := gpioFromPath(w, r)
		if !ok {
			return
		}
		if n := s.mockNode(d.DeviceID); n != nil {
			n.ClearOverride(g)
		}
		WriteJSON(w, http.StatusOK, map[string]any{"success": true, "esp_id": d.DeviceID, "command": "clear_sensor_value"})
	}))
	s.protected("POST", p+"/{esp_id}/state", auth.RoleAdmin, "Set the simulated system state", "debug", s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, _ mockDef) {
		b, ok := readBody(w, r)
		if !ok {
			return
		}
		st, _ := b.str("state", true, 1, 30, nil)
		valid := map[string]bool{"BOOT": true, "WIFI_SETUP": true, "WIFI_CONNECTED": true, "MQTT_CONNECTING": true, "MQTT_CONNECTED": true,
			"AWAITING_USER_CONFIG": true, "ZONE_CONFIGURED": true, "SENSORS_CONFIGURED": true, "OPERATIONAL": true,
			"LIBRARY_DOWNLOADING": true, "SAFE_MODE": true, "ERROR": true}
		if st != "" && !valid[st] {
			b.fail("state", "unknown system state", "enum")
		}
		if b.done(w, r) {
			return
		}
		if n := s.mockNode(d.DeviceID); n == nil || !n.SetState(st) {
			WriteError(w, r, http.StatusConflict, "SIMULATION_NOT_RUNNING", "start the simulation first", nil)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"success": true, "esp_id": d.DeviceID, "command": "set_state", "result": st})
	}))
}

type mockHandler func(w http.ResponseWriter, r *http.Request, d device.Device, def mockDef)

func (s *Server) withMock(h mockHandler) authed {
	return s.withDevice(func(w http.ResponseWriter, r *http.Request, _ auth.Principal, d device.Device) {
		def, ok := mockDefOf(d)
		if !ok {
			WriteError(w, r, http.StatusNotFound, "ESP_NOT_FOUND", "ESP device '"+d.DeviceID+"' is not a simulated device", nil)
			return
		}
		h(w, r, d, def)
	})
}

func mockDefOf(d device.Device) (mockDef, bool) {
	var def mockDef
	raw, ok := d.Metadata["simulation_config"]
	if !ok || d.HardwareType != "MOCK_ESP32" {
		return def, false
	}
	b, _ := json.Marshal(raw)
	return def, json.Unmarshal(b, &def) == nil
}

func (s *Server) mockNode(id string) *sim.Node {
	s.mocks.mu.Lock()
	defer s.mocks.mu.Unlock()
	if r := s.mocks.running[id]; r != nil {
		return r.node
	}
	return nil
}

// startMock runs the device with the newer-firmware profile (DOMAIN §10).
func (s *Server) startMock(def mockDef) {
	s.mocks.mu.Lock()
	defer s.mocks.mu.Unlock()
	if s.mocks.running[def.EspID] != nil || s.deps.MQTTAddr == nil {
		return
	}
	var specs []sim.SensorSpec
	for _, ms := range def.Sensors {
		specs = append(specs, specOf(ms))
	}
	hb := time.Duration(def.HeartbeatSecs) * time.Second
	if !def.AutoHeartbeat {
		hb = 1 << 62 // heartbeats only on request
	}
	n := sim.NewNode(sim.NodeConfig{EspID: def.EspID, Broker: s.deps.MQTTAddr(), Quirks: sim.Quirks{Seq: true}, Sensors: specs,
		HeartbeatEvery: hb, Clock: sim.NewClock(1), Seed: time.Now().UnixNano()})
	ctx, cancel := context.WithCancel(context.Background())
	s.mocks.running[def.EspID] = &mockRun{node: n, cancel: cancel}
	s.mocks.wg.Add(1)
	go func() {
		defer s.mocks.wg.Done()
		_ = n.Run(ctx)
	}()
}

func (s *Server) stopMock(id string) {
	s.mocks.mu.Lock()
	r := s.mocks.running[id]
	delete(s.mocks.running, id)
	s.mocks.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.node.Stopped()
	}
}

// StopMocks stops every running simulation (hub shutdown).
func (s *Server) StopMocks() {
	if s.mocks == nil {
		return
	}
	s.mocks.mu.Lock()
	ids := make([]string, 0, len(s.mocks.running))
	for id := range s.mocks.running {
		ids = append(ids, id)
	}
	s.mocks.mu.Unlock()
	for _, id := range ids {
		s.stopMock(id)
	}
	s.mocks.wg.Wait()
}

// ResumeMocks restarts mocks whose simulation was running (DOMAIN §10.1).
func (s *Server) ResumeMocks() {
	if s.mocks == nil {
		return
	}
	for _, d := range s.devices.List() {
		if def, ok := mockDefOf(d); ok && d.Metadata["simulation_state"] == "running" {
			s.startMock(def)
		}
	}
}

func (s *Server) createMock(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	var def mockDef
	def.EspID, _ = b.str("esp_id", true, 1, 31, espIDPattern)
	def.Name, _ = b.str("name", false, 0, 100, nil)
	def.AutoHeartbeat = b.boolean("auto_heartbeat", false)
	def.HeartbeatSecs = 60
	if v, ok := b.integer("heartbeat_interval_seconds", false, 5, 300); ok {
		def.HeartbeatSecs = int(v)
	}
	if list, ok := b.m["sensors"].([]any); ok {
		if len(list) > 20 {
			b.fail("sensors", "at most 20 sensors", "value_error")
		}
		for _, it := range list {
			m, _ := it.(map[string]any)
			ms, errs := readMockSensor(m)
			for _, e := range errs {
				b.errs = append(b.errs, fieldError{Loc: append([]any{"body", "sensors"}, e.Loc[1:]...), Msg: e.Msg, Type: e.Type})
			}
			def.Sensors = append(def.Sensors, ms)
		}
	}
	if b.done(w, r) {
		return
	}
	s.mocks.mu.Lock()
	full := len(s.mocks.running) >= s.mocks.limit
	s.mocks.mu.Unlock()
	if full {
		WriteError(w, r, http.StatusConflict, "LIMIT_EXCEEDED", "mock device limit reached", nil)
		return
	}
	d, err := s.devices.Register(r.Context(), device.Registration{DeviceID: def.EspID, Name: def.Name, HardwareType: "MOCK_ESP32"}, p.User.Username)
	if err != nil {
		s.deviceError(w, r, def.EspID, err)
		return
	}
	for _, ms := range def.Sensors {
		if _, _, err := s.sensors.Upsert(r.Context(), sensor.Config{EspID: def.EspID, GPIO: ms.GPIO, SensorType: ms.SensorType,
			Name: ms.Name, Enabled: true, ProcessingMode: "raw"}); err != nil && !errors.Is(err, sensor.ErrUnsupportedType) {
			s.sensorError(w, r, err)
			return
		}
	}
	state := "stopped"
	if def.AutoHeartbeat {
		state = "running"
	}
	var cfg map[string]any
	raw, _ := json.Marshal(def)
	_ = json.Unmarshal(raw, &cfg)
	d, err = s.devices.Update(r.Context(), def.EspID, device.Patch{Metadata: map[string]any{"simulation_config": cfg, "simulation_state": state}})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if def.AutoHeartbeat {
		s.startMock(def)
	}
	WriteJSON(w, http.StatusCreated, s.mockJSON(d, def))
}

func (s *Server) listMocks(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := []map[string]any{}
	for _, d := range s.devices.List() {
		if def, ok := mockDefOf(d); ok {
			out = append(out, s.mockJSON(d, def))
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "data": out, "total": len(out)})
}

func (s *Server) mockJSON(d device.Device, def mockDef) map[string]any {
	sensors := []map[string]any{}
	for _, ms := range def.Sensors {
		sensors = append(sensors, map[string]any{"gpio": ms.GPIO, "sensor_type": ms.SensorType, "name": nullStr(ms.Name),
			"subzone_id": nil, "raw_value": ms.RawValue, "unit": ms.Unit, "quality": ms.Quality, "raw_mode": ms.RawMode, "last_read": nil})
	}
	md := d.Metadata
	return map[string]any{"esp_id": d.DeviceID, "name": nullStr(d.Name), "zone_id": nullStr(d.ZoneID), "zone_name": nullStr(d.ZoneName),
		"master_zone_id": nullStr(d.MasterZoneID), "subzone_id": nil, "system_state": md["system_state"], "sensors": sensors,
		"actuators": []any{}, "auto_heartbeat": def.AutoHeartbeat, "heap_free": md["last_heap_free"], "wifi_rssi": md["last_wifi_rssi"],
		"uptime": md["last_uptime"], "last_heartbeat": md["last_heartbeat"], "created_at": tsv(d.CreatedAt),
		"connected": s.mockNode(d.DeviceID) != nil, "hardware_type": "MOCK_ESP32", "status": d.Status,
		"heartbeat_interval_seconds": def.HeartbeatSecs}
}

// readMockSensor validates a MockSensor object (API §16.1).
func readMockSensor(m map[string]any) (mockSensor, []fieldError) {
	sb := &body{m: m}
	if m == nil {
		sb.m = map[string]any{}
	}
	ms := mockSensor{Quality: "good", RawMode: true, IntervalSecs: 30, Pattern: "constant"}
	if g, ok := sb.integer("gpio", true, 0, 39); ok {
		ms.GPIO = int(g)
	}
	ms.SensorType, _ = sb.str("sensor_type", true, 1, 50, nil)
	ms.Name, _ = sb.str("name", false, 0, 100, nil)
	if v, ok := sb.number("raw_value", false, -1e9, 1e9); ok {
		ms.RawValue = v
	}
	ms.Unit, _ = sb.str("unit", false, 0, 20, nil)
	if q, ok := sb.str("quality", false, 1, 20, nil); ok {
		ms.Quality = q
	}
	ms.RawMode = sb.boolean("raw_mode", true)
	if v, ok := sb.integer("interval_seconds", false, 1, 3600); ok {
		ms.IntervalSecs = int(v)
	}
	if pat, ok := sb.str("variation_pattern", false, 1, 10, nil); ok {
		if pat != "constant" && pat != "random" && pat != "drift" {
			sb.fail("variation_pattern", "must be constant, random or drift", "enum")
		}
		ms.Pattern = pat
	}
	if v, ok := sb.number("variation_range", false, 0, 1e9); ok {
		ms.VariationRange = v
	}
	return ms, sb.errs
}

func specOf(ms mockSensor) sim.SensorSpec {
	rm := ms.RawMode
	return sim.SensorSpec{GPIO: ms.GPIO, Type: ms.SensorType, Base: ms.RawValue, Pattern: ms.Pattern, Range: ms.VariationRange,
		Interval: time.Duration(ms.IntervalSecs) * time.Second, Unit: ms.Unit, Quality: ms.Quality, RawMode: &rm}
}

// saveDef persists a changed mock definition in the device metadata.
func (s *Server) saveDef(ctx context.Context, def mockDef) error {
	var cfg map[string]any
	raw, _ := json.Marshal(def)
	_ = json.Unmarshal(raw, &cfg)
	_, err := s.devices.Update(ctx, def.EspID, device.Patch{Metadata: map[string]any{"simulation_config": cfg}})
	return err
}

// mockCommand answers the API §16.1 CommandResponse.
func mockCommand(w http.ResponseWriter, r *http.Request, id, command string, ok bool, result any) {
	if !ok {
		WriteError(w, r, http.StatusConflict, "SIMULATION_NOT_RUNNING", "start the simulation first", nil)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "esp_id": id, "command": command, "result": result})
}

func (s *Server) mockMoreRoutes() {
	p := "/api/v1/debug/mock-esp/{esp_id}"
	s.protected("POST", p+"/sensors", auth.RoleAdmin, "Add a simulated sensor", "debug", s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, def mockDef) {
		b, ok := readBody(w, r)
		if !ok {
			return
		}
		ms, errs := readMockSensor(b.m)
		if len(errs) > 0 {
			writeValidation(w, r, errs)
			return
		}
		if _, _, err := s.sensors.Upsert(r.Context(), sensor.Config{EspID: d.DeviceID, GPIO: ms.GPIO, SensorType: ms.SensorType,
			Name: ms.Name, Enabled: true, ProcessingMode: "raw"}); err != nil && s.sensorError(w, r, err) {
			return
		}
		kept := def.Sensors[:0]
		for _, x := range def.Sensors {
			if x.GPIO != ms.GPIO {
				kept = append(kept, x)
			}
		}
		def.Sensors = append(kept, ms)
		if err := s.saveDef(r.Context(), def); err != nil {
			s.internal(w, r, err)
			return
		}
		if n := s.mockNode(d.DeviceID); n != nil {
			n.AddSensor(specOf(ms))
		}
		mockCommand(w, r, d.DeviceID, "add_sensor", true, map[string]any{"gpio": ms.GPIO})
	}))
	s.protected("DELETE", p+"/sensors/{gpio}", auth.RoleAdmin, "Remove a simulated sensor", "debug", s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, def mockDef) {
		g, ok := gpioFromPath(w, r)
		if !ok {
			return
		}
		kept := def.Sensors[:0]
		for _, x := range def.Sensors {
			if x.GPIO != g {
				kept = append(kept, x)
			}
		}
		def.Sensors = kept
		if err := s.saveDef(r.Context(), def); err != nil {
			s.internal(w, r, err)
			return
		}
		for _, c := range s.sensors.ByDevice(d.DeviceID) {
			if c.GPIO == g {
				_, _ = s.sensors.Delete(r.Context(), c.ID)
			}
		}
		if n := s.mockNode(d.DeviceID); n != nil {
			n.RemoveSensor(g)
		}
		mockCommand(w, r, d.DeviceID, "remove_sensor", true, map[string]any{"gpio": g})
	}))
	s.protected("POST", p+"/sensors/batch", auth.RoleAdmin, "Override several sensor values", "debug", s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, _ mockDef) {
		b, ok := readBody(w, r)
		if !ok {
			return
		}
		publish := b.boolean("publish", true)
		vals, _ := b.object("values")
		if len(vals) < 1 || len(vals) > 40 {
			b.fail("values", "1-40 entries of gpio → number", "value_error")
		}
		parsed := map[int]float64{}
		for k, v := range vals {
			g, err := strconv.Atoi(k)
			f, isNum := v.(float64)
			if err != nil || g < 0 || g > 39 || !isNum {
				b.fail("values", "keys are GPIO numbers 0-39 and values numbers", "value_error")
				break
			}
			parsed[g] = f
		}
		if b.done(w, r) {
			return
		}
		n := s.mockNode(d.DeviceID)
		ok = n != nil
		for g, v := range parsed {
			ok = ok && n.SetOverride(g, v, publish)
		}
		mockCommand(w, r, d.DeviceID, "set_sensor_values", ok, map[string]any{"count": len(parsed)})
	}))
	s.protected("POST", p+"/actuators", auth.RoleAdmin, "Add a simulated actuator", "debug", s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, _ mockDef) {
		b, ok := readBody(w, r)
		if !ok {
			return
		}
		g, _ := b.integer("gpio", true, 0, 39)
		typ := "relay"
		if t, ok := b.str("actuator_type", false, 1, 20, nil); ok {
			if !contains([]string{"relay", "pump", "valve", "pwm", "digital", "servo"}, t) {
				b.fail("actuator_type", "must be relay, pump, valve, pwm, digital or servo", "enum")
			}
			typ = t
		}
		state := b.boolean("state", false)
		pwm, _ := b.number("pwm_value", false, 0, 1)
		if b.done(w, r) {
			return
		}
		n := s.mockNode(d.DeviceID)
		mockCommand(w, r, d.DeviceID, "add_actuator", n != nil && n.SetActuator(int(g), typ, state, pwm, true), map[string]any{"gpio": g})
	}))
	s.protected("POST", p+"/actuators/{gpio}", auth.RoleAdmin, "Set a simulated actuator's state (publishes its status)", "debug",
		s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, _ mockDef) {
			b, ok := readBody(w, r)
			if !ok {
				return
			}
			state := b.boolean("state", false)
			pwm, _ := b.number("pwm_value", false, 0, 1)
			publish := b.boolean("publish", true)
			if b.done(w, r) {
				return
			}
			g, ok := gpioFromPath(w, r)
			if !ok {
				return
			}
			n := s.mockNode(d.DeviceID)
			mockCommand(w, r, d.DeviceID, "set_actuator", n != nil && n.SetActuator(g, "", state, pwm, publish), map[string]any{"gpio": g, "state": state})
		}))
	s.protected("POST", p+"/auto-heartbeat", auth.RoleAdmin, "Switch automatic heartbeats", "debug", s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, def mockDef) {
		q := &query{r: r}
		enabled := q.boolean("enabled", true)
		interval := q.integer("interval_seconds", 60, 5, 300)
		if q.done(w, r) {
			return
		}
		def.AutoHeartbeat, def.HeartbeatSecs = enabled, interval
		if err := s.saveDef(r.Context(), def); err != nil {
			s.internal(w, r, err)
			return
		}
		n := s.mockNode(d.DeviceID)
		mockCommand(w, r, d.DeviceID, "auto_heartbeat", n != nil && n.SetHeartbeat(enabled, time.Duration(interval)*time.Second),
			map[string]any{"enabled": enabled, "interval_seconds": interval})
	}))
	for name, stop := range map[string]bool{"emergency-stop": true, "clear-emergency": false} {
		name, stop := name, stop
		s.protected("POST", p+"/"+name, auth.RoleAdmin, "The mock's own emergency state (not the hub's latch)", "debug",
			s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, _ mockDef) {
				n := s.mockNode(d.DeviceID)
				mockCommand(w, r, d.DeviceID, name, n != nil && n.EmergencyStop(stop), nil)
			}))
	}
	s.protected("GET", p+"/messages", auth.RoleAdmin, "The mock's last messages", "debug", s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, _ mockDef) {
		q := &query{r: r}
		limit := q.integer("limit", 100, 1, 500)
		if q.done(w, r) {
			return
		}
		msgs := []sim.Message{}
		if n := s.mockNode(d.DeviceID); n != nil {
			msgs = append(msgs, n.Messages(limit)...)
		}
		WriteJSON(w, http.StatusOK, map[string]any{"success": true, "messages": msgs, "total": len(msgs)})
	}))
	s.protected("DELETE", p+"/messages", auth.RoleAdmin, "Clear the mock's message log", "debug", s.withMock(func(w http.ResponseWriter, r *http.Request, d device.Device, _ mockDef) {
		if n := s.mockNode(d.DeviceID); n != nil {
			n.ClearMessages()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}
