package api

import (
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/event"
)

// State messages with the same key replace the queued one in place; event
// messages are never coalesced; emergencies jump the queue.
func TestWSQueueCoalescesStateMessages(t *testing.T) {
	h := &wsHub{cfg: WSConfig{}}
	h.cfg.defaults()
	c := &wsConn{hub: h, wake: make(chan struct{}, 1), done: make(chan struct{})}
	msg := func(typ event.Type, key, body string) *outMsg { return &outMsg{typ: typ, key: key, data: []byte(body)} }
	data := event.SensorData{EspID: "E1", GPIO: 34, SensorType: "ph"}
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

// The hub subscribes to the event stream only while connections exist; each
// detach must end its fan-out goroutine, or goroutines grow with every
// connect/disconnect cycle.
func TestWSAttachDetachLeavesNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newWSHub(WSConfig{}, event.NewBus(), nil, slog.New(slog.DiscardHandler))
	before := runtime.NumGoroutine()
	for i := 0; i < 100; i++ {
		h.mu.Lock()
		h.attach()
		h.detach()
		h.mu.Unlock()
	}
	// While the hub keeps running, the detached fan-outs must be gone.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before+1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+1 {
		t.Fatalf("%d goroutines after 100 attach/detach cycles, %d before", n, before)
	}
	h.closeAll()
}
