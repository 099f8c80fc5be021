// Package procs sizes the Go scheduler to the hub's load: one processor
// while the hub is quiet, all of them while it is busy.
//
// A quiet hub still wakes a thousand times a second at 1,000 devices: a
// reading readies the connection's reader, then an ingest worker, then a
// WebSocket writer. With more than one processor each hand-off wakes an
// idle thread, which spins looking for work and parks again, and that
// costs more than the work handed over (docs/decisions/0033-procs.md). With
// one processor the readied goroutine runs next on the same thread. One
// processor also caps the hub at one core, so the governor gives the
// others back as soon as the hub needs them.
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"syscall"
	"time"
)

// Defaults of Config.
const (
	// DefaultInterval is how often the governor reads the process's CPU.
	DefaultInterval = 250 * time.Millisecond

	// DefaultRaise is the share of one core, over one interval, above
	// which one processor becomes all of them. Three quarters: a single
	// processor that busy queues work behind itself.
	DefaultRaise = 0.75

	// DefaultLower is the share of one core, over DefaultHold, below
	// which all processors become one.
	DefaultLower = 0.5

	// DefaultHold is how long the hub must stay below DefaultLower before
	// it gives processors up: a burst's pauses must not lower it.
	DefaultHold = 10 * time.Second
)

// Config tunes a Governor; zero fields take the defaults.
type Config struct {
	// Max is the processor count while busy (the runtime's count at start).
	Max int

	Interval time.Duration
	Raise    float64
	Lower    float64
	Hold     time.Duration

	Logger *slog.Logger

	// CPU returns the process's CPU time so far (getrusage); Set sets the
	// processor count and returns the previous one (runtime.GOMAXPROCS).
	// Tests replace both.
	CPU func() time.Duration
	Set func(n int) int
}

// Governor raises and lowers the processor count; Run drives it.
type Governor struct {
	cfg Config

	procs int

	lastCPU time.Duration

	windowStart    time.Time
	windowStartCPU time.Duration
}

// New returns a governor with cfg's defaults filled in.
func New(cfg Config) *Governor {
	if cfg.Set == nil {
		cfg.Set = runtime.GOMAXPROCS
	}
	if cfg.CPU == nil {
		cfg.CPU = processCPU
	}
	if cfg.Max <= 0 {
		cfg.Max = runtime.GOMAXPROCS(0)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Raise <= 0 {
		cfg.Raise = DefaultRaise
	}
	if cfg.Lower <= 0 {
		cfg.Lower = DefaultLower
	}
	if cfg.Hold <= 0 {
		cfg.Hold = DefaultHold
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Governor{cfg: cfg, procs: cfg.Max}
}

// Run adjusts the processor count until ctx ends, then gives every
// processor back. It starts with all of them: a hub starting up (a
// migration, a fleet reconnecting) is busy. With a single core there is
// nothing to govern and Run only waits.
func (g *Governor) Run(ctx context.Context) {
	if g.cfg.Max <= 1 {
		<-ctx.Done()
		return
	}
	defer g.set(g.cfg.Max)

	tick := time.NewTicker(g.cfg.Interval)
	defer tick.Stop()

	g.lastCPU = g.cfg.CPU()
	g.restartWindow(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			g.step(now)
		}
	}
}

// step reads the CPU used since the last tick and decides.
func (g *Governor) step(now time.Time) {
	cpu := g.cfg.CPU()
	share := float64(cpu-g.lastCPU) / float64(g.cfg.Interval)
	g.lastCPU = cpu

	if g.procs == 1 {
		if share > g.cfg.Raise {
			g.set(g.cfg.Max)
			g.restartWindow(now)
		}
		return
	}

	elapsed := now.Sub(g.windowStart)
	if elapsed < g.cfg.Hold {
		return
	}
	windowShare := float64(cpu-g.windowStartCPU) / float64(elapsed)
	if windowShare < g.cfg.Lower {
		g.set(1)
	}
	g.restartWindow(now)
}

func (g *Governor) restartWindow(now time.Time) {
	g.windowStart = now
	g.windowStartCPU = g.lastCPU
}

func (g *Governor) set(n int) {
	if n == g.procs {
		return
	}
	g.cfg.Set(n)
	g.cfg.Logger.Debug("processors", "from", g.procs, "to", n)
	g.procs = n
}

// processCPU is the user and system time of this process. getrusage of
// the calling process fails only with bad arguments; should it fail, the
// governor sees no CPU used and lowers, which costs speed, never data.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
