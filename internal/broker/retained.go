package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// retainedBudget accounts the retained store by topic, so a retained
// message beyond the bound can be delivered live without being stored
// (docs/protocol.md M5: every baseline publish carries RETAIN, Q1, so
// refusing one would drop device data). Sizes are topic + payload bytes.
type retainedBudget struct {
	mu       sync.Mutex
	maxCount int
	maxBytes int
	sizes    map[string]int
	bytes    int
}

func newRetainedBudget(maxCount, maxBytes int) *retainedBudget {
	return &retainedBudget{maxCount: maxCount, maxBytes: maxBytes, sizes: map[string]int{}}
}

// admit decides whether a retained publish on topic may be stored and
// books it if so; an empty payload clears the topic and is always admitted.
// A publish that does not fit frees its topic's older copy (evict), so the
// store never replays a message older than one delivered live since.
// force books hub messages whatever the bound.
func (r *retainedBudget) admit(topic string, payloadLen int, force bool) (ok, evict bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, had := r.sizes[topic]
	if payloadLen == 0 {
		r.forget(topic)
		return true, false
	}
	size := len(topic) + payloadLen
	count := len(r.sizes)
	if !had {
		count++
	}
	if !force && (count > r.maxCount || r.bytes-old+size > r.maxBytes) {
		if had {
			r.forget(topic)
		}
		return false, had
	}
	r.bytes += size - old
	r.sizes[topic] = size
	return true, false
}

// forget drops a topic's booking; r.mu is held.
func (r *retainedBudget) forget(topic string) {
	r.bytes -= r.sizes[topic]
	delete(r.sizes, topic)
}

// expired forgets a topic the broker removed by itself (message expiry).
func (r *retainedBudget) expired(topic string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forget(topic)
}

// held is the booked number of messages and bytes.
func (r *retainedBudget) held() (count, bytes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sizes), r.bytes
}

// ownRetained are the hub's own retained messages (server/status,
// docs/protocol.md §3.2.11), kept for the hub's whole life. mochi removes every retained
// message older than its maximum message expiry (an hour here, which
// bounds what devices leave behind); the hub's own would go with them and
// newer firmware subscribing later would never learn the hub is online.
// When mochi expires one, the hub's copy is stored again at once.
type ownRetained struct {
	mu  sync.Mutex
	pks map[string]packets.Packet
}

// note remembers what the hub retained on a topic; an empty payload clears it.
func (o *ownRetained) note(pk packets.Packet) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(pk.Payload) == 0 {
		delete(o.pks, pk.TopicName)
		return
	}
	if o.pks == nil {
		o.pks = map[string]packets.Packet{}
	}
	o.pks[pk.TopicName] = pk.Copy(false)
}

// get is the hub's retained message on topic, if it has one.
func (o *ownRetained) get(topic string) (packets.Packet, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	pk, ok := o.pks[topic]
	if ok {
		pk = pk.Copy(false)
	}
	return pk, ok
}

// renewOwn stores the hub's own retained message on topic again after
// mochi expired it, dated now; a topic the hub did not retain is left gone.
// Subscribers are not sent it again: nothing changed for them.
func (e *Embedded) renewOwn(topic string) {
	pk, ok := e.own.get(topic)
	if !ok {
		return
	}
	pk.Created, pk.Expiry = time.Now().Unix(), 0
	e.retained.admit(topic, len(pk.Payload), true)
	e.server.Topics.RetainMessage(pk)
	atomic.StoreInt64(&e.server.Info.Retained, int64(e.server.Topics.Retained.Len()))
}
