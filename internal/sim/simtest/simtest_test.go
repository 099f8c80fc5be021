package simtest

import (
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/sim"
)

// An Await from a mark sees only what came after it, is woken by a message
// that arrives while it waits, and returns the position after its match.
func TestRecorderAwaitsFromAMark(t *testing.T) {
	r := NewRecorder("ESP_000001", 5*time.Second)
	in := func(topic string) sim.Message { return sim.Message{Topic: topic, Direction: "in"} }
	is := func(topic string) func(sim.Message) bool {
		return func(m sim.Message) bool { return m.Topic == topic }
	}
	r.Observe(in("a"))
	from := r.Mark()
	go func() {
		r.Observe(in("b"))
		r.Observe(in("a"))
	}()
	m, next := r.Await(t, from, "the second a", is("a"))
	if m.Topic != "a" || next != 3 {
		t.Fatalf("got %+v at %d, want the a at position 2", m, next-1)
	}
	if got := r.Since(from, is("b")); len(got) != 1 {
		t.Fatalf("since the mark: %d b, want 1", len(got))
	}
	if got := r.Since(next, is("a")); len(got) != 0 {
		t.Fatalf("after the match: %+v, want nothing", got)
	}
}
