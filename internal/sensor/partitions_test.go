package sensor

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// On a store partitioned by day (PostgreSQL), retention drops the days
// older than the longest retention whole and deletes what a shorter
// per-sensor retention expires in younger days in batches.
func TestRetentionDropsWholeDays(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Start(t, pgtest.Config{})
	st, err := postgres.Open(ctx, srv.NewDatabase(t), postgres.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	sink := st.NewReadingSink(0, nil)
	defer sink.Close(ctx)
	svc := New(st, sink, nil, nil, nil, nil, Options{})
	svc.devices = &memDevices{byID: map[string]device.Device{esp: {}}}

	now := time.Now()
	long, _ := st.EnsureSeries(ctx, store.SeriesKey{EspID: esp, GPIO: 34, SensorType: "ph"})
	short, _ := st.EnsureSeries(ctx, store.SeriesKey{EspID: esp, GPIO: 35, SensorType: "ph"})
	add := func(series int64, ago time.Duration, n int) {
		for i := range n {
			at := now.Add(-ago + time.Duration(i)*time.Minute)
			if err := sink.Add(ctx, phReading(series, at, 2000, 6.5, at)); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(long, 60*24*time.Hour, 10) // older than both retentions: its day is dropped
	add(short, 60*24*time.Hour, 10)
	add(long, 40*24*time.Hour, 10) // kept by the 50-day sensor, due for the default
	add(short, 40*24*time.Hour, 10)
	add(long, time.Hour, 10)
	add(short, time.Hour, 10)
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := svc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Upsert(ctx, Config{EspID: esp, GPIO: 34, SensorType: "ph", RetentionDays: ptr(50)}); err != nil {
		t.Fatal(err)
	}
	before, _ := st.ReadingPartitions(ctx)

	r := DefaultRetention()
	r.Force = true
	res, err := svc.CleanupReadings(ctx, r)
	if err != nil || res.Status != "success" || res.Deleted != 30 {
		t.Fatalf("cleanup: %+v %v (want 20 dropped with their day, 10 deleted)", res, err)
	}
	after, _ := st.ReadingPartitions(ctx)
	if len(after) >= len(before) {
		t.Fatalf("no partition dropped: %d before, %d after", len(before), len(after))
	}
	if n, _ := st.CountReadings(ctx, long, 0); n != 20 {
		t.Fatalf("the 50-day sensor kept %d readings, want 20", n)
	}
	if n, _ := st.CountReadings(ctx, short, 0); n != 10 {
		t.Fatalf("the default sensor kept %d readings, want its 10 recent ones", n)
	}
}
