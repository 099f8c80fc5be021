package procs

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// load is a process whose CPU use the test sets as a share of one core;
// CPU integrates it over the bubble's fake time.
type load struct {
	mu    sync.Mutex
	share float64
	used  time.Duration
	since time.Time
	sets  []int
}

func newLoad(share float64) *load {
	return &load{share: share, since: time.Now()}
}

func (l *load) cpu() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.used += time.Duration(l.share * float64(now.Sub(l.since)))
	l.since = now
	return l.used
}

func (l *load) setShare(s float64) {
	l.cpu() // what was used so far at the old share
	l.mu.Lock()
	l.share = s
	l.mu.Unlock()
}

func (l *load) set(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sets = append(l.sets, n)
	return 0
}

// procs is the count the governor set last, or 0 if it set none.
func (l *load) procs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.sets) == 0 {
		return 0
	}
	return l.sets[len(l.sets)-1]
}

func (l *load) history() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sets)
}

// govern runs a four-processor governor on l until the returned stop.
func govern(t *testing.T, l *load) (stop func()) {
	return governMax(t, l, 4)
}

// governMax runs a governor of max processors on l until the returned stop.
func governMax(t *testing.T, l *load, max int) (stop func()) {
	t.Helper()
	g := New(Config{
		Max:    max,
		CPU:    l.cpu,
		Set:    l.set,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// after lets d of fake time pass and waits for the governor to settle.
func after(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func TestQuietHubGetsOneProcessorAfterTheHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLoad(0.2)
		stop := govern(t, l)
		defer stop()

		after(DefaultHold - DefaultInterval)
		if got := l.procs(); got != 0 {
			t.Fatalf("processors set to %d before the hold ended", got)
		}

		after(2 * DefaultInterval)
		if got := l.procs(); got != 1 {
			t.Fatalf("quiet for the hold: processors %d, want 1", got)
		}
	})
}

func TestBusyHubGetsEveryProcessorWithinOneInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLoad(0.1)
		stop := govern(t, l)
		defer stop()
		after(DefaultHold + DefaultInterval)
		if got := l.procs(); got != 1 {
			t.Fatalf("quiet: processors %d, want 1", got)
		}

		l.setShare(0.9)
		after(2 * DefaultInterval) // the interval in which the load began may be part quiet
		if got := l.procs(); got != 4 {
			t.Fatalf("busy for two intervals: processors %d, want 4", got)
		}
	})
}

func TestBetweenTheThresholdsNothingChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLoad(0.6)
		stop := govern(t, l)
		defer stop()
		after(3 * DefaultHold)
		if got := l.history(); len(got) != 0 {
			t.Fatalf("at 0.6 of a core with every processor: set %v, want nothing", got)
		}

		l.setShare(0.1)
		after(DefaultHold + 2*DefaultInterval)
		l.setShare(0.6)
		after(3 * DefaultHold)
		if got := l.history(); !slices.Equal(got, []int{1}) {
			t.Fatalf("at 0.6 of a core with one processor: set %v, want only the lowering [1]", got)
		}
	})
}

func TestPausesInABurstDoNotLower(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLoad(1.0)
		stop := govern(t, l)
		defer stop()

		// A second at a full core, a second at a tenth: quiet half the
		// time, busy on average (0.55 of a core).
		for range 15 {
			after(time.Second)
			l.setShare(0.1)
			after(time.Second)
			l.setShare(1.0)
		}
		if got := l.history(); len(got) != 0 {
			t.Fatalf("a burst with pauses: set %v, want nothing", got)
		}
	})
}

func TestStopGivesEveryProcessorBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLoad(0.1)
		stop := govern(t, l)
		after(DefaultHold + DefaultInterval)
		if got := l.procs(); got != 1 {
			t.Fatalf("quiet: processors %d, want 1", got)
		}

		stop()
		if got := l.procs(); got != 4 {
			t.Fatalf("after stop: processors %d, want 4", got)
		}
	})
}

func TestOneCoreHasNothingToGovern(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLoad(0.0)
		stop := governMax(t, l, 1)
		after(3 * DefaultHold)
		stop()
		if got := l.history(); len(got) != 0 {
			t.Fatalf("one core: set %v, want nothing", got)
		}
	})
}

func TestProcessCPUGrowsWithWork(t *testing.T) {
	before := processCPU()
	deadline := time.Now().Add(50 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	if used := processCPU() - before; used <= 0 {
		t.Fatalf("50 ms of spinning (%d rounds) used %v of CPU, want more than none", x, used)
	}
}
