package auditapi

import (
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/store"
)

func newFixture(t *testing.T) *apitest.Fixture {
	f := apitest.New(t)
	Register(f.Srv, Deps{Log: f.Audit})
	return f
}

func TestAuditListAndFilters(t *testing.T) {
	f := newFixture(t)
	for i := range 3 {
		f.Audit.Entries = append(f.Audit.Entries, store.AuditEntry{
			ID:        strconv.Itoa(i),
			EventType: "login_success",
			Severity:  "info",
			CreatedAt: time.Date(2026, 1, 5, 10, 0, i, 0, time.UTC),
		})
	}
	r := f.Do(t, "GET", "/api/v1/audit?event_type=login_success,logout&severity=info&hours=2&page=2&page_size=1",
		apitest.ViewerToken, nil)
	flt := f.Audit.Filters[0]
	if r.Status != 200 || flt.Offset != 1 || flt.Limit != 1 ||
		!slices.Equal(flt.EventTypes, []string{"login_success", "logout"}) ||
		time.Since(flt.Start) > 2*time.Hour+time.Minute {
		t.Fatalf("filter %+v %s", flt, r.Raw)
	}
	if r.Body["total"] != 3.0 || r.Body["total_pages"] != 3.0 || r.Obj("pagination")["has_next"] != true {
		t.Fatalf("page: %s", r.Raw)
	}
	first := r.Items("data")[0].(map[string]any)
	if first["error_code"] != nil || first["created_at"] != "2026-01-05T10:00:00.000Z" {
		t.Fatalf("entry: %v", first)
	}

	for _, p := range []string{"/api/v1/audit/errors?hours=3", "/api/v1/audit/esp/ESP_1/config-history"} {
		if r := f.Do(t, "GET", p, apitest.ViewerToken, nil); r.Status != 200 || len(r.List) != 3 {
			t.Errorf("%s: %s", p, r.Raw)
		}
	}
	for _, p := range []string{"/api/v1/audit?page_size=900", "/api/v1/audit/errors?hours=999",
		"/api/v1/audit/esp/bad%20id/config-history", "/api/v1/audit/statistics?time_range=1y",
		"/api/v1/audit/error-rate?hours=0"} {
		if r := f.Do(t, "GET", p, apitest.ViewerToken, nil); r.Status != 422 {
			t.Errorf("%s: %d", p, r.Status)
		}
	}
}

func TestAuditStatisticsAndErrorRate(t *testing.T) {
	f := newFixture(t)
	r := f.Do(t, "GET", "/api/v1/audit/statistics?time_range=7d", apitest.ViewerToken, nil)
	if r.Body["total_count"] != 8.0 || r.Body["pending_cleanup_count"] != 2.0 ||
		r.Obj("retention_config")["default_days"] != 30.0 {
		t.Fatalf("statistics: %s", r.Raw)
	}
	r = f.Do(t, "GET", "/api/v1/audit/error-rate", apitest.ViewerToken, nil)
	if r.Body["error_events"] != 2.0 || r.Body["error_rate_percent"] != 25.0 || r.Body["period_hours"] != 24.0 {
		t.Fatalf("error rate: %s", r.Raw)
	}
	f.Audit.Err = apitest.ErrBoom
	for _, p := range []string{"/api/v1/audit", "/api/v1/audit/statistics", "/api/v1/audit/error-rate",
		"/api/v1/audit/retention/config", "/api/v1/audit/errors"} {
		if r := f.Do(t, "GET", p, apitest.ViewerToken, nil); r.Status != 500 {
			t.Errorf("%s: %d", p, r.Status)
		}
	}
}

func TestRetentionChangesOnlyWhatIsNamed(t *testing.T) {
	f := newFixture(t)
	before := f.Audit.Retention
	r := f.Do(t, "PUT", "/api/v1/audit/retention/config", apitest.AdminToken,
		`{"default_days": 60.0, "severity_days": {"info": 7}, "enabled": null}`)
	after := f.Audit.Retention
	if r.Status != 200 || after.DefaultDays != 60 || after.SeverityDays["info"] != 7 ||
		after.SeverityDays["critical"] != before.SeverityDays["critical"] || after.Enabled != before.Enabled ||
		after.BatchSize != before.BatchSize {
		t.Fatalf("%+v %s", after, r.Raw)
	}
	if r.Body["default_days"] != 60.0 || !slices.Contains(f.Audit.Events(), "retention_config_updated") {
		t.Fatalf("reply or audit: %s", r.Raw)
	}
	raw, _ := json.Marshal(f.Audit.Entries[len(f.Audit.Entries)-1].Details["old"])
	if string(raw) == "" || !json.Valid(raw) {
		t.Fatalf("audit details: %s", raw)
	}

	r = f.Do(t, "PUT", "/api/v1/audit/retention/config", apitest.AdminToken,
		`{"severity_days": {"debug": 3, "info": 0.5}, "batch_size": 5, "enabled": "yes"}`)
	want := []string{"body.enabled: type_error", "body.batch_size: greater_than_equal", "body.severity_days: value_error",
		"body.severity_days: value_error"}
	if got := r.FieldErrors(); !slices.Equal(got, want) {
		t.Fatalf("errors %v", got)
	}
	if f.Audit.Retention.DefaultDays != 60 {
		t.Fatal("a rejected change was stored")
	}
}

func TestAuditCleanupAndEnumerations(t *testing.T) {
	f := newFixture(t)
	r := f.Do(t, "POST", "/api/v1/audit/retention/cleanup?dry_run=true", apitest.AdminToken, nil)
	if r.Status != 200 || r.Body["dry_run"] != true || r.Body["deleted_count"] != 2.0 {
		t.Fatalf("cleanup: %s", r.Raw)
	}
	if r := f.Do(t, "POST", "/api/v1/audit/retention/cleanup?dry_run=perhaps", apitest.AdminToken, nil); r.Status != 422 {
		t.Fatalf("bad dry_run: %d", r.Status)
	}
	for path, n := range map[string]int{"/api/v1/audit/event-types": len(auditEventTypes),
		"/api/v1/audit/severities": 4, "/api/v1/audit/source-types": 6} {
		if r := f.Do(t, "GET", path, apitest.ViewerToken, nil); len(r.List) != n {
			t.Errorf("%s: %s", path, r.Raw)
		}
	}
	r = f.Do(t, "GET", "/api/v1/audit/event-types", apitest.ViewerToken, nil)
	if e := r.List[0].(map[string]any); e["value"] != "login_success" || e["category"] != "auth" {
		t.Fatalf("event type: %v", e)
	}
}
