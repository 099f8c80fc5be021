package debugapi

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sim"
)

// fakeActuators is the hub's actuators: configured views, states, and a
// command path that records what it was asked and answers as told.
type fakeActuators struct {
	mu        sync.Mutex
	views     map[string][]actuator.View
	last      map[string]string // "esp/gpio" → last command
	result    actuator.Result
	err       error
	requests  []actuator.Request
	upserted  []actuator.Config
	upsertErr error
}

func (f *fakeActuators) Upsert(_ context.Context, c actuator.Config) (actuator.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.upsertErr != nil {
		return actuator.Config{}, f.upsertErr
	}
	f.upserted = append(f.upserted, c)
	return c, nil
}

func (f *fakeActuators) ForDevice(espID string) []actuator.View {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.views[espID]
}

func (f *fakeActuators) State(espID string, gpio int) (actuator.StateView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.views[espID] {
		if v.GPIO == gpio {
			return actuator.StateView{State: v.ConfirmedState, LastCommand: f.last[fmt.Sprintf("%s/%d", espID, gpio)]}, nil
		}
	}
	return actuator.StateView{}, actuator.ErrNotFound
}

func (f *fakeActuators) Command(_ context.Context, req actuator.Request) (actuator.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	return f.result, f.err
}

func (f *fakeActuators) asked() []actuator.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]actuator.Request(nil), f.requests...)
}

const commandPath = "/api/v1/debug/mock-esp/MOCK_1/actuators/5/command"

// The command route runs the hub's command path as simulator:{esp_id}, with
// the admin kept, and answers with the confirmed state (docs/api.md §16.1).
func TestMockCommandRunsTheHubCommandPath(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, map[string]any{"esp_id": "MOCK_1"})
	f.actuators.views = map[string][]actuator.View{"MOCK_1": {{GPIO: 5, Type: "pump", ConfirmedState: "off"}}}
	f.actuators.result = actuator.Result{
		CommandID: "c1",
		Status:    actuator.StatusSent,
		Published: true,
		Message:   "command sent",
		Command:   "ON",
		Value:     1,
		Duration:  20,
	}

	// The simulation is stopped: the hub's path decides, not the debug layer.
	r := f.do(t, "POST", commandPath, map[string]any{"command": "on", "duration": 20})
	if r.status != 200 || r.body["success"] != true || r.body["esp_id"] != "MOCK_1" || r.body["gpio"] != 5.0 ||
		r.body["command"] != "ON" || r.body["state"] != false || r.body["pwm_value"] != 0.0 ||
		r.body["message"] != "command sent" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	asked := f.actuators.asked()
	if len(asked) != 1 {
		t.Fatalf("%d commands issued", len(asked))
	}
	q := asked[0]
	if q.EspID != "MOCK_1" || q.GPIO != 5 || q.Command != "on" || q.Value == nil || *q.Value != 1 ||
		q.Duration == nil || *q.Duration != 20 || q.IssuedBy != "simulator:MOCK_1" ||
		q.Metadata["requested_by"] != "user:admin" {
		t.Fatalf("request %+v", q)
	}

	f.actuators.result = actuator.Result{Status: actuator.StatusFailed, Command: "OFF", Message: "publish failed"}
	if r := f.do(t, "POST", commandPath, map[string]any{"command": "off"}); r.status != 200 || r.body["success"] != false {
		t.Fatalf("a failed publish: %s", r.raw)
	}
}

// A refused command gets the REST command's status and code (docs/api.md §8.2):
// a latched mock gets 409 EMERGENCY_STOP_ACTIVE like any device.
func TestMockCommandRejections(t *testing.T) {
	tests := []struct {
		name   string
		rej    *actuator.Rejection
		status int
		code   string
		latch  any
	}{
		{
			name:   "hub latch",
			rej:    &actuator.Rejection{Row: 4, Code: actuator.CodeEmergencyStop, Message: "emergency stop active"},
			status: 409,
			code:   "EMERGENCY_STOP_ACTIVE",
			latch:  "hub",
		},
		{
			name:   "device latch",
			rej:    &actuator.Rejection{Row: 5, Code: actuator.CodeLatched, Message: "latched on the device"},
			status: 409,
			code:   "EMERGENCY_STOP_ACTIVE",
			latch:  "device",
		},
		{
			name:   "offline",
			rej:    &actuator.Rejection{Row: 7, Code: actuator.CodeOffline, Message: "device offline"},
			status: 409,
			code:   "DEVICE_OFFLINE",
		},
		{
			name:   "no such actuator",
			rej:    &actuator.Rejection{Row: 2, Code: actuator.CodeNotFound, Message: "no actuator"},
			status: 404,
			code:   "ACTUATOR_NOT_FOUND",
		},
		{
			name:   "value out of the domain's range",
			rej:    &actuator.Rejection{Row: 1, Code: actuator.CodeValueOutOfRange, Field: "value", Message: "0-1"},
			status: 422,
			code:   "VALIDATION_ERROR",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.create(t, map[string]any{"esp_id": "MOCK_1", "auto_heartbeat": true})
			f.actuators.err = tc.rej

			r := f.do(t, "POST", commandPath, map[string]any{"command": "ON"})
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			if tc.latch != nil {
				details, _ := r.body["error"].(map[string]any)["details"].(map[string]any)
				if details["latch"] != tc.latch {
					t.Fatalf("details %v", details)
				}
			}
		})
	}
}

// Bad requests and non-mock devices never reach the command path.
func TestMockActuatorCommandValidation(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, map[string]any{"esp_id": "MOCK_1"})
	real := device.Device{}
	real.DeviceID, real.Metadata = "ESP_REAL01", map[string]any{}
	f.devices.devices["ESP_REAL01"] = real
	tests := []struct {
		path   string
		body   any
		status int
	}{
		{commandPath, map[string]any{}, 422},
		{commandPath, map[string]any{"command": "ON", "duration": "long"}, 422},
		{"/api/v1/debug/mock-esp/MOCK_1/actuators/40/command", map[string]any{"command": "ON"}, 422},
		{"/api/v1/debug/mock-esp/ESP_REAL01/actuators/5/command", map[string]any{"command": "ON"}, 404},
		{"/api/v1/debug/mock-esp/MOCK_NONE/actuators/5/command", map[string]any{"command": "ON"}, 404},
	}
	for _, tc := range tests {
		if r := f.do(t, "POST", tc.path, tc.body); r.status != tc.status {
			t.Errorf("%s %v: %d %s", tc.path, tc.body, r.status, r.raw)
		}
	}
	if n := len(f.actuators.asked()); n != 0 {
		t.Fatalf("%d invalid commands reached the command path", n)
	}
}

// Mocks list their real actuators: the running node's, with the hub's type,
// name and latch, then configured ones the node has not got; with the
// simulation stopped the hub's configured ones with their confirmed state.
func TestMockListsRealActuators(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, map[string]any{"esp_id": "MOCK_1"})
	f.actuators.views = map[string][]actuator.View{"MOCK_1": {
		{
			GPIO:           5,
			Type:           "pump",
			Name:           "Main pump",
			ConfirmedState: "off",
		},
		{
			GPIO:             9,
			Type:             "pwm",
			Name:             "Fan",
			On:               true,
			ConfirmedState:   "pwm",
			PWMValue:         0.5,
			EmergencyStopped: true,
		},
	}}
	f.actuators.last = map[string]string{"MOCK_1/5": "ON", "MOCK_1/9": "PWM"}

	r := f.do(t, "GET", "/api/v1/debug/mock-esp/MOCK_1", nil)
	want := []map[string]any{
		{"gpio": 5.0, "actuator_type": "pump", "name": "Main pump", "state": false, "pwm_value": 0.0,
			"emergency_stopped": false, "last_command": "ON"},
		{"gpio": 9.0, "actuator_type": "pwm", "name": "Fan", "state": true, "pwm_value": 0.5,
			"emergency_stopped": true, "last_command": "PWM"},
	}
	sameActuators(t, "stopped", r, want)

	f.do(t, "POST", "/api/v1/debug/mock-esp/MOCK_1/simulation/start", nil)
	n := f.node("MOCK_1")
	n.mu.Lock()
	n.actuators = []sim.ActuatorState{
		{GPIO: 5, Type: "relay", Name: "device name", On: true, PWM: 255},
		{GPIO: 7, Type: "relay", PWM: 0, Latched: true},
	}
	n.mu.Unlock()
	r = f.do(t, "GET", "/api/v1/debug/mock-esp/MOCK_1", nil)
	want = []map[string]any{
		{"gpio": 5.0, "actuator_type": "pump", "name": "Main pump", "state": true, "pwm_value": 1.0,
			"emergency_stopped": false, "last_command": "ON"},
		{"gpio": 7.0, "actuator_type": "relay", "name": nil, "state": false, "pwm_value": 0.0,
			"emergency_stopped": true, "last_command": nil},
		{"gpio": 9.0, "actuator_type": "pwm", "name": "Fan", "state": true, "pwm_value": 0.5,
			"emergency_stopped": true, "last_command": "PWM"},
	}
	sameActuators(t, "running", r, want)

	r = f.do(t, "GET", "/api/v1/debug/mock-esp", nil)
	if listed := r.body["data"].([]any)[0].(map[string]any)["actuators"].([]any); len(listed) != 3 {
		t.Fatalf("list: %s", r.raw)
	}
}

func sameActuators(t *testing.T, what string, r reply, want []map[string]any) {
	t.Helper()
	got, ok := r.body["actuators"].([]any)
	if !ok || len(got) != len(want) {
		t.Fatalf("%s: actuators %s", what, r.raw)
	}
	for i, w := range want {
		g := got[i].(map[string]any)
		for k, v := range w {
			if gv, present := g[k]; !present || gv != v {
				t.Errorf("%s: actuator %d: %s = %v (present %v), want %v", what, i, k, gv, present, v)
			}
		}
	}
}

// A mock keeps the zone given at creation: stored on the device, shown,
// and believed by its node; a node started later believes the device's zone
// as it is then (an assignment since).
func TestMockKeepsItsZone(t *testing.T) {
	f := newFixture(t, nil)
	r := f.create(t, map[string]any{
		"esp_id":         "MOCK_1",
		"zone_id":        "greenhouse_1",
		"zone_name":      "Greenhouse 1",
		"master_zone_id": "greenhouse",
		"auto_heartbeat": true,
	})
	if r.status != 201 || r.body["zone_id"] != "greenhouse_1" || r.body["zone_name"] != "Greenhouse 1" ||
		r.body["master_zone_id"] != "greenhouse" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	d, _ := f.devices.Get("MOCK_1")
	if d.ZoneID != "greenhouse_1" || d.ZoneName != "Greenhouse 1" || d.MasterZoneID != "greenhouse" {
		t.Fatalf("device %+v", d.Device)
	}
	if n := f.node("MOCK_1"); n.cfg.ZoneID != "greenhouse_1" || n.cfg.MasterZoneID != "greenhouse" {
		t.Fatalf("node believes %q/%q", n.cfg.ZoneID, n.cfg.MasterZoneID)
	}

	f.debug.Stop()
	zone, master := "bed_2", "greenhouse_2"
	assigned := device.Patch{ZoneID: &zone, MasterZoneID: &master}
	if _, err := f.devices.Update(context.Background(), "MOCK_1", assigned); err != nil {
		t.Fatal(err)
	}
	f.debug.Resume()
	if n := f.node("MOCK_1"); n.cfg.ZoneID != "bed_2" || n.cfg.MasterZoneID != "greenhouse_2" {
		t.Fatalf("resumed node believes %q/%q", n.cfg.ZoneID, n.cfg.MasterZoneID)
	}

	long := "z_123456789012345678901234567890123"
	if r := f.create(t, map[string]any{"esp_id": "MOCK_2", "zone_id": long}); r.status != 422 {
		t.Fatalf("a 33-character zone id: %d %s", r.status, r.raw)
	}
}

// The actuators given at creation are configured in the hub, through the
// same rules as the actuator routes; a mock they would refuse is not created.
func TestCreateMockConfiguresItsActuators(t *testing.T) {
	f := newFixture(t, nil)
	bad := f.create(t, map[string]any{
		"esp_id":    "MOCK_1",
		"sensors":   []any{map[string]any{"gpio": 34, "sensor_type": "ph"}},
		"actuators": []any{map[string]any{"gpio": 34}, map[string]any{"gpio": 5, "actuator_type": "fan"}},
	})
	if bad.status != 422 || !strings.Contains(bad.raw, `"actuators"`) || !strings.Contains(bad.raw, "GPIO 34 is used twice") {
		t.Fatalf("a shared pin and an unknown type: %d %s", bad.status, bad.raw)
	}
	if len(f.devices.List()) != 0 || len(f.actuators.upserted) != 0 {
		t.Fatal("a refused mock left a device or an actuator behind")
	}

	r := f.create(t, map[string]any{
		"esp_id": "MOCK_1",
		"actuators": []any{
			map[string]any{"gpio": 5, "actuator_type": "pump", "name": "Feed pump"},
			map[string]any{"gpio": 26},
		},
	})
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	got := f.actuators.upserted
	if len(got) != 2 || got[0].EspID != "MOCK_1" || got[0].GPIO != 5 || got[0].Type != "pump" ||
		got[0].Name != "Feed pump" || got[0].MaxRuntimeSeconds != 3600 || !got[0].Enabled ||
		got[1].GPIO != 26 || got[1].Type != "relay" || got[1].MaxValue != 1 {
		t.Fatalf("hub configs %+v", got)
	}

	f.actuators.upsertErr = &sensor.PinError{Conflict: true, Msg: "GPIO 5 is taken", Type: "sensor"}
	r = f.create(t, map[string]any{"esp_id": "MOCK_2", "actuators": []any{map[string]any{"gpio": 5}}})
	if r.status != 409 || r.code() != "GPIO_CONFLICT" {
		t.Fatalf("pin conflict: %d %s", r.status, r.raw)
	}
}
