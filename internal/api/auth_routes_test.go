package api

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/store"
)

func TestSetupAndStatus(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "GET", "/api/v1/auth/status", "", nil); r.body["setup_required"] != false || r.body["users_exist"] != true {
		t.Fatalf("status: %s", r.raw)
	}
	f.auth.setupErr = store.ErrSetupDone
	body := map[string]any{"username": "root", "email": "root@example.org", "password": "Pass-word1"}
	if r := f.do(t, "POST", "/api/v1/auth/setup", "", body); r.status != 403 || r.code() != "SETUP_ALREADY_COMPLETED" {
		t.Fatalf("second setup: %d %s", r.status, r.raw)
	}
	f.auth.setupErr = nil
	r := f.do(t, "POST", "/api/v1/auth/setup", "", body)
	if r.status != 200 || r.obj("user")["role"] != "admin" || r.obj("tokens")["access_token"] != "access-root" {
		t.Fatalf("setup: %s", r.raw)
	}
	if !slices.Contains(f.audit.events(), "setup_completed") {
		t.Fatal("not audited")
	}
}

func TestNewAccountValidation(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "POST", "/api/v1/users", adminToken, map[string]any{"username": 5, "email": "a@b.org",
		"password": "short", "role": "god"})
	want := []string{"body.username: type_error", "body.role: enum", "body.password: value_error"}
	if got := r.fieldErrors(); r.status != 422 || !slices.Equal(got, want) {
		t.Fatalf("%d %v", r.status, got)
	}
	r = f.do(t, "POST", "/api/v1/users", adminToken, map[string]any{"username": "ok_user"})
	want = []string{"body.email: missing", "body.password: missing"}
	if got := r.fieldErrors(); !slices.Equal(got, want) {
		t.Fatalf("missing: %v", got)
	}
}

func TestLoginVariants(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": "viewer", "password": "Pass-word1"})
	if r.status != 200 || r.obj("user")["username"] != "viewer" || r.body["message"] != "login successful" {
		t.Fatalf("login: %s", r.raw)
	}
	r = f.do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": "viewer", "password": "wrong"})
	if r.status != 401 || r.code() != "INVALID_CREDENTIALS" {
		t.Fatalf("wrong password: %s", r.raw)
	}
	if r := f.do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": ""}); !slices.Equal(r.fieldErrors(),
		[]string{"body.username: string_too_short", "body.password: missing"}) {
		t.Fatalf("empty: %v", r.fieldErrors())
	}
	f.auth.loginErr = auth.ErrUserDisabled
	if r := f.do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": "viewer", "password": "x"}); r.code() != "USER_DISABLED" {
		t.Fatalf("disabled: %s", r.raw)
	}
	f.auth.loginErr = nil

	form := func(body string) response {
		req := httptest.NewRequest("POST", "/api/v1/auth/login/form", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(rec, req)
		return decodeResponse(t, rec)
	}
	if r := form("username=viewer&password=Pass-word1"); r.status != 200 || r.body["access_token"] != "access-viewer" {
		t.Fatalf("form login answers bare tokens: %s", r.raw)
	}
	if r := form("username=&password="); !slices.Equal(r.fieldErrors(), []string{"body.username: value_error",
		"body.password: value_error"}) {
		t.Fatalf("form errors: %s", r.raw)
	}

	var results []string
	for _, e := range f.audit.entries {
		results = append(results, e.EventType+"/"+e.SourceID)
	}
	want := []string{"login_success/viewer", "login_failed/viewer", "login_failed/viewer", "login_success/viewer"}
	if !slices.Equal(results, want) {
		t.Fatalf("audit %v", results)
	}
}

// API §2.6: over the limit the reply is 429 with Retry-After, audited once.
func TestLoginIsRateLimited(t *testing.T) {
	f := newFixture(t)
	var last response
	for range 25 { // the fixture allows 20 a minute
		last = f.do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": "viewer", "password": "wrong"})
	}
	if last.status != 429 || last.code() != "RATE_LIMITED" || last.header.Get("Retry-After") == "" {
		t.Fatalf("%d %v %s", last.status, last.header, last.raw)
	}
	n := 0
	for _, e := range f.audit.events() {
		if e == "rate_limit_exceeded" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("rate limit audited %d times", n)
	}
}

func TestRefreshLogoutAndMe(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": "refresh-admin"}); r.status != 200 ||
		r.obj("tokens")["access_token"] != "access-admin" {
		t.Fatalf("refresh: %s", r.raw)
	}
	for token, code := range map[string]string{"refresh-disabled": "USER_DISABLED", "refresh-forged": "INVALID_TOKEN"} {
		if r := f.do(t, "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": token}); r.status != 401 ||
			r.code() != code {
			t.Errorf("%s: %s", token, r.raw)
		}
	}
	if r := f.do(t, "POST", "/api/v1/auth/refresh", "", nil); r.status != 422 {
		t.Fatalf("refresh without token: %d", r.status)
	}

	r := f.do(t, "POST", "/api/v1/auth/logout", viewerToken, map[string]any{"all_devices": true})
	if r.status != 200 || r.body["tokens_invalidated"] != 3.0 || !slices.Equal(f.auth.logouts, []bool{true}) {
		t.Fatalf("logout: %s", r.raw)
	}
	if r := f.do(t, "GET", "/api/v1/auth/me", viewerToken, nil); r.body["username"] != "viewer" || r.body["is_active"] != true {
		t.Fatalf("me: %s", r.raw)
	}
	if r := f.do(t, "GET", "/api/v1/auth/mqtt/status", viewerToken, nil); r.body["broker_connected"] != true ||
		r.body["username"] != nil {
		t.Fatalf("mqtt status: %s", r.raw)
	}
	if r := f.do(t, "POST", "/api/v1/auth/mqtt/configure", adminToken, nil); r.status != 501 {
		t.Fatalf("configure: %d", r.status)
	}
}

func TestUserAdministration(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "POST", "/api/v1/users", adminToken, map[string]any{"username": "carol", "email": "carol@example.org",
		"password": "Pass-word1", "role": "operator"})
	if r.status != 201 || r.body["role"] != "operator" {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	id := itoa(int(r.body["id"].(float64)))
	if r := f.do(t, "POST", "/api/v1/auth/register", adminToken, map[string]any{"username": "carol",
		"email": "c2@example.org", "password": "Pass-word1"}); r.status != 409 || r.code() != "DUPLICATE" {
		t.Fatalf("duplicate: %s", r.raw)
	}
	if r := f.do(t, "POST", "/api/v1/auth/register", adminToken, map[string]any{"username": "dave",
		"email": "d@example.org", "password": "Pass-word1"}); r.status != 200 || r.obj("user")["role"] != "viewer" {
		t.Fatalf("register: %s", r.raw)
	}
	if r := f.do(t, "GET", "/api/v1/users", adminToken, nil); r.body["total"] != 5.0 || len(r.items("users")) != 5 {
		t.Fatalf("list: %s", r.raw)
	}
	if r := f.do(t, "GET", "/api/v1/users/"+id, adminToken, nil); r.body["username"] != "carol" {
		t.Fatalf("get: %s", r.raw)
	}
	for path, status := range map[string]int{"/api/v1/users/x": 422, "/api/v1/users/999": 404} {
		if r := f.do(t, "GET", path, adminToken, nil); r.status != status {
			t.Errorf("%s: %d", path, r.status)
		}
	}

	// Null restores is_active; absent leaves it.
	r = f.do(t, "PATCH", "/api/v1/users/"+id, adminToken, `{"is_active": false, "full_name": "Carol"}`)
	if r.status != 200 || r.body["is_active"] != false || r.body["full_name"] != "Carol" {
		t.Fatalf("patch: %s", r.raw)
	}
	if r := f.do(t, "PATCH", "/api/v1/users/"+id, adminToken, `{"full_name": "C"}`); r.body["is_active"] != false {
		t.Fatalf("absent is_active changed it: %s", r.raw)
	}
	if r := f.do(t, "PATCH", "/api/v1/users/"+id, adminToken, `{"is_active": null}`); r.body["is_active"] != true {
		t.Fatalf("null is_active: %s", r.raw)
	}
	if r := f.do(t, "PATCH", "/api/v1/users/1", adminToken, `{"role": "viewer"}`); r.status != 409 || r.code() != "LAST_ADMIN" {
		t.Fatalf("last admin: %s", r.raw)
	}
	if r := f.do(t, "PATCH", "/api/v1/users/"+id, adminToken, `{"role": "king"}`); r.status != 422 {
		t.Fatalf("bad role: %s", r.raw)
	}

	if r := f.do(t, "POST", "/api/v1/users/"+id+"/reset-password", adminToken, map[string]any{"new_password": "weak"}); r.status != 422 {
		t.Fatalf("weak password: %s", r.raw)
	}
	if r := f.do(t, "POST", "/api/v1/users/"+id+"/reset-password", adminToken,
		map[string]any{"new_password": "Better-pass9"}); r.status != 200 {
		t.Fatalf("reset: %s", r.raw)
	}
	if r := f.do(t, "DELETE", "/api/v1/users/1", adminToken, nil); r.code() != "CANNOT_DELETE_SELF" {
		t.Fatalf("self delete: %s", r.raw)
	}
	if r := f.do(t, "DELETE", "/api/v1/users/"+id, adminToken, nil); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	want := []string{"user_created", "user_created", "user_updated", "user_updated", "user_updated", "password_reset",
		"user_deleted"}
	if got := f.audit.events(); !slices.Equal(got, want) {
		t.Fatalf("audit %v", got)
	}
}

func TestChangeOwnPassword(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "PATCH", "/api/v1/users/me/password", viewerToken,
		map[string]any{"current_password": "nope", "new_password": "Better-pass9"})
	if r.status != 400 || r.code() != "INVALID_CURRENT_PASSWORD" {
		t.Fatalf("wrong current: %s", r.raw)
	}
	r = f.do(t, "PATCH", "/api/v1/users/me/password", viewerToken,
		map[string]any{"current_password": "Pass-word1", "new_password": "Better-pass9"})
	if r.status != 200 || r.obj("tokens")["access_token"] != "access-viewer" {
		t.Fatalf("change: %s", r.raw)
	}
}

func TestAccountStoreFailuresAre500(t *testing.T) {
	f := newFixture(t)
	f.auth.err = errBoom
	for _, c := range []struct{ method, path string }{{"GET", "/api/v1/auth/status"}, {"GET", "/api/v1/users"},
		{"GET", "/api/v1/users/2"}, {"POST", "/api/v1/auth/logout"}} {
		body := any(nil)
		if c.method == "POST" {
			body = map[string]any{}
		}
		if r := f.do(t, c.method, c.path, adminToken, body); r.status != 500 || r.code() != "INTERNAL_ERROR" {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.raw)
		}
	}
	if !strings.Contains(f.logs.String(), "request failed") {
		t.Fatal("internal errors not logged")
	}
}
