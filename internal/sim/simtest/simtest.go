// Package simtest records what a simulated node (internal/sim) sent and
// received, for tests: a test marks a position in the node's traffic, acts,
// and awaits the message it expects from that position on, woken by every
// new message instead of sleeping.
package simtest

import (
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/sim"
)

// Recorder is the log of the messages a node handled or sent, in their
// order. Its Observe is the node's sim.NodeConfig.Observe.
type Recorder struct {
	node string        // the node's id, in failures
	wait time.Duration // how long Await waits

	mu      sync.Mutex
	log     []sim.Message
	changed chan struct{} // closed and replaced on every message
}

// NewRecorder records the traffic of the node with id node; Await waits
// up to wait for a message.
func NewRecorder(node string, wait time.Duration) *Recorder {
	return &Recorder{node: node, wait: wait, changed: make(chan struct{})}
}

// Observe records m and wakes every Await.
func (r *Recorder) Observe(m sim.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, m)
	close(r.changed)
	r.changed = make(chan struct{})
}

// Mark is the position in the node's traffic that later awaits start from.
func (r *Recorder) Mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.log)
}

// Await returns the first message from position from on that match
// accepts, and the position after it; it fails t when none comes within
// the recorder's wait.
func (r *Recorder) Await(t testing.TB, from int, what string, match func(sim.Message) bool) (sim.Message, int) {
	t.Helper()
	return r.AwaitWithin(t, from, what, match, r.wait)
}

// AwaitWithin is Await with a wait of its own.
func (r *Recorder) AwaitWithin(t testing.TB, from int, what string, match func(sim.Message) bool,
	within time.Duration) (sim.Message, int) {
	t.Helper()
	deadline := time.After(within)
	for {
		r.mu.Lock()
		for i := from; i < len(r.log); i++ {
			if match(r.log[i]) {
				m := r.log[i]
				r.mu.Unlock()
				return m, i + 1
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: not seen on %s within %s", what, r.node, within)
		}
	}
}

// Since returns the messages from position from on that match accepts.
func (r *Recorder) Since(from int, match func(sim.Message) bool) []sim.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sim.Message
	for _, m := range r.log[min(from, len(r.log)):] {
		if match(m) {
			out = append(out, m)
		}
	}
	return out
}

// Output is n's actuator on gpio as its hardware is; it fails t when n
// has none there.
func Output(t testing.TB, n *sim.Node, gpio int) sim.ActuatorState {
	t.Helper()
	for _, a := range n.Actuators() {
		if a.GPIO == gpio {
			return a
		}
	}
	t.Fatalf("%s has no actuator on GPIO %d", n.EspID(), gpio)
	return sim.ActuatorState{}
}
