package ingest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/store"
)

type settledResult struct {
	reason string
	err    error
}

func submitSettled(ctx context.Context, d *Dispatcher, topic, payload string) <-chan settledResult {
	out := make(chan settledResult, 1)
	go func() {
		reason, err := d.SubmitSettled(ctx, topic, []byte(payload), false)
		out <- settledResult{reason, err}
	}()
	return out
}

// A message whose publisher waits is never evicted by drop-oldest, and a
// full queue makes it wait for space instead of dropping it; a wait that
// outlasts the publisher's deadline is counted and reported unsettled.
func TestSettledMessagesWaitAndAreNeverEvicted(t *testing.T) {
	d, _ := newTestDispatcher(t, Config{Workers: 1, QueueCapacity: 4})
	gate := make(chan struct{})
	var mu sync.Mutex
	var got []string
	d.Handle(contract.KindSensorData, func(_ context.Context, m Message) error {
		<-gate
		mu.Lock()
		got = append(got, string(m.Payload))
		mu.Unlock()
		return nil
	})
	d.Start()

	d.Submit(dataTopic("DEV"), []byte("s0"), false, false)
	first := submitSettled(context.Background(), d, dataTopic("DEV"), "q1")
	waitFor(t, func() bool { return d.Pending() == 2 })
	for i := 1; i < 10; i++ { // QoS 0 telemetry overflows the queue of 4
		d.Submit(dataTopic("DEV"), []byte("s"+strconv.Itoa(i)), false, false)
	}
	waitFor(t, func() bool { return d.DeviceCounters("DEV").Dropped[contract.ReasonQueueOverflow] > 0 })

	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if reason, err := d.SubmitSettled(gone, dataTopic("DEV"), []byte("late"), false); !errors.Is(err, ErrUnsettled) {
		t.Fatalf("settled message on a full queue past its deadline: %q, %v", reason, err)
	}
	second := submitSettled(context.Background(), d, dataTopic("DEV"), "q2")

	close(gate)
	for _, ch := range []<-chan settledResult{first, second} {
		select {
		case r := <-ch:
			if r.reason != "" || r.err != nil {
				t.Fatalf("settled message: %q, %v", r.reason, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a waited-for message was never settled (evicted?)")
		}
	}
	stop(t, d)
	mu.Lock()
	defer mu.Unlock()
	handled := map[string]bool{}
	for _, p := range got {
		handled[p] = true
	}
	if !handled["q1"] || !handled["q2"] || handled["late"] {
		t.Fatalf("handled %v: both waited-for messages must be, the late one not", got)
	}
	c := d.DeviceCounters("DEV")
	if c.Processed+c.Dropped[contract.ReasonQueueOverflow] != c.Received {
		t.Fatalf("counters %+v do not add up", c)
	}
}

// SubmitSettled returns only once the writes the handler queued are
// committed, though the handler itself returned before; a failed write
// means not stored, a drop its counted reason.
func TestSettledWaitsForTheHandlersCommits(t *testing.T) {
	d, _ := newTestDispatcher(t, Config{Workers: 2})
	commits := make(chan func(error), 1)
	returned := make(chan struct{}, 1)
	d.Handle(contract.KindSensorData, func(ctx context.Context, _ Message) error {
		commits <- store.CommitsFrom(ctx).Track() // a write queued, committed later
		returned <- struct{}{}
		return nil
	})
	d.Handle(contract.KindHeartbeat, func(context.Context, Message) error {
		return Drop(contract.ReasonNotApproved, "pending")
	})
	d.Start()
	defer stop(t, d)

	res := submitSettled(context.Background(), d, dataTopic("DEV"), "{}")
	commit := <-commits
	<-returned
	select {
	case r := <-res:
		t.Fatalf("settled before the commit: %+v", r)
	default:
	}
	commit(nil)
	if r := <-res; r.reason != "" || r.err != nil {
		t.Fatalf("after the commit: %+v", r)
	}

	res = submitSettled(context.Background(), d, dataTopic("DEV"), "{}")
	(<-commits)(errors.New("disk full"))
	<-returned
	if r := <-res; !errors.Is(r.err, ErrNotStored) {
		t.Fatalf("after a failed commit: %+v", r)
	}

	if reason, err := d.SubmitSettled(context.Background(), hbTopic("DEV"), []byte("{}"), false); reason != contract.ReasonNotApproved || err != nil {
		t.Fatalf("dropped message: %q, %v", reason, err)
	}
	if reason, err := d.SubmitSettled(context.Background(), hbTopic("DEV"), nil, false); reason != contract.ReasonEmpty || err != nil {
		t.Fatalf("empty payload: %q, %v", reason, err)
	}
}
