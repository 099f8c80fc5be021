package actuatorapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// fakeServer registers routes on a plain mux for an operator; the role
// guard is the api package's and is tested there and end to end.
type fakeServer struct {
	mux    *http.ServeMux
	routes []api.Route
}

func (s *fakeServer) Register(rt api.Route, h api.Authed) {
	s.routes = append(s.routes, rt)
	s.mux.HandleFunc(rt.Method+" "+rt.Path, func(w http.ResponseWriter, r *http.Request) {
		h(w, r, auth.Principal{User: store.User{Username: "op", Role: auth.RoleOperator}})
	})
}

func (s *fakeServer) DeviceFromPath(w http.ResponseWriter, r *http.Request) (device.Device, bool) {
	d, err := devs.Get(r.PathValue("esp_id"))
	if err != nil {
		s.DeviceError(w, r, r.PathValue("esp_id"), err)
		return d, false
	}
	return d, true
}

func (s *fakeServer) DeviceError(w http.ResponseWriter, r *http.Request, id string, _ error) {
	api.WriteError(w, r, http.StatusNotFound, "ESP_NOT_FOUND", "ESP device '"+id+"' not found", nil)
}

func (s *fakeServer) Internal(w http.ResponseWriter, r *http.Request, err error) {
	api.WriteError(w, r, http.StatusInternalServerError, "INTERNAL_ERROR", err.Error(), nil)
}

// fakeDevices is the registry for the domain and for the routes.
type fakeDevices struct {
	mu   sync.Mutex
	devs map[string]device.Device
}

var devs = &fakeDevices{devs: map[string]device.Device{}}

func (f *fakeDevices) Get(id string) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devs[id]
	if !ok {
		return d, device.ErrNotFound
	}
	return d, nil
}

func (f *fakeDevices) Admit(m ingest.Message) (device.Device, error) { return f.Get(m.Topic.EspID) }

func (f *fakeDevices) PushConfig(context.Context, string, string) (string, error) {
	return "cfg-1", nil
}

func (f *fakeDevices) LastPush(string) *device.Push { return nil }

func (f *fakeDevices) set(id, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devs[id] = device.Device{Device: store.Device{ID: "uuid-" + id, DeviceID: id, Status: status, KaiserID: "god"}}
}

type sensors map[string][]sensor.Config

func (s sensors) ByDevice(id string) []sensor.Config { return s[id] }

type bus struct {
	mu   sync.Mutex
	sent []string
}

func (b *bus) Publish(_ context.Context, topic string, _ []byte, _ byte, _ bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = append(b.sent, topic)
	return nil
}

type latches struct{ on bool }

func (l *latches) Latched(string) bool { return l.on }

const esp = "ESP_A1B2C3"

type fixture struct {
	t       *testing.T
	srv     *httptest.Server
	svc     *actuator.Service
	latches *latches
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	devs.set(esp, device.StatusOnline)
	svc := actuator.New(st, devs, sensors{esp: {{EspID: esp, GPIO: 4, SensorType: "ds18b20"}}}, &bus{},
		event.NewBus(), nil, actuator.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	l := &latches{}
	svc.SetLatches(l)
	if err := svc.Load(ctx); err != nil {
		t.Fatal(err)
	}

	fs := &fakeServer{mux: http.NewServeMux()}
	Register(fs, Deps{Actuators: svc, Devices: devs})
	srv := httptest.NewServer(fs.mux)
	t.Cleanup(func() {
		srv.Close()
		svc.Stop()
		_ = st.Close(ctx)
	})
	return &fixture{t: t, srv: srv, svc: svc, latches: l}
}

type reply struct {
	status int
	body   map[string]any
	raw    string
}

func (f *fixture) do(method, path string, body any) reply {
	f.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func code(r reply) string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// status answers a status like the device (the state comes only from it).
func (f *fixture) status(gpio int, on bool) {
	f.t.Helper()
	tp, _ := contract.ParseTopic(fmt.Sprintf("kaiser/god/esp/%s/actuator/%d/status", esp, gpio))
	p := fmt.Sprintf(`{"ts":0,"gpio":%d,"type":"pump","state":%t,"pwm":%d}`, gpio, on, map[bool]int{true: 255}[on])
	if err := f.svc.HandleStatus(context.Background(), ingest.Message{Topic: tp, Payload: []byte(p), ReceivedAt: time.Now()}); err != nil {
		f.t.Fatal(err)
	}
}

// Config routes: create with the defaults of docs/api.md §8.2, read, list
// with filters, refuse what the firmware cannot do with the reason, refuse
// pins (400/409), delete.
func TestConfigRoutes(t *testing.T) {
	f := newFixture(t)
	r := f.do("POST", "/api/v1/actuators/"+esp+"/5", map[string]any{"actuator_type": "digital", "name": "Lamp"})
	if r.status != 200 || r.body["actuator_type"] != "relay" || r.body["max_runtime_seconds"] != 3600.0 ||
		r.body["max_value"] != 1.0 || r.body["enabled"] != true || r.body["esp_id"] != "uuid-"+esp ||
		r.body["config_sent"] != true || r.body["state"] != "unknown" {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	id := r.body["id"].(string)
	if r := f.do("POST", "/api/v1/actuators/"+esp+"/12", map[string]any{"actuator_type": "valve"}); r.status != 400 ||
		code(r) != "GPIO_RESERVED" {
		t.Fatalf("valve on reserved 12: %d %s", r.status, r.raw)
	}
	if r := f.do("POST", "/api/v1/actuators/"+esp+"/16", map[string]any{"actuator_type": "valve"}); r.status != 200 ||
		r.body["valve_travel_seconds"] != 5.0 {
		t.Fatalf("valve: %d %s", r.status, r.raw)
	}

	cases := []struct {
		name   string
		gpio   int
		body   map[string]any
		status int
		code   string
		msg    string
	}{
		{"inverted logic", 13, map[string]any{"inverted_logic": true}, 422, "VALIDATION_ERROR", "configure time"},
		{"default_state on a pump", 13, map[string]any{"actuator_type": "pump", "default_state": true}, 422,
			"VALIDATION_ERROR", "relays"},
		{"unknown type", 13, map[string]any{"actuator_type": "heater"}, 422, "VALIDATION_ERROR", ""},
		{"max below min", 13, map[string]any{"min_value": 0.5, "max_value": 0.2}, 422, "VALIDATION_ERROR", ""},
		{"gpio differs from the path", 13, map[string]any{"gpio": 14}, 422, "VALIDATION_ERROR", ""},
		{"input-only pin", 34, map[string]any{}, 400, "GPIO_RESERVED", "input-only"},
		{"sensor on the pin", 4, map[string]any{}, 409, "GPIO_CONFLICT", "sensor"},
		{"a valve's enable pin", 17, map[string]any{}, 409, "GPIO_CONFLICT", "enable pin"},
		{"unknown device", 13, nil, 404, "ESP_NOT_FOUND", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dev := esp
			if tc.body == nil {
				dev, tc.body = "ESP_NOPE01", map[string]any{}
			}
			r := f.do("POST", fmt.Sprintf("/api/v1/actuators/%s/%d", dev, tc.gpio), tc.body)
			if r.status != tc.status || code(r) != tc.code || !strings.Contains(r.raw, tc.msg) {
				t.Fatalf("%d %s", r.status, r.raw)
			}
		})
	}

	if r := f.do("GET", "/api/v1/actuators/"+esp+"/5", nil); r.status != 200 || r.body["id"] != id {
		t.Fatalf("get: %d %s", r.status, r.raw)
	}
	if r := f.do("GET", "/api/v1/actuators/"+esp+"/6", nil); r.status != 404 || code(r) != "ACTUATOR_NOT_FOUND" {
		t.Fatalf("get a free pin: %d %s", r.status, r.raw)
	}
	list := f.do("GET", "/api/v1/actuators?esp_id="+esp+"&actuator_type=switch&page_size=1", nil)
	data, _ := list.body["data"].([]any)
	pg, _ := list.body["pagination"].(map[string]any)
	if len(data) != 1 || pg["total_items"] != 1.0 {
		t.Fatalf("list: %s", list.raw)
	}
	if r := f.do("GET", "/api/v1/actuators?esp_id=ESP_NOPE01", nil); r.status != 404 {
		t.Fatalf("list of an unknown device: %d", r.status)
	}
	if r := f.do("GET", "/api/v1/actuators?page=0", nil); r.status != 422 {
		t.Fatalf("page 0: %d", r.status)
	}

	if r := f.do("DELETE", "/api/v1/actuators/"+esp+"/5", nil); r.status != 200 || r.body["id"] != id {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	if r := f.do("DELETE", "/api/v1/actuators/"+esp+"/5", nil); r.status != 404 {
		t.Fatalf("second delete: %d", r.status)
	}
}

// Each rejection of docs/domain.md §4.4 answers with its HTTP status and
// code (docs/api.md §8.3).
func TestCommandRejections(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(f *fixture)
		gpio   int
		body   map[string]any
		status int
		code   string
		detail string // a details key/value the body must carry
	}{
		{"unknown command", nil, 5, map[string]any{"command": "BLINK"}, 422, "VALIDATION_ERROR", ""},
		{"0-255 value", nil, 5, map[string]any{"command": "PWM", "value": 200}, 422, "VALIDATION_ERROR", "0.0-1.0"},
		{"no actuator", nil, 6, map[string]any{"command": "ON"}, 404, "ACTUATOR_NOT_FOUND", ""},
		{"toggle of an unknown state", nil, 5, map[string]any{"command": "TOGGLE"}, 409, "STATE_UNKNOWN", ""},
		{"hub latch", func(f *fixture) { f.latches.on = true }, 5, map[string]any{"command": "ON"}, 409,
			"EMERGENCY_STOP_ACTIVE", `"latch":"hub"`},
		{"not approved", func(*fixture) { devs.set(esp, device.StatusPending) }, 5, map[string]any{"command": "ON"}, 409,
			"DEVICE_NOT_APPROVED", ""},
		{"offline", func(*fixture) { devs.set(esp, device.StatusOffline) }, 5, map[string]any{"command": "ON"}, 409,
			"DEVICE_OFFLINE", ""},
		{"disabled", nil, 13, map[string]any{"command": "ON"}, 409, "ACTUATOR_DISABLED", ""},
		{"PWM on a pump", nil, 5, map[string]any{"command": "PWM", "value": 0.5}, 400, "COMMAND_NOT_SUPPORTED", ""},
		{"above max_value", nil, 14, map[string]any{"command": "ON"}, 400, "SAFETY_CONSTRAINT_VIOLATION", ""},
		{"cooldown", func(f *fixture) { f.status(15, true); f.status(15, false) }, 15, map[string]any{"command": "ON"}, 409,
			"COOLDOWN_ACTIVE", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.do("POST", "/api/v1/actuators/"+esp+"/5", map[string]any{"actuator_type": "pump"})
			f.do("POST", "/api/v1/actuators/"+esp+"/13", map[string]any{"actuator_type": "pump", "enabled": false})
			f.do("POST", "/api/v1/actuators/"+esp+"/14", map[string]any{"actuator_type": "pwm", "max_value": 0.5})
			f.do("POST", "/api/v1/actuators/"+esp+"/15", map[string]any{"actuator_type": "pump", "cooldown_seconds": 60})
			if tc.setup != nil {
				tc.setup(f)
			}
			r := f.do("POST", fmt.Sprintf("/api/v1/actuators/%s/%d/command", esp, tc.gpio), tc.body)
			if r.status != tc.status || code(r) != tc.code || !strings.Contains(r.raw, tc.detail) {
				t.Fatalf("%d %s", r.status, r.raw)
			}
		})
	}
}

// An accepted command's reply, its status route, the actuator's state and
// history, and the alert config routes.
func TestCommandAndReadRoutes(t *testing.T) {
	f := newFixture(t)
	cfg := f.do("POST", "/api/v1/actuators/"+esp+"/5", map[string]any{"actuator_type": "pump", "max_runtime_seconds": 60})
	r := f.do("POST", "/api/v1/actuators/"+esp+"/5/command", map[string]any{"command": "on", "duration": 90})
	if r.status != 200 || r.body["command"] != "ON" || r.body["duration"] != 60.0 || r.body["status"] != "sent" ||
		r.body["acknowledged"] != false || r.body["safety_warnings"].([]any)[0] != "duration_clamped" {
		t.Fatalf("command: %d %s", r.status, r.raw)
	}
	id := r.body["command_id"].(string)

	if c := f.do("GET", "/api/v1/actuators/commands/"+id, nil); c.status != 200 || c.body["status"] != "sent" ||
		c.body["issued_by"] != "user:op" || c.body["correlation_id"] != id {
		t.Fatalf("command status: %d %s", c.status, c.raw)
	}
	if c := f.do("GET", "/api/v1/actuators/commands/not-a-uuid", nil); c.status != 422 {
		t.Fatalf("malformed id: %d", c.status)
	}
	if c := f.do("GET", "/api/v1/actuators/commands/00000000-0000-4000-8000-000000000000", nil); c.status != 404 ||
		code(c) != "COMMAND_NOT_FOUND" {
		t.Fatalf("unknown id: %d %s", c.status, c.raw)
	}

	f.status(5, true)
	st := f.do("GET", "/api/v1/actuators/"+esp+"/5/status?include_config=true", nil)
	state, _ := st.body["state"].(map[string]any)
	if st.status != 200 || state["state"] != "on" || state["is_active"] != true || state["mode"] != "digital" ||
		st.body["config"] == nil || state["auto_off_at"] == nil {
		t.Fatalf("status: %d %s", st.status, st.raw)
	}
	h := f.do("GET", "/api/v1/actuators/"+esp+"/5/history?limit=10", nil)
	entries, _ := h.body["entries"].([]any)
	if h.status != 200 || h.body["total_count"] != 1.0 || len(entries) != 1 ||
		entries[0].(map[string]any)["command_id"] != id {
		t.Fatalf("history: %d %s", h.status, h.raw)
	}
	if h := f.do("GET", "/api/v1/actuators/"+esp+"/5/history?limit=101", nil); h.status != 422 {
		t.Fatalf("limit 101: %d", h.status)
	}

	cid := cfg.body["id"].(string)
	p := f.do("PATCH", "/api/v1/actuators/"+cid+"/alert-config", map[string]any{"alerts_enabled": false,
		"suppression_reason": "maintenance", "suppression_until": "2030-01-01T00:00:00Z"})
	if p.status != 200 || p.body["alert_config"].(map[string]any)["suppression_reason"] != "maintenance" {
		t.Fatalf("patch alert config: %d %s", p.status, p.raw)
	}
	if p := f.do("PATCH", "/api/v1/actuators/"+cid+"/alert-config", map[string]any{"suppression_until": "soon"}); p.status != 422 {
		t.Fatalf("bad until: %d", p.status)
	}
	g := f.do("GET", "/api/v1/actuators/"+cid+"/alert-config", nil)
	if g.status != 200 || g.body["alert_config"].(map[string]any)["alerts_enabled"] != false {
		t.Fatalf("get alert config: %d %s", g.status, g.raw)
	}
	if g := f.do("GET", "/api/v1/actuators/00000000-0000-4000-8000-000000000000/alert-config", nil); g.status != 404 {
		t.Fatalf("unknown config id: %d", g.status)
	}
}

func TestRejectionMapping(t *testing.T) {
	// Every domain code has an answer; an unknown one is a 409 INVALID_STATE.
	codes := []string{actuator.CodeNotFound, actuator.CodeStateUnknown, actuator.CodeEmergencyStop,
		actuator.CodeLatched, actuator.CodeNotApproved, actuator.CodeOffline, actuator.CodeUnreachable,
		actuator.CodeDisabled, actuator.CodeNotSupported, actuator.CodeCooldown}
	for _, c := range codes {
		if _, ok := answers[c]; !ok {
			t.Errorf("no HTTP answer for %s", c)
		}
	}
	rec := httptest.NewRecorder()
	rt := &routes{srv: &fakeServer{mux: http.NewServeMux()}}
	rt.rejected(rec, httptest.NewRequest("POST", "/", nil), esp, 5, &actuator.Rejection{Row: 7,
		Code: actuator.CodeUnreachable, Reason: "subscriptions_lost"})
	if rec.Code != 409 || !strings.Contains(rec.Body.String(), `"reason":"subscriptions_lost"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	rt.rejected(rec, httptest.NewRequest("POST", "/", nil), esp, 5, &actuator.Rejection{Row: 5, Code: actuator.CodeLatched})
	if rec.Code != 409 || !strings.Contains(rec.Body.String(), `"latch":"device"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
}
