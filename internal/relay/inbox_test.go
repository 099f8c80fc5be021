package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/event"
)

func woken(in *inbox) bool {
	select {
	case <-in.wake:
		return true
	default:
		return false
	}
}

// The sender is woken when the inbox stops being empty and when it holds
// a notification's worth, not for the events in between.
func TestInboxWakesPerNotificationNotPerEvent(t *testing.T) {
	in := newInbox(100, 30) // full at 30 bytes: three 9-byte events with their commas

	in.put([]byte("event-000"))
	if !woken(in) {
		t.Fatal("first event did not wake the sender")
	}
	in.put([]byte("event-001"))
	if woken(in) {
		t.Fatal("second event woke the sender")
	}
	if in.full() {
		t.Fatal("full after 20 bytes")
	}
	in.put([]byte("event-002"))
	if !woken(in) || !in.full() {
		t.Fatal("a notification's worth did not wake the sender")
	}
	in.put([]byte("event-003"))
	if woken(in) {
		t.Fatal("an event beyond full woke the sender again")
	}

	got := in.take(nil)
	if fmt.Sprintf("%s", got) != "[event-000 event-001 event-002 event-003]" {
		t.Fatalf("took %s", got)
	}
	if in.len() != 0 || in.full() {
		t.Fatal("inbox not empty after take")
	}
	in.put([]byte("event-004"))
	if !woken(in) {
		t.Fatal("first event after a take did not wake the sender")
	}
}

// A full inbox refuses, and the relay counts the event as queue_full.
func TestFullInboxDropsAndCounts(t *testing.T) {
	r := &Relay{cfg: Config{QueueSize: 2}, overhead: 64}
	s := newSender(r)
	for i := 0; i < 3; i++ {
		s.offer(event.Event{Data: event.SystemEvent{Event: fmt.Sprint(i)}})
	}
	if n := s.in.len(); n != 2 {
		t.Fatalf("inbox holds %d events, want 2", n)
	}
	if got := r.dropped[dropQueueFull].Load(); got != 1 {
		t.Fatalf("queue_full drops %d, want 1", got)
	}
}

// notification is what the sender's loop handed to notify.
type notification struct {
	Seq    uint64            `json:"seq"`
	Events []json.RawMessage `json:"events"`
}

// recorded are the notifications a sender handed over.
type recorded struct {
	mu   sync.Mutex
	sent []notification
}

func (r *recorded) all() []notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notification(nil), r.sent...)
}

// loopSender is a sender whose notifications are recorded instead of sent.
func loopSender(t *testing.T, bus *event.Bus) (*sender, *recorded) {
	t.Helper()
	r, err := New(Config{DSN: "postgres://relay@127.0.0.1:1/kaiser", Bus: bus, Origin: "a", MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s := newSender(r)
	rec := &recorded{}
	s.notify = func(_ context.Context, p []byte) error {
		var n notification
		if err := json.Unmarshal(p, &n); err != nil {
			t.Errorf("notification %q: %v", p, err)
		}
		rec.mu.Lock()
		rec.sent = append(rec.sent, n)
		rec.mu.Unlock()
		return nil
	}
	return s, rec
}

func counts(sent []notification) []int {
	var out []int
	for _, n := range sent {
		out = append(out, len(n.Events))
	}
	return out
}

// The sender waits MaxDelay for events to share a notification, sends at
// once what fills one, and numbers them without gaps.
func TestSenderBatchesByDelayAndSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := event.NewBus()
		s, rec := loopSender(t, bus)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.run(ctx) }()
		synctest.Wait()

		for i := 0; i < 3; i++ {
			bus.Publish(event.Event{Time: time.Unix(1, 0), Data: event.SystemEvent{Event: "small"}})
		}
		synctest.Wait()
		if len(rec.all()) != 0 {
			t.Fatalf("sent %v before MaxDelay", counts(rec.all()))
		}
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		if got := counts(rec.all()); len(got) != 1 || got[0] != 3 {
			t.Fatalf("after MaxDelay: notifications of %v events, want [3]", got)
		}

		// More than a notification holds: the full ones go at once, the
		// rest after MaxDelay.
		big := event.SystemEvent{Event: strings.Repeat("x", 1000)}
		for i := 0; i < 10; i++ {
			bus.Publish(event.Event{Time: time.Unix(1, 0), Data: big})
		}
		synctest.Wait()
		full := len(rec.all()) - 1
		if full < 1 {
			t.Fatal("a full inbox was not sent before MaxDelay")
		}
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		total := 0
		for i, n := range rec.all() {
			if n.Seq != uint64(total) {
				t.Fatalf("notification %d numbered %d, want %d", i, n.Seq, total)
			}
			total += len(n.Events)
		}
		if total != 13 || len(rec.all()) != full+2 {
			t.Fatalf("notifications of %v events; want 13 in all, the rest of the burst in one", counts(rec.all()))
		}

		// Stopping sends what waits, and counts what comes after.
		bus.Publish(event.Event{Time: time.Unix(1, 0), Data: event.SystemEvent{Event: "last"}})
		cancel()
		<-done
		if got := counts(rec.all()); got[len(got)-1] != 1 {
			t.Fatalf("the event before the stop was not sent: %v", got)
		}
		s.offer(event.Event{Time: time.Unix(1, 0), Data: event.SystemEvent{Event: "late"}})
		if got := s.r.dropped[dropSendFailed].Load(); got != 1 {
			t.Fatalf("an event after the stop counted %d times as send_failed, want 1", got)
		}
	})
}
