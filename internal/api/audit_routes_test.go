package api

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func TestAuditListAndFilters(t *testing.T) {
	f := newFixture(t)
	for i := range 3 {
		f.audit.entries = append(f.audit.entries, store.AuditEntry{ID: itoa(i), EventType: "login_success",
			Severity: "info", CreatedAt: time.Date(2026, 1, 5, 10, 0, i, 0, time.UTC)})
	}
	r := f.do(t, "GET", "/api/v1/audit?event_type=login_success,logout&severity=info&hours=2&page=2&page_size=1",
		viewerToken, nil)
	flt := f.audit.filters[0]
	if r.status != 200 || flt.Offset != 1 || flt.Limit != 1 || !slices.Equal(flt.EventTypes, []string{"login_success", "logout"}) ||
		time.Since(flt.Start) > 2*time.Hour+time.Minute {
		t.Fatalf("filter %+v %s", flt, r.raw)
	}
	if r.body["total"] != 3.0 || r.body["total_pages"] != 3.0 || r.obj("pagination")["has_next"] != true {
		t.Fatalf("page: %s", r.raw)
	}
	first := r.items("data")[0].(map[string]any)
	if first["error_code"] != nil || first["created_at"] != "2026-01-05T10:00:00.000Z" {
		t.Fatalf("entry: %v", first)
	}

	for _, p := range []string{"/api/v1/audit/errors?hours=3", "/api/v1/audit/esp/ESP_1/config-history"} {
		if r := f.do(t, "GET", p, viewerToken, nil); r.status != 200 || len(r.list) != 3 {
			t.Errorf("%s: %s", p, r.raw)
		}
	}
	for _, p := range []string{"/api/v1/audit?page_size=900", "/api/v1/audit/errors?hours=999",
		"/api/v1/audit/esp/bad%20id/config-history", "/api/v1/audit/statistics?time_range=1y",
		"/api/v1/audit/error-rate?hours=0"} {
		if r := f.do(t, "GET", p, viewerToken, nil); r.status != 422 {
			t.Errorf("%s: %d", p, r.status)
		}
	}
}

func TestAuditStatisticsAndErrorRate(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "GET", "/api/v1/audit/statistics?time_range=7d", viewerToken, nil)
	if r.body["total_count"] != 8.0 || r.body["pending_cleanup_count"] != 2.0 || r.obj("retention_config")["default_days"] != 30.0 {
		t.Fatalf("statistics: %s", r.raw)
	}
	r = f.do(t, "GET", "/api/v1/audit/error-rate", viewerToken, nil)
	if r.body["error_events"] != 2.0 || r.body["error_rate_percent"] != 25.0 || r.body["period_hours"] != 24.0 {
		t.Fatalf("error rate: %s", r.raw)
	}
	f.audit.err = errBoom
	for _, p := range []string{"/api/v1/audit", "/api/v1/audit/statistics", "/api/v1/audit/error-rate",
		"/api/v1/audit/retention/config", "/api/v1/audit/errors"} {
		if r := f.do(t, "GET", p, viewerToken, nil); r.status != 500 {
			t.Errorf("%s: %d", p, r.status)
		}
	}
}

func TestRetentionChangesOnlyWhatIsNamed(t *testing.T) {
	f := newFixture(t)
	before := f.audit.retention
	r := f.do(t, "PUT", "/api/v1/audit/retention/config", adminToken,
		`{"default_days": 60.0, "severity_days": {"info": 7}, "enabled": null}`)
	after := f.audit.retention
	if r.status != 200 || after.DefaultDays != 60 || after.SeverityDays["info"] != 7 ||
		after.SeverityDays["critical"] != before.SeverityDays["critical"] || after.Enabled != before.Enabled ||
		after.BatchSize != before.BatchSize {
		t.Fatalf("%+v %s", after, r.raw)
	}
	if r.body["default_days"] != 60.0 || !slices.Contains(f.audit.events(), "retention_config_updated") {
		t.Fatalf("reply or audit: %s", r.raw)
	}
	raw, _ := json.Marshal(f.audit.entries[len(f.audit.entries)-1].Details["old"])
	if string(raw) == "" || !json.Valid(raw) {
		t.Fatalf("audit details: %s", raw)
	}

	r = f.do(t, "PUT", "/api/v1/audit/retention/config", adminToken,
		`{"severity_days": {"debug": 3, "info": 0.5}, "batch_size": 5, "enabled": "yes"}`)
	want := []string{"body.enabled: type_error", "body.batch_size: greater_than_equal", "body.severity_days: value_error",
		"body.severity_days: value_error"}
	if got := r.fieldErrors(); !slices.Equal(got, want) {
		t.Fatalf("errors %v", got)
	}
	if f.audit.retention.DefaultDays != 60 {
		t.Fatal("a rejected change was stored")
	}
}

func TestAuditCleanupAndEnumerations(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "POST", "/api/v1/audit/retention/cleanup?dry_run=true", adminToken, nil)
	if r.status != 200 || r.body["dry_run"] != true || r.body["deleted_count"] != 2.0 {
		t.Fatalf("cleanup: %s", r.raw)
	}
	if r := f.do(t, "POST", "/api/v1/audit/retention/cleanup?dry_run=perhaps", adminToken, nil); r.status != 422 {
		t.Fatalf("bad dry_run: %d", r.status)
	}
	for path, n := range map[string]int{"/api/v1/audit/event-types": len(auditEventTypes),
		"/api/v1/audit/severities": 4, "/api/v1/audit/source-types": 6} {
		if r := f.do(t, "GET", path, viewerToken, nil); len(r.list) != n {
			t.Errorf("%s: %s", path, r.raw)
		}
	}
	r = f.do(t, "GET", "/api/v1/audit/event-types", viewerToken, nil)
	if e := r.list[0].(map[string]any); e["value"] != "login_success" || e["category"] != "auth" {
		t.Fatalf("event type: %v", e)
	}
}
