package ingest

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// Two publishers waiting for a slot of one device's full queue both get
// in once the queue drains, however the worker's pops and their wake-ups
// interleave: before, only a pop from a full queue woke a waiter, so when
// the worker emptied the queue before the first waiter got back in (the
// queue is then dropped, and the first waiter makes a new one), the second
// slept out its BlockingWait and its heartbeat was dropped.
func TestWaitersOfADrainedQueueAllGetIn(t *testing.T) {
	for name, submit := range map[string]func(d *Dispatcher, payload string){
		"QoS 0 (BlockingWait)": func(d *Dispatcher, p string) { d.Submit(hbTopic("HB"), []byte(p), false, false) },
		"QoS 1 (settled, until its deadline)": func(d *Dispatcher, p string) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, _ = d.SubmitSettled(ctx, hbTopic("HB"), []byte(p), false)
		},
	} {
		t.Run(name, func(t *testing.T) { drainWithTwoWaiters(t, submit) })
	}
}

func drainWithTwoWaiters(t *testing.T, submit func(d *Dispatcher, payload string)) {
	synctest.Test(t, func(t *testing.T) {
		for round := range 200 {
			d, _ := newTestDispatcher(t, Config{Workers: 1, QueueCapacity: 1, BlockingWait: time.Second})
			gate := make(chan struct{})
			d.Handle(contract.KindHeartbeat, func(_ context.Context, m Message) error {
				if string(m.Payload) == "0" {
					<-gate
				}
				return nil
			})
			d.Start()
			d.Submit(hbTopic("HB"), []byte("0"), false, false) // in flight, held
			synctest.Wait()
			d.Submit(hbTopic("HB"), []byte("1"), false, false) // fills the queue
			var waiters sync.WaitGroup
			for _, p := range []string{"2", "3"} {
				waiters.Go(func() { submit(d, p) })
			}
			synctest.Wait() // both wait for a slot

			close(gate)
			waiters.Wait() // in, or dropped after BlockingWait
			stop(t, d)
			if c := d.DeviceCounters("HB"); c.Processed != 4 || c.Dropped[contract.ReasonQueueOverflow] != 0 {
				t.Fatalf("round %d: counters %+v, want 4 processed and none dropped", round, c)
			}
		}
	})
}
