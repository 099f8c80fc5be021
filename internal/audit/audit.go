// Package audit records who did what (docs/api.md §14): login and logout, user and
// device changes, with retention by severity. Writing an entry never makes
// the audited operation fail; a failed write is logged and counted.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Log is the audit log.
type Log struct {
	store    store.Audit
	log      *slog.Logger
	failures prometheus.Counter
	now      func() time.Time
}

// New builds the audit log; reg may be nil.
func New(st store.Audit, log *slog.Logger, reg prometheus.Registerer) *Log {
	l := &Log{
		store: st,
		log:   log,
		now:   time.Now,
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kaiser_audit_write_failures_total", Help: "Audit entries that could not be written."}),
	}
	if reg != nil {
		reg.MustRegister(l.failures)
	}
	return l
}

// Record writes an entry, filling id, time and defaults.
func (l *Log) Record(ctx context.Context, e store.AuditEntry) {
	if e.ID == "" {
		e.ID = uuid.NewString()
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = l.now().UTC()
	}
	if e.Severity == "" {
		e.Severity = "info"
	}
	if e.Status == "" {
		e.Status = "success"
	}
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := l.store.AppendAudit(ctx, e); err != nil {
		l.failures.Inc()
		l.log.Error("audit write failed", "event_type", e.EventType, "error", err)
	}
}

// Query reads the log. Entries are written in the background, so it first
// waits for those already recorded: whoever reads the log sees every entry
// recorded before the read, including the one of the request just answered.
func (l *Log) Query(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, int, error) {
	if err := l.store.Flush(ctx); err != nil {
		return nil, 0, fmt.Errorf("audit flush: %w", err)
	}
	return l.store.QueryAudit(ctx, f)
}

// Counts summarises the log, after the entries already recorded (see Query).
func (l *Log) Counts(
	ctx context.Context,
	since time.Time,
) (map[string]int, map[string]int, *time.Time, *time.Time, error) {
	if err := l.store.Flush(ctx); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("audit flush: %w", err)
	}
	return l.store.AuditCounts(ctx, since)
}

// Retention is the audit retention configuration (docs/api.md §14.1).
type Retention struct {
	Enabled                bool           `json:"enabled"`
	DefaultDays            int            `json:"default_days"`
	SeverityDays           map[string]int `json:"severity_days"`
	MaxRecords             int            `json:"max_records"`
	BatchSize              int            `json:"batch_size"`
	PreserveEmergencyStops bool           `json:"preserve_emergency_stops"`
	LastCleanup            *time.Time     `json:"last_cleanup"`
}

// DefaultRetention is docs/api.md §14.1's default.
func DefaultRetention() Retention {
	return Retention{
		Enabled:     true,
		DefaultDays: 30,
		SeverityDays: map[string]int{
			"info":     14,
			"warning":  30,
			"error":    90,
			"critical": 365,
		},
		BatchSize:              1000,
		PreserveEmergencyStops: true,
	}
}

const retentionKey = "audit_retention"

// GetRetention reads the stored configuration, or the default.
func (l *Log) GetRetention(ctx context.Context) (Retention, error) {
	r := DefaultRetention()
	v, ok, err := l.store.GetSetting(ctx, retentionKey)
	if err != nil || !ok {
		return r, err
	}
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return DefaultRetention(), fmt.Errorf("stored audit retention: %w", err)
	}
	return r, nil
}

// PutRetention stores the configuration.
func (l *Log) PutRetention(ctx context.Context, r Retention) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return l.store.PutSetting(ctx, retentionKey, string(b))
}

// CleanupResult is the reply of a cleanup run.
type CleanupResult struct {
	DeletedCount      int64            `json:"deleted_count"`
	DeletedBySeverity map[string]int64 `json:"deleted_by_severity"`
	DurationMS        int64            `json:"duration_ms"`
	DryRun            bool             `json:"dry_run"`
	Errors            []string         `json:"errors"`
}

// Cleanup deletes entries older than their severity's retention, in
// batches; emergency stops are kept when configured. dryRun only counts.
func (l *Log) Cleanup(ctx context.Context, dryRun bool) (CleanupResult, error) {
	start := l.now()
	res := CleanupResult{DeletedBySeverity: map[string]int64{}, DryRun: dryRun, Errors: []string{}}
	r, err := l.GetRetention(ctx)
	if err != nil {
		return res, err
	}
	var keep []string
	if r.PreserveEmergencyStops {
		keep = []string{"emergency_stop"}
	}
	for _, sev := range []string{"info", "warning", "error", "critical"} {
		days := r.SeverityDays[sev]
		if days <= 0 {
			days = r.DefaultDays
		}
		cut := start.Add(-time.Duration(days) * 24 * time.Hour)
		if dryRun {
			_, n, err := l.store.QueryAudit(ctx, store.AuditFilter{Severities: []string{sev}, End: cut, Limit: 1})
			if err != nil {
				res.Errors = append(res.Errors, err.Error())
			}
			res.DeletedBySeverity[sev] = int64(n)
			res.DeletedCount += int64(n)
			continue
		}
		for batches := 0; batches < 200; batches++ {
			n, err := l.store.DeleteAudit(ctx, sev, cut, keep, r.BatchSize)
			if err != nil {
				res.Errors = append(res.Errors, err.Error())
				break
			}
			res.DeletedBySeverity[sev] += n
			res.DeletedCount += n
			if n < int64(r.BatchSize) {
				break
			}
		}
	}
	res.DurationMS = l.now().Sub(start).Milliseconds()
	if !dryRun {
		now := l.now().UTC()
		r.LastCleanup = &now
		if err := l.PutRetention(ctx, r); err != nil {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	return res, nil
}

// Watch records the device lifecycle events that come from devices rather
// than API calls (discovery, rediscovery, going offline) until stop closes.
func (l *Log) Watch(sub <-chan event.Event, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case e := <-sub:
			switch d := e.Data.(type) {
			case event.DeviceDiscovered:
				l.Record(context.Background(), store.AuditEntry{
					EventType:  string(e.Type()),
					SourceType: "mqtt",
					SourceID:   d.EspID,
					Message:    "device announced itself by heartbeat",
					Details:    map[string]any{"esp_id": d.EspID},
					CreatedAt:  e.Time.UTC(),
				})
			case event.DeviceStatus:
				if d.Status != "offline" {
					continue
				}
				l.Record(context.Background(), store.AuditEntry{
					EventType:  "device_offline",
					Severity:   "warning",
					SourceType: "system",
					SourceID:   d.EspID,
					Message:    "device went offline",
					Details:    map[string]any{"esp_id": d.EspID, "reason": d.Reason, "previous_status": d.PreviousStatus},
					CreatedAt:  e.Time.UTC(),
				})
			}
		}
	}
}
