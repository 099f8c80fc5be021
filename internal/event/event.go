// Package event is the hub's internal live-event stream: domain packages
// publish typed device, sensor and system events, consumers (the WebSocket
// live feed, the audit log, tests) subscribe. Publishing never waits for a
// subscriber: an inbox that is full loses the event, and the loss is
// counted; a tap runs on the publisher's goroutine and must itself return
// at once.
//
// Every event type is a Type constant with one payload struct whose JSON is
// the `data` object of the WebSocket envelope (docs/api.md §17.5).
//
// Replicas of one site relay their events to each other (internal/relay):
// such a remote event, already acted on by the replica it happened on,
// reaches only the subscriptions made with SubscribeWithRemote or
// TapWithRemote, so the watchers that act on events (audit, zones,
// actuators, emergencies) never act twice. Encode and Decode carry an
// event across processes.
package event

import (
	"sync"
	"sync/atomic"
	"time"
)

// Type names a kind of event; the values are the wire names of docs/api.md §17.5.
type Type string

// The event types. The actuator, command and emergency types have no
// emitter yet; the live feed already treats them by name (coalescing,
// priority), so the names exist before their payloads.
const (
	TypeSensorData         Type = "sensor_data"
	TypeSensorHealth       Type = "sensor_health"
	TypeEspHealth          Type = "esp_health"
	TypeDeviceStatus       Type = "device_status"
	TypeDeviceDiscovered   Type = "device_discovered"
	TypeDeviceRediscovered Type = "device_rediscovered"
	TypeDeviceApproved     Type = "device_approved"
	TypeDeviceRejected     Type = "device_rejected"
	TypeConfigResponse     Type = "config_response"
	TypeNotification       Type = "notification"
	TypeSystemEvent        Type = "system_event"
	TypeActuatorStatus     Type = "actuator_status"
	TypeCommandStatus      Type = "command_status"
	TypeEmergency          Type = "emergency"
)

// Payload is the typed content of an event; its type follows from it, so an
// event cannot carry the payload of another type.
type Payload interface {
	EventType() Type
}

// Event is one live event.
type Event struct {
	Time time.Time
	Data Payload
	// Remote marks an event that happened on another replica and was
	// relayed here; only subscriptions made with SubscribeWithRemote get it.
	Remote bool
}

// Type is the type of e's payload ("" without one).
func (e Event) Type() Type {
	if e.Data == nil {
		return ""
	}
	return e.Data.EventType()
}

// Bus fans events out to subscribers. The subscriber list is copied on
// every change and read without a lock, so Publish never waits for a
// Subscribe, and a tap may subscribe or unsubscribe from inside its
// function.
type Bus struct {
	mu   sync.Mutex // serialises changes of subs
	subs atomic.Pointer[[]*Subscription]
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{} }

// Subscription is one consumer's bounded inbox, or its tap.
type Subscription struct {
	C       <-chan Event
	ch      chan Event
	tap     func(Event)   // set for Tap: called by Publish instead of ch
	types   map[Type]bool // nil = every type
	remote  bool          // takes remote events too
	dropped atomic.Int64
}

// Dropped counts events this subscriber missed because its inbox was full.
func (s *Subscription) Dropped() int64 { return s.dropped.Load() }

func (s *Subscription) takes(t Type) bool { return s.types == nil || s.types[t] }

// Subscribe returns a subscription with an inbox of size buffer; with
// types it receives only those event types. It receives the events of this
// process only, never remote ones.
func (b *Bus) Subscribe(buffer int, types ...Type) *Subscription {
	ch := make(chan Event, buffer)
	return b.add(&Subscription{C: ch, ch: ch}, types)
}

// SubscribeWithRemote is Subscribe for a consumer that also takes the
// remote events relayed from other replicas (Event.Remote), such as the
// WebSocket live feed, whose clients may be connected to any replica.
func (b *Bus) SubscribeWithRemote(buffer int, types ...Type) *Subscription {
	ch := make(chan Event, buffer)
	return b.add(&Subscription{C: ch, ch: ch, remote: true}, types)
}

// Tap subscribes fn to the local events of types (every type without
// any); see TapWithRemote.
func (b *Bus) Tap(fn func(Event), types ...Type) *Subscription {
	return b.add(&Subscription{tap: fn}, types)
}

// TapWithRemote subscribes fn, local and remote events of types (every
// type without any). Publish calls fn on the publisher's goroutine, so fn
// must return at once and never block: it is for consumers that only
// sort an event into queues of their own, and spares every event the
// wake-up of a goroutine that would do just that
// (docs/decisions/0032-fewer-hand-offs.md). fn may run concurrently, and
// once more after Unsubscribe by a Publish already under way.
func (b *Bus) TapWithRemote(fn func(Event), types ...Type) *Subscription {
	return b.add(&Subscription{tap: fn, remote: true}, types)
}

func (b *Bus) add(s *Subscription, types []Type) *Subscription {
	if len(types) > 0 {
		s.types = map[Type]bool{}
		for _, t := range types {
			s.types[t] = true
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.list()
	subs := append(old[:len(old):len(old)], s) // a new array: readers hold the old one
	b.subs.Store(&subs)
	return s
}

// Unsubscribe removes s; its channel is not closed, so pending receives simply stop.
func (b *Bus) Unsubscribe(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var subs []*Subscription
	for _, other := range b.list() {
		if other != s {
			subs = append(subs, other)
		}
	}
	b.subs.Store(&subs)
}

// list is the current subscribers; the slice is never modified.
func (b *Bus) list() []*Subscription {
	if p := b.subs.Load(); p != nil {
		return *p
	}
	return nil
}

// Wants reports whether any subscriber takes local events of type t, so
// hot paths can skip building events nobody receives.
func (b *Bus) Wants(t Type) bool {
	for _, s := range b.list() {
		if s.takes(t) {
			return true
		}
	}
	return false
}

// Publish delivers e to every subscriber that takes it, without blocking.
func (b *Bus) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	t := e.Type()

	for _, s := range b.list() {
		if !s.takes(t) || e.Remote && !s.remote {
			continue
		}
		if s.tap != nil {
			s.tap(e)
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
		}
	}
}
