package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func footprintReading(series, ts int64, p float64) store.Reading {
	return store.Reading{SeriesID: series, TS: ts, Raw: 2048, Processed: &p, Unit: "pH", Quality: "good",
		Mode: "pi_enhanced", TimeSource: "device", ReceivedAt: ts + 120, Source: "production", ZoneID: "z1"}
}

// A batch whose transaction fails because the store cannot commit is
// retried until it can, not dropped: the reading is stored once the
// database takes writes again, with every column as it came.
func TestSinkRetriesBatchWhileStoreCannotCommit(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	defer s.Close(ctx)
	id, err := s.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_00AA01", GPIO: 32, SensorType: "ph"})
	if err != nil {
		t.Fatal(err)
	}
	// A read-only writer connection answers SQLITE_READONLY: a storage fault.
	if err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`PRAGMA query_only = ON`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	retryFirst = time.Millisecond
	defer func() { retryFirst = 100 * time.Millisecond }()
	sink := s.NewReadingSink(0, nil)
	retried := make(chan int, 16)
	sink.onRetry = func(tries int) {
		select {
		case retried <- tries:
		default:
		}
	}
	ts := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixMilli()
	if err := sink.Add(ctx, footprintReading(id, ts, 7.25)); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 2; n++ { // two failed tries: the batch is held, not dropped
		select {
		case <-retried:
		case <-time.After(10 * time.Second):
			t.Fatal("the failed batch was not retried")
		}
	}
	// Outside any transaction (BEGIN itself is refused now); database/sql
	// serialises this with the writer's own use of the connection.
	if _, err := s.writer.conn.ExecContext(ctx, `PRAGMA query_only = OFF`); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := s.QueryReadings(ctx, RawQuery{Series: []int64{id}, Limit: 10})
	if err != nil || len(rows) != 1 {
		t.Fatalf("stored %d readings (%v), want the one retried", len(rows), err)
	}
	r := rows[0]
	if r.TS != ts || r.Raw != 2048 || *r.Processed != 7.25 || r.Unit != "pH" || r.Quality != "good" || r.Mode != "pi_enhanced" ||
		r.TimeSource != "device" || r.ReceivedAt != ts+120 || r.Source != "production" || r.ZoneID != "z1" ||
		r.DeviceValue != nil || sink.Committed() != 1 {
		t.Fatalf("stored %+v", r)
	}
}

// Migration 11 moves readings of the wide table into the compact one and
// keeps every value a query serves.
func TestCompactReadingsMigrationKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	// A database at version 10 with wide readings, as the hub had them.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "kaiser.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	names, _ := fs.Glob(migrations, "migrations/*.sql")
	for _, name := range names {
		if filepath.Base(name) >= "0011" {
			break
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(body)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := db.Exec(`INSERT INTO schema_migrations VALUES (?, 0)`, filepath.Base(name)[:4]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO sensor_series (id, esp_id, gpio, sensor_type) VALUES (1, 'ESP_00AA01', 32, 'ph')`); err != nil {
		t.Fatal(err)
	}
	for i, q := range []struct {
		quality, source string
		processed       any
	}{{"good", "production", 7.1}, {"error", "production", nil}, {"good", "simulation", 7.3}} {
		if _, err := db.Exec(`INSERT INTO readings (series_id, ts, raw, processed, unit, quality, mode,
			device_value, time_source, received_at, source, zone_id, subzone_id)
			VALUES (1, ?, 2048.5, ?, 'pH', ?, 'pi_enhanced', 1.5, 'hub', ?, ?, 'z1', 's1')`,
			1000*int64(i+1), q.processed, q.quality, 1000*int64(i+1)+7, q.source); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s := open(t, dir)
	defer s.Close(ctx)
	rows, err := s.QueryReadings(ctx, RawQuery{Series: []int64{1}, Limit: 10, Asc: true})
	if err != nil || len(rows) != 3 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	for i, r := range rows {
		if r.TS != 1000*int64(i+1) || r.ReceivedAt != r.TS+7 || r.Raw != 2048.5 || *r.DeviceValue != 1.5 ||
			r.Unit != "pH" || r.Mode != "pi_enhanced" || r.TimeSource != "hub" || r.ZoneID != "z1" ||
			r.SubzoneID != "s1" || r.Key.EspID != "ESP_00AA01" {
			t.Fatalf("row %d: %+v", i, r)
		}
	}
	if rows[1].Quality != "error" || rows[1].Processed != nil || rows[2].Source != "simulation" {
		t.Fatalf("rows %+v", rows)
	}
	good, err := s.QueryReadings(ctx, RawQuery{Series: []int64{1}, Quality: "good", Source: "production", Limit: 10})
	if err != nil || len(good) != 1 || *good[0].Processed != 7.1 {
		t.Fatalf("filtered: %+v %v", good, err)
	}
	// Bucket queries leave error readings out.
	b, err := s.Buckets(ctx, 1, "raw", 0, 10_000, 10_000, 0)
	if err != nil || len(b) != 1 || b[0].N != 2 {
		t.Fatalf("buckets %+v %v", b, err)
	}
}

// Under steady writes the WAL stays near walSizeLimit: the writer
// finishes the checkpoints between its transactions, so the log starts
// over instead of growing with every commit.
func TestWALStaysBoundedUnderSteadyWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("writes some 100 MB of WAL frames")
	}
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	defer s.Close(ctx)
	sink := s.NewReadingSink(0, nil)
	const series = 2000
	ids := make([]int64, series)
	for i := range ids {
		var err error
		if ids[i], err = s.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_00AA01", GPIO: i % 40,
			SensorType: "ph", Address: string(rune('a' + i/40))}); err != nil {
			t.Fatal(err)
		}
	}
	// Every reading touches another series' page: some 4 KiB of WAL
	// each, 24,000 readings ≈ 100 MB of frames without restarts.
	ts := time.Now().UnixMilli()
	var maxWAL int64
	for round := 0; round < 12; round++ {
		for _, id := range ids {
			if err := sink.Add(ctx, footprintReading(id, ts+int64(round)*1000, 7)); err != nil {
				t.Fatal(err)
			}
		}
		if err := sink.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(s.Path() + "-wal"); err == nil {
			maxWAL = max(maxWAL, st.Size())
		}
		// Let a checkpointer tick come between rounds.
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) && !s.writer.restartWAL.Load() {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if maxWAL > 4*walSizeLimit {
		t.Fatalf("WAL grew to %d bytes, bound %d", maxWAL, walSizeLimit)
	}
}

// A reading of an ADC sensor (whole raw and device values, a processed
// value with decimals) costs about 30 bytes of record in the readings
// table: its repeated text is one meta id, its receipt time a small
// distance, and whole numbers are stored as integers.
func TestReadingRecordIsCompact(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	defer s.Close(ctx)
	sink := s.NewReadingSink(0, nil)
	ts := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixMilli()
	var ids []int64
	for gpio := 0; gpio < 200; gpio++ {
		id, err := s.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_00AA01", GPIO: gpio, SensorType: "ph"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, series := range ids {
		for k := int64(0); k < 50; k++ {
			r := footprintReading(series, ts+k*1000, 7+float64(k%97)/100)
			r.Raw, r.ReceivedAt = float64(1500+k), ts+k*1000+250
			dv := r.Raw
			r.DeviceValue = &dv
			if err := sink.Add(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var cells int64
	var payload float64
	if err := s.read.QueryRowContext(ctx, `
		SELECT SUM(ncell), SUM(payload) FROM dbstat WHERE name = 'readings'`, // interior cells hold records too
	).Scan(&cells, &payload); err != nil {
		t.Fatal(err)
	}
	if cells != 10_000 || payload/float64(cells) > 32 {
		t.Fatalf("%d cells, %.1f bytes of record each", cells, payload/float64(cells))
	}
	rows, err := s.QueryReadings(ctx, RawQuery{Series: []int64{ids[7]}, Limit: 1, Asc: true})
	if err != nil || len(rows) != 1 || rows[0].Raw != 1500 || *rows[0].DeviceValue != 1500 ||
		*rows[0].Processed != 7 || rows[0].ReceivedAt != ts+250 {
		t.Fatalf("%+v %v", rows, err)
	}
	t.Logf("%.1f bytes of record per reading", payload/float64(cells))
}

// The repair rebuilds minutes from raw rows, the hours they touch from the
// minutes and the day from its hours, each in transactions of its own: a
// damaged minute, hour and day come back as the sink had kept them.
func TestRepairRollupsRebuildsMinutesHoursAndDay(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	defer s.Close(ctx)
	id, err := s.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_00AA01", GPIO: 32, SensorType: "ph"})
	if err != nil {
		t.Fatal(err)
	}
	sink := s.NewReadingSink(0, nil)
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	from, to := day.Add(9*time.Hour), day.Add(11*time.Hour)
	for at := from; at.Before(to); at = at.Add(10 * time.Second) {
		r := footprintReading(id, at.UnixMilli(), 6+float64(at.Minute())/10)
		r.ReceivedAt = r.TS
		if err := sink.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string][2]float64 {
		out := map[string][2]float64{}
		for _, tbl := range []string{"rollup_1m", "rollup_1h", "rollup_1d"} {
			rows, err := s.read.QueryContext(ctx, `SELECT bucket, n, sum_p FROM `+tbl+` WHERE series_id = ?`, id)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var b, n int64
				var sum float64
				if err := rows.Scan(&b, &n, &sum); err != nil {
					t.Fatal(err)
				}
				out[tbl+"/"+time.UnixMilli(b).UTC().Format(time.TimeOnly)] = [2]float64{float64(n), sum}
			}
			rows.Close()
		}
		return out
	}
	want := snapshot()
	if len(want) != 120+2+1 {
		t.Fatalf("%d rollup rows", len(want))
	}
	if err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		for _, q := range []string{
			`UPDATE rollup_1m SET n = 1 WHERE bucket = ` + fmtMs(from.Add(30*time.Minute)),
			`UPDATE rollup_1h SET n = 0, sum_p = 0`,
			`DELETE FROM rollup_1d`,
		} {
			if _, err := tx.Exec(q); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.RepairRollups(ctx, from, to); err != nil {
		t.Fatal(err)
	}
	got := snapshot()
	for k, w := range want {
		if g := got[k]; g[0] != w[0] || fmt.Sprintf("%.6f", g[1]) != fmt.Sprintf("%.6f", w[1]) {
			t.Errorf("%s: repaired %v, kept by the sink %v", k, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d rows after the repair, %d before", len(got), len(want))
	}
}

func fmtMs(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
