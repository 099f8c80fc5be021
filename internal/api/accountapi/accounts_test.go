package accountapi

import (
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/store"
)

func newFixture(t *testing.T) *apitest.Fixture {
	f := apitest.New(t)
	Register(f.Srv, Deps{
		Accounts:     f.Auth,
		Audit:        f.Audit,
		LoginLimit:   20,
		RefreshLimit: 20,
	})
	return f
}

func TestSetupAndStatus(t *testing.T) {
	f := newFixture(t)
	if r := f.Do(t, "GET", "/api/v1/auth/status", "", nil); r.Body["setup_required"] != false ||
		r.Body["users_exist"] != true {
		t.Fatalf("status: %s", r.Raw)
	}
	f.Auth.SetupErr = store.ErrSetupDone
	body := map[string]any{"username": "root", "email": "root@example.org", "password": "Pass-word1"}
	if r := f.Do(t, "POST", "/api/v1/auth/setup", "", body); r.Status != 403 || r.Code() != "SETUP_ALREADY_COMPLETED" {
		t.Fatalf("second setup: %d %s", r.Status, r.Raw)
	}
	f.Auth.SetupErr = nil
	r := f.Do(t, "POST", "/api/v1/auth/setup", "", body)
	if r.Status != 200 || r.Obj("user")["role"] != "admin" || r.Obj("tokens")["access_token"] != "access-root" {
		t.Fatalf("setup: %s", r.Raw)
	}
	if !slices.Contains(f.Audit.Events(), "setup_completed") {
		t.Fatal("not audited")
	}
}

func TestNewAccountValidation(t *testing.T) {
	f := newFixture(t)
	r := f.Do(t, "POST", "/api/v1/users", apitest.AdminToken, map[string]any{
		"username": 5,
		"email":    "a@b.org",
		"password": "short",
		"role":     "god",
	})
	want := []string{"body.username: type_error", "body.role: enum", "body.password: value_error"}
	if got := r.FieldErrors(); r.Status != 422 || !slices.Equal(got, want) {
		t.Fatalf("%d %v", r.Status, got)
	}
	r = f.Do(t, "POST", "/api/v1/users", apitest.AdminToken, map[string]any{"username": "ok_user"})
	want = []string{"body.email: missing", "body.password: missing"}
	if got := r.FieldErrors(); !slices.Equal(got, want) {
		t.Fatalf("missing: %v", got)
	}
}

func TestLoginVariants(t *testing.T) {
	f := newFixture(t)
	r := f.Do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": "viewer", "password": "Pass-word1"})
	if r.Status != 200 || r.Obj("user")["username"] != "viewer" || r.Body["message"] != "login successful" {
		t.Fatalf("login: %s", r.Raw)
	}
	r = f.Do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": "viewer", "password": "wrong"})
	if r.Status != 401 || r.Code() != "INVALID_CREDENTIALS" {
		t.Fatalf("wrong password: %s", r.Raw)
	}
	if r := f.Do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": ""}); !slices.Equal(r.FieldErrors(),
		[]string{"body.username: string_too_short", "body.password: missing"}) {
		t.Fatalf("empty: %v", r.FieldErrors())
	}
	f.Auth.LoginErr = auth.ErrUserDisabled
	r = f.Do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": "viewer", "password": "x"})
	if r.Code() != "USER_DISABLED" {
		t.Fatalf("disabled: %s", r.Raw)
	}
	f.Auth.LoginErr = nil

	form := func(body string) apitest.Response {
		req := httptest.NewRequest("POST", "/api/v1/auth/login/form", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		f.Srv.Handler().ServeHTTP(rec, req)
		return apitest.Decode(t, rec)
	}
	if r := form("username=viewer&password=Pass-word1"); r.Status != 200 || r.Body["access_token"] != "access-viewer" {
		t.Fatalf("form login answers bare tokens: %s", r.Raw)
	}
	if r := form("username=&password="); !slices.Equal(r.FieldErrors(), []string{"body.username: value_error",
		"body.password: value_error"}) {
		t.Fatalf("form errors: %s", r.Raw)
	}

	var results []string
	for _, e := range f.Audit.Entries {
		results = append(results, e.EventType+"/"+e.SourceID)
	}
	want := []string{"login_success/viewer", "login_failed/viewer", "login_failed/viewer", "login_success/viewer"}
	if !slices.Equal(results, want) {
		t.Fatalf("audit %v", results)
	}
}

// docs/api.md §2.6: over the limit the reply is 429 with Retry-After, audited once.
func TestLoginIsRateLimited(t *testing.T) {
	f := newFixture(t)
	var last apitest.Response
	for range 25 { // the fixture allows 20 a minute
		last = f.Do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": "viewer", "password": "wrong"})
	}
	if last.Status != 429 || last.Code() != "RATE_LIMITED" || last.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %v %s", last.Status, last.Header, last.Raw)
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

func TestRefreshLogoutAndMe(t *testing.T) {
	f := newFixture(t)
	if r := f.Do(t, "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": "refresh-admin"}); r.Status !=
		200 ||
		r.Obj("tokens")["access_token"] != "access-admin" {
		t.Fatalf("refresh: %s", r.Raw)
	}
	for token, code := range map[string]string{"refresh-disabled": "USER_DISABLED", "refresh-forged": "INVALID_TOKEN"} {
		if r := f.Do(t, "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": token}); r.Status != 401 ||
			r.Code() != code {
			t.Errorf("%s: %s", token, r.Raw)
		}
	}
	if r := f.Do(t, "POST", "/api/v1/auth/refresh", "", nil); r.Status != 422 {
		t.Fatalf("refresh without token: %d", r.Status)
	}

	r := f.Do(t, "POST", "/api/v1/auth/logout", apitest.ViewerToken, map[string]any{"all_devices": true})
	if r.Status != 200 || r.Body["tokens_invalidated"] != 3.0 || !slices.Equal(f.Auth.Logouts, []bool{true}) {
		t.Fatalf("logout: %s", r.Raw)
	}
	if r := f.Do(t, "GET", "/api/v1/auth/me", apitest.ViewerToken, nil); r.Body["username"] != "viewer" ||
		r.Body["is_active"] != true {
		t.Fatalf("me: %s", r.Raw)
	}
	if r := f.Do(t, "GET", "/api/v1/auth/mqtt/status", apitest.ViewerToken, nil); r.Body["broker_connected"] != true ||
		r.Body["username"] != nil {
		t.Fatalf("mqtt status: %s", r.Raw)
	}
	if r := f.Do(t, "POST", "/api/v1/auth/mqtt/configure", apitest.AdminToken, nil); r.Status != 501 {
		t.Fatalf("configure: %d", r.Status)
	}
}

func TestUserAdministration(t *testing.T) {
	f := newFixture(t)
	r := f.Do(t, "POST", "/api/v1/users", apitest.AdminToken, map[string]any{
		"username": "carol",
		"email":    "carol@example.org",
		"password": "Pass-word1",
		"role":     "operator",
	})
	if r.Status != 201 || r.Body["role"] != "operator" {
		t.Fatalf("create: %d %s", r.Status, r.Raw)
	}
	id := strconv.Itoa(int(r.Body["id"].(float64)))
	if r := f.Do(t, "POST", "/api/v1/auth/register", apitest.AdminToken, map[string]any{"username": "carol",
		"email": "c2@example.org", "password": "Pass-word1"}); r.Status != 409 || r.Code() != "DUPLICATE" {
		t.Fatalf("duplicate: %s", r.Raw)
	}
	if r := f.Do(t, "POST", "/api/v1/auth/register", apitest.AdminToken, map[string]any{"username": "dave",
		"email": "d@example.org", "password": "Pass-word1"}); r.Status != 200 || r.Obj("user")["role"] != "viewer" {
		t.Fatalf("register: %s", r.Raw)
	}
	if r := f.Do(t, "GET", "/api/v1/users", apitest.AdminToken, nil); r.Body["total"] != 5.0 ||
		len(r.Items("users")) != 5 {
		t.Fatalf("list: %s", r.Raw)
	}
	if r := f.Do(t, "GET", "/api/v1/users/"+id, apitest.AdminToken, nil); r.Body["username"] != "carol" {
		t.Fatalf("get: %s", r.Raw)
	}
	for path, status := range map[string]int{"/api/v1/users/x": 422, "/api/v1/users/999": 404} {
		if r := f.Do(t, "GET", path, apitest.AdminToken, nil); r.Status != status {
			t.Errorf("%s: %d", path, r.Status)
		}
	}

	// Null restores is_active; absent leaves it.
	r = f.Do(t, "PATCH", "/api/v1/users/"+id, apitest.AdminToken, `{"is_active": false, "full_name": "Carol"}`)
	if r.Status != 200 || r.Body["is_active"] != false || r.Body["full_name"] != "Carol" {
		t.Fatalf("patch: %s", r.Raw)
	}
	if r := f.Do(t, "PATCH", "/api/v1/users/"+id, apitest.AdminToken, `{"full_name": "C"}`); r.Body["is_active"] != false {
		t.Fatalf("absent is_active changed it: %s", r.Raw)
	}
	if r := f.Do(t, "PATCH", "/api/v1/users/"+id, apitest.AdminToken, `{"is_active": null}`); r.Body["is_active"] != true {
		t.Fatalf("null is_active: %s", r.Raw)
	}
	if r := f.Do(t, "PATCH", "/api/v1/users/1", apitest.AdminToken, `{"role": "viewer"}`); r.Status != 409 ||
		r.Code() != "LAST_ADMIN" {
		t.Fatalf("last admin: %s", r.Raw)
	}
	if r := f.Do(t, "PATCH", "/api/v1/users/"+id, apitest.AdminToken, `{"role": "king"}`); r.Status != 422 {
		t.Fatalf("bad role: %s", r.Raw)
	}

	weak := map[string]any{"new_password": "weak"}
	if r := f.Do(t, "POST", "/api/v1/users/"+id+"/reset-password", apitest.AdminToken, weak); r.Status != 422 {
		t.Fatalf("weak password: %s", r.Raw)
	}
	if r := f.Do(t, "POST", "/api/v1/users/"+id+"/reset-password", apitest.AdminToken,
		map[string]any{"new_password": "Better-pass9"}); r.Status != 200 {
		t.Fatalf("reset: %s", r.Raw)
	}
	if r := f.Do(t, "DELETE", "/api/v1/users/1", apitest.AdminToken, nil); r.Code() != "CANNOT_DELETE_SELF" {
		t.Fatalf("self delete: %s", r.Raw)
	}
	if r := f.Do(t, "DELETE", "/api/v1/users/"+id, apitest.AdminToken, nil); r.Status != 204 {
		t.Fatalf("delete: %d", r.Status)
	}
	want := []string{"user_created", "user_created", "user_updated", "user_updated", "user_updated", "password_reset",
		"user_deleted"}
	if got := f.Audit.Events(); !slices.Equal(got, want) {
		t.Fatalf("audit %v", got)
	}
}

func TestChangeOwnPassword(t *testing.T) {
	f := newFixture(t)
	r := f.Do(t, "PATCH", "/api/v1/users/me/password", apitest.ViewerToken,
		map[string]any{"current_password": "nope", "new_password": "Better-pass9"})
	if r.Status != 400 || r.Code() != "INVALID_CURRENT_PASSWORD" {
		t.Fatalf("wrong current: %s", r.Raw)
	}
	r = f.Do(t, "PATCH", "/api/v1/users/me/password", apitest.ViewerToken,
		map[string]any{"current_password": "Pass-word1", "new_password": "Better-pass9"})
	if r.Status != 200 || r.Obj("tokens")["access_token"] != "access-viewer" {
		t.Fatalf("change: %s", r.Raw)
	}
}

func TestAccountStoreFailuresAre500(t *testing.T) {
	f := newFixture(t)
	f.Auth.Err = apitest.ErrBoom
	for _, c := range []struct{ method, path string }{{"GET", "/api/v1/auth/status"}, {"GET", "/api/v1/users"},
		{"GET", "/api/v1/users/2"}, {"POST", "/api/v1/auth/logout"}} {
		body := any(nil)
		if c.method == "POST" {
			body = map[string]any{}
		}
		if r := f.Do(t, c.method, c.path, apitest.AdminToken, body); r.Status != 500 || r.Code() != "INTERNAL_ERROR" {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.Status, r.Raw)
		}
	}
	if !strings.Contains(f.Logs.String(), "request failed") {
		t.Fatal("internal errors not logged")
	}
}

// The OpenAPI document describes the embedded account fields and the role
// with its values and default.
func TestAccountBodiesAreDocumented(t *testing.T) {
	f := newFixture(t)
	r := f.Do(t, "GET", "/api/v1/openapi.json", "", nil)
	schemas := r.Obj("components")["schemas"].(map[string]any)

	props := schemas["CreateUserRequest"].(map[string]any)["properties"].(map[string]any)
	role := props["role"].(map[string]any)
	if role["default"] != "viewer" || len(role["enum"].([]any)) != 3 {
		t.Fatalf("role: %v", role)
	}
	if _, ok := props["username"]; !ok {
		t.Fatalf("embedded fields missing: %v", props)
	}
}
