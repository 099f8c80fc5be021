package api

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/auth"
)

// Every error has the API §1.5 shape, with the request id the client sent.
func TestErrorShapeCarriesTheRequestID(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest("GET", "/api/v1/nope", nil)
	req.Header.Set("X-Request-ID", "req-42")
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	r := decodeResponse(t, rec)

	if r.status != 404 || r.body["success"] != false || r.body["detail"] != "route /api/v1/nope not found" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	e := r.obj("error")
	if e["code"] != "NOT_FOUND" || e["message"] != r.body["detail"] || e["request_id"] != "req-42" {
		t.Fatalf("error object %v", e)
	}
	if _, ok := e["details"].(map[string]any); !ok {
		t.Fatalf("details must be an object: %s", r.raw)
	}
	if rec.Header().Get("X-Request-ID") != "req-42" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", rec.Header())
	}
}

func TestInvalidRequestIDIsReplaced(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest("GET", "/api/v1/health/live", nil)
	req.Header.Set("X-Request-ID", "bad id with spaces")
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	if id := rec.Header().Get("X-Request-ID"); id == "" || strings.Contains(id, " ") {
		t.Fatalf("request id %q", id)
	}
}

func TestRoutesAnswerWithAndWithoutTrailingSlash(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/api/v1/health/live", "/api/v1/health/live/"} {
		if r := f.do(t, "GET", p, "", nil); r.status != 200 || r.body["alive"] != true {
			t.Errorf("%s: %d %s", p, r.status, r.raw)
		}
	}
	r := f.do(t, "DELETE", "/api/v1/health/live", "", nil)
	if r.status != 405 || r.code() != "METHOD_NOT_ALLOWED" || !strings.Contains(r.header.Get("Allow"), "GET") {
		t.Fatalf("wrong method: %d %v", r.status, r.header)
	}
	if r := f.do(t, "GET", "/", "", nil); r.status != 200 || r.body["service"] != "kaiser" || r.body["mqtt_connected"] != true {
		t.Fatalf("root: %s", r.raw)
	}
}

// API §2.3: 401 without or with a bad token, then 403 for a low role, which
// is audited; the handler never runs for either.
func TestGuardAuthenticatesThenAuthorises(t *testing.T) {
	tests := []struct {
		name, token string
		status      int
		code        string
	}{
		{"no token", "", 401, "NOT_AUTHENTICATED"},
		{"invalid", "tok-nope", 401, "INVALID_TOKEN"},
		{"expired", expiredToken, 401, "TOKEN_EXPIRED"},
		{"revoked", revokedToken, 401, "TOKEN_REVOKED"},
		{"disabled user", disabledToken, 403, "USER_DISABLED"},
		{"auth store failing", "tok-broken", 500, "INTERNAL_ERROR"},
		{"viewer on an operator route", viewerToken, 403, "FORBIDDEN"},
		{"operator on an admin route", operatorToken, 403, "FORBIDDEN"},
		{"admin", adminToken, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ran := false
			minRole := auth.RoleOperator
			if tc.token == operatorToken {
				minRole = auth.RoleAdmin
			}
			f.srv.Register(Route{Method: "POST", Path: "/api/v1/probe", MinRole: minRole, Summary: "probe", Tag: "t"},
				func(w http.ResponseWriter, _ *http.Request, p auth.Principal) {
					ran = true
					WriteJSON(w, 200, map[string]string{"user": p.User.Username})
				})

			r := f.do(t, "POST", "/api/v1/probe", tc.token, nil)
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			if ran != (tc.status == 200) {
				t.Fatalf("handler ran: %v", ran)
			}
			if tc.status == 401 && r.header.Get("WWW-Authenticate") != "Bearer" {
				t.Fatal("401 without WWW-Authenticate")
			}
			denied := slices.Contains(f.audit.events(), "permission_denied")
			if denied != (tc.code == "FORBIDDEN") {
				t.Fatalf("permission_denied audited: %v", denied)
			}
		})
	}
}

func TestForbiddenMessageNamesTheRole(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "GET", "/api/v1/users", operatorToken, nil); r.body["detail"] != "Admin privileges required" {
		t.Fatalf("%s", r.raw)
	}
	if r := f.do(t, "POST", "/api/v1/esp/devices", viewerToken, nil); r.body["detail"] != "Operator or admin privileges required" {
		t.Fatalf("%s", r.raw)
	}
}

func TestRegisterRefusesARouteWithoutAUserRole(t *testing.T) {
	f := newFixture(t)
	defer func() {
		if recover() == nil {
			t.Fatal("a public route registered through Register")
		}
	}()
	f.srv.Register(Route{Method: "GET", Path: "/api/v1/open", MinRole: "public"}, nil)
}

func TestPanickingHandlerAnswers500AndIsCounted(t *testing.T) {
	f := newFixture(t)
	f.srv.public("GET", "/api/v1/panic", "panics", "t", func(http.ResponseWriter, *http.Request) { panic("bug") })
	r := f.do(t, "GET", "/api/v1/panic", "", nil)
	if r.status != 500 || r.code() != "INTERNAL_ERROR" || strings.Contains(r.raw, "bug") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if !strings.Contains(f.logs.String(), "http handler panic") {
		t.Fatal("panic not logged")
	}
	metrics := f.do(t, "GET", "/metrics", "", nil)
	if !strings.Contains(metrics.raw, `god_kaiser_http_requests_total{method="GET",route="/api/v1/panic",status="500"} 1`) {
		t.Fatalf("request not counted:\n%s", metrics.raw)
	}
}

func TestCORSAllowsOnlyConfiguredOrigins(t *testing.T) {
	f := newFixture(t)
	preflight := func(origin string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("OPTIONS", "/api/v1/esp/devices", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		rec := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	ok := preflight("http://localhost:5173")
	if ok.Code != 204 || ok.Header().Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
		t.Fatalf("allowed origin: %d %v", ok.Code, ok.Header())
	}
	if other := preflight("http://evil.example"); other.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin allowed: %v", other.Header())
	}
}

func TestReadinessReportsEachCheck(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "GET", "/api/v1/health/ready", "", nil); r.status != 200 || r.body["ready"] != true {
		t.Fatalf("ready: %s", r.raw)
	}
	f.srv.SetReady(false)
	r := f.do(t, "GET", "/api/v1/health/ready", "", nil)
	if r.status != 503 || r.code() != "NOT_READY" || r.obj("checks")["startup_complete"] != false ||
		r.obj("checks")["database"] != true {
		t.Fatalf("not ready: %d %s", r.status, r.raw)
	}
	if r.obj("error")["details"].(map[string]any)["mqtt"] != true {
		t.Fatalf("error details lack the checks: %s", r.raw)
	}
}

func TestHealthDegradesWithTheBrokerAndFailsWithTheStore(t *testing.T) {
	tests := []struct {
		name   string
		deps   func(*Deps)
		status string
	}{
		{"all up", func(*Deps) {}, "healthy"},
		{"broker down", func(d *Deps) { d.Broker = fakeBroker{} }, "degraded"},
		{"store down", func(d *Deps) { d.Store = fakePinger{err: errBoom} }, "unhealthy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.deps(&f.srv.deps)
			if r := f.do(t, "GET", "/api/v1/health", "", nil); r.body["status"] != tc.status {
				t.Fatalf("health: %s", r.raw)
			}
			r := f.do(t, "GET", "/api/v1/health/detailed", viewerToken, nil)
			if r.status != 200 || r.body["status"] != tc.status {
				t.Fatalf("detailed: %s", r.raw)
			}
		})
	}
}

func TestDetailedHealthMeasuresComponents(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "GET", "/api/v1/health/detailed", viewerToken, nil)
	db, mq := r.obj("database"), r.obj("mqtt")
	if db["pool_size"] != 4.0 || db["pool_idle"] != 3.0 || db["connected"] != true {
		t.Fatalf("database: %v", db)
	}
	if mq["messages_received"] != 42.0 || mq["last_message_at"] != "2026-01-05T10:00:00.000Z" || mq["messages_published"] != 0.0 {
		t.Fatalf("mqtt: %v", mq)
	}
	if len(r.items("components")) != 2 || r.obj("system")["goroutines"].(float64) < 1 {
		t.Fatalf("components/system: %s", r.raw)
	}
	if _, ok := r.body["websocket"].(map[string]any)["active_connections"]; !ok {
		t.Fatalf("websocket stats: %s", r.raw)
	}
}

func TestFleetHealthCountsAndAverages(t *testing.T) {
	a, b := dev("ESP_A00001", "online"), dev("ESP_A00002", "offline")
	a.Metadata["last_heap_free"], a.Metadata["last_wifi_rssi"] = 1000.0, -60.0
	b.Metadata["last_heap_free"] = int64(3000)
	f := newFixture(t, a, b, dev("ESP_A00003", "error"), dev("ESP_A00004", "unknown"),
		dev("ESP_A00005", "pending_approval"), dev("ESP_A00006", "rejected"))

	r := f.do(t, "GET", "/api/v1/health/esp", viewerToken, nil)
	want := map[string]float64{"total_devices": 4, "online_count": 1, "offline_count": 1, "error_count": 1,
		"unknown_count": 1, "pending_count": 1, "avg_heap_free": 2000, "avg_wifi_rssi": -60}
	for k, v := range want {
		if r.body[k] != v {
			t.Errorf("%s = %v, want %v", k, r.body[k], v)
		}
	}
	if len(r.items("devices")) != 4 {
		t.Fatalf("devices: %s", r.raw)
	}

	empty := newFixture(t)
	if r := empty.do(t, "GET", "/api/v1/health/esp", viewerToken, nil); r.body["avg_heap_free"] != nil || r.items("devices") == nil {
		t.Fatalf("no devices: %s", r.raw)
	}
}
