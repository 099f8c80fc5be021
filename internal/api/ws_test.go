package api

import (
	"strings"
	"testing"
)

// State messages with the same key replace the queued one in place; event
// messages are never coalesced; emergencies jump the queue.
func TestWSQueueCoalescesStateMessages(t *testing.T) {
	h := &wsHub{cfg: WSConfig{}}
	h.cfg.defaults()
	c := &wsConn{hub: h, wake: make(chan struct{}, 1), done: make(chan struct{})}
	msg := func(typ, key, body string) *outMsg { return &outMsg{typ: typ, key: key, data: []byte(body)} }
	data := map[string]any{"esp_id": "E1", "gpio": 34, "sensor_type": "ph"}
	c.offer(msg("sensor_data", "k1", "v1"), data)
	c.offer(msg("system_event", "", "e1"), data)
	c.offer(msg("sensor_data", "k1", "v2"), data)
	c.offer(msg("sensor_data", "k2", "w1"), data)
	c.offer(msg("sensor_data", "k1", "v3"), data)
	c.offer(msg("emergency", "", "stop"), data)
	var got []string
	for {
		m, _ := c.next()
		if m == nil {
			break
		}
		got = append(got, string(m.data))
	}
	if strings.Join(got, ",") != "stop,v3,e1,w1" {
		t.Fatalf("order %v", got)
	}
	if h.coalesced.Load() != 2 {
		t.Fatalf("coalesced %d", h.coalesced.Load())
	}
	// Filters apply before queueing: a filtered-out message costs nothing.
	c.filter = filters{EspIDs: []string{"E2"}}
	c.offer(msg("sensor_data", "k9", "x"), data)
	if m, _ := c.next(); m != nil {
		t.Fatalf("filtered message queued: %s", m.data)
	}
}
