package ingest

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// The pipeline's own figures for GET /health/detailed (docs/api.md §13):
// the arrival rate over the last seconds and the drops by reason since
// start, whatever the kind or device.

// RateWindow is the span the arrival rate is averaged over.
const RateWindow = 10 * time.Second

const rateSeconds = int64(RateWindow / time.Second)

// arrivals counts deliveries per wall-clock second in a ring of the last
// rateSeconds seconds and the current one. Each slot packs its second and
// its count into one word, so that the broker callbacks count without a
// lock and without losing an arrival at a second's turn.
type arrivals struct {
	start int64 // the second counting began
	slots [rateSeconds + 1]atomic.Uint64
}

// A slot's second takes the upper 40 bits (unix seconds fit until the year
// 36,000), its count the lower 24 (16 million a second, far above what one
// hub receives).
const (
	countBits = 24
	countMask = 1<<countBits - 1
)

func pack(second int64, count uint64) uint64 { return uint64(second)<<countBits | count&countMask }

func unpack(v uint64) (second int64, count uint64) {
	return int64(v >> countBits), v & countMask
}

func newArrivals(now time.Time) *arrivals { return &arrivals{start: now.Unix()} }

func (a *arrivals) add(now time.Time) {
	s := now.Unix()
	slot := &a.slots[s%(rateSeconds+1)]
	for {
		old := slot.Load()
		sec, n := unpack(old)
		next := pack(s, 1)
		if sec == s {
			next = pack(s, n+1)
		}
		if slot.CompareAndSwap(old, next) {
			return
		}
	}
}

// perSecond is the mean over the complete seconds of the window before now
// (fewer right after the start); the current second is still filling.
func (a *arrivals) perSecond(now time.Time) float64 {
	cur := now.Unix()
	span := min(rateSeconds, cur-a.start)
	if span <= 0 {
		return 0
	}
	var n uint64
	for i := range a.slots {
		sec, c := unpack(a.slots[i].Load())
		if sec < cur && sec >= cur-span {
			n += c
		}
	}
	return float64(n) / float64(span)
}

// dropTotals are the drops since start by reason.
type dropTotals struct {
	mu sync.Mutex
	n  map[string]int64
}

func (t *dropTotals) add(reason string) {
	t.mu.Lock()
	if t.n == nil {
		t.n = map[string]int64{}
	}
	t.n[reason]++
	t.mu.Unlock()
}

func (t *dropTotals) snapshot() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := maps.Clone(t.n)
	if out == nil {
		out = map[string]int64{}
	}
	return out
}

// Rate is the messages received per second, averaged over the last
// RateWindow of complete seconds.
func (d *Dispatcher) Rate() float64 { return d.arrivals.perSecond(d.now()) }

// Dropped is the messages dropped since start by reason (every kind and
// device, routing drops included).
func (d *Dispatcher) Dropped() map[string]int64 { return d.drops.snapshot() }

// Config is the configuration the dispatcher runs with, defaults applied.
func (d *Dispatcher) Config() Config { return d.cfg }
