package relay

import (
	"fmt"
	"testing"

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
