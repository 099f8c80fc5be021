package audit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// The watcher and the store must leave no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

type fixture struct {
	log   *Log
	st    *sqlite.Store
	clock *clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir(), sqlite.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })

	f := &fixture{st: st, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}}
	f.log = New(st, quiet, nil)
	f.log.now = f.clock.Now
	return f
}

// entries returns every stored entry, newest first, once queued writes are committed.
func (f *fixture) entries(t *testing.T, filter store.AuditFilter) []store.AuditEntry {
	t.Helper()
	ctx := context.Background()
	if err := f.st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	filter.Limit = 1000
	es, total, err := f.log.Query(ctx, filter)
	if err != nil {
		t.Fatal(err)
	}
	if total != len(es) {
		t.Fatalf("total %d, but %d entries listed", total, len(es))
	}
	return es
}

func TestRecordFillsDefaults(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name  string
		entry store.AuditEntry
		want  func(f *fixture) store.AuditEntry
	}{
		{
			name:  "bare entry",
			entry: store.AuditEntry{EventType: "login_success"},
			want: func(f *fixture) store.AuditEntry {
				return store.AuditEntry{
					EventType: "login_success",
					Severity:  "info",
					Status:    "success",
					CreatedAt: f.clock.Now(),
				}
			},
		},
		{
			name: "given fields are kept",
			entry: store.AuditEntry{
				ID:        "11111111-2222-3333-4444-555555555555",
				EventType: "login_failed",
				Severity:  "warning",
				Status:    "failed",
				Details:   map[string]any{"username": "vera"},
				CreatedAt: at,
			},
			want: func(*fixture) store.AuditEntry {
				return store.AuditEntry{
					ID:        "11111111-2222-3333-4444-555555555555",
					EventType: "login_failed",
					Severity:  "warning",
					Status:    "failed",
					CreatedAt: at,
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.log.Record(context.Background(), tt.entry)

			es := f.entries(t, store.AuditFilter{})
			if len(es) != 1 {
				t.Fatalf("%d entries stored, want 1", len(es))
			}
			got, want := es[0], tt.want(f)
			if want.ID == "" && len(got.ID) != 36 {
				t.Fatalf("generated id %q, want a UUID", got.ID)
			}
			if want.ID != "" && got.ID != want.ID {
				t.Fatalf("id %q, want %q", got.ID, want.ID)
			}
			if got.EventType != want.EventType || got.Severity != want.Severity || got.Status != want.Status ||
				!got.CreatedAt.Equal(want.CreatedAt) {
				t.Fatalf("entry %+v, want %+v", got, want)
			}
			if got.Details == nil || len(got.Details) != len(tt.entry.Details) {
				t.Fatalf("details %v, want %v (an empty object when none)", got.Details, tt.entry.Details)
			}
		})
	}
}

// failingStore refuses every write.
type failingStore struct{ store.Audit }

func (failingStore) AppendAudit(context.Context, store.AuditEntry) error {
	return errors.New("disk full")
}

func TestRecordFailureIsLoggedAndCounted(t *testing.T) {
	var logged bytes.Buffer
	reg := prometheus.NewRegistry()
	l := New(failingStore{}, slog.New(slog.NewTextHandler(&logged, nil)), reg)

	// A cancelled request still gets its entry attempted: the audited operation has happened.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.Record(ctx, store.AuditEntry{EventType: "user_deleted"})
	l.Record(ctx, store.AuditEntry{EventType: "user_deleted"})

	if got := failures(t, reg); got != 2 {
		t.Fatalf("failure counter %v, want 2", got)
	}
	if s := logged.String(); !strings.Contains(s, "audit write failed") || !strings.Contains(s, "user_deleted") ||
		!strings.Contains(s, "disk full") {
		t.Fatalf("log %q: want the failure with event type and cause", s)
	}
}

func failures(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "kaiser_audit_write_failures_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("failure counter not registered")
	return 0
}

func TestRetentionConfiguration(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	got, err := f.log.GetRetention(ctx)
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultRetention()
	if !sameRetention(got, def) || !got.Enabled || got.DefaultDays != 30 || got.SeverityDays["critical"] != 365 {
		t.Fatalf("retention before any was stored %+v, want the default %+v", got, def)
	}

	changed := DefaultRetention()
	changed.DefaultDays = 10
	changed.SeverityDays = map[string]int{"info": 1, "critical": 400}
	changed.PreserveEmergencyStops = false
	if err := f.log.PutRetention(ctx, changed); err != nil {
		t.Fatal(err)
	}
	got, err = f.log.GetRetention(ctx)
	// The configuration always lists all four severities (docs/api.md §14.1): the
	// ones not stored keep their default.
	want := changed
	want.SeverityDays = map[string]int{
		"info":     1,
		"warning":  30,
		"error":    90,
		"critical": 400,
	}
	if err != nil || !sameRetention(got, want) {
		t.Fatalf("stored retention %+v (%v), want %+v", got, err, want)
	}

	if err := f.st.PutSetting(ctx, retentionKey, "{not json"); err != nil {
		t.Fatal(err)
	}
	got, err = f.log.GetRetention(ctx)
	if err == nil || !sameRetention(got, def) {
		t.Fatalf("unreadable stored retention gave %+v, %v; want the default and an error", got, err)
	}
}

func sameRetention(a, b Retention) bool {
	if a.Enabled != b.Enabled || a.DefaultDays != b.DefaultDays || a.MaxRecords != b.MaxRecords ||
		a.BatchSize != b.BatchSize || a.PreserveEmergencyStops != b.PreserveEmergencyStops ||
		len(a.SeverityDays) != len(b.SeverityDays) {
		return false
	}
	for k, v := range a.SeverityDays {
		if b.SeverityDays[k] != v {
			return false
		}
	}
	return true
}

// seed stores entries of every severity around their default retention
// (info 14 d, warning 30 d, error 90 d, critical 365 d) and returns how many
// of each are past it.
func (f *fixture) seed(t *testing.T) map[string]int64 {
	t.Helper()
	now := f.clock.Now()
	day := 24 * time.Hour
	add := func(typ, sev string, age time.Duration) {
		f.log.Record(context.Background(), store.AuditEntry{EventType: typ, Severity: sev, CreatedAt: now.Add(-age)})
	}
	for i := range 5 {
		add("login_success", "info", 15*day+time.Duration(i)*time.Hour)
	}
	add("login_success", "info", 13*day)
	add("device_offline", "warning", 31*day)
	add("device_offline", "warning", 29*day)
	add("user_deleted", "error", 91*day)
	add("config_failed", "critical", 364*day)
	return map[string]int64{
		"info":     5,
		"warning":  1,
		"error":    1,
		"critical": 0,
	}
}

func TestCleanup(t *testing.T) {
	tests := []struct {
		name     string
		preserve bool
		// wantStop is whether an expired emergency stop is still there afterwards.
		wantStop bool
	}{
		{name: "emergency stops preserved", preserve: true, wantStop: true},
		{name: "emergency stops expire like the rest", preserve: false, wantStop: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			r := DefaultRetention()
			r.BatchSize = 2 // five expired info entries take three batches
			r.PreserveEmergencyStops = tt.preserve
			if err := f.log.PutRetention(ctx, r); err != nil {
				t.Fatal(err)
			}
			want := f.seed(t)
			f.log.Record(ctx, store.AuditEntry{
				EventType: "emergency_stop",
				Severity:  "critical",
				CreatedAt: f.clock.Now().Add(-400 * 24 * time.Hour),
			})
			if !tt.wantStop {
				want["critical"]++
			}
			before := len(f.entries(t, store.AuditFilter{}))

			res, err := f.log.Cleanup(ctx, false)
			if err != nil || len(res.Errors) != 0 || res.DryRun {
				t.Fatalf("cleanup %+v, %v", res, err)
			}
			var total int64
			for sev, n := range want {
				total += n
				if res.DeletedBySeverity[sev] != n {
					t.Fatalf("deleted by severity %v, want %v", res.DeletedBySeverity, want)
				}
			}
			if res.DeletedCount != total {
				t.Fatalf("deleted %d, want %d", res.DeletedCount, total)
			}

			left := f.entries(t, store.AuditFilter{})
			if len(left) != before-int(total) {
				t.Fatalf("%d entries left of %d, want %d deleted", len(left), before, total)
			}
			stops := f.entries(t, store.AuditFilter{EventTypes: []string{"emergency_stop"}})
			if (len(stops) == 1) != tt.wantStop {
				t.Fatalf("%d emergency stops left, want kept %v", len(stops), tt.wantStop)
			}

			after, err := f.log.GetRetention(ctx)
			if err != nil || after.LastCleanup == nil || !after.LastCleanup.Equal(f.clock.Now()) {
				t.Fatalf("last cleanup %v (%v), want %v", after.LastCleanup, err, f.clock.Now())
			}
		})
	}
}

func TestCleanupDryRunOnlyCounts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	want := f.seed(t)
	before := len(f.entries(t, store.AuditFilter{}))

	res, err := f.log.Cleanup(ctx, true)
	if err != nil || !res.DryRun || len(res.Errors) != 0 {
		t.Fatalf("dry run %+v, %v", res, err)
	}
	var total int64
	for sev, n := range want {
		total += n
		if res.DeletedBySeverity[sev] != n {
			t.Fatalf("would delete by severity %v, want %v", res.DeletedBySeverity, want)
		}
	}
	if res.DeletedCount != total {
		t.Fatalf("would delete %d, want %d", res.DeletedCount, total)
	}
	if left := len(f.entries(t, store.AuditFilter{})); left != before {
		t.Fatalf("dry run deleted: %d entries left of %d", left, before)
	}
	if r, err := f.log.GetRetention(ctx); err != nil || r.LastCleanup != nil {
		t.Fatalf("dry run recorded a cleanup: %v (%v)", r.LastCleanup, err)
	}
}

func TestCleanupFallsBackToTheDefaultDays(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := DefaultRetention()
	r.DefaultDays = 5
	r.SeverityDays = map[string]int{"info": 0} // unset: the default applies; warning keeps its 30 days
	if err := f.log.PutRetention(ctx, r); err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	for _, age := range []time.Duration{4 * day, 6 * day} {
		at := f.clock.Now().Add(-age)
		f.log.Record(ctx, store.AuditEntry{EventType: "login_success", CreatedAt: at})
		f.log.Record(ctx, store.AuditEntry{EventType: "device_offline", Severity: "warning", CreatedAt: at})
	}

	res, err := f.log.Cleanup(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.DeletedBySeverity["info"] != 1 || res.DeletedBySeverity["warning"] != 0 || res.DeletedCount != 1 {
		t.Fatalf("deleted %v, want only the 6-day-old info entry", res.DeletedBySeverity)
	}
}

func TestCounts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.seed(t)
	if err := f.st.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	since := f.clock.Now().Add(-30 * 24 * time.Hour)
	bySev, byType, oldest, newest, err := f.log.Counts(ctx, since)
	if err != nil {
		t.Fatal(err)
	}
	if bySev["info"] != 6 || bySev["warning"] != 1 || bySev["error"] != 0 || byType["device_offline"] != 1 {
		t.Fatalf("counts since 30 days: by severity %v, by type %v", bySev, byType)
	}
	if oldest == nil || newest == nil || !oldest.Equal(f.clock.Now().Add(-29*24*time.Hour)) ||
		!newest.Equal(f.clock.Now().Add(-13*24*time.Hour)) {
		t.Fatalf("oldest %v newest %v", oldest, newest)
	}
}

// deviceEvent builds the device events the watcher reads; the one place that
// knows their payload shape.
func deviceEvent(typ, espID string, at time.Time, fields map[string]any) event.Event {
	str := func(k string) string {
		v, _ := fields[k].(string)
		return v
	}

	var data event.Payload
	switch typ {
	case "device_discovered", "device_rediscovered":
		data = event.DeviceDiscovered{
			Rediscovered: typ == "device_rediscovered",
			EspID:        espID,
			DeviceID:     espID,
		}
	case "device_status":
		data = event.DeviceStatus{
			EspID:          espID,
			DeviceID:       espID,
			Status:         str("status"),
			PreviousStatus: str("previous_status"),
			Reason:         str("reason"),
		}
	default:
		data = event.SensorData{EspID: espID}
	}
	return event.Event{Time: at, Data: data}
}

func TestWatchRecordsDeviceLifecycle(t *testing.T) {
	f := newFixture(t)
	at := f.clock.Now().Add(-time.Minute)
	offline := map[string]any{"status": "offline", "reason": "heartbeat_timeout", "previous_status": "online"}

	tests := []struct {
		name     string
		typ      string
		espID    string
		fields   map[string]any
		wantType string // "" = not audited
		wantSev  string
		wantSrc  string
	}{
		{
			name:     "discovered",
			typ:      "device_discovered",
			espID:    "ESP_000001",
			wantType: "device_discovered",
			wantSev:  "info",
			wantSrc:  "mqtt",
		},
		{
			name:     "rediscovered",
			typ:      "device_rediscovered",
			espID:    "ESP_000002",
			wantType: "device_rediscovered",
			wantSev:  "info",
			wantSrc:  "mqtt",
		},
		{
			name:     "went offline",
			typ:      "device_status",
			espID:    "ESP_000003",
			fields:   offline,
			wantType: "device_offline",
			wantSev:  "warning",
			wantSrc:  "system",
		},
		{
			name:   "came online",
			typ:    "device_status",
			espID:  "ESP_000004",
			fields: map[string]any{"status": "online"},
		},
		{name: "other event", typ: "sensor_data", espID: "ESP_000005"},
	}

	sub := make(chan event.Event)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		f.log.Watch(sub, stop)
		close(done)
	}()
	// The channel is unbuffered: each send returns once the watcher took the
	// event, and it records one before it takes the next or sees stop.
	for _, tt := range tests {
		sub <- deviceEvent(tt.typ, tt.espID, at, tt.fields)
	}
	close(stop)
	<-done

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.espID
			es := f.entries(t, store.AuditFilter{SourceID: id})
			if tt.wantType == "" {
				if len(es) != 0 {
					t.Fatalf("unexpected audit entries %+v", es)
				}
				return
			}
			if len(es) != 1 {
				t.Fatalf("%d entries for %s, want 1", len(es), id)
			}
			e := es[0]
			if e.EventType != tt.wantType || e.Severity != tt.wantSev || e.SourceType != tt.wantSrc ||
				!e.CreatedAt.Equal(at) || e.Details["esp_id"] != id {
				t.Fatalf("entry %+v: want %s/%s from %s at %v", e, tt.wantType, tt.wantSev, tt.wantSrc, at)
			}
			if tt.wantType == "device_offline" &&
				(e.Details["reason"] != "heartbeat_timeout" || e.Details["previous_status"] != "online") {
				t.Fatalf("offline details %v", e.Details)
			}
		})
	}
}

// queuedStore commits appended entries only on Flush, like the single
// writer under load.
type queuedStore struct {
	store.Audit
	queued, committed []store.AuditEntry
}

func (q *queuedStore) AppendAudit(_ context.Context, e store.AuditEntry) error {
	q.queued = append(q.queued, e)
	return nil
}

func (q *queuedStore) Flush(context.Context) error {
	q.committed = append(q.committed, q.queued...)
	q.queued = nil
	return nil
}

func (q *queuedStore) QueryAudit(context.Context, store.AuditFilter) ([]store.AuditEntry, int, error) {
	return q.committed, len(q.committed), nil
}

func (q *queuedStore) AuditCounts(context.Context, time.Time) (
	map[string]int, map[string]int, *time.Time, *time.Time, error,
) {
	byType := map[string]int{}
	for _, e := range q.committed {
		byType[e.EventType]++
	}
	return map[string]int{}, byType, nil, nil, nil
}

// A read sees the entry recorded just before it, although writes are queued.
func TestReadsSeeEntriesRecordedBefore(t *testing.T) {
	st := &queuedStore{}
	l := New(st, quiet, nil)
	ctx := context.Background()
	l.Record(ctx, store.AuditEntry{EventType: "device_approved"})

	entries, total, err := l.Query(ctx, store.AuditFilter{})
	if err != nil || total != 1 || len(entries) != 1 {
		t.Fatalf("query after record: %d entries (%v), want the recorded one", total, err)
	}

	l.Record(ctx, store.AuditEntry{EventType: "device_rejected"})
	_, byType, _, _, err := l.Counts(ctx, time.Time{})
	if err != nil || byType["device_rejected"] != 1 {
		t.Fatalf("counts after record: %v (%v), want device_rejected 1", byType, err)
	}
}
