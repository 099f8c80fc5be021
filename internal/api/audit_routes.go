package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/store"
)

var auditEventTypes = []map[string]string{
	{"value": "login_success", "description": "Successful login", "category": "auth"},
	{"value": "login_failed", "description": "Failed login", "category": "auth"},
	{"value": "setup_completed", "description": "First admin created", "category": "auth"},
	{"value": "logout", "description": "Logout", "category": "auth"},
	{"value": "user_created", "description": "User created", "category": "users"},
	{"value": "user_updated", "description": "User updated", "category": "users"},
	{"value": "user_deleted", "description": "User deleted", "category": "users"},
	{"value": "password_changed", "description": "Own password changed", "category": "users"},
	{"value": "password_reset", "description": "Password reset by an admin", "category": "users"},
	{"value": "device_registered", "description": "Device registered by an operator", "category": "devices"},
	{"value": "device_discovered", "description": "Unknown device announced itself", "category": "devices"},
	{"value": "device_rediscovered", "description": "Deleted device announced itself again", "category": "devices"},
	{"value": "device_approved", "description": "Device approved", "category": "devices"},
	{"value": "device_rejected", "description": "Device rejected", "category": "devices"},
	{"value": "device_set_pending", "description": "Device returned to pending", "category": "devices"},
	{"value": "device_deleted", "description": "Device deleted", "category": "devices"},
	{"value": "device_offline", "description": "Device went offline", "category": "devices"},
	{"value": "device_restart_requested", "description": "Restart requested (not supported)", "category": "devices"},
	{"value": "device_factory_reset", "description": "Factory reset sent", "category": "devices"},
	{"value": "rate_limit_exceeded", "description": "Auth rate limit exceeded", "category": "security"},
	{"value": "permission_denied", "description": "Role too low for a route", "category": "security"},
	{"value": "retention_config_updated", "description": "Audit retention changed", "category": "audit"},
	{"value": "audit_cleanup", "description": "Audit cleanup ran", "category": "audit"},
}

func (s *Server) auditRoutes() {
	s.protected("GET", "/api/v1/audit", auth.RoleViewer, "Query the audit log", "audit", s.listAudit)
	s.protected("GET", "/api/v1/audit/errors", auth.RoleViewer, "Recent error and critical entries", "audit", s.auditErrors)
	s.protected("GET", "/api/v1/audit/esp/{esp_id}/config-history", auth.RoleViewer, "Config-related entries of a device", "audit", s.auditConfigHistory)
	s.protected("GET", "/api/v1/audit/statistics", auth.RoleViewer, "Audit statistics", "audit", s.auditStatistics)
	s.protected("GET", "/api/v1/audit/error-rate", auth.RoleViewer, "Share of error entries", "audit", s.auditErrorRate)
	s.protected("GET", "/api/v1/audit/retention/config", auth.RoleViewer, "Audit retention configuration", "audit", func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
		rc, err := s.audit.GetRetention(r.Context())
		if err != nil {
			s.internal(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, retentionJSON(rc))
	})
	s.protected("PUT", "/api/v1/audit/retention/config", auth.RoleAdmin, "Change audit retention", "audit", s.putRetention)
	s.protected("POST", "/api/v1/audit/retention/cleanup", auth.RoleAdmin, "Run the audit cleanup now", "audit", s.auditCleanup)
	s.protected("GET", "/api/v1/audit/event-types", auth.RoleViewer, "Audit event types", "audit", func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
		WriteJSON(w, http.StatusOK, auditEventTypes)
	})
	s.protected("GET", "/api/v1/audit/severities", auth.RoleViewer, "Audit severities", "audit", func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
		WriteJSON(w, http.StatusOK, []map[string]string{
			{"value": "info", "description": "Informational", "color": "#2196f3"},
			{"value": "warning", "description": "Needs attention", "color": "#ff9800"},
			{"value": "error", "description": "Failure", "color": "#f44336"},
			{"value": "critical", "description": "Safety-relevant failure", "color": "#9c27b0"}})
	})
	s.protected("GET", "/api/v1/audit/source-types", auth.RoleViewer, "Audit source types", "audit", func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
		WriteJSON(w, http.StatusOK, []string{"user", "esp32", "system", "api", "mqtt", "scheduler"})
	})
}

func entryJSON(e store.AuditEntry) map[string]any {
	return map[string]any{"id": e.ID, "event_type": e.EventType, "severity": e.Severity, "source_type": e.SourceType,
		"source_id": e.SourceID, "status": e.Status, "message": e.Message, "details": e.Details, "error_code": nullStr(e.ErrorCode),
		"error_description": nullStr(e.ErrorDescription), "ip_address": nullStr(e.IPAddress), "user_agent": nullStr(e.UserAgent),
		"correlation_id": nullStr(e.CorrelationID), "created_at": tsv(e.CreatedAt)}
}

func entriesJSON(es []store.AuditEntry) []map[string]any {
	out := make([]map[string]any, 0, len(es))
	for _, e := range es {
		out = append(out, entryJSON(e))
	}
	return out
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := &query{r: r}
	f := store.AuditFilter{SourceType: q.str("source_type", 20), SourceID: q.str("source_id", 100),
		Status: q.str("status", 20), ErrorCode: q.str("error_code", 100), Start: q.time("start_time"), End: q.time("end_time")}
	if et := q.str("event_type", 100); et != "" {
		f.EventTypes = strings.Split(et, ",")
	}
	if sev := q.str("severity", 20); sev != "" {
		f.Severities = []string{sev}
	}
	if h := q.integer("hours", 0, 1, 720); h > 0 {
		f.Start = time.Now().Add(-time.Duration(h) * time.Hour)
	}
	page := q.integer("page", 1, 1, 1<<30)
	size := q.integer("page_size", 50, 1, 500)
	if q.done(w, r) {
		return
	}
	f.Offset, f.Limit = (page-1)*size, size
	es, total, err := s.audit.Query(r.Context(), f)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "data": entriesJSON(es), "total": total, "page": page,
		"page_size": size, "total_pages": (total + size - 1) / size, "pagination": pagination(page, size, total)})
}

func (s *Server) auditErrors(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := &query{r: r}
	hours := q.integer("hours", 24, 1, 168)
	limit := q.integer("limit", 100, 1, 500)
	if q.done(w, r) {
		return
	}
	es, _, err := s.audit.Query(r.Context(), store.AuditFilter{Severities: []string{"error", "critical"},
		Start: time.Now().Add(-time.Duration(hours) * time.Hour), Limit: limit})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, entriesJSON(es))
}

func (s *Server) auditConfigHistory(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	id := r.PathValue("esp_id")
	if !espIDPattern.MatchString(id) {
		pathError(w, r, "esp_id", "must be 1-31 characters of [A-Za-z0-9_-]")
		return
	}
	q := &query{r: r}
	limit := q.integer("limit", 50, 1, 200)
	if q.done(w, r) {
		return
	}
	es, _, err := s.audit.Query(r.Context(), store.AuditFilter{EventTypes: []string{"config_published", "config_response", "config_failed"},
		SourceID: id, Limit: limit})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, entriesJSON(es))
}

func (s *Server) auditStatistics(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := &query{r: r}
	rng := q.str("time_range", 8)
	since := time.Time{}
	switch rng {
	case "", "all":
	case "24h":
		since = time.Now().Add(-24 * time.Hour)
	case "7d":
		since = time.Now().Add(-7 * 24 * time.Hour)
	case "30d":
		since = time.Now().Add(-30 * 24 * time.Hour)
	default:
		q.fail("time_range", "must be 24h, 7d, 30d or all", "enum")
	}
	if q.done(w, r) {
		return
	}
	bySev, byType, oldest, newest, err := s.audit.Counts(r.Context(), since)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	total := sum(bySev)
	rc, _ := s.audit.GetRetention(r.Context())
	pending, err := s.audit.Cleanup(r.Context(), true)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "total_count": total, "count_by_severity": bySev,
		"count_by_event_type": byType, "oldest_entry": ts(oldest), "newest_entry": ts(newest),
		"storage_estimate_mb": float64(total) * 400 / (1 << 20), "pending_cleanup_count": pending.DeletedCount,
		"pending_cleanup_by_severity": pending.DeletedBySeverity, "retention_config": retentionJSON(rc)})
}

func (s *Server) auditErrorRate(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := &query{r: r}
	hours := q.integer("hours", 24, 1, 168)
	if q.done(w, r) {
		return
	}
	bySev, _, _, _, err := s.audit.Counts(r.Context(), time.Now().Add(-time.Duration(hours)*time.Hour))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	total := sum(bySev)
	errs := bySev["error"] + bySev["critical"]
	rate := 0.0
	if total > 0 {
		rate = float64(errs) * 100 / float64(total)
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "period_hours": hours, "total_events": total,
		"error_events": errs, "error_rate_percent": rate})
}

func retentionJSON(rc audit.Retention) map[string]any {
	return map[string]any{"success": true, "enabled": rc.Enabled, "default_days": rc.DefaultDays, "severity_days": rc.SeverityDays,
		"max_records": rc.MaxRecords, "batch_size": rc.BatchSize, "preserve_emergency_stops": rc.PreserveEmergencyStops,
		"last_cleanup": ts(rc.LastCleanup)}
}

func (s *Server) putRetention(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	rc, err := s.audit.GetRetention(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	old := rc
	if b.has("enabled") {
		rc.Enabled = b.boolean("enabled", rc.Enabled)
	}
	if v, ok := b.integer("default_days", false, 1, 3650); ok {
		rc.DefaultDays = int(v)
	}
	if sd, ok := b.object("severity_days"); ok {
		days := map[string]int{}
		for k, v := range rc.SeverityDays {
			days[k] = v
		}
		for k, v := range sd {
			f, isNum := v.(float64)
			if !contains([]string{"info", "warning", "error", "critical"}, k) || !isNum || f < 1 || f > 3650 || f != float64(int(f)) {
				b.fail("severity_days", "keys info/warning/error/critical with integers 1-3650", "value_error")
				continue
			}
			days[k] = int(f)
		}
		rc.SeverityDays = days
	}
	if v, ok := b.integer("max_records", false, 0, 1<<40); ok {
		rc.MaxRecords = int(v)
	}
	if v, ok := b.integer("batch_size", false, 100, 10000); ok {
		rc.BatchSize = int(v)
	}
	if b.has("preserve_emergency_stops") {
		rc.PreserveEmergencyStops = b.boolean("preserve_emergency_stops", true)
	}
	if b.done(w, r) {
		return
	}
	if err := s.audit.PutRetention(r.Context(), rc); err != nil {
		s.internal(w, r, err)
		return
	}
	s.audit.Record(r.Context(), store.AuditEntry{EventType: "retention_config_updated", SourceType: "user", SourceID: p.User.Username,
		Message: "audit retention changed", Details: map[string]any{"old": retentionJSON(old), "new": retentionJSON(rc)},
		IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	WriteJSON(w, http.StatusOK, retentionJSON(rc))
}

func (s *Server) auditCleanup(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := &query{r: r}
	dry := q.boolean("dry_run", false)
	if q.done(w, r) {
		return
	}
	res, err := s.audit.Cleanup(r.Context(), dry)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.audit.Record(r.Context(), store.AuditEntry{EventType: "audit_cleanup", SourceType: "user", SourceID: p.User.Username,
		Message: "audit cleanup", Details: map[string]any{"deleted_count": res.DeletedCount, "dry_run": dry}, IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "deleted_count": res.DeletedCount, "deleted_by_severity": res.DeletedBySeverity,
		"duration_ms": res.DurationMS, "dry_run": res.DryRun, "errors": res.Errors})
}

func sum(m map[string]int) int {
	t := 0
	for _, n := range m {
		t += n
	}
	return t
}
