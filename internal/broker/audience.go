package broker

import (
	"sync"
	"sync/atomic"
	"time"
)

// audience remembers which topics have a subscriber, so that a publisher
// can skip a message nobody receives (the processed echo of
// docs/protocol.md §3.2.11: no firmware subscribes to it, yet building and routing it cost
// about a fifth of a reading's handling at 1,000 devices,
// docs/decisions/0028-footprint-per-message.md).
//
// Any subscription change bumps the generation and forgets every answer.
// Answers also age out after audienceTTL: a subscription that appears by
// a path without a hook (mochi's own session handling) is heard within
// that time; a stale "yes" only costs a publish nobody receives.
type audience struct {
	gen atomic.Uint64

	mu    sync.Mutex
	valid uint64    // generation the answers belong to
	since time.Time // when the answers started
	known map[string]bool
}

const (
	audienceTTL = 5 * time.Second

	// audienceMax bounds the remembered topics (one per series at most;
	// the series cap is far below it).
	audienceMax = 1 << 17
)

// changed records a subscription change.
func (a *audience) changed() { a.gen.Add(1) }

// has answers for topic, asking lookup when the answer is not known.
func (a *audience) has(topic string, now time.Time, lookup func() bool) bool {
	gen := a.gen.Load()

	a.mu.Lock()
	if a.known == nil || a.valid != gen || now.Sub(a.since) >= audienceTTL || len(a.known) >= audienceMax {
		a.known = make(map[string]bool)
		a.valid = gen
		a.since = now
	}
	ans, ok := a.known[topic]
	a.mu.Unlock()
	if ok {
		return ans
	}

	ans = lookup()

	a.mu.Lock()
	if a.valid == gen && a.known != nil {
		a.known[topic] = ans
	}
	a.mu.Unlock()
	return ans
}
