package storetest

import (
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func sink(t *testing.T, s Subject) Sink {
	t.Helper()
	k := s.NewSink()
	t.Cleanup(func() { k.Close(ctx(t)) })
	return k
}

func series(t *testing.T, s Store, esp string, gpio int) int64 {
	t.Helper()
	id, err := s.EnsureSeries(ctx(t), store.SeriesKey{EspID: esp, GPIO: gpio, SensorType: "ph"})
	must(t, err)
	return id
}

func reading(id int64, ts time.Time, raw float64, processed *float64) store.Reading {
	return store.Reading{SeriesID: id, TS: ts.UnixMilli(), Raw: raw, Processed: processed, Unit: "pH",
		Quality: "good", Mode: "raw", TimeSource: "device", ReceivedAt: ts.UnixMilli() + 40, Source: "device",
		ZoneID: "z1", SubzoneID: ""}
}

func readingsRoundTrip(t *testing.T, s Subject) {
	c := ctx(t)
	a := series(t, s.Store, "ESP_R1", 34)
	if again := series(t, s.Store, "ESP_R1", 34); again != a {
		t.Fatalf("EnsureSeries gave %d then %d for one key", a, again)
	}
	b := series(t, s.Store, "ESP_R1", 35)
	all, err := s.Store.LoadSeries(c)
	must(t, err)
	if len(all) != 2 || all[store.SeriesKey{EspID: "ESP_R1", GPIO: 35, SensorType: "ph"}] != b {
		t.Fatalf("series %v", all)
	}

	k := sink(t, s)
	var want []store.Reading
	for i := range 5 {
		r := reading(a, base.Add(time.Duration(i)*time.Second), 1000+float64(i), ptr(6+float64(i)/10))
		if i == 3 {
			r.Quality, r.DeviceValue = "error", ptr(-1.0)
		}
		want = append(want, r)
		must(t, k.Add(c, r))
	}
	must(t, k.Add(c, reading(b, base, 5, nil)))
	// A redelivered device-timed reading is a duplicate of its key.
	dup := want[1]
	dup.Raw = 9999
	must(t, k.Add(c, dup))
	must(t, k.Flush(c))

	rows, err := s.Store.QueryReadings(c, store.RawQuery{Series: []int64{a}, Limit: 100, Asc: true})
	must(t, err)
	if len(rows) != 5 {
		t.Fatalf("%d rows, want 5 (the duplicate is dropped)", len(rows))
	}
	for i, r := range rows {
		if !reflect.DeepEqual(r.Reading, want[i]) {
			t.Fatalf("row %d\n got %+v\nwant %+v", i, r.Reading, want[i])
		}
		if r.Key.EspID != "ESP_R1" || r.Key.GPIO != 34 {
			t.Fatalf("row key %+v", r.Key)
		}
	}
	newest, err := s.Store.QueryReadings(c, store.RawQuery{Series: []int64{a}, Limit: 2})
	must(t, err)
	if len(newest) != 2 || newest[0].TS != want[4].TS || newest[1].TS != want[3].TS {
		t.Fatalf("newest first with a limit: %+v", newest)
	}
	page, err := s.Store.QueryReadings(c, store.RawQuery{Series: []int64{a}, Before: want[2].TS, Limit: 10})
	must(t, err)
	if len(page) != 2 || page[0].TS != want[1].TS {
		t.Fatalf("page before %d: %+v", want[2].TS, page)
	}
	bad, err := s.Store.QueryReadings(c, store.RawQuery{Quality: "error", Limit: 10,
		Start: base.UnixMilli(), End: base.Add(time.Hour).UnixMilli()})
	must(t, err)
	if len(bad) != 1 || bad[0].TS != want[3].TS {
		t.Fatalf("quality filter: %+v", bad)
	}
	both, err := s.Store.QueryReadings(c, store.RawQuery{Series: []int64{a, b}, Limit: 100})
	must(t, err)
	if len(both) != 6 {
		t.Fatalf("%d rows of two series, want 6", len(both))
	}

	latest, err := s.Store.LatestReadings(c)
	must(t, err)
	got := map[int64]int64{}
	for _, r := range latest {
		got[r.SeriesID] = r.TS
	}
	if len(latest) != 2 || got[a] != want[4].TS || got[b] != base.UnixMilli() {
		t.Fatalf("latest %v", got)
	}
	n, err := s.Store.CountReadings(c, a, want[2].TS)
	must(t, err)
	total, err := s.Store.CountReadings(c, 0, 0)
	must(t, err)
	if n != 2 || total != 6 {
		t.Fatalf("count before: %d (want 2), total %d (want 6)", n, total)
	}
	samples, err := s.Store.RawSamples(c, a, want[1].TS, want[4].TS, 10)
	must(t, err)
	if len(samples) != 3 || samples[0].TS != want[1].TS || *samples[0].Value != *want[1].Processed ||
		samples[2].Quality != "error" {
		t.Fatalf("raw samples %+v", samples)
	}
}

// A reading added with store.Commits on its context reports the commit
// that stores it: once Wait returns, the row is readable.
func readingCommitsAreReported(t *testing.T, s Subject) {
	c := ctx(t)
	id := series(t, s.Store, "ESP_C1", 34)
	k := sink(t, s)
	done := store.NewCommits()
	must(t, k.Add(store.WithCommits(c, done), reading(id, base, 7, ptr(7.0))))
	done.Seal()
	must(t, done.Wait(c))
	rows, err := s.Store.QueryReadings(c, store.RawQuery{Series: []int64{id}, Limit: 10})
	must(t, err)
	if len(rows) != 1 {
		t.Fatalf("%d rows readable after the commit was reported", len(rows))
	}
}

// Hub-timed readings are never deduplicated: one whose key is taken moves
// to the next free millisecond (docs/protocol.md §5.6); the same reading
// twice is still one row.
func hubTimedReadingsAreNeverDropped(t *testing.T, s Subject) {
	c := ctx(t)
	id := series(t, s.Store, "ESP_H1", 34)
	k := sink(t, s)
	first := reading(id, base, 1, ptr(1.0))
	first.TimeSource = "hub"
	second := first
	second.Raw, second.ReceivedAt = 2, first.ReceivedAt+1
	must(t, k.Add(c, first))
	must(t, k.Flush(c))
	must(t, k.Add(c, second))
	must(t, k.Add(c, first)) // the same reading again
	must(t, k.Flush(c))
	rows, err := s.Store.QueryReadings(c, store.RawQuery{Series: []int64{id}, Limit: 10, Asc: true})
	must(t, err)
	if len(rows) != 2 || rows[0].Raw != 1 || rows[1].Raw != 2 || rows[1].TS != first.TS+1 {
		t.Fatalf("hub-timed rows %+v", rows)
	}
}

func rollupsMatchTheRawReadings(t *testing.T, s Subject) {
	c := ctx(t)
	id := series(t, s.Store, "ESP_U1", 34)
	k := sink(t, s)
	// Three minutes of readings every 10 s; one unusable, some without a
	// processed value.
	for i := range 18 {
		var p *float64
		if i%4 != 0 {
			p = ptr(float64(i) * 1.5)
		}
		r := reading(id, base.Add(time.Duration(i)*10*time.Second), float64(100+i), p)
		if i == 7 {
			r.Quality = "error"
		}
		must(t, k.Add(c, r))
	}
	must(t, k.Flush(c))

	from, to := base.UnixMilli(), base.Add(time.Hour).UnixMilli()
	raw, err := s.Store.Buckets(c, id, "raw", from, to, 60_000, from)
	must(t, err)
	minute, err := s.Store.Buckets(c, id, "1m", from, to, 60_000, from)
	must(t, err)
	if len(raw) != 3 || !sameBuckets(raw, minute) {
		t.Fatalf("minute rollups differ from the raw readings\n raw %s\n  1m %s", dump(raw), dump(minute))
	}
	if raw[0].N != 6 || raw[1].N != 5 || raw[1].NP != 4 {
		t.Fatalf("raw buckets %s", dump(raw))
	}
	for _, src := range []string{"1h", "1d"} {
		b, err := s.Store.Buckets(c, id, src, from-from%86_400_000, to, 86_400_000, from-from%86_400_000)
		must(t, err)
		if len(b) != 1 || b[0].N != 17 || b[0].NP != 12 || *b[0].MinRaw != 100 || *b[0].MaxRaw != 117 {
			t.Fatalf("%s rollup %s", src, dump(b))
		}
	}
	ms, err := s.Store.MinuteSamples(c, id, from, to, 10)
	must(t, err)
	if len(ms) != 3 || ms[0].Bucket != from || ms[0].Quality != "aggregated" ||
		math.Abs(*ms[0].Value-raw[0].SumP/float64(raw[0].NP)) > 1e-9 ||
		ms[0].TS != base.Add(50*time.Second).UnixMilli() {
		t.Fatalf("minute samples %+v", ms)
	}

	// Rollups deleted are rebuilt by the repair from the raw readings.
	n, err := s.Store.DeleteRollupsBefore(c, "1m", to, 1000)
	must(t, err)
	if n != 3 {
		t.Fatalf("deleted %d minute rollups, want 3", n)
	}
	if _, err := s.Store.DeleteRollupsBefore(c, "1h", to, 1000); err != nil {
		t.Fatal(err)
	}
	must(t, s.Store.RepairRollups(c, base, base.Add(5*time.Minute)))
	minute, err = s.Store.Buckets(c, id, "1m", from, to, 60_000, from)
	must(t, err)
	if !sameBuckets(raw, minute) {
		t.Fatalf("repaired minute rollups differ\n raw %s\n  1m %s", dump(raw), dump(minute))
	}
	hour, err := s.Store.Buckets(c, id, "1h", from, to, 3_600_000, from)
	must(t, err)
	if len(hour) != 1 || hour[0].N != 17 {
		t.Fatalf("repaired hour rollup %s", dump(hour))
	}
	after, err := s.Store.MinuteSamples(c, id, from, to, 10)
	must(t, err)
	if !reflect.DeepEqual(after, ms) {
		t.Fatalf("minute samples after the repair\n got %+v\nwant %+v", after, ms)
	}
}

func sameBuckets(a, b []store.Bucket) bool {
	if len(a) != len(b) {
		return false
	}
	eq := func(x, y *float64) bool { return (x == nil) == (y == nil) && (x == nil || math.Abs(*x-*y) < 1e-9) }
	for i := range a {
		x, y := a[i], b[i]
		if x.Start != y.Start || x.N != y.N || x.NP != y.NP || math.Abs(x.SumRaw-y.SumRaw) > 1e-9 ||
			math.Abs(x.SumP-y.SumP) > 1e-9 || !eq(x.MinRaw, y.MinRaw) || !eq(x.MaxRaw, y.MaxRaw) ||
			!eq(x.MinP, y.MinP) || !eq(x.MaxP, y.MaxP) {
			return false
		}
	}
	return true
}

func dump(bs []store.Bucket) string {
	f := func(p *float64) any {
		if p == nil {
			return nil
		}
		return *p
	}
	out := ""
	for _, b := range bs {
		out += fmt.Sprintf(" [%s n=%d np=%d sum=%g sump=%g raw %v..%v p %v..%v]",
			time.UnixMilli(b.Start).UTC().Format("15:04:05"), b.N, b.NP, b.SumRaw, b.SumP,
			f(b.MinRaw), f(b.MaxRaw), f(b.MinP), f(b.MaxP))
	}
	return out
}

func readingRetentionDeletesOldestFirst(t *testing.T, s Subject) {
	c := ctx(t)
	id := series(t, s.Store, "ESP_D1", 34)
	other := series(t, s.Store, "ESP_D1", 35)
	k := sink(t, s)
	for i := range 10 {
		must(t, k.Add(c, reading(id, base.Add(time.Duration(i)*time.Minute), float64(i), nil)))
		must(t, k.Add(c, reading(other, base.Add(time.Duration(i)*time.Minute), float64(i), nil)))
	}
	must(t, k.Flush(c))
	cut := base.Add(6 * time.Minute).UnixMilli()
	n, err := s.Store.DeleteReadingsBatch(c, id, cut, 4)
	must(t, err)
	if n != 4 {
		t.Fatalf("deleted %d, want 4", n)
	}
	rows, err := s.Store.QueryReadings(c, store.RawQuery{Series: []int64{id}, Limit: 100, Asc: true})
	must(t, err)
	if len(rows) != 6 || rows[0].TS != base.Add(4*time.Minute).UnixMilli() {
		t.Fatalf("after the batch: %d rows from %d", len(rows), rows[0].TS)
	}
	n, err = s.Store.DeleteReadingsBatch(c, id, cut, 4)
	must(t, err)
	if n != 2 {
		t.Fatalf("second batch deleted %d, want the 2 left before the cutoff", n)
	}
	if left, _ := s.Store.CountReadings(c, other, 0); left != 10 {
		t.Fatalf("another series lost rows: %d left", left)
	}
}
