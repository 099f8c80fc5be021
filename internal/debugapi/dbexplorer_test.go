package debugapi

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// explorerFixture serves the explorer routes over a real store holding a
// user (with a password hash), zones and an emergency token.
func explorerFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(ctx) })
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	if _, err := st.CreateUser(ctx, store.User{
		Username:     "admin",
		Email:        "admin@example.org",
		Role:         "admin",
		IsActive:     true,
		PasswordHash: "$2a$12$secret-hash",
		TokenVersion: 1,
		CreatedAt:    now,
		UpdatedAt:    now,
	}); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"beds", "glasshouse", "tunnel"} {
		if err := st.SaveZone(ctx, store.Zone{
			ZoneID:    id,
			Name:      strings.ToUpper(id),
			Status:    []string{"active", "archived", "active"}[i],
			CreatedAt: now.Add(time.Duration(i) * time.Hour),
			UpdatedAt: now,
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SaveEmergencyToken(ctx, store.EmergencyToken{Scope: "broadcast", Token: "tok-123", UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	f := &fixture{
		devices:   &fakeDevices{},
		sensors:   &fakeSensors{},
		actuators: &fakeActuators{},
	}
	f.srv = newFakeServer(f.devices)
	f.debug = Register(f.srv, Deps{Explorer: st.Explorer()})
	return f
}

func (f *fixture) get(t *testing.T, path string, query url.Values) reply {
	t.Helper()
	if query != nil {
		path += "?" + query.Encode()
	}
	return f.do(t, "GET", path, nil)
}

func TestExplorerTablesAndSchema(t *testing.T) {
	f := explorerFixture(t)
	r := f.get(t, "/api/v1/debug/db/tables", nil)
	tables := map[string]map[string]any{}
	for _, x := range r.body["tables"].([]any) {
		tables[x.(map[string]any)["table_name"].(string)] = x.(map[string]any)
	}
	if r.status != 200 || tables["zones"]["row_count"] != 3.0 || tables["control.emergency_tokens"]["database"] != "control" ||
		tables["readings"]["primary_key"] != "series_id,ts" || tables["readings"]["time_column"] != "ts" {
		t.Fatalf("%d %s", r.status, r.raw)
	}

	r = f.get(t, "/api/v1/debug/db/users/schema", nil)
	var hash map[string]any
	for _, c := range r.body["columns"].([]any) {
		if c.(map[string]any)["name"] == "password_hash" {
			hash = c.(map[string]any)
		}
	}
	if r.status != 200 || r.body["primary_key"] != "id" || hash["masked"] != true || hash["type"] != "string" {
		t.Fatalf("schema: %s", r.raw)
	}
	if r := f.get(t, "/api/v1/debug/db/nope/schema", nil); r.status != 404 || r.code() != "TABLE_NOT_FOUND" {
		t.Fatalf("unknown table: %d %s", r.status, r.raw)
	}
}

func TestExplorerRowsRoute(t *testing.T) {
	f := explorerFixture(t)
	r := f.get(t, "/api/v1/debug/db/users", nil)
	rows := r.body["data"].([]any)
	if r.status != 200 || len(rows) != 1 || strings.Contains(r.raw, "secret-hash") ||
		rows[0].(map[string]any)["password_hash"] != "***MASKED***" || rows[0].(map[string]any)["is_active"] != true ||
		rows[0].(map[string]any)["created_at"] != "2026-01-05T10:00:00.000Z" || r.body["time_window"] != nil {
		t.Fatalf("users: %d %s", r.status, r.raw)
	}
	if r := f.get(t, "/api/v1/debug/db/control.emergency_tokens", nil); strings.Contains(r.raw, "tok-123") {
		t.Fatalf("emergency token shown: %s", r.raw)
	}

	names := func(r reply) string {
		var out []string
		for _, x := range r.body["data"].([]any) {
			out = append(out, x.(map[string]any)["zone_id"].(string))
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		query url.Values
		want  string
	}{
		{nil, "tunnel,glasshouse,beds"}, // primary key, descending
		{url.Values{"sort_by": {"created_at"}, "sort_order": {"asc"}}, "beds,glasshouse,tunnel"},
		{url.Values{"filters": {`{"status":"active"}`}}, "tunnel,beds"},
		{url.Values{"filters": {`{"status__in":["archived"],"name__contains":"GLASS"}`}}, "glasshouse"},
		{url.Values{"filters": {`{"created_at__gte":"2026-01-05T11:00:00Z"}`}}, "tunnel,glasshouse"},
		{url.Values{"page_size": {"2"}, "page": {"2"}}, "beds"},
	}
	for _, tt := range tests {
		r := f.get(t, "/api/v1/debug/db/zones", tt.query)
		if r.status != 200 || names(r) != tt.want {
			t.Errorf("%v: %d %q, want %q: %s", tt.query, r.status, names(r), tt.want, r.raw)
		}
	}
	r = f.get(t, "/api/v1/debug/db/zones", url.Values{"page_size": {"2"}})
	if r.body["total_count"] != 3.0 || r.body["total_pages"] != 2.0 || r.body["page_size"] != 2.0 {
		t.Fatalf("meta: %s", r.raw)
	}
	r = f.get(t, "/api/v1/debug/db/audit_log", nil)
	if w, _ := r.body["time_window"].(map[string]any); r.status != 200 || w["column"] != "created_at" || w["from"] == nil {
		t.Fatalf("time-series window: %s", r.raw)
	}
}

func TestExplorerRowsRefusals(t *testing.T) {
	f := explorerFixture(t)
	tests := []struct {
		table  string
		query  url.Values
		status int
		code   string
	}{
		{"zones", url.Values{"page_size": {"501"}}, 422, "VALIDATION_ERROR"},
		{"zones", url.Values{"sort_order": {"sideways"}}, 422, "VALIDATION_ERROR"},
		{"nope", nil, 404, "TABLE_NOT_FOUND"},
		{"nope", url.Values{"filters": {"{broken"}}, 404, "TABLE_NOT_FOUND"},
		{"zones", url.Values{"filters": {"{broken"}}, 400, "INVALID_FILTER"},
		{"zones", url.Values{"filters": {`["status"]`}}, 400, "INVALID_FILTER"},
		{"zones", url.Values{"filters": {`{"nope":1}`}}, 400, "INVALID_FILTER"},
		{"zones", url.Values{"filters": {`{"zone_id; DROP TABLE zones":1}`}}, 400, "INVALID_FILTER"},
		{"zones", url.Values{"sort_by": {"zone_id desc; DROP TABLE zones"}}, 400, "INVALID_FILTER"},
		{"users", url.Values{"filters": {`{"password_hash__contains":"$2a"}`}}, 400, "INVALID_FILTER"},
		{"users", url.Values{"sort_by": {"password_hash"}}, 400, "INVALID_FILTER"},
		{"zones", url.Values{"filters": {`{"created_at__gt":"tomorrow"}`}}, 400, "INVALID_FILTER"},
	}
	for _, tt := range tests {
		r := f.get(t, "/api/v1/debug/db/"+tt.table, tt.query)
		if r.status != tt.status || r.code() != tt.code {
			t.Errorf("%s %v: %d %s", tt.table, tt.query, r.status, r.raw)
		}
	}
	// The injection attempts were values or refused names: the table is whole.
	if r := f.get(t, "/api/v1/debug/db/zones", nil); r.body["total_count"] != 3.0 {
		t.Fatalf("zones after the attempts: %s", r.raw)
	}
}

func TestExplorerRecordRoute(t *testing.T) {
	f := explorerFixture(t)
	r := f.get(t, "/api/v1/debug/db/zones/glasshouse", nil)
	rec := r.body["record"].(map[string]any)
	if r.status != 200 || r.body["table_name"] != "zones" || rec["status"] != "archived" || rec["name"] != "GLASSHOUSE" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	r = f.get(t, "/api/v1/debug/db/users/1", nil)
	if rec := r.body["record"].(map[string]any); rec["password_hash"] != "***MASKED***" || rec["username"] != "admin" {
		t.Fatalf("user: %s", r.raw)
	}
	for path, code := range map[string]string{
		"/api/v1/debug/db/zones/nope":  "RECORD_NOT_FOUND",
		"/api/v1/debug/db/users/abc":   "RECORD_NOT_FOUND",
		"/api/v1/debug/db/nope/1":      "TABLE_NOT_FOUND",
		"/api/v1/debug/db/readings/1":  "RECORD_NOT_FOUND",
		"/api/v1/debug/db/readings/,,": "RECORD_NOT_FOUND",
	} {
		if r := f.get(t, path, nil); r.status != 404 || r.code() != code {
			t.Errorf("%s: %d %s", path, r.status, r.raw)
		}
	}
}

func TestParseFilters(t *testing.T) {
	conds, err := parseFilters(`{"b__gte": 2, "a": "x", "c__in": [1, 2], "d__e": 1, "f__contains": "y"}`)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(conds)
	want := `[{"Column":"a","Op":"eq","Value":"x"},{"Column":"b","Op":"gte","Value":2},{"Column":"c","Op":"in","Value":[1,2]},` +
		`{"Column":"d__e","Op":"eq","Value":1},{"Column":"f","Op":"contains","Value":"y"}]`
	if string(got) != want {
		t.Fatalf("%s\nwant %s", got, want)
	}
	for _, raw := range []string{"[]", "null", `{"a":1} {"b":2}`, "{", `"x"`, "{" + strings.Repeat(`"a":1,`, 9000) + `"b":1}`} {
		if _, err := parseFilters(raw); err == nil {
			t.Errorf("%.40q accepted", raw)
		}
	}
}
