package api_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/auth"
)

// Every error has the docs/api.md §1.5 shape, with the request id the client sent.
func TestErrorShapeCarriesTheRequestID(t *testing.T) {
	f := apitest.New(t)
	req := httptest.NewRequest("GET", "/api/v1/nope", nil)
	req.Header.Set("X-Request-ID", "req-42")
	rec := httptest.NewRecorder()
	f.Srv.Handler().ServeHTTP(rec, req)
	r := apitest.Decode(t, rec)

	if r.Status != 404 || r.Body["success"] != false || r.Body["detail"] != "route /api/v1/nope not found" {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	e := r.Obj("error")
	if e["code"] != "NOT_FOUND" || e["message"] != r.Body["detail"] || e["request_id"] != "req-42" {
		t.Fatalf("error object %v", e)
	}
	if _, ok := e["details"].(map[string]any); !ok {
		t.Fatalf("details must be an object: %s", r.Raw)
	}
	if rec.Header().Get("X-Request-ID") != "req-42" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", rec.Header())
	}
}

func TestInvalidRequestIDIsReplaced(t *testing.T) {
	f := apitest.New(t)
	req := httptest.NewRequest("GET", "/api/v1/health/live", nil)
	req.Header.Set("X-Request-ID", "bad id with spaces")
	rec := httptest.NewRecorder()
	f.Srv.Handler().ServeHTTP(rec, req)
	if id := rec.Header().Get("X-Request-ID"); id == "" || strings.Contains(id, " ") {
		t.Fatalf("request id %q", id)
	}
}

func TestRoutesAnswerWithAndWithoutTrailingSlash(t *testing.T) {
	f := apitest.New(t)
	for _, p := range []string{"/api/v1/health/live", "/api/v1/health/live/"} {
		if r := f.Do(t, "GET", p, "", nil); r.Status != 200 || r.Body["alive"] != true {
			t.Errorf("%s: %d %s", p, r.Status, r.Raw)
		}
	}
	r := f.Do(t, "DELETE", "/api/v1/health/live", "", nil)
	if r.Status != 405 || r.Code() != "METHOD_NOT_ALLOWED" || !strings.Contains(r.Header.Get("Allow"), "GET") {
		t.Fatalf("wrong method: %d %v", r.Status, r.Header)
	}
	if r := f.Do(t, "GET", "/", "", nil); r.Status != 200 || r.Body["service"] != "kaiser" ||
		r.Body["mqtt_connected"] != true {
		t.Fatalf("root: %s", r.Raw)
	}
}

// docs/api.md §2.3: 401 without or with a bad token, then 403 for a low role, which
// is audited; the handler never runs for either.
func TestGuardAuthenticatesThenAuthorises(t *testing.T) {
	tests := []struct {
		name, token string
		status      int
		code        string
	}{
		{"no token", "", 401, "NOT_AUTHENTICATED"},
		{"invalid", "tok-nope", 401, "INVALID_TOKEN"},
		{"expired", apitest.ExpiredToken, 401, "TOKEN_EXPIRED"},
		{"revoked", apitest.RevokedToken, 401, "TOKEN_REVOKED"},
		{"disabled user", apitest.DisabledToken, 403, "USER_DISABLED"},
		{"auth store failing", "tok-broken", 500, "INTERNAL_ERROR"},
		{"viewer on an operator route", apitest.ViewerToken, 403, "FORBIDDEN"},
		{"operator on an admin route", apitest.OperatorToken, 403, "FORBIDDEN"},
		{"admin", apitest.AdminToken, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := apitest.New(t)
			ran := false
			minRole := auth.RoleOperator
			if tc.token == apitest.OperatorToken {
				minRole = auth.RoleAdmin
			}
			probe := api.Route{
				Method:  "POST",
				Path:    "/api/v1/probe",
				MinRole: minRole,
				Summary: "probe",
				Tag:     "t",
			}
			f.Srv.Register(probe, func(w http.ResponseWriter, _ *http.Request, p auth.Principal) {
				ran = true
				api.WriteJSON(w, 200, map[string]string{"user": p.User.Username})
			})

			r := f.Do(t, "POST", "/api/v1/probe", tc.token, nil)
			if r.Status != tc.status || r.Code() != tc.code {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
			if ran != (tc.status == 200) {
				t.Fatalf("handler ran: %v", ran)
			}
			if tc.status == 401 && r.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Fatal("401 without WWW-Authenticate")
			}
			denied := slices.Contains(f.Audit.Events(), "permission_denied")
			if denied != (tc.code == "FORBIDDEN") {
				t.Fatalf("permission_denied audited: %v", denied)
			}
		})
	}
}

func TestForbiddenMessageNamesTheRole(t *testing.T) {
	f := apitest.New(t)
	g := f.Srv.Group("t")
	g.Add("GET", "/api/v1/admin-only", auth.RoleAdmin, "admin probe", nil)
	g.Add("GET", "/api/v1/operator-only", auth.RoleOperator, "operator probe", nil)

	tests := map[string]string{
		"/api/v1/admin-only":    "Admin privileges required",
		"/api/v1/operator-only": "Operator or admin privileges required",
	}
	for path, msg := range tests {
		if r := f.Do(t, "GET", path, apitest.ViewerToken, nil); r.Status != 403 || r.Body["detail"] != msg {
			t.Errorf("%s: %s", path, r.Raw)
		}
	}
}

func TestRegisterOpenRefusesAUserRole(t *testing.T) {
	f := apitest.New(t)
	defer func() {
		if recover() == nil {
			t.Fatal("a viewer route registered as open")
		}
	}()
	f.Srv.RegisterOpen(api.Route{Method: "GET", Path: "/api/v1/closed", MinRole: auth.RoleViewer}, nil)
}

func TestRegisterRefusesARouteWithoutAUserRole(t *testing.T) {
	f := apitest.New(t)
	defer func() {
		if recover() == nil {
			t.Fatal("a public route registered through Register")
		}
	}()
	f.Srv.Register(api.Route{Method: "GET", Path: "/api/v1/open", MinRole: "public"}, nil)
}

func TestPanickingHandlerAnswers500AndIsCounted(t *testing.T) {
	f := apitest.New(t)
	f.Srv.Group("t").Public("GET", "/api/v1/panic", "panics", func(http.ResponseWriter, *http.Request) { panic("bug") })
	r := f.Do(t, "GET", "/api/v1/panic", "", nil)
	if r.Status != 500 || r.Code() != "INTERNAL_ERROR" || strings.Contains(r.Raw, "bug") {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	if !strings.Contains(f.Logs.String(), "http handler panic") {
		t.Fatal("panic not logged")
	}
	metrics := f.Do(t, "GET", "/metrics", "", nil)
	counted := `god_kaiser_http_requests_total{method="GET",route="/api/v1/panic",status="500"} 1`
	if !strings.Contains(metrics.Raw, counted) {
		t.Fatalf("request not counted:\n%s", metrics.Raw)
	}
}

func TestCORSAllowsOnlyConfiguredOrigins(t *testing.T) {
	f := apitest.New(t)
	preflight := func(origin string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("OPTIONS", "/api/v1/esp/devices", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		rec := httptest.NewRecorder()
		f.Srv.Handler().ServeHTTP(rec, req)
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
	f := apitest.New(t)
	if r := f.Do(t, "GET", "/api/v1/health/ready", "", nil); r.Status != 200 || r.Body["ready"] != true {
		t.Fatalf("ready: %s", r.Raw)
	}
	f.Srv.SetReady(false)
	r := f.Do(t, "GET", "/api/v1/health/ready", "", nil)
	if r.Status != 503 || r.Code() != "NOT_READY" || r.Obj("checks")["startup_complete"] != false ||
		r.Obj("checks")["database"] != true {
		t.Fatalf("not ready: %d %s", r.Status, r.Raw)
	}
	if r.Obj("error")["details"].(map[string]any)["mqtt"] != true {
		t.Fatalf("error details lack the checks: %s", r.Raw)
	}
}

// docs/api.md §2.6: the handlers behind one limit share it; over it the reply is 429
// with Retry-After, audited once per client and window.
func TestRateLimitIsSharedAndAuditedOnce(t *testing.T) {
	f := apitest.New(t)
	limit := f.Srv.RateLimit("probe", 2)
	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }
	g := f.Srv.Group("t")
	g.Public("POST", "/api/v1/probe-a", "probe a", limit(ok))
	g.Public("POST", "/api/v1/probe-b", "probe b", limit(ok))

	var statuses []int
	for _, p := range []string{"/api/v1/probe-a", "/api/v1/probe-b", "/api/v1/probe-a", "/api/v1/probe-b"} {
		r := f.Do(t, "POST", p, "", nil)
		statuses = append(statuses, r.Status)
		if r.Status == 429 && (r.Code() != "RATE_LIMITED" || r.Header.Get("Retry-After") == "") {
			t.Fatalf("over the limit: %v %s", r.Header, r.Raw)
		}
	}
	if !slices.Equal(statuses, []int{204, 204, 429, 429}) {
		t.Fatalf("statuses %v", statuses)
	}
	n := 0
	for _, e := range f.Audit.Events() {
		if e == "rate_limit_exceeded" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("rate limit audited %d times", n)
	}
}

func TestValidTokenTellsAValidBearerToken(t *testing.T) {
	f := apitest.New(t)
	for token, want := range map[string]bool{apitest.ViewerToken: true, apitest.ExpiredToken: false, "": false} {
		_, req := apitest.Recorder("POST", "/")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if got := f.Srv.ValidToken(req); got != want {
			t.Errorf("%q: %v", token, got)
		}
	}
}
