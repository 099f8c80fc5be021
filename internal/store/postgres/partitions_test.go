package postgres_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// Replicas starting together on an empty database apply each migration
// once; a reopen applies none.
func TestMigrationsApplyOnce(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() {
			s, err := postgres.Open(ctx, dsn, postgres.Options{})
			if err == nil {
				err = s.Close(ctx)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v %v", files, err)
	}
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(files) {
		t.Fatalf("schema version %d %v, want %d", v, err, len(files))
	}
}

// Readings land in the partition of their UTC day; DropReadingsBefore
// removes whole days that end at or before the cutoff, and a day written
// again afterwards gets its partition back.
func TestReadingPartitionsDropByDay(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	id, err := s.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_1", GPIO: 34, SensorType: "ph"})
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2025, 1, 10, 0, 0, 0, 0, time.UTC)
	k := s.NewReadingSink(0, nil)
	defer k.Close(ctx)
	add := func(ts time.Time, n int) {
		for i := range n {
			r := store.Reading{SeriesID: id, TS: ts.Add(time.Duration(i) * time.Second).UnixMilli(), Raw: 1,
				Unit: "pH", Quality: "good", Mode: "raw", TimeSource: "device", Source: "device",
				ReceivedAt: ts.UnixMilli()}
			if err := k.Add(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	add(day.Add(23*time.Hour), 4) // day 10
	add(day.Add(25*time.Hour), 3) // day 11
	add(day.Add(49*time.Hour), 2) // day 12

	parts, err := s.ReadingPartitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range parts {
		names[p.Name] = true
	}
	for _, want := range []string{"readings_p20250110", "readings_p20250111", "readings_p20250112", "readings_p20250113"} {
		if !names[want] {
			t.Fatalf("partition %s missing: %v", want, parts)
		}
	}

	// A cutoff inside day 11 drops day 10 only: day 11 still holds readings
	// that are not expired.
	n, err := s.DropReadingsBefore(ctx, day.Add(36*time.Hour).UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("dropped %d readings, want day 10's 4", n)
	}
	if left, _ := s.CountReadings(ctx, id, 0); left != 5 {
		t.Fatalf("%d readings left, want 5", left)
	}
	parts, _ = s.ReadingPartitions(ctx)
	for _, p := range parts {
		if p.Name == "readings_p20250110" {
			t.Fatal("day 10 partition still there")
		}
	}
	add(day.Add(22*time.Hour), 1) // day 10 again: its partition comes back
	if all, _ := s.CountReadings(ctx, id, 0); all != 6 {
		t.Fatalf("%d readings after writing into a dropped day, want 6", all)
	}
}
