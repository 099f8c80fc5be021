package sensor

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// fill stores n readings of one series, one every step, ending at end.
func fill(
	t testing.TB, st *sqlite.Store, sink *sqlite.ReadingSink, series int64, n int, step time.Duration, end time.Time,
) {
	t.Helper()
	ctx := context.Background()
	start := end.Add(-time.Duration(n) * step)
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * step)
		if err := sink.Add(ctx, phReading(series, at, float64(2000+i%100), 6+float64(i%100)/100, at)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// phReading is a processed pH reading taken at and received at received.
func phReading(series int64, at time.Time, raw, value float64, received time.Time) store.Reading {
	return store.Reading{
		SeriesID:   series,
		TS:         at.UnixMilli(),
		Raw:        raw,
		Processed:  &value,
		Unit:       "pH",
		Quality:    "good",
		Mode:       "pi_enhanced",
		TimeSource: "device",
		ReceivedAt: received.UnixMilli(),
		Source:     "production",
	}
}

func newStoreService(t testing.TB) (*sqlite.Store, *sqlite.ReadingSink, *Service) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir(), sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sink := st.NewReadingSink(0, nil)
	svc := New(st, sink, nil, nil, nil, nil, Options{})
	return st, sink, svc
}

func closeStore(t testing.TB, st *sqlite.Store, sink *sqlite.ReadingSink) {
	ctx := context.Background()
	if err := sink.Close(ctx); err != nil {
		t.Error(err)
	}
	if err := st.Close(ctx); err != nil {
		t.Error(err)
	}
}

// Retention deletes only rows older than the limit, in batches, never more
// than the per-run cap, and refuses to delete most of the table unless forced.
func TestRetentionSafety(t *testing.T) {
	st, sink, svc := newStoreService(t)
	defer closeStore(t, st, sink)
	ctx := context.Background()
	id, err := st.EnsureSeries(ctx, store.SeriesKey{EspID: "E", GPIO: 34, SensorType: "ph"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	fill(t, st, sink, id, 100, time.Minute, now.Add(-40*24*time.Hour)) // 100 rows 40 days old
	fill(t, st, sink, id, 50, time.Minute, now)                        // 50 recent rows
	if err := svc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	r := DefaultRetention()
	r.BatchSize, r.MaxRowsPerRun = 10, 30
	res, err := svc.CleanupReadings(ctx, r)
	if err != nil || res.Status != "aborted_safety_limit" || res.Deleted != 0 {
		t.Fatalf("over half of the table must abort: %+v %v", res, err)
	}
	r.DryRun = true
	if res, _ := svc.CleanupReadings(ctx, r); res.Status != "dry_run" || res.Deleted != 100 {
		t.Fatalf("dry run: %+v", res)
	}
	r.DryRun, r.Force = false, true
	res, err = svc.CleanupReadings(ctx, r)
	if err != nil || res.Status != "partial" || res.Deleted != 30 {
		t.Fatalf("per-run cap: %+v %v", res, err)
	}
	for i := 0; i < 5 && res.Status != "nothing_to_delete"; i++ {
		res, err = svc.CleanupReadings(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
	}
	left, _ := st.CountReadings(ctx, id, 0)
	old, _ := st.CountReadings(ctx, id, now.Add(-30*24*time.Hour).UnixMilli())
	if left != 50 || old != 0 {
		t.Fatalf("after cleanup: %d rows, %d old", left, old)
	}
}

// Rollups kept by the sink match a recomputation from raw rows.
func TestRollupsMatchRepair(t *testing.T) {
	st, sink, _ := newStoreService(t)
	defer closeStore(t, st, sink)
	ctx := context.Background()
	id, _ := st.EnsureSeries(ctx, store.SeriesKey{EspID: "E", GPIO: 34, SensorType: "ph"})
	end := time.Now().Truncate(time.Hour)
	fill(t, st, sink, id, 720, 5*time.Second, end) // one hour of 5-s readings
	if err := sink.Close(ctx); err != nil {        // final rollup flush
		t.Fatal(err)
	}
	before, err := st.Buckets(ctx, id, "1m", end.Add(-time.Hour).UnixMilli(), end.UnixMilli(), 600_000, 0)
	if err != nil || len(before) != 6 {
		t.Fatalf("buckets: %d %v", len(before), err)
	}
	if err := st.RepairRollups(ctx, end.Add(-time.Hour), end); err != nil {
		t.Fatal(err)
	}
	after, _ := st.Buckets(ctx, id, "1m", end.Add(-time.Hour).UnixMilli(), end.UnixMilli(), 600_000, 0)
	for i := range before {
		sameSum := fmt.Sprintf("%.6f", before[i].SumP) == fmt.Sprintf("%.6f", after[i].SumP)
		if before[i].N != 120 || before[i].N != after[i].N || !sameSum {
			t.Fatalf("bucket %d: live %+v repaired %+v", i, before[i], after[i])
		}
	}
}

// BenchmarkHistory500Buckets is issue 4's query: 500 buckets over 30 days of
// 5-second readings (≈518,000 rows) of one sensor, served from rollups.
func BenchmarkHistory500Buckets(b *testing.B) {
	st, sink, svc := newStoreService(b)
	defer closeStore(b, st, sink)
	ctx := context.Background()
	key := store.SeriesKey{EspID: "ESP_A1B2C3", GPIO: 34, SensorType: "ph"}
	id, _ := st.EnsureSeries(ctx, key)
	end := time.Now().Truncate(time.Minute)
	fill(b, st, sink, id, 30*24*720, 5*time.Second, end)
	if err := svc.Load(ctx); err != nil {
		b.Fatal(err)
	}
	n, _ := st.CountReadings(ctx, id, 0)
	q := HistoryQuery{
		EspID:      key.EspID,
		GPIO:       34,
		SensorType: "ph",
		Start:      end.Add(-30 * 24 * time.Hour),
		End:        end,
		Buckets:    500,
		Limit:      10000,
	}
	b.ResetTimer()
	for b.Loop() {
		h, err := svc.Query(ctx, q)
		if err != nil || len(h.Rows) < 499 || len(h.Rows) > 501 {
			b.Fatalf("%d buckets, %v", len(h.Rows), err)
		}
	}
	b.ReportMetric(float64(n), "rows")
}

// BenchmarkWriter measures readings/s into SQLite on disk through the sink
// (multi-row inserts, rollups in the same transactions), on a table already
// holding 1M rows over 1000 series.
func BenchmarkWriter(b *testing.B) {
	st, sink, _ := newStoreService(b)
	defer closeStore(b, st, sink)
	ctx := context.Background()
	const series = 1000
	ids := make([]int64, series)
	for i := range ids {
		ids[i], _ = st.EnsureSeries(ctx, store.SeriesKey{EspID: fmt.Sprintf("ESP_%06X", i), GPIO: 34, SensorType: "ph"})
	}
	base := time.Now().Add(-48 * time.Hour)
	add := func(i int) {
		at := base.Add(time.Duration(i/series) * 5 * time.Second)
		_ = sink.Add(ctx, phReading(ids[i%series], at, 2048, 6.5, time.Now()))
	}
	for i := 0; i < 1_000_000; i++ {
		add(i)
	}
	_ = sink.Flush(ctx)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		add(1_000_000 + i)
	}
	if err := sink.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
}

// A sensor's own retention_days overrides the default, and a run stops at
// its row cap even inside a batch.
func TestRetentionPerSensorAndCap(t *testing.T) {
	st, sink, svc := newStoreService(t)
	defer closeStore(t, st, sink)
	ctx := context.Background()
	svc.devices = &memDevices{byID: map[string]device.Device{esp: {}}}
	now := time.Now()
	keep := store.SeriesKey{EspID: esp, GPIO: 34, SensorType: "ph"}
	drop := store.SeriesKey{EspID: esp, GPIO: 35, SensorType: "ph"}
	keepID, _ := st.EnsureSeries(ctx, keep)
	dropID, _ := st.EnsureSeries(ctx, drop)
	fill(t, st, sink, keepID, 20, time.Minute, now.Add(-40*24*time.Hour))
	fill(t, st, sink, dropID, 20, time.Minute, now.Add(-40*24*time.Hour))
	if err := svc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Upsert(ctx, Config{
		EspID:         esp,
		GPIO:          34,
		SensorType:    "ph",
		RetentionDays: ptr(50),
	}); err != nil {
		t.Fatal(err)
	}

	r := DefaultRetention()
	r.Force, r.BatchSize, r.MaxRowsPerRun = true, 10, 15
	res, err := svc.CleanupReadings(ctx, r)
	if err != nil || res.Status != "partial" || res.Deleted != 15 {
		t.Fatalf("capped run: %+v %v", res, err)
	}
	res, err = svc.CleanupReadings(ctx, r)
	if err != nil || res.Status != "success" || res.Deleted != 5 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	kept, _ := st.CountReadings(ctx, keepID, 0)
	left, _ := st.CountReadings(ctx, dropID, 0)
	if kept != 20 || left != 0 {
		t.Fatalf("kept %d rows of the 50-day sensor, %d of the default one", kept, left)
	}
}
