package sqlite

import (
	"context"
	"testing"

	"github.com/kaiserhub/kaiser/internal/store"
)

// A replay pages through raw readings and minute averages oldest first,
// within [from, to), without a reading of another series.
func TestSamplesPageInTimeOrder(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer func() { _ = s.Close(ctx) }()
	sid, err := s.EnsureSeries(ctx, store.SeriesKey{EspID: "E", GPIO: 4, SensorType: "ds18b20"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.EnsureSeries(ctx, store.SeriesKey{EspID: "E", GPIO: 5, SensorType: "ds18b20"})
	if err != nil {
		t.Fatal(err)
	}
	sink := s.NewReadingSink(0, nil)
	// Readings every 20 s for 3 minutes: 10, 11, 12, … and one without a
	// processed value in the second minute.
	for i := range 9 {
		v := float64(10 + i)
		r := store.Reading{SeriesID: sid, TS: int64(i) * 20_000, Raw: v, Processed: &v, Quality: "good"}
		if i == 4 {
			r.Processed, r.Quality = nil, "error"
		}
		if err := sink.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := sink.Add(ctx, store.Reading{SeriesID: other, TS: int64(i) * 20_000, Raw: 99, Quality: "good"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}

	page, err := s.RawSamples(ctx, sid, 20_000, 120_000, 3)
	if err != nil || len(page) != 3 || page[0].TS != 20_000 || page[2].TS != 60_000 || *page[0].Value != 11 {
		t.Fatalf("first page %+v %v", page, err)
	}
	page, err = s.RawSamples(ctx, sid, page[2].TS+1, 120_000, 3)
	if err != nil || len(page) != 2 || page[0].TS != 80_000 || page[0].Value != nil || page[0].Quality != "error" ||
		page[1].TS != 100_000 {
		t.Fatalf("second page (to is exclusive) %+v %v", page, err)
	}

	mins, err := s.MinuteSamples(ctx, sid, 0, 180_000, 10)
	if err != nil || len(mins) != 3 {
		t.Fatalf("minute samples %+v %v", mins, err)
	}
	// Minute 1 holds 13, (error), 15: the average of the usable values,
	// timed at its last one.
	if m := mins[1]; m.Bucket != 60_000 || m.TS != 100_000 || *m.Value != 14 || m.Quality != "aggregated" {
		t.Fatalf("second minute %+v", m)
	}
	if mins, _ := s.MinuteSamples(ctx, sid, 60_000, 180_000, 1); len(mins) != 1 || mins[0].Bucket != 60_000 {
		t.Fatalf("minute page %+v", mins)
	}
}
