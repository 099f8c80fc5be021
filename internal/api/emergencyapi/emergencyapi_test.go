package emergencyapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/emergency"
	"github.com/kaiserhub/kaiser/internal/store"
)

// fakeServer keeps the registered routes.
type fakeServer struct {
	routes   []api.Route
	handlers map[string]api.Authed
}

func (f *fakeServer) Register(rt api.Route, h api.Authed) {
	f.routes = append(f.routes, rt)
	f.handlers[rt.Method+" "+rt.Path] = h
}

func (f *fakeServer) Internal(w http.ResponseWriter, r *http.Request, err error) {
	api.WriteError(w, r, http.StatusInternalServerError, "INTERNAL_ERROR", "internal error", nil)
}

// fakeService records requests and answers with what the test set.
type fakeService struct {
	stops   []emergency.StopRequest
	clears  []emergency.ClearRequest
	stopRes emergency.StopResult
	clrRes  emergency.ClearResult
	status  emergency.Status
	err     error
}

func (f *fakeService) Stop(_ context.Context, r emergency.StopRequest) (emergency.StopResult, error) {
	f.stops = append(f.stops, r)
	return f.stopRes, f.err
}

func (f *fakeService) Clear(_ context.Context, r emergency.ClearRequest) (emergency.ClearResult, error) {
	f.clears = append(f.clears, r)
	return f.clrRes, f.err
}

func (f *fakeService) Status() emergency.Status { return f.status }

func setup() (*fakeServer, *fakeService) {
	srv := &fakeServer{handlers: map[string]api.Authed{}}
	svc := &fakeService{}
	Register(srv, svc)
	return srv, svc
}

func call(t *testing.T, srv *fakeServer, method, path, body string) (int, map[string]any) {
	t.Helper()
	h := srv.handlers[method+" "+path]
	if h == nil {
		t.Fatalf("no route %s %s", method, path)
	}
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h(w, req, auth.Principal{User: store.User{Username: "olga", Role: auth.RoleOperator}})
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	return w.Code, out
}

func errorCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The routes of docs/api.md §8.2 with their roles; the hyphenated aliases
// are marked deprecated.
func TestRoutes(t *testing.T) {
	srv, _ := setup()
	want := map[string]string{
		"POST /api/v1/actuators/emergency_stop":  auth.RoleOperator,
		"POST /api/v1/actuators/emergency-stop":  auth.RoleOperator,
		"POST /api/v1/actuators/clear_emergency": auth.RoleOperator,
		"POST /api/v1/actuators/clear-emergency": auth.RoleOperator,
		"GET /api/v1/actuators/emergency":        auth.RoleViewer,
	}
	if len(srv.routes) != len(want) {
		t.Fatalf("%d routes, want %d", len(srv.routes), len(want))
	}
	for _, rt := range srv.routes {
		key := rt.Method + " " + rt.Path
		if want[key] != rt.MinRole {
			t.Errorf("%s: role %q, want %q", key, rt.MinRole, want[key])
		}
		if rt.Deprecated != strings.Contains(rt.Path, "-") {
			t.Errorf("%s: deprecated %v", key, rt.Deprecated)
		}
	}
}

// A stop's body reaches the service and its result comes back in the shape
// of docs/api.md §8.4.
func TestStop(t *testing.T) {
	srv, svc := setup()
	at := time.Date(2026, 1, 5, 8, 15, 30, 0, time.UTC)
	svc.stopRes = emergency.StopResult{
		IncidentCorrelationID: "inc-1",
		Scope:                 emergency.ScopeDevice,
		DevicesStopped:        1,
		ActuatorsStopped:      1,
		Reason:                "leak",
		Timestamp:             at,
		LatchPersisted:        false,
		Details: []emergency.DeviceStop{{EspID: "ESP_A1B2C3", Actuators: []emergency.ActuatorStop{
			{EspID: "ESP_A1B2C3", GPIO: 5, Success: true, Message: "OFF sent"},
		}}},
	}

	code, body := call(t, srv, "POST", "/api/v1/actuators/emergency-stop",
		`{"esp_id":"ESP_A1B2C3","gpio":5,"reason":"leak"}`)
	if code != 200 {
		t.Fatalf("HTTP %d %v", code, body)
	}
	got := svc.stops[0]
	if got.EspID != "ESP_A1B2C3" || got.GPIO == nil || *got.GPIO != 5 || got.Reason != "leak" || got.Actor.User != "olga" {
		t.Fatalf("request %+v", got)
	}
	wantKeys := []string{"actuators_stopped", "details", "devices_stopped", "incident_correlation_id", "latch_persisted",
		"message", "reason", "scope", "success", "timestamp"}
	if !slices.Equal(keys(body), wantKeys) {
		t.Fatalf("keys %v", keys(body))
	}
	if body["latch_persisted"] != false || body["timestamp"] != "2026-01-05T08:15:30.000Z" ||
		!strings.Contains(body["message"].(string), "enforced from memory") {
		t.Errorf("body %v", body)
	}
	act := body["details"].([]any)[0].(map[string]any)["actuators"].([]any)[0].(map[string]any)
	if !slices.Equal(keys(act), []string{"esp_id", "gpio", "message", "success"}) || act["gpio"] != 5.0 {
		t.Errorf("actuator result %v", act)
	}

	code, _ = call(t, srv, "POST", "/api/v1/actuators/emergency_stop", `{"reason":"all"}`)
	if code != 200 || svc.stops[1].EspID != "" || svc.stops[1].GPIO != nil {
		t.Fatalf("global stop: HTTP %d, request %+v", code, svc.stops[1])
	}
}

// Invalid bodies are 422 and reach no service; domain errors map to their codes.
func TestErrors(t *testing.T) {
	bad := []struct{ name, path, body string }{
		{"no reason", "/api/v1/actuators/emergency_stop", `{}`},
		{"empty reason", "/api/v1/actuators/emergency_stop", `{"reason":""}`},
		{"reason too long", "/api/v1/actuators/emergency_stop", `{"reason":"` + strings.Repeat("x", 501) + `"}`},
		{"gpio without device", "/api/v1/actuators/emergency_stop", `{"gpio":5,"reason":"x"}`},
		{"gpio out of range", "/api/v1/actuators/emergency_stop", `{"esp_id":"ESP_A1B2C3","gpio":40,"reason":"x"}`},
		{"bad esp_id", "/api/v1/actuators/emergency_stop", `{"esp_id":"no way","reason":"x"}`},
		{"clear without reason", "/api/v1/actuators/clear_emergency", `{"esp_id":"ESP_A1B2C3"}`},
		{"clear with a non-bool", "/api/v1/actuators/clear_emergency", `{"reason":"x","resume_rules":"yes"}`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			srv, svc := setup()
			if code, body := call(t, srv, "POST", tt.path, tt.body); code != 422 || errorCode(body) != "VALIDATION_ERROR" {
				t.Fatalf("HTTP %d %v", code, body)
			}
			if len(svc.stops)+len(svc.clears) != 0 {
				t.Fatal("an invalid body reached the service")
			}
		})
	}

	mapped := []struct {
		err    error
		status int
		code   string
	}{
		{emergency.ErrDeviceNotFound, 404, "ESP_NOT_FOUND"},
		{emergency.ErrBrokerDown, 503, "MQTT_UNAVAILABLE"},
		{errors.New("boom"), 500, "INTERNAL_ERROR"},
	}
	for _, tt := range mapped {
		srv, svc := setup()
		svc.err = tt.err
		code, body := call(t, srv, "POST", "/api/v1/actuators/clear_emergency", `{"esp_id":"ESP_A1B2C3","reason":"x"}`)
		if code != tt.status || errorCode(body) != tt.code {
			t.Errorf("%v: HTTP %d %s", tt.err, code, errorCode(body))
		}
	}
}

// A clear's options reach the service, and its outcome per device comes back.
func TestClear(t *testing.T) {
	srv, svc := setup()
	svc.clrRes = emergency.ClearResult{
		Success:        false,
		DevicesCleared: 0,
		Reason:         "fixed",
		StillActive:    true,
		Message:        "0 of 1 devices cleared",
		Details: []emergency.DeviceClear{{
			EspID:   "ESP_A1B2C3",
			Outcome: emergency.OutcomeTimeout,
			Message: "no answer",
		}},
	}
	code, body := call(t, srv, "POST", "/api/v1/actuators/clear-emergency",
		`{"esp_id":"ESP_A1B2C3","reason":"fixed","reconfigure_if_no_answer":true,"resume_rules":true}`)
	if code != 200 {
		t.Fatalf("HTTP %d %v", code, body)
	}
	got := svc.clears[0]
	if got.EspID != "ESP_A1B2C3" || !got.Reconfigure || !got.ResumeRules || got.Reason != "fixed" {
		t.Fatalf("request %+v", got)
	}
	wantKeys := []string{"details", "devices_cleared", "message", "reason", "still_active", "success", "timestamp"}
	if !slices.Equal(keys(body), wantKeys) || body["success"] != false || body["still_active"] != true {
		t.Fatalf("body %v", body)
	}
	d := body["details"].([]any)[0].(map[string]any)
	if d["outcome"] != "timeout" || d["esp_id"] != "ESP_A1B2C3" {
		t.Errorf("detail %v", d)
	}

	call(t, srv, "POST", "/api/v1/actuators/clear_emergency", `{"reason":"x"}`)
	if c := svc.clears[1]; c.EspID != "" || c.Reconfigure || c.ResumeRules {
		t.Fatalf("defaults %+v", c)
	}
}

// The latch status has the shape of docs/api.md §8.4.
func TestStatus(t *testing.T) {
	srv, svc := setup()
	code, body := call(t, srv, "GET", "/api/v1/actuators/emergency", "")
	if code != 200 || body["active"] != false || body["global"] != nil ||
		len(body["devices"].([]any)) != 0 || len(body["rules_paused"].([]any)) != 0 {
		t.Fatalf("nothing latched: HTTP %d %v", code, body)
	}

	at := time.Date(2026, 1, 5, 8, 15, 30, 0, time.UTC)
	svc.status = emergency.Status{
		Active: true,
		Global: &emergency.LatchInfo{
			Reason:                "flood",
			ActivatedAt:           at,
			ActivatedBy:           "olga",
			IncidentCorrelationID: "inc",
		},
		Devices: []emergency.LatchInfo{{
			EspID:                 "ESP_A1B2C3",
			Reason:                "flood",
			ActivatedAt:           at,
			IncidentCorrelationID: "inc",
			LastClearAttempt:      &store.EmergencyClearAttempt{At: at, User: "olga", Outcome: "guard"},
		}},
		RulesPaused:    []string{"ESP_B1B2C3"},
		LatchPersisted: true,
	}
	_, body = call(t, srv, "GET", "/api/v1/actuators/emergency", "")
	g := body["global"].(map[string]any)
	if !slices.Equal(keys(g), []string{"activated_at", "activated_by", "incident_correlation_id", "reason"}) {
		t.Fatalf("global %v", g)
	}
	d := body["devices"].([]any)[0].(map[string]any)
	wantKeys := []string{"activated_at", "activated_by", "esp_id", "incident_correlation_id", "last_clear_attempt",
		"reason"}
	if !slices.Equal(keys(d), wantKeys) || d["last_clear_attempt"].(map[string]any)["outcome"] != "guard" {
		t.Fatalf("device %v", d)
	}
	if body["rules_paused"].([]any)[0] != "ESP_B1B2C3" || body["latch_persisted"] != true {
		t.Fatalf("body %v", body)
	}
}
