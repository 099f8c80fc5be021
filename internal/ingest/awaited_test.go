package ingest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/store"
)

// SubmitAwaited returns once the message is queued, before its handler
// runs, so messages handed over one after the other keep their order with
// QoS 0 ones in between; Wait returns only once the handler's writes are
// committed, and a failed write is reported as not stored.
func TestAwaitedKeepsArrivalOrderAndWaitsForCommits(t *testing.T) {
	d, _ := newTestDispatcher(t, Config{Workers: 4})
	gate := make(chan struct{})
	var mu sync.Mutex
	var order []string
	commits := make(chan func(error), 8)
	d.Handle(contract.KindSensorData, func(ctx context.Context, m Message) error {
		<-gate
		mu.Lock()
		order = append(order, string(m.Payload))
		mu.Unlock()
		if c := store.CommitsFrom(ctx); c != nil {
			commits <- c.Track()
		}
		return nil
	})
	d.Start()
	defer stop(t, d)

	a1 := d.SubmitAwaited(dataTopic("DEV"), []byte("1"), false) // returns with the handler blocked
	d.Submit(dataTopic("DEV"), []byte("2"), false, false)
	a3 := d.SubmitAwaited(dataTopic("DEV"), []byte("3"), false)

	res := make(chan error, 2)
	for _, a := range []*Awaited{a1, a3} {
		go func() {
			_, err := a.Wait(context.Background())
			res <- err
		}()
	}
	close(gate)
	first, second := <-commits, <-commits
	select {
	case err := <-res:
		t.Fatalf("settled before its commit: %v", err)
	default:
	}
	first(nil)
	second(errors.New("disk full"))
	got := []error{<-res, <-res}
	if !(got[0] == nil && errors.Is(got[1], ErrNotStored) || got[1] == nil && errors.Is(got[0], ErrNotStored)) {
		t.Fatalf("outcomes %v: want one committed and one not stored", got)
	}
	waitFor(t, func() bool { return d.Pending() == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 3 || order[0] != "1" || order[1] != "2" || order[2] != "3" {
		t.Fatalf("handled in order %v, want [1 2 3]", order)
	}
}

// A message that ends at hand-over carries its counted reason at once; on a
// full queue an awaited message gets its kind's policy (telemetry is
// dropped when every queued message is awaited), and once queued it is
// never evicted by QoS 0 telemetry.
func TestAwaitedDropsAndFullQueue(t *testing.T) {
	d, _ := newTestDispatcher(t, Config{Workers: 1, QueueCapacity: 2})
	gate, entered := make(chan struct{}), make(chan struct{}, 8)
	d.Handle(contract.KindSensorData, func(context.Context, Message) error {
		entered <- struct{}{}
		<-gate
		return nil
	})
	d.Start()
	defer stop(t, d)

	if r, err := d.SubmitAwaited(hbTopic("DEV"), nil, false).Wait(context.Background()); r != contract.ReasonEmpty || err != nil {
		t.Fatalf("empty payload: %q %v", r, err)
	}
	if r, _ := d.SubmitAwaited("kaiser/god/esp/DEV/nothing", []byte("{}"), false).Wait(context.Background()); r != contract.ReasonUnknownTopic {
		t.Fatalf("unknown topic: %q", r)
	}

	held := d.SubmitAwaited(dataTopic("DEV"), []byte("in handler"), false)
	<-entered
	queued := []*Awaited{
		d.SubmitAwaited(dataTopic("DEV"), []byte("q1"), false),
		d.SubmitAwaited(dataTopic("DEV"), []byte("q2"), false),
	}
	for i := 0; i < 5; i++ {
		d.Submit(dataTopic("DEV"), []byte("s"+strconv.Itoa(i)), false, false)
	}
	if r, _ := d.SubmitAwaited(dataTopic("DEV"), []byte("q3"), false).Wait(context.Background()); r != contract.ReasonQueueOverflow {
		t.Fatalf("awaited message on a queue full of awaited ones: %q", r)
	}
	close(gate)
	for _, a := range append(queued, held) {
		if r, err := a.Wait(context.Background()); r != "" || err != nil {
			t.Fatalf("queued awaited message: %q %v (evicted?)", r, err)
		}
	}
}
