package ingest

import (
	"maps"
	"sync"
	"time"
)

// The pipeline's own figures for GET /health/detailed (docs/api.md §13):
// the arrival rate over the last seconds and the drops by reason since
// start, whatever the kind or device.

// RateWindow is the span the arrival rate is averaged over.
const RateWindow = 10 * time.Second

const rateSeconds = int64(RateWindow / time.Second)

// arrivals counts deliveries per wall-clock second in a ring of the last
// rateSeconds seconds and the current one.
type arrivals struct {
	mu     sync.Mutex
	start  int64 // the second counting began
	second [rateSeconds + 1]int64
	count  [rateSeconds + 1]int64
}

func newArrivals(now time.Time) *arrivals { return &arrivals{start: now.Unix()} }

func (a *arrivals) add(now time.Time) {
	s := now.Unix()
	i := s % (rateSeconds + 1)
	a.mu.Lock()
	if a.second[i] != s {
		a.second[i], a.count[i] = s, 0
	}
	a.count[i]++
	a.mu.Unlock()
}

// perSecond is the mean over the complete seconds of the window before now
// (fewer right after the start); the current second is still filling.
func (a *arrivals) perSecond(now time.Time) float64 {
	cur := now.Unix()
	span := min(rateSeconds, cur-a.start)
	if span <= 0 {
		return 0
	}
	var n int64
	a.mu.Lock()
	for i, s := range a.second {
		if s < cur && s >= cur-span {
			n += a.count[i]
		}
	}
	a.mu.Unlock()
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
