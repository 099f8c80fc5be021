package sensor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func TestParseResolution(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  error
	}{
		{"", 0, nil},
		{"raw", 0, nil},
		{"auto", -1, nil},
		{"5m", 300, nil},
		{"1d", 86400, nil},
		{"90", 90, nil},
		{"9", 0, ErrBadResolution},
		{"86401", 0, ErrBadResolution},
		{"2w", 0, ErrBadResolution},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseResolution(c.in)
			if got != c.want || !errors.Is(err, c.err) {
				t.Fatalf("%d %v, want %d %v", got, err, c.want, c.err)
			}
		})
	}
}

// History (docs/api.md §7.3) on SQLite: raw rows page with a cursor, fixed and
// automatic resolutions aggregate, a bucket count divides the range.
func TestHistoryQuery(t *testing.T) {
	st, sink, svc := newStoreService(t)
	defer closeStore(t, st, sink)
	ctx := context.Background()
	key := store.SeriesKey{EspID: esp, GPIO: 34, SensorType: "ph"}
	id, err := st.EnsureSeries(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Truncate(time.Hour)
	fill(t, st, sink, id, 120, time.Minute, end) // two hours, one reading a minute
	if err := sink.Close(ctx); err != nil {      // flush the rollups too
		t.Fatal(err)
	}
	if err := svc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	base := HistoryQuery{
		EspID: esp,
		GPIO:  -1,
		Start: end.Add(-2 * time.Hour),
		End:   end,
		Limit: 50,
	}

	h, err := svc.Query(ctx, base)
	if err != nil || h.Resolution != "raw" || len(h.Rows) != 50 || !h.HasMore || h.NextCursor == nil {
		t.Fatalf("first raw page: %d rows, more %v, %v", len(h.Rows), h.HasMore, err)
	}
	if h.Rows[0]["unit"] != "pH" || h.Rows[0]["zone_id"] != nil {
		t.Fatalf("raw row %v", h.Rows[0])
	}
	next := base
	next.Before = *h.NextCursor
	h2, err := svc.Query(ctx, next)
	if err != nil || len(h2.Rows) != 50 || h2.Rows[0]["timestamp"] == h.Rows[49]["timestamp"] {
		t.Fatalf("second raw page: %d rows, %v", len(h2.Rows), err)
	}

	hourly := base
	hourly.Resolution = "1h"
	h, err = svc.Query(ctx, hourly)
	if err != nil || len(h.Rows) != 2 || h.BucketSeconds != 3600 {
		t.Fatalf("hourly: %d rows, %v", len(h.Rows), err)
	}
	if r := h.Rows[0]; r["sample_count"] != int64(60) || r["quality"] != "aggregated" || r["unit"] != "pH" {
		t.Fatalf("hourly bucket %v", r)
	}

	auto := base
	auto.Resolution, auto.Limit = "auto", 10
	if h, err = svc.Query(ctx, auto); err != nil || h.BucketSeconds != 900 {
		t.Fatalf("auto: %d s buckets, %v", h.BucketSeconds, err)
	}

	counted := base
	counted.Buckets = 4
	if h, err = svc.Query(ctx, counted); err != nil || len(h.Rows) != 4 || h.BucketSeconds != 1800 {
		t.Fatalf("4 buckets: %d rows of %d s, %v", len(h.Rows), h.BucketSeconds, err)
	}

	none := base
	none.EspID = "ESP_NONE"
	if h, err = svc.Query(ctx, none); err != nil || len(h.Rows) != 0 {
		t.Fatalf("no series: %+v %v", h, err)
	}
	bad := base
	bad.Resolution = "2w"
	if _, err := svc.Query(ctx, bad); !errors.Is(err, ErrBadResolution) {
		t.Fatalf("bad resolution: %v", err)
	}
}

// Rollup retention deletes minute rollups past their days and keeps the
// recent ones.
func TestCleanupRollups(t *testing.T) {
	st, sink, svc := newStoreService(t)
	defer closeStore(t, st, sink)
	ctx := context.Background()
	id, _ := st.EnsureSeries(ctx, store.SeriesKey{EspID: esp, GPIO: 34, SensorType: "ph"})
	now := time.Now().Truncate(time.Minute)
	fill(t, st, sink, id, 10, time.Minute, now.Add(-100*24*time.Hour))
	fill(t, st, sink, id, 10, time.Minute, now)
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}

	count := func() int {
		bs, err := st.Buckets(ctx, id, "1m", now.Add(-101*24*time.Hour).UnixMilli(), now.UnixMilli(), 60_000, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(bs)
	}
	if n := count(); n != 20 {
		t.Fatalf("%d minute rollups before cleanup", n)
	}
	r := DefaultRetention()
	r.BatchSize = 3
	if err := svc.CleanupRollups(ctx, r); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 10 {
		t.Fatalf("%d minute rollups after cleanup, want the 10 recent", n)
	}
	if err := svc.RepairRollups(ctx); err != nil {
		t.Fatal(err)
	}
}
