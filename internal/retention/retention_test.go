package retention

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Every history the store can trim has a policy, and every policy names a
// history the store can trim: a new history table cannot be forgotten.
func TestPoliciesCoverEveryHistoryTable(t *testing.T) {
	var named []string
	for _, p := range Policies {
		named = append(named, p.Table)
	}
	tables := sqlite.HistoryTables()
	slices.Sort(named)
	slices.Sort(tables)
	if !slices.Equal(named, tables) {
		t.Fatalf("policies %v, history tables %v", named, tables)
	}
}

// exec runs statements on the store's writer.
func exec(t *testing.T, st *sqlite.Store, q string, args ...any) {
	t.Helper()
	err := st.Writer().Do(context.Background(), func(_ context.Context, tx *sqlite.Tx) error {
		_, err := tx.Exec(q, args...)
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// ids reads one text column of the database in dir, sorted.
func ids(t *testing.T, dir, q string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "kaiser.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// Against a real database: rows older than their history's age go, newer
// ones stay; an open alert stays however old, a resolved one ages out, and
// so do read notifications and those of a deleted alert, while an unread
// one of a live alert stays.
func TestTrimDeletesWhatAgedOutAndKeepsTheRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, dir, sqlite.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }

	for _, at := range []int64{ago(8 * day), ago(6 * day)} {
		exec(t, st, `INSERT INTO device_heartbeats (device_id, received_at, device_time, time_source, uptime, heap_free, rssi)
			VALUES ('ESP_A1B2C3', ?, ?, 'device', 1, 1, -60)`, at, at)
	}
	for _, at := range []int64{ago(91 * day), ago(89 * day)} {
		exec(t, st, `INSERT INTO device_transitions (device_id, from_state, to_state, cause, at)
			VALUES ('ESP_A1B2C3', 'online', 'offline', 'test', ?)`, at)
	}
	exec(t, st, `INSERT INTO zone_changes (esp_id, from_zone_id, to_zone_id, strategy, actor, correlation_id, at)
		VALUES ('ESP_A1B2C3', '', 'z1', 'transfer', 'test', 'c1', ?), ('ESP_A1B2C3', 'z1', 'z2', 'transfer', 'test', 'c2', ?)`,
		ago(91*day), ago(89*day))
	alert := func(id, status string, created int64, resolved any) {
		exec(t, st, `INSERT INTO alerts (id, alert_key, severity, category, source, title, body, metadata, status,
			created_at, updated_at, resolved_at) VALUES (?, ?, 'warning', 'test', 'test', 't', 'b', '{}', ?, ?, ?, ?)`,
			id, id, status, created, created, resolved)
	}
	alert("open-old", "active", ago(400*day), nil)
	alert("resolved-old", "resolved", ago(300*day), ago(200*day))
	alert("resolved-recent", "resolved", ago(300*day), ago(10*day))
	note := func(id, alertID string, read bool, readAt any, created int64) {
		exec(t, st, `INSERT INTO notifications (id, user_id, alert_id, is_read, read_at, created_at)
			VALUES (?, 1, ?, ?, ?, ?)`, id, alertID, read, readAt, created)
	}
	note("read-old", "open-old", true, ago(190*day), ago(400*day))
	note("unread-old", "open-old", false, nil, ago(400*day))
	note("of-deleted-alert", "resolved-old", false, nil, ago(300*day))
	note("read-recent", "resolved-recent", true, ago(5*day), ago(300*day))

	res, err := Trim(ctx, st, Policies, now, quiet)
	if err != nil {
		t.Fatal(err)
	}
	deleted := map[string]int64{}
	for _, r := range res {
		deleted[r.Table] = r.Deleted
	}
	want := map[string]int64{
		"device_heartbeats":  1,
		"device_transitions": 1,
		"zone_changes":       1,
		"rule_executions":    0,
		"alerts":             1,
		"notifications":      2,
	}
	for table, n := range want {
		if deleted[table] != n {
			t.Errorf("%s: deleted %d, want %d", table, deleted[table], n)
		}
	}
	if got := ids(t, dir, `SELECT id FROM alerts`); !slices.Equal(got, []string{"open-old", "resolved-recent"}) {
		t.Errorf("alerts left: %v", got)
	}
	if got := ids(t, dir, `SELECT id FROM notifications`); !slices.Equal(got, []string{"read-recent", "unread-old"}) {
		t.Errorf("notifications left: %v", got)
	}
	if got := ids(t, dir, `SELECT CAST(received_at AS TEXT) FROM device_heartbeats`); !slices.Equal(got,
		[]string{strconv.FormatInt(ago(6*day), 10)}) {
		t.Errorf("heartbeats left: %v", got)
	}
}

// A run deletes in batches and stops after MaxBatches, partial, leaving
// the rest for the next run.
func TestTrimStopsAfterMaxBatches(t *testing.T) {
	f := &endless{}
	res, err := Trim(context.Background(), f, []Policy{{Table: "device_heartbeats", Keep: day}}, time.Now(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	if f.calls != MaxBatches || res[0].Deleted != MaxBatches*Batch || !res[0].Partial {
		t.Fatalf("%d calls, %+v", f.calls, res)
	}
}

// endless always has a full batch to delete.
type endless struct{ calls int }

func (e *endless) DeleteHistoryBefore(_ context.Context, _ string, _ time.Time, limit int) (int64, error) {
	e.calls++
	return int64(limit), nil
}
