package debugapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/schedule"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sim"
	"github.com/kaiserhub/kaiser/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeServer serves the registered routes as the admin
// (apitest.Registrar).
type fakeServer struct {
	*apitest.Registrar
}

func newFakeServer(devices *fakeDevices) *fakeServer {
	as := auth.Principal{User: store.User{Username: "admin", Role: auth.RoleAdmin}}
	return &fakeServer{apitest.NewRegistrar(as, devices.Get)}
}

func (s *fakeServer) SensorError(w http.ResponseWriter, r *http.Request, err error) bool {
	if err == nil {
		return false
	}
	api.WriteError(w, r, 409, "GPIO_CONFLICT", err.Error(), nil)
	return true
}

type fakeDevices struct {
	mu        sync.Mutex
	devices   map[string]device.Device
	updateErr error
}

func (f *fakeDevices) Get(id string) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[id]
	if !ok {
		return d, device.ErrNotFound
	}
	return d, nil
}

func (f *fakeDevices) List() []device.Device {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []device.Device
	for _, d := range f.devices {
		out = append(out, d)
	}
	return out
}

func (f *fakeDevices) Register(_ context.Context, reg device.Registration, _ string) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.devices[reg.DeviceID]; ok {
		return device.Device{}, device.ErrDuplicate
	}
	d := device.Device{}
	d.DeviceID, d.Name, d.HardwareType, d.Status = reg.DeviceID, reg.Name, reg.HardwareType, device.StatusApproved
	d.ZoneID, d.ZoneName = reg.ZoneID, reg.ZoneName
	d.Metadata = map[string]any{}
	f.devices[d.DeviceID] = d
	return d, nil
}

func (f *fakeDevices) Update(_ context.Context, id string, p device.Patch) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.updateErr != nil {
		return device.Device{}, f.updateErr
	}
	d, ok := f.devices[id]
	if !ok {
		return d, device.ErrNotFound
	}
	md := map[string]any{}
	for k, v := range d.Metadata {
		md[k] = v
	}
	for k, v := range p.Metadata {
		md[k] = v
	}
	d.Metadata = md
	zone := map[*string]*string{&d.ZoneID: p.ZoneID, &d.ZoneName: p.ZoneName, &d.MasterZoneID: p.MasterZoneID}
	for dst, src := range zone {
		if src != nil {
			*dst = *src
		}
	}
	f.devices[id] = d
	return d, nil
}

func (f *fakeDevices) Delete(_ context.Context, id, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.devices, id)
	return nil
}

type fakeSensors struct {
	mu      sync.Mutex
	configs []sensor.Config
	err     error
}

func (f *fakeSensors) Upsert(_ context.Context, c sensor.Config) (sensor.Config, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return c, "", f.err
	}
	c.ID = fmt.Sprintf("%s-%d", c.EspID, c.GPIO)
	f.configs = append(f.configs, c)
	return c, "", nil
}

func (f *fakeSensors) ByDevice(id string) []sensor.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sensor.Config
	for _, c := range f.configs {
		if c.EspID == id {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeSensors) Delete(_ context.Context, id string) (sensor.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.configs = slices.DeleteFunc(f.configs, func(c sensor.Config) bool { return c.ID == id })
	return sensor.Config{ID: id}, nil
}

func (f *fakeSensors) DeleteDevice(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.configs = slices.DeleteFunc(f.configs, func(c sensor.Config) bool { return c.EspID == id })
	return nil
}

type fakeJobs []schedule.Stats

func (j fakeJobs) Stats() []schedule.Stats { return j }

func (j fakeJobs) Schedules() []schedule.Schedule { return nil }

func (j fakeJobs) Location() *time.Location { return time.UTC }

func (j fakeJobs) Trigger(name string) error {
	for _, st := range j {
		if st.Name == name {
			return nil
		}
	}
	return errors.New("unknown job")
}

// fakeNode runs until its context ends and records what it was told.
type fakeNode struct {
	cfg       sim.NodeConfig
	stopped   chan struct{}
	offline   bool                // the broker connection is down
	actuators []sim.ActuatorState // what the simulated device has

	mu    sync.Mutex
	calls []string
}

func (n *fakeNode) Run(ctx context.Context) error {
	<-ctx.Done()
	close(n.stopped)
	return nil
}

func (n *fakeNode) Stopped() <-chan struct{} { return n.stopped }

func (n *fakeNode) record(format string, args ...any) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, fmt.Sprintf(format, args...))
	return true
}

func (n *fakeNode) log() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.calls...)
}

func (n *fakeNode) HeartbeatNow() (map[string]any, bool) {
	return map[string]any{"uptime": 5}, !n.offline && n.record("heartbeat")
}

func (n *fakeNode) SetOverride(g int, v float64, publish bool) bool {
	return n.record("override %d=%g publish=%v", g, v, publish)
}

func (n *fakeNode) ClearOverride(g int) bool { return n.record("clear %d", g) }
func (n *fakeNode) AddSensor(sp sim.SensorSpec) bool {
	return n.record("add sensor %d %s", sp.GPIO, sp.Type)
}
func (n *fakeNode) RemoveSensor(g int) bool { return n.record("remove sensor %d", g) }

func (n *fakeNode) SetActuator(g int, typ string, on bool, v float64, publish bool) bool {
	return n.record("actuator %d %s on=%v %g publish=%v", g, typ, on, v, publish)
}

func (n *fakeNode) SetHeartbeat(enabled bool, every time.Duration) bool {
	return n.record("heartbeat %v %s", enabled, every)
}

func (n *fakeNode) EmergencyStop(stop bool) bool { return n.record("emergency %v", stop) }
func (n *fakeNode) SetState(s string) bool       { return n.record("state %s", s) }

func (n *fakeNode) Messages(limit int) []sim.Message {
	n.record("messages %d", limit)
	return []sim.Message{{Topic: "kaiser/god/esp/MOCK_1/system/heartbeat", Direction: "out"}}
}

func (n *fakeNode) ClearMessages() { n.record("clear messages") }

func (n *fakeNode) Actuators() []sim.ActuatorState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.actuators)
}

type fixture struct {
	srv       *fakeServer
	debug     *Debug
	devices   *fakeDevices
	sensors   *fakeSensors
	actuators *fakeActuators

	mu    sync.Mutex
	nodes map[string]*fakeNode
}

func newFixture(t *testing.T, jobs jobs) *fixture {
	t.Helper()
	f := &fixture{
		devices:   &fakeDevices{devices: map[string]device.Device{}},
		sensors:   &fakeSensors{},
		actuators: &fakeActuators{},
		nodes:     map[string]*fakeNode{},
	}
	f.srv = newFakeServer(f.devices)
	f.debug = Register(f.srv, Deps{
		Devices:   f.devices,
		Sensors:   f.sensors,
		Actuators: f.actuators,
		Jobs:      jobs,
		MQTTAddr:  func() string { return "127.0.0.1:1883" },
		MaxMocks:  2,
	})
	f.debug.mocks.newNode = func(c sim.NodeConfig) node {
		n := &fakeNode{cfg: c, stopped: make(chan struct{})}
		f.mu.Lock()
		f.nodes[c.EspID] = n
		f.mu.Unlock()
		return n
	}
	t.Cleanup(f.debug.Stop)
	return f
}

func (f *fixture) node(id string) *fakeNode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[id]
}

type reply struct {
	status int
	raw    string
	body   map[string]any
}

func (r reply) code() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (f *fixture) do(t *testing.T, method, path string, body any) reply {
	t.Helper()
	var rd *strings.Reader
	switch b := body.(type) {
	case nil:
		rd = strings.NewReader("")
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = strings.NewReader(string(raw))
	}
	rec := httptest.NewRecorder()
	f.srv.Mux.ServeHTTP(rec, httptest.NewRequest(method, path, rd))
	r := reply{status: rec.Code, raw: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &r.body)
	return r
}

func (f *fixture) create(t *testing.T, body map[string]any) reply {
	t.Helper()
	return f.do(t, "POST", "/api/v1/debug/mock-esp", body)
}

func TestEveryDebugRouteIsForAdmins(t *testing.T) {
	f := newFixture(t, nil)
	if len(f.srv.Routes) != 26 {
		t.Fatalf("%d routes", len(f.srv.Routes))
	}
	for _, rt := range f.srv.Routes {
		if rt.MinRole != auth.RoleAdmin || rt.Tag != "debug" || !strings.HasPrefix(rt.Path, "/api/v1/debug/") {
			t.Errorf("%+v", rt)
		}
	}
}

func TestCreateMockValidates(t *testing.T) {
	f := newFixture(t, nil)
	r := f.create(t, map[string]any{"esp_id": "bad id", "heartbeat_interval_seconds": 2.0,
		"sensors": []any{map[string]any{"gpio": 40, "sensor_type": "ph", "variation_pattern": "wild"}, "x"}})
	var got []string
	for _, e := range r.body["detail"].([]any) {
		loc, _ := json.Marshal(e.(map[string]any)["loc"])
		got = append(got, string(loc)+" "+e.(map[string]any)["type"].(string))
	}
	want := []string{`["body","esp_id"] string_pattern_mismatch`, `["body","sensors",0,"gpio"] less_than_equal`,
		`["body","sensors",0,"variation_pattern"] enum`, `["body","sensors",1] type_error`,
		`["body","heartbeat_interval_seconds"] greater_than_equal`}
	if r.status != 422 || !slices.Equal(got, want) {
		t.Fatalf("%d %v", r.status, got)
	}
	if len(f.devices.List()) != 0 {
		t.Fatal("an invalid mock was registered")
	}
}

func TestCreateMockRegistersAndStarts(t *testing.T) {
	f := newFixture(t, nil)
	r := f.create(t, map[string]any{
		"esp_id":                     "MOCK_1",
		"name":                       "Bench",
		"auto_heartbeat":             true,
		"heartbeat_interval_seconds": 5.0,
		"sensors":                    []any{map[string]any{"gpio": 34, "sensor_type": "ph", "raw_value": 2048}},
	})
	if r.status != 201 || r.body["hardware_type"] != "MOCK_ESP32" || r.body["connected"] != true ||
		r.body["heartbeat_interval_seconds"] != 5.0 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	s := r.body["sensors"].([]any)[0].(map[string]any)
	if s["quality"] != "good" || s["raw_mode"] != true || s["raw_value"] != 2048.0 || s["name"] != nil {
		t.Fatalf("sensor defaults: %v", s)
	}

	d, _ := f.devices.Get("MOCK_1")
	if d.Metadata["simulation_state"] != "running" || d.HardwareType != "MOCK_ESP32" {
		t.Fatalf("device %+v", d)
	}
	if c := f.sensors.configs; len(c) != 1 || c[0].ProcessingMode != "raw" || !c[0].Enabled {
		t.Fatalf("sensor configs %+v", c)
	}
	n := f.node("MOCK_1")
	if n == nil || n.cfg.HeartbeatEvery != 5*time.Second || len(n.cfg.Sensors) != 1 ||
		n.cfg.Sensors[0].Interval != 30*time.Second ||
		!n.cfg.Quirks.Seq || n.cfg.Broker != "127.0.0.1:1883" {
		t.Fatalf("node config %+v", n)
	}

	if r := f.create(t, map[string]any{"esp_id": "MOCK_1"}); r.status != 409 || r.code() != "DUPLICATE_ESP" {
		t.Fatalf("duplicate: %s", r.raw)
	}
	if r := f.create(t, map[string]any{"esp_id": "MOCK_2", "auto_heartbeat": true}); r.status != 201 {
		t.Fatalf("second: %s", r.raw)
	}
	if r := f.create(t, map[string]any{"esp_id": "MOCK_3"}); r.status != 409 || r.code() != "LIMIT_EXCEEDED" {
		t.Fatalf("limit: %s", r.raw)
	}
	if r := f.do(t, "GET", "/api/v1/debug/mock-esp", nil); r.body["total"] != 2.0 {
		t.Fatalf("list: %s", r.raw)
	}
}

func TestCreateMockFailures(t *testing.T) {
	f := newFixture(t, nil)
	f.sensors.err = errors.New("pin taken")
	body := map[string]any{"esp_id": "MOCK_1", "sensors": []any{map[string]any{"gpio": 34, "sensor_type": "ph"}}}
	if r := f.create(t, body); r.status != 409 || r.code() != "GPIO_CONFLICT" {
		t.Fatalf("sensor error: %s", r.raw)
	}
	f.sensors.err = sensor.ErrUnsupportedType
	f.devices.devices = map[string]device.Device{}
	if r := f.create(t, body); r.status != 201 {
		t.Fatalf("an unsupported type is only not configured: %s", r.raw)
	}
	f.sensors.err = nil
	f.devices.updateErr = errors.New("disk full")
	if r := f.create(t, map[string]any{"esp_id": "MOCK_2"}); r.status != 500 {
		t.Fatalf("update error: %s", r.raw)
	}
}

// Commands need a running simulation: 409 before start, the node's answer after.
func TestMockCommandsNeedARunningSimulation(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, map[string]any{"esp_id": "MOCK_1"})
	base := "/api/v1/debug/mock-esp/MOCK_1"
	commands := []struct {
		method, path string
		body         any
		call         string
	}{
		{"POST", "/sensors/34/value", map[string]any{"raw_value": 1000}, "override 34=1000 publish=true"},
		{"POST", "/sensors/34", map[string]any{"raw_value": 5.5, "publish": false}, "override 34=5.5 publish=false"},
		{"POST", "/actuators/5", map[string]any{"state": true, "pwm_value": 0.5}, "actuator 5  on=true 0.5 publish=true"},
		{"POST", "/actuators", map[string]any{"gpio": 6, "actuator_type": "pump"}, "actuator 6 pump on=false 0 publish=true"},
		{"POST", "/state", map[string]any{"state": "SAFE_MODE"}, "state SAFE_MODE"},
		{"POST", "/sensors/batch", map[string]any{"values": map[string]any{"34": 1}}, "override 34=1 publish=true"},
		{"POST", "/emergency-stop", nil, "emergency true"},
		{"POST", "/clear-emergency", nil, "emergency false"},
		{"POST", "/auto-heartbeat?enabled=false&interval_seconds=10", nil, "heartbeat false 10s"},
		{"POST", "/heartbeat", nil, "heartbeat"},
	}
	for _, c := range commands {
		if r := f.do(t, c.method, base+c.path, c.body); r.status != 409 || r.code() != "SIMULATION_NOT_RUNNING" {
			t.Errorf("%s before start: %d %s", c.path, r.status, r.raw)
		}
	}

	if r := f.do(t, "POST", base+"/simulation/start", nil); r.status != 200 || r.body["command"] != "simulation_start" {
		t.Fatalf("start: %s", r.raw)
	}
	n := f.node("MOCK_1")
	for _, c := range commands {
		r := f.do(t, c.method, base+c.path, c.body)
		if r.status != 200 || r.body["success"] != true {
			t.Errorf("%s: %d %s", c.path, r.status, r.raw)
			continue
		}
		if log := n.log(); log[len(log)-1] != c.call {
			t.Errorf("%s: node told %q, want %q", c.path, log[len(log)-1], c.call)
		}
	}

	d, _ := f.devices.Get("MOCK_1")
	if d.Metadata["simulation_state"] != "running" {
		t.Fatalf("state not remembered: %v", d.Metadata)
	}
	def, _ := mockDefOf(d)
	if def.AutoHeartbeat || def.HeartbeatSecs != 10 {
		t.Fatalf("auto-heartbeat not saved: %+v", def)
	}

	n.offline = true
	if r := f.do(t, "POST", base+"/heartbeat", nil); r.status != 503 || r.code() != "MQTT_UNAVAILABLE" {
		t.Fatalf("heartbeat offline: %s", r.raw)
	}
	if r := f.do(t, "POST", base+"/simulation/stop", nil); r.status != 200 {
		t.Fatalf("stop: %s", r.raw)
	}
	select {
	case <-n.stopped:
	default:
		t.Fatal("stop returned before the node stopped")
	}
}

func TestMockCommandValidation(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, map[string]any{"esp_id": "MOCK_1", "auto_heartbeat": true})
	base := "/api/v1/debug/mock-esp/MOCK_1"
	tests := []struct {
		method, path string
		body         any
	}{
		{"POST", "/sensors/34/value", map[string]any{}},
		{"POST", "/sensors/40/value", map[string]any{"raw_value": 1}},
		{"POST", "/actuators/5", map[string]any{"pwm_value": 2}},
		{"POST", "/actuators", map[string]any{"gpio": 6, "actuator_type": "laser"}},
		{"POST", "/state", map[string]any{"state": "DANCING"}},
		{"POST", "/sensors/batch", map[string]any{"values": map[string]any{}}},
		{"POST", "/sensors/batch", map[string]any{"values": map[string]any{"x": 1}}},
		{"POST", "/auto-heartbeat?interval_seconds=1", nil},
		{"GET", "/messages?limit=0", nil},
		{"DELETE", "/sensors/99/value", nil},
		{"POST", "/sensors", map[string]any{"gpio": 1}},
	}
	for _, tc := range tests {
		if r := f.do(t, tc.method, base+tc.path, tc.body); r.status != 422 {
			t.Errorf("%s %s %v: %d %s", tc.method, tc.path, tc.body, r.status, r.raw)
		}
	}
	if log := f.node("MOCK_1").log(); len(log) != 0 {
		t.Fatalf("invalid commands reached the node: %v", log)
	}
}

func TestMockSensorsAndMessages(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, map[string]any{"esp_id": "MOCK_1", "auto_heartbeat": true,
		"sensors": []any{map[string]any{"gpio": 34, "sensor_type": "ph"}}})
	base := "/api/v1/debug/mock-esp/MOCK_1"

	ec := map[string]any{"gpio": 34, "sensor_type": "ec", "raw_value": 1500}
	if r := f.do(t, "POST", base+"/sensors", ec); r.status != 200 {
		t.Fatalf("replace sensor: %s", r.raw)
	}
	if r := f.do(t, "POST", base+"/sensors", map[string]any{"gpio": 35, "sensor_type": "moisture"}); r.status != 200 {
		t.Fatalf("add sensor: %s", r.raw)
	}
	r := f.do(t, "GET", base, nil)
	var types []string
	for _, s := range r.body["sensors"].([]any) {
		types = append(types, s.(map[string]any)["sensor_type"].(string))
	}
	if !slices.Equal(types, []string{"ec", "moisture"}) {
		t.Fatalf("sensors %v", types)
	}
	if r := f.do(t, "DELETE", base+"/sensors/35", nil); r.status != 200 || len(f.sensors.ByDevice("MOCK_1")) != 2 {
		t.Fatalf("remove sensor: %s %v", r.raw, f.sensors.configs)
	}
	if r := f.do(t, "DELETE", base+"/sensors/34/value", nil); r.status != 200 ||
		r.body["command"] != "clear_sensor_value" {
		t.Fatalf("clear: %s", r.raw)
	}
	want := []string{"add sensor 34 ec", "add sensor 35 moisture", "remove sensor 35", "clear 34"}
	if got := f.node("MOCK_1").log(); !slices.Equal(got, want) {
		t.Fatalf("node told %v", got)
	}

	r = f.do(t, "GET", base+"/messages?limit=5", nil)
	if r.body["total"] != 1.0 || f.node("MOCK_1").log()[4] != "messages 5" {
		t.Fatalf("messages: %s", r.raw)
	}
	if r := f.do(t, "DELETE", base+"/messages", nil); r.status != 204 {
		t.Fatalf("clear messages: %d", r.status)
	}

	f.sensors.err = errors.New("pin taken")
	if r := f.do(t, "POST", base+"/sensors", map[string]any{"gpio": 36, "sensor_type": "ph"}); r.code() !=
		"GPIO_CONFLICT" {
		t.Fatalf("conflict: %s", r.raw)
	}
}

func TestMockRoutesOnlyServeMocks(t *testing.T) {
	f := newFixture(t, nil)
	real := device.Device{}
	real.DeviceID, real.Metadata = "ESP_REAL01", map[string]any{}
	f.devices.devices["ESP_REAL01"] = real
	if r := f.do(t, "GET", "/api/v1/debug/mock-esp/ESP_REAL01", nil); r.status != 404 || r.code() != "ESP_NOT_FOUND" {
		t.Fatalf("real device: %s", r.raw)
	}
	if r := f.do(t, "GET", "/api/v1/debug/mock-esp/MOCK_NONE", nil); r.status != 404 {
		t.Fatalf("unknown: %d", r.status)
	}
	if r := f.do(t, "GET", "/api/v1/debug/mock-esp", nil); r.body["total"] != 0.0 {
		t.Fatalf("list: %s", r.raw)
	}
}

func TestDeleteMockStopsItFirst(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, map[string]any{"esp_id": "MOCK_1", "auto_heartbeat": true,
		"sensors": []any{map[string]any{"gpio": 34, "sensor_type": "ph"}}})
	n := f.node("MOCK_1")
	if r := f.do(t, "DELETE", "/api/v1/debug/mock-esp/MOCK_1", nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	select {
	case <-n.stopped:
	default:
		t.Fatal("node still running")
	}
	if _, err := f.devices.Get("MOCK_1"); err == nil || len(f.sensors.configs) != 0 {
		t.Fatal("device or sensor configs left")
	}
}

// Running mocks resume after a restart; Stop ends them all.
func TestResumeAndStop(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, map[string]any{"esp_id": "MOCK_1", "auto_heartbeat": true})
	f.create(t, map[string]any{"esp_id": "MOCK_2"})
	f.debug.Stop()
	if f.debug.mocks.node("MOCK_1") != nil {
		t.Fatal("still running after Stop")
	}

	f.debug.Resume()
	if f.debug.mocks.node("MOCK_1") == nil || f.debug.mocks.node("MOCK_2") != nil {
		t.Fatal("resume must start exactly the mocks that were running")
	}
	f.debug.Stop()
	var nothing *Debug
	nothing.Stop() // the hub failed before registering: nothing to stop
}

func TestMaintenanceStatus(t *testing.T) {
	next := time.Date(2026, 1, 5, 10, 1, 0, 0, time.UTC)
	jobs := fakeJobs{
		{
			Name:         "liveness_check",
			Runs:         3,
			LastRun:      next.Add(-time.Minute),
			LastDuration: 1500 * time.Microsecond,
			LastResult:   "success",
			NextRun:      next,
		},
		{
			Name:       "rollups",
			Errors:     1,
			Runs:       1,
			LastResult: "disk full",
			Running:    true,
			NextRun:    next,
		},
		{Name: "never_ran"},
	}
	f := newFixture(t, jobs)
	r := f.do(t, "GET", "/api/v1/debug/maintenance/status", nil)
	list := r.body["jobs"].([]any)
	if r.status != 200 || r.body["service_running"] != true || len(list) != 3 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	first := list[0].(map[string]any)
	if first["job_id"] != "liveness_check" || first["next_run"] != "2026-01-05T10:01:00.000Z" ||
		first["last_run"] != "2026-01-05T10:00:00.000Z" || first["last_result"] != "success" ||
		first["last_duration_ms"] != 1.5 || first["runs"] != 3.0 {
		t.Fatalf("job %v", first)
	}
	if second := list[1].(map[string]any); second["errors"] != 1.0 || second["running"] != true {
		t.Fatalf("job %v", second)
	}
	if third := list[2].(map[string]any); third["last_run"] != nil || third["last_result"] != nil ||
		third["next_run"] != nil {
		t.Fatalf("a job that never ran: %v", third)
	}

	idle := newFixture(t, fakeJobs{{Name: "not_started"}})
	if r := idle.do(t, "GET", "/api/v1/debug/maintenance/status", nil); r.body["service_running"] != false {
		t.Fatalf("scheduler not started: %s", r.raw)
	}
	none := newFixture(t, nil)
	if r := none.do(t, "GET", "/api/v1/debug/maintenance/status", nil); r.body["service_running"] != false ||
		len(r.body["jobs"].([]any)) != 0 {
		t.Fatalf("no scheduler: %s", r.raw)
	}
}

func TestTriggerJob(t *testing.T) {
	f := newFixture(t, fakeJobs{{Name: "rollups"}})
	r := f.do(t, "POST", "/api/v1/debug/maintenance/trigger/rollups", nil)
	if r.status != 200 || r.body["job_id"] != "rollups" || r.body["triggered"] != true {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r := f.do(t, "POST", "/api/v1/debug/maintenance/trigger/nope", nil); r.status != 400 || r.code() != "BAD_REQUEST" {
		t.Fatalf("unknown job: %d %s", r.status, r.raw)
	}
}
