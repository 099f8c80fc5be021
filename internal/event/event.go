// Package event is the hub's internal live-event stream: domain packages
// publish device and system events, consumers (the WebSocket hub, tests)
// subscribe. Publishing never blocks; a subscriber that falls behind loses
// events, and the loss is counted.
package event

import (
	"sync"
	"sync/atomic"
	"time"
)

// Event is one live event; Type and Data follow API §17.5.
type Event struct {
	Type string
	Time time.Time
	Data map[string]any
}

// Bus fans events out to subscribers.
type Bus struct {
	mu   sync.RWMutex
	subs map[*Subscription]struct{}
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{subs: map[*Subscription]struct{}{}} }

// Subscription is one consumer's bounded inbox.
type Subscription struct {
	C       <-chan Event
	ch      chan Event
	types   map[string]bool // nil = every type
	dropped atomic.Int64
}

// Dropped counts events this subscriber missed because its inbox was full.
func (s *Subscription) Dropped() int64 { return s.dropped.Load() }

// Subscribe returns a subscription with an inbox of size buffer; with
// types it receives only those event types.
func (b *Bus) Subscribe(buffer int, types ...string) *Subscription {
	ch := make(chan Event, buffer)
	s := &Subscription{C: ch, ch: ch}
	if len(types) > 0 {
		s.types = map[string]bool{}
		for _, t := range types {
			s.types[t] = true
		}
	}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Unsubscribe removes s; its channel is not closed, so pending receives simply stop.
func (b *Bus) Unsubscribe(s *Subscription) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

// Wants reports whether any subscriber takes events of type t, so hot
// paths can skip building events nobody receives.
func (b *Bus) Wants(t string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		if s.types == nil || s.types[t] {
			return true
		}
	}
	return false
}

// Publish delivers e to every subscriber without blocking.
func (b *Bus) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		if s.types != nil && !s.types[e.Type] {
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
		}
	}
}
