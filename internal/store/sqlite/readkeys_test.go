package sqlite

import (
	"context"
	"testing"

	"github.com/kaiserhub/kaiser/internal/store"
)

// A hub-timed reading whose (series, time) key is taken already (the hub's
// clock stepped back onto stored times) is stored at the next free
// millisecond; a device-timed one there is a duplicate and is ignored.
// Both the multi-row and the single-row insert keep it.
func TestHubTimedReadingIsNeverDroppedForItsKey(t *testing.T) {
	ctx := context.Background()
	s, id, sink := seriesSink(t)
	row := func(ts, receivedAt int64, raw float64, src string) store.Reading {
		return store.Reading{SeriesID: id, TS: ts, ReceivedAt: receivedAt, Raw: raw, Unit: "pH", Quality: "good",
			Mode: "raw", TimeSource: src, Source: "production"}
	}
	add := func(rs ...store.Reading) {
		t.Helper()
		for _, r := range rs {
			if err := sink.Add(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := sink.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Before the step: hub-timed readings at 10,000 and 10,001 ms.
	add(row(10_000, 10_000, 1, "hub"), row(10_001, 10_001, 2, "hub"))
	// After it, alone in its batch (single-row insert): onto 10,000 again.
	add(row(10_000, 70_000, 3, "hub"))
	// In a batch of more than one statement's rows (multi-row insert):
	// onto 10,001, beside a device-timed duplicate of a stored time.
	batch := []store.Reading{row(10_001, 70_001, 4, "hub"), row(10_000, 70_002, 5, "device")}
	for i := range 70 {
		batch = append(batch, row(int64(20_000+i), int64(70_003+i), 6, "hub"))
	}
	if err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := sink.insertReadings(tx, batch)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	got, err := s.QueryReadings(ctx, store.RawQuery{Series: []int64{id}, Start: 10_000, End: 10_010, Limit: 100, Asc: true})
	if err != nil {
		t.Fatal(err)
	}
	var raws []float64
	for _, r := range got {
		raws = append(raws, r.Raw)
	}
	// 10,000: 1; 10,001: 2; 3 moved to 10,002; 4 moved past 10,001 and
	// 10,002 to 10,003; the device-timed duplicate 5 is not stored.
	want := []float64{1, 2, 3, 4}
	if len(raws) != len(want) {
		t.Fatalf("stored raws %v, want %v", raws, want)
	}
	for i := range want {
		if raws[i] != want[i] || got[i].TS != int64(10_000+i) {
			t.Fatalf("row %d: raw %v at %d, want %v at %d (all %v)", i, raws[i], got[i].TS, want[i], 10_000+i, raws)
		}
	}
	if n, err := s.CountReadings(ctx, id, 0); err != nil || n != 74 {
		t.Fatalf("readings stored: %d, %v; want 74", n, err)
	}
}

// A series with more hub-timed readings than free milliseconds near their
// time (1,100 in one millisecond: more than any search near it finds) still stores every one:
// the rest go right after the series' last time, and the batch does not
// fail (it once did, and its retries stalled ingest).
func TestHubTimedBurstIsStoredWhole(t *testing.T) {
	ctx := context.Background()
	s, id, sink := seriesSink(t)
	const burst = 1100
	var batch []store.Reading
	for i := range burst {
		batch = append(batch, store.Reading{SeriesID: id, TS: 5_000, ReceivedAt: 5_000 + int64(i), Raw: float64(i),
			Unit: "pH", Quality: "good", Mode: "raw", TimeSource: "hub", Source: "production"})
	}
	if err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := sink.insertReadings(tx, batch)
		return err
	}); err != nil {
		t.Fatalf("a burst of hub-timed readings failed its batch: %v", err)
	}
	got, err := s.QueryReadings(ctx, store.RawQuery{Series: []int64{id}, Start: 0, End: 1 << 40, Limit: 5000, Asc: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != burst {
		t.Fatalf("stored %d of %d", len(got), burst)
	}
}

// seriesSink opens a store with one pH series and a reading sink, closed
// when the test ends.
func seriesSink(t *testing.T) (*Store, int64, *ReadingSink) {
	t.Helper()
	ctx := context.Background()
	s := open(t, t.TempDir())
	t.Cleanup(func() { s.Close(ctx) })
	id, err := s.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_1", GPIO: 34, SensorType: "ph"})
	if err != nil {
		t.Fatal(err)
	}
	sink := s.NewReadingSink(256, nil)
	t.Cleanup(func() { sink.Close(ctx) })
	return s, id, sink
}
