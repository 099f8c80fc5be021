package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/store"
)

// auditLog is what the HTTP layer needs from the audit log.
type auditLog interface {
	Record(ctx context.Context, e store.AuditEntry)
	Query(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, int, error)
	Counts(ctx context.Context, since time.Time) (map[string]int, map[string]int, *time.Time, *time.Time, error)
	GetRetention(ctx context.Context) (audit.Retention, error)
	PutRetention(ctx context.Context, r audit.Retention) error
	Cleanup(ctx context.Context, dryRun bool) (audit.CleanupResult, error)
}

var _ auditLog = (*audit.Log)(nil)

// auditEventType is one entry of the event-type enumeration.
type auditEventType struct {
	Value       string `json:"value"`
	Description string `json:"description"`
	Category    string `json:"category"`
}

var auditEventTypes = []auditEventType{
	{"login_success", "Successful login", "auth"},
	{"login_failed", "Failed login", "auth"},
	{"setup_completed", "First admin created", "auth"},
	{"logout", "Logout", "auth"},
	{"user_created", "User created", "users"},
	{"user_updated", "User updated", "users"},
	{"user_deleted", "User deleted", "users"},
	{"password_changed", "Own password changed", "users"},
	{"password_reset", "Password reset by an admin", "users"},
	{"device_registered", "Device registered by an operator", "devices"},
	{"device_discovered", "Unknown device announced itself", "devices"},
	{"device_rediscovered", "Deleted device announced itself again", "devices"},
	{"device_approved", "Device approved", "devices"},
	{"device_rejected", "Device rejected", "devices"},
	{"device_set_pending", "Device returned to pending", "devices"},
	{"device_deleted", "Device deleted", "devices"},
	{"device_offline", "Device went offline", "devices"},
	{"device_restart_requested", "Restart requested (not supported)", "devices"},
	{"device_factory_reset", "Factory reset sent", "devices"},
	{"rate_limit_exceeded", "Auth rate limit exceeded", "security"},
	{"permission_denied", "Role too low for a route", "security"},
	{"retention_config_updated", "Audit retention changed", "audit"},
	{"audit_cleanup", "Audit cleanup ran", "audit"},
}

// auditSeverity is one entry of the severity enumeration.
type auditSeverity struct {
	Value       string `json:"value"`
	Description string `json:"description"`
	Color       string `json:"color"`
}

var auditSeverities = []auditSeverity{
	{"info", "Informational", "#2196f3"},
	{"warning", "Needs attention", "#ff9800"},
	{"error", "Failure", "#f44336"},
	{"critical", "Safety-relevant failure", "#9c27b0"},
}

var auditSourceTypes = []string{"user", "esp32", "system", "api", "mqtt", "scheduler"}

// auditEntry is an audit log entry (API §14).
type auditEntry struct {
	ID               string         `json:"id"`
	EventType        string         `json:"event_type"`
	Severity         string         `json:"severity"`
	SourceType       string         `json:"source_type"`
	SourceID         string         `json:"source_id"`
	Status           string         `json:"status"`
	Message          string         `json:"message"`
	Details          map[string]any `json:"details"`
	ErrorCode        *string        `json:"error_code"`
	ErrorDescription *string        `json:"error_description"`
	IPAddress        *string        `json:"ip_address"`
	UserAgent        *string        `json:"user_agent"`
	CorrelationID    *string        `json:"correlation_id"`
	CreatedAt        *string        `json:"created_at"`
}

func entryJSON(e store.AuditEntry) auditEntry {
	return auditEntry{
		ID:               e.ID,
		EventType:        e.EventType,
		Severity:         e.Severity,
		SourceType:       e.SourceType,
		SourceID:         e.SourceID,
		Status:           e.Status,
		Message:          e.Message,
		Details:          e.Details,
		ErrorCode:        NullString(e.ErrorCode),
		ErrorDescription: NullString(e.ErrorDescription),
		IPAddress:        NullString(e.IPAddress),
		UserAgent:        NullString(e.UserAgent),
		CorrelationID:    NullString(e.CorrelationID),
		CreatedAt:        Timestamp(e.CreatedAt),
	}
}

func entriesJSON(es []store.AuditEntry) []auditEntry {
	out := make([]auditEntry, 0, len(es))
	for _, e := range es {
		out = append(out, entryJSON(e))
	}
	return out
}

// auditPage is the audit list with the reference's own paging fields (API §1.4).
type auditPage struct {
	Success    bool         `json:"success"`
	Data       []auditEntry `json:"data"`
	Total      int          `json:"total"`
	Page       int          `json:"page"`
	PageSize   int          `json:"page_size"`
	TotalPages int          `json:"total_pages"`
	Pagination PageMeta     `json:"pagination"`
}

type auditStatistics struct {
	Success                  bool              `json:"success"`
	TotalCount               int               `json:"total_count"`
	CountBySeverity          map[string]int    `json:"count_by_severity"`
	CountByEventType         map[string]int    `json:"count_by_event_type"`
	OldestEntry              *string           `json:"oldest_entry"`
	NewestEntry              *string           `json:"newest_entry"`
	StorageEstimateMB        float64           `json:"storage_estimate_mb"`
	PendingCleanupCount      int64             `json:"pending_cleanup_count"`
	PendingCleanupBySeverity map[string]int64  `json:"pending_cleanup_by_severity"`
	RetentionConfig          retentionResponse `json:"retention_config"`
}

type auditErrorRate struct {
	Success          bool    `json:"success"`
	PeriodHours      int     `json:"period_hours"`
	TotalEvents      int     `json:"total_events"`
	ErrorEvents      int     `json:"error_events"`
	ErrorRatePercent float64 `json:"error_rate_percent"`
}

type retentionResponse struct {
	Success                bool           `json:"success"`
	Enabled                bool           `json:"enabled"`
	DefaultDays            int            `json:"default_days"`
	SeverityDays           map[string]int `json:"severity_days"`
	MaxRecords             int            `json:"max_records"`
	BatchSize              int            `json:"batch_size"`
	PreserveEmergencyStops bool           `json:"preserve_emergency_stops"`
	LastCleanup            *string        `json:"last_cleanup"`
}

func retentionJSON(rc audit.Retention) retentionResponse {
	return retentionResponse{
		Success:                true,
		Enabled:                rc.Enabled,
		DefaultDays:            rc.DefaultDays,
		SeverityDays:           rc.SeverityDays,
		MaxRecords:             rc.MaxRecords,
		BatchSize:              rc.BatchSize,
		PreserveEmergencyStops: rc.PreserveEmergencyStops,
		LastCleanup:            NullTimestamp(rc.LastCleanup),
	}
}

// retentionRequest changes the named retention settings; absent or null keeps a setting.
type retentionRequest struct {
	Enabled                *bool          `json:"enabled"`
	DefaultDays            *int           `json:"default_days" api:"min=1,max=3650"`
	SeverityDays           map[string]any `json:"severity_days"`
	MaxRecords             *int           `json:"max_records" api:"min=0,max=1099511627776"`
	BatchSize              *int           `json:"batch_size" api:"min=100,max=10000"`
	PreserveEmergencyStops *bool          `json:"preserve_emergency_stops"`

	days map[string]int // SeverityDays, checked
}

var auditSeverityNames = []string{"info", "warning", "error", "critical"}

func (q *retentionRequest) Validate(b *Body) {
	q.days = map[string]int{}
	for k, v := range q.SeverityDays {
		f, isNum := v.(float64)
		if !slices.Contains(auditSeverityNames, k) || !isNum || f < 1 || f > 3650 || f != float64(int(f)) {
			b.Fail("severity_days", "keys info/warning/error/critical with integers 1-3650", "value_error")
			continue
		}
		q.days[k] = int(f)
	}
}

// apply is rc with the request's changes.
func (q *retentionRequest) apply(rc audit.Retention) audit.Retention {
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	if q.Enabled != nil {
		rc.Enabled = *q.Enabled
	}
	set(&rc.DefaultDays, q.DefaultDays)
	if q.SeverityDays != nil {
		days := map[string]int{}
		for k, v := range rc.SeverityDays {
			days[k] = v
		}
		for k, v := range q.days {
			days[k] = v
		}
		rc.SeverityDays = days
	}
	set(&rc.MaxRecords, q.MaxRecords)
	set(&rc.BatchSize, q.BatchSize)
	if q.PreserveEmergencyStops != nil {
		rc.PreserveEmergencyStops = *q.PreserveEmergencyStops
	}
	return rc
}

type cleanupResponse struct {
	Success           bool             `json:"success"`
	DeletedCount      int64            `json:"deleted_count"`
	DeletedBySeverity map[string]int64 `json:"deleted_by_severity"`
	DurationMS        int64            `json:"duration_ms"`
	DryRun            bool             `json:"dry_run"`
	Errors            []string         `json:"errors"`
}

func (s *Server) auditRoutes() {
	const (
		base   = "/api/v1/audit"
		viewer = auth.RoleViewer
		admin  = auth.RoleAdmin
	)
	s.protected("GET", base, viewer, "Query the audit log", "audit", s.listAudit, returns(auditPage{}))
	s.protected("GET", base+"/errors", viewer, "Recent error and critical entries", "audit", s.auditErrors,
		returns([]auditEntry{}))
	s.protected("GET", base+"/esp/{esp_id}/config-history", viewer, "Config-related entries of a device", "audit",
		s.auditConfigHistory, returns([]auditEntry{}))
	s.protected("GET", base+"/statistics", viewer, "Audit statistics", "audit", s.auditStatistics,
		returns(auditStatistics{}))
	s.protected("GET", base+"/error-rate", viewer, "Share of error entries", "audit", s.auditErrorRate,
		returns(auditErrorRate{}))
	s.protected("GET", base+"/retention/config", viewer, "Audit retention configuration", "audit", s.getRetention,
		returns(retentionResponse{}))
	s.protected("PUT", base+"/retention/config", admin, "Change audit retention", "audit", s.putRetention,
		accepts(retentionRequest{}), returns(retentionResponse{}))
	s.protected("POST", base+"/retention/cleanup", admin, "Run the audit cleanup now", "audit", s.auditCleanup,
		returns(cleanupResponse{}))
	s.protected("GET", base+"/event-types", viewer, "Audit event types", "audit", fixedReply(auditEventTypes),
		returns(auditEventTypes))
	s.protected("GET", base+"/severities", viewer, "Audit severities", "audit", fixedReply(auditSeverities),
		returns(auditSeverities))
	s.protected("GET", base+"/source-types", viewer, "Audit source types", "audit", fixedReply(auditSourceTypes),
		returns(auditSourceTypes))
}

// fixedReply answers the same body to everyone allowed to ask.
func fixedReply(body any) Authed {
	return func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
		WriteJSON(w, http.StatusOK, body)
	}
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := NewQuery(r)
	f := store.AuditFilter{
		SourceType: q.Str("source_type", 20),
		SourceID:   q.Str("source_id", 100),
		Status:     q.Str("status", 20),
		ErrorCode:  q.Str("error_code", 100),
		Start:      q.Time("start_time"),
		End:        q.Time("end_time"),
	}
	if et := q.Str("event_type", 100); et != "" {
		f.EventTypes = strings.Split(et, ",")
	}
	if sev := q.Str("severity", 20); sev != "" {
		f.Severities = []string{sev}
	}
	if h := q.Int("hours", 0, 1, 720); h > 0 {
		f.Start = time.Now().Add(-time.Duration(h) * time.Hour)
	}
	page := q.Int("page", 1, 1, 1<<30)
	size := q.Int("page_size", 50, 1, 500)
	if q.Done(w, r) {
		return
	}

	f.Offset, f.Limit = (page-1)*size, size
	es, total, err := s.audit.Query(r.Context(), f)
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, auditPage{
		Success:    true,
		Data:       entriesJSON(es),
		Total:      total,
		Page:       page,
		PageSize:   size,
		TotalPages: (total + size - 1) / size,
		Pagination: Pagination(page, size, total),
	})
}

func (s *Server) auditErrors(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := NewQuery(r)
	hours := q.Int("hours", 24, 1, 168)
	limit := q.Int("limit", 100, 1, 500)
	if q.Done(w, r) {
		return
	}
	s.writeEntries(w, r, store.AuditFilter{
		Severities: []string{"error", "critical"},
		Start:      time.Now().Add(-time.Duration(hours) * time.Hour),
		Limit:      limit,
	})
}

func (s *Server) auditConfigHistory(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	id, ok := PathESPID(w, r)
	if !ok {
		return
	}
	q := NewQuery(r)
	limit := q.Int("limit", 50, 1, 200)
	if q.Done(w, r) {
		return
	}
	s.writeEntries(w, r, store.AuditFilter{
		EventTypes: []string{"config_published", "config_response", "config_failed"},
		SourceID:   id,
		Limit:      limit,
	})
}

// writeEntries answers the entries f selects as a bare array (API §1.4).
func (s *Server) writeEntries(w http.ResponseWriter, r *http.Request, f store.AuditFilter) {
	es, _, err := s.audit.Query(r.Context(), f)
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, entriesJSON(es))
}

// since is the start of a statistics time range; zero for all.
func since(q *Query) time.Time {
	switch rng := q.Str("time_range", 8); rng {
	case "", "all":
	case "24h":
		return time.Now().Add(-24 * time.Hour)
	case "7d":
		return time.Now().Add(-7 * 24 * time.Hour)
	case "30d":
		return time.Now().Add(-30 * 24 * time.Hour)
	default:
		q.Fail("time_range", "must be 24h, 7d, 30d or all", "enum")
	}
	return time.Time{}
}

func (s *Server) auditStatistics(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := NewQuery(r)
	from := since(q)
	if q.Done(w, r) {
		return
	}
	bySev, byType, oldest, newest, err := s.audit.Counts(r.Context(), from)
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	rc, _ := s.audit.GetRetention(r.Context())
	pending, err := s.audit.Cleanup(r.Context(), true)
	if err != nil {
		s.Internal(w, r, err)
		return
	}

	total := sum(bySev)
	WriteJSON(w, http.StatusOK, auditStatistics{
		Success:                  true,
		TotalCount:               total,
		CountBySeverity:          bySev,
		CountByEventType:         byType,
		OldestEntry:              NullTimestamp(oldest),
		NewestEntry:              NullTimestamp(newest),
		StorageEstimateMB:        float64(total) * 400 / (1 << 20),
		PendingCleanupCount:      pending.DeletedCount,
		PendingCleanupBySeverity: pending.DeletedBySeverity,
		RetentionConfig:          retentionJSON(rc),
	})
}

func (s *Server) auditErrorRate(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := NewQuery(r)
	hours := q.Int("hours", 24, 1, 168)
	if q.Done(w, r) {
		return
	}
	bySev, _, _, _, err := s.audit.Counts(r.Context(), time.Now().Add(-time.Duration(hours)*time.Hour))
	if err != nil {
		s.Internal(w, r, err)
		return
	}

	total := sum(bySev)
	errs := bySev["error"] + bySev["critical"]
	rate := 0.0
	if total > 0 {
		rate = float64(errs) * 100 / float64(total)
	}
	WriteJSON(w, http.StatusOK, auditErrorRate{
		Success:          true,
		PeriodHours:      hours,
		TotalEvents:      total,
		ErrorEvents:      errs,
		ErrorRatePercent: rate,
	})
}

func (s *Server) getRetention(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	rc, err := s.audit.GetRetention(r.Context())
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, retentionJSON(rc))
}

func (s *Server) putRetention(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req retentionRequest
	if !Decode(w, r, &req) {
		return
	}
	old, err := s.audit.GetRetention(r.Context())
	if err != nil {
		s.Internal(w, r, err)
		return
	}

	rc := req.apply(old)
	if err := s.audit.PutRetention(r.Context(), rc); err != nil {
		s.Internal(w, r, err)
		return
	}
	s.auditUser(r, p.User.Username, "retention_config_updated", "audit retention changed",
		map[string]any{"old": retentionJSON(old), "new": retentionJSON(rc)})
	WriteJSON(w, http.StatusOK, retentionJSON(rc))
}

func (s *Server) auditCleanup(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := NewQuery(r)
	dry := q.Bool("dry_run", false)
	if q.Done(w, r) {
		return
	}
	res, err := s.audit.Cleanup(r.Context(), dry)
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	s.auditUser(r, p.User.Username, "audit_cleanup", "audit cleanup",
		map[string]any{"deleted_count": res.DeletedCount, "dry_run": dry})
	WriteJSON(w, http.StatusOK, cleanupResponse{
		Success:           true,
		DeletedCount:      res.DeletedCount,
		DeletedBySeverity: res.DeletedBySeverity,
		DurationMS:        res.DurationMS,
		DryRun:            res.DryRun,
		Errors:            res.Errors,
	})
}

func sum(m map[string]int) int {
	t := 0
	for _, n := range m {
		t += n
	}
	return t
}
