package broker

import "sync"

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
