package ingest

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// steppedClock is a wall clock that an NTP step moves by offset once
// stepped is set; like a real step, it has no monotonic reading.
type steppedClock struct {
	offset  time.Duration
	stepped atomic.Bool
}

func (c *steppedClock) now() time.Time {
	if c.stepped.Load() {
		return time.Now().Add(c.offset).Round(0)
	}
	return time.Now().Round(0)
}

// The watchdog measures a handler's run on the monotonic clock: a wall
// clock stepped an hour ahead while a handler runs detaches no worker, and
// one stepped an hour back still detaches a handler that ignores its
// deadline.
func TestWatchdogIgnoresWallClockSteps(t *testing.T) {
	for _, tc := range []struct {
		name     string
		offset   time.Duration
		stuck    bool
		detached float64
	}{
		{"forward step, healthy handler", time.Hour, false, 0},
		{"backward step, stuck handler", -time.Hour, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				clock := &steppedClock{offset: tc.offset}
				d, m := newTestDispatcher(t, Config{Workers: 1, HandlerTimeout: 5 * time.Second})
				d.now = clock.now
				release := make(chan struct{})
				d.Handle(contract.KindHeartbeat, func(ctx context.Context, _ Message) error {
					clock.stepped.Store(true) // the step happens while the handler runs
					if tc.stuck {
						<-release // ignores its deadline
						return nil
					}
					time.Sleep(3 * time.Second) // slow, but within its 5 s
					return nil
				})
				d.Start()
				d.Submit(hbTopic("DEV"), []byte("{}"), false, false)
				time.Sleep(10 * time.Second) // several watchdog periods past the limit
				synctest.Wait()
				if got := testCount(m.Detached); got != tc.detached {
					t.Errorf("workers detached: %v, want %v", got, tc.detached)
				}
				close(release)
				stop(t, d)
			})
		})
	}
}
