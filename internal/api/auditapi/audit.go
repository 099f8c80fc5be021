// Package auditapi serves the audit log of docs/api.md §14 under /api/v1/audit: the
// entries and their statistics, the retention settings and the cleanup that
// applies them, and the enumerations a client filters by.
package auditapi

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/store"
)

// auditLog is what the audit routes need from the audit log.
type auditLog interface {
	Record(ctx context.Context, e store.AuditEntry)
	Query(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, int, error)
	Counts(ctx context.Context, since time.Time) (map[string]int, map[string]int, *time.Time, *time.Time, error)
	GetRetention(ctx context.Context) (audit.Retention, error)
	PutRetention(ctx context.Context, r audit.Retention) error
	Cleanup(ctx context.Context, dryRun bool) (audit.CleanupResult, error)
}

var _ auditLog = (*audit.Log)(nil)

// Deps are what the audit routes need from the hub.
type Deps struct {
	Log auditLog
}

type handlers struct {
	srv   *api.Server
	audit auditLog
}

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

// auditEntry is an audit log entry (docs/api.md §14).
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
		ErrorCode:        api.NullString(e.ErrorCode),
		ErrorDescription: api.NullString(e.ErrorDescription),
		IPAddress:        api.NullString(e.IPAddress),
		UserAgent:        api.NullString(e.UserAgent),
		CorrelationID:    api.NullString(e.CorrelationID),
		CreatedAt:        api.Timestamp(e.CreatedAt),
	}
}

func entriesJSON(es []store.AuditEntry) []auditEntry {
	out := make([]auditEntry, 0, len(es))
	for _, e := range es {
		out = append(out, entryJSON(e))
	}
	return out
}

// auditPage is the audit list with the reference's own paging fields (docs/api.md §1.4).
type auditPage struct {
	Success    bool         `json:"success"`
	Data       []auditEntry `json:"data"`
	Total      int          `json:"total"`
	Page       int          `json:"page"`
	PageSize   int          `json:"page_size"`
	TotalPages int          `json:"total_pages"`
	Pagination api.PageMeta `json:"pagination"`
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
		LastCleanup:            api.NullTimestamp(rc.LastCleanup),
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

func (q *retentionRequest) Validate(b *api.Body) {
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

// Register adds the audit routes to s.
func Register(s *api.Server, d Deps) {
	const (
		base   = "/api/v1/audit"
		viewer = auth.RoleViewer
		admin  = auth.RoleAdmin
	)
	h := &handlers{srv: s, audit: d.Log}

	g := s.Group("audit")
	g.Add("GET", base, viewer, "Query the audit log", h.listAudit, api.Returns(auditPage{}))
	g.Add("GET", base+"/errors", viewer, "Recent error and critical entries", h.auditErrors,
		api.Returns([]auditEntry{}))
	g.Add("GET", base+"/esp/{esp_id}/config-history", viewer, "Config-related entries of a device",
		h.auditConfigHistory, api.Returns([]auditEntry{}))
	g.Add("GET", base+"/statistics", viewer, "Audit statistics", h.auditStatistics,
		api.Returns(auditStatistics{}))
	g.Add("GET", base+"/error-rate", viewer, "Share of error entries", h.auditErrorRate,
		api.Returns(auditErrorRate{}))
	g.Add("GET", base+"/retention/config", viewer, "Audit retention configuration", h.getRetention,
		api.Returns(retentionResponse{}))
	g.Add("PUT", base+"/retention/config", admin, "Change audit retention", h.putRetention,
		api.Accepts(retentionRequest{}), api.Returns(retentionResponse{}))
	g.Add("POST", base+"/retention/cleanup", admin, "Run the audit cleanup now", h.auditCleanup,
		api.Returns(cleanupResponse{}))
	g.Add("GET", base+"/event-types", viewer, "Audit event types", fixedReply(auditEventTypes),
		api.Returns(auditEventTypes))
	g.Add("GET", base+"/severities", viewer, "Audit severities", fixedReply(auditSeverities),
		api.Returns(auditSeverities))
	g.Add("GET", base+"/source-types", viewer, "Audit source types", fixedReply(auditSourceTypes),
		api.Returns(auditSourceTypes))
}

// fixedReply answers the same body to everyone allowed to ask.
func fixedReply(body any) api.Authed {
	return func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
		api.WriteJSON(w, http.StatusOK, body)
	}
}

func (h *handlers) listAudit(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
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
	if hours := q.Int("hours", 0, 1, 720); hours > 0 {
		f.Start = time.Now().Add(-time.Duration(hours) * time.Hour)
	}
	page := q.Int("page", 1, 1, 1<<30)
	size := q.Int("page_size", 50, 1, 500)
	if q.Done(w, r) {
		return
	}

	f.Offset, f.Limit = (page-1)*size, size
	es, total, err := h.audit.Query(r.Context(), f)
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, auditPage{
		Success:    true,
		Data:       entriesJSON(es),
		Total:      total,
		Page:       page,
		PageSize:   size,
		TotalPages: (total + size - 1) / size,
		Pagination: api.Pagination(page, size, total),
	})
}

func (h *handlers) auditErrors(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	hours := q.Int("hours", 24, 1, 168)
	limit := q.Int("limit", 100, 1, 500)
	if q.Done(w, r) {
		return
	}
	h.writeEntries(w, r, store.AuditFilter{
		Severities: []string{"error", "critical"},
		Start:      time.Now().Add(-time.Duration(hours) * time.Hour),
		Limit:      limit,
	})
}

func (h *handlers) auditConfigHistory(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	id, ok := api.PathESPID(w, r)
	if !ok {
		return
	}
	q := api.NewQuery(r)
	limit := q.Int("limit", 50, 1, 200)
	if q.Done(w, r) {
		return
	}
	h.writeEntries(w, r, store.AuditFilter{
		EventTypes: []string{"config_published", "config_response", "config_failed"},
		SourceID:   id,
		Limit:      limit,
	})
}

// writeEntries answers the entries f selects as a bare array (docs/api.md §1.4).
func (h *handlers) writeEntries(w http.ResponseWriter, r *http.Request, f store.AuditFilter) {
	es, _, err := h.audit.Query(r.Context(), f)
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, entriesJSON(es))
}

// since is the start of a statistics time range; zero for all.
func since(q *api.Query) time.Time {
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

func (h *handlers) auditStatistics(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	from := since(q)
	if q.Done(w, r) {
		return
	}
	bySev, byType, oldest, newest, err := h.audit.Counts(r.Context(), from)
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	rc, _ := h.audit.GetRetention(r.Context())
	pending, err := h.audit.Cleanup(r.Context(), true)
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}

	total := sum(bySev)
	api.WriteJSON(w, http.StatusOK, auditStatistics{
		Success:                  true,
		TotalCount:               total,
		CountBySeverity:          bySev,
		CountByEventType:         byType,
		OldestEntry:              api.NullTimestamp(oldest),
		NewestEntry:              api.NullTimestamp(newest),
		StorageEstimateMB:        float64(total) * 400 / (1 << 20),
		PendingCleanupCount:      pending.DeletedCount,
		PendingCleanupBySeverity: pending.DeletedBySeverity,
		RetentionConfig:          retentionJSON(rc),
	})
}

func (h *handlers) auditErrorRate(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	hours := q.Int("hours", 24, 1, 168)
	if q.Done(w, r) {
		return
	}
	bySev, _, _, _, err := h.audit.Counts(r.Context(), time.Now().Add(-time.Duration(hours)*time.Hour))
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}

	total := sum(bySev)
	errs := bySev["error"] + bySev["critical"]
	rate := 0.0
	if total > 0 {
		rate = float64(errs) * 100 / float64(total)
	}
	api.WriteJSON(w, http.StatusOK, auditErrorRate{
		Success:          true,
		PeriodHours:      hours,
		TotalEvents:      total,
		ErrorEvents:      errs,
		ErrorRatePercent: rate,
	})
}

func (h *handlers) getRetention(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	rc, err := h.audit.GetRetention(r.Context())
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, retentionJSON(rc))
}

func (h *handlers) putRetention(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req retentionRequest
	if !api.Decode(w, r, &req) {
		return
	}
	old, err := h.audit.GetRetention(r.Context())
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}

	rc := req.apply(old)
	if err := h.audit.PutRetention(r.Context(), rc); err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	h.audit.Record(r.Context(), api.UserEntry(r, p.User.Username, "retention_config_updated", "audit retention changed",
		map[string]any{"old": retentionJSON(old), "new": retentionJSON(rc)}))
	api.WriteJSON(w, http.StatusOK, retentionJSON(rc))
}

func (h *handlers) auditCleanup(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := api.NewQuery(r)
	dry := q.Bool("dry_run", false)
	if q.Done(w, r) {
		return
	}
	res, err := h.audit.Cleanup(r.Context(), dry)
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	h.audit.Record(r.Context(), api.UserEntry(r, p.User.Username, "audit_cleanup", "audit cleanup",
		map[string]any{"deleted_count": res.DeletedCount, "dry_run": dry}))
	api.WriteJSON(w, http.StatusOK, cleanupResponse{
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
