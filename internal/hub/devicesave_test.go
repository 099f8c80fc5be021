package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
)

// An approval and a deletion made while the devices' heartbeats stream in
// are still in force after a restart (issue 9 item 3, issue 11). The race
// they must win: a heartbeat takes its record snapshot under the registry
// lock, the operator's change takes the lock next and is saved, and then the
// heartbeat's older snapshot reaches the store.
func TestOperatorChangesSurviveStreamingHeartbeatsAndRestart(t *testing.T) {
	dir := t.TempDir()
	operateWhileStreaming(t, dir)

	h, c := apiHub(t, Config{DataDir: dir})
	defer stopHub(t, h)
	tok := login(t, c, "operator", "Pass-word1")

	if r := c.do("GET", "/api/v1/esp/devices/ESP_APPROVE", tok, nil); r.status != 200 || r.body["status"] != "approved" {
		t.Errorf("approved device after restart: HTTP %d, status %v, approved_by %v",
			r.status, r.body["status"], r.body["approved_by"])
	}
	if r := c.do("GET", "/api/v1/esp/devices/ESP_DELETE", tok, nil); r.status != 404 {
		t.Errorf("deleted device after restart: HTTP %d, status %v", r.status, r.body["status"])
	}
	stored, err := h.Store.LoadDevices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range stored {
		if d.DeviceID == "ESP_DELETE" && d.Status != device.StatusDeleted {
			t.Errorf("stored record of the deleted device: %s", d.Status)
		}
	}
}

// operateWhileStreaming runs the first hub on dir: two devices stream
// heartbeats, one is approved and the other deleted while one of its
// heartbeats is between its snapshot and its save, and the hub stops.
func operateWhileStreaming(t *testing.T, dir string) {
	t.Helper()
	h, c := apiHub(t, Config{DataDir: dir})
	defer stopHub(t, h)
	_, tok, _ := setupUsers(t, c)
	statuses := h.Events.Subscribe(256, event.TypeDeviceStatus)
	defer h.Events.Unsubscribe(statuses)

	holdApprove, holdDelete := holdAck(t, h, "ESP_APPROVE"), holdAck(t, h, "ESP_DELETE")
	defer holdApprove.free()
	defer holdDelete.free()
	deleting := startStream(t, h, "ESP_DELETE")
	awaitEvent(t, statuses, 5*time.Second, statusIs("ESP_DELETE", device.StatusPending, "discovered"))
	if r := c.do("POST", "/api/v1/esp/devices/ESP_DELETE/approve", tok, nil); r.status != 200 {
		t.Fatalf("approve ESP_DELETE: %d %s", r.status, r.raw)
	}
	awaitEvent(t, statuses, 5*time.Second, statusIs("ESP_DELETE", device.StatusOnline, "heartbeat"))
	approving := startStream(t, h, "ESP_APPROVE")
	awaitEvent(t, statuses, 5*time.Second, statusIs("ESP_APPROVE", device.StatusPending, "discovered"))

	amid(t, holdApprove, approving, func() {
		if r := c.do("POST", "/api/v1/esp/devices/ESP_APPROVE/approve", tok, nil); r.status != 200 {
			t.Errorf("approve ESP_APPROVE: %d %s", r.status, r.raw)
		}
	})
	amid(t, holdDelete, deleting, func() {
		if r := c.do("DELETE", "/api/v1/esp/devices/ESP_DELETE", tok, nil); r.status != 204 {
			t.Errorf("delete ESP_DELETE: %d %s", r.status, r.raw)
		}
	})

	// Memory has the operator's changes; the restart shows what the store has.
	if d, err := h.Devices.Get("ESP_APPROVE"); err != nil || d.Status != device.StatusApproved {
		t.Errorf("ESP_APPROVE in memory: %s %v", d.Status, err)
	}
	if _, err := h.Devices.Get("ESP_DELETE"); !errors.Is(err, device.ErrNotFound) {
		t.Errorf("ESP_DELETE in memory: %v, want not found", err)
	}
}

// amid runs op while one heartbeat of s is held between its snapshot and
// its save, then lets that heartbeat finish as the stream's last one: a
// later heartbeat would save a fresh record and hide a lost change (a real
// device's next heartbeat comes 60 s later; a restart can come first).
func amid(t *testing.T, hold *ackHold, s *stream, op func()) {
	t.Helper()
	hold.arm()
	select {
	case <-hold.held:
	case err := <-s.done:
		t.Fatalf("stream ended before a heartbeat was held: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat held within 5 s")
	}

	s.stop.Store(true)
	op()
	hold.free()
	if err := <-s.done; err != nil {
		t.Fatal(err)
	}
}

// ackHold holds the hub inside its handling of one heartbeat of a device.
// The hub publishes the heartbeat ack after the heartbeat's record snapshot
// is taken and before the record is saved (docs/protocol.md G2), and the broker
// runs in-process subscribers in the publisher's goroutine: an in-process
// subscriber to the ack topic that waits stops the heartbeat right there.
type ackHold struct {
	armed    atomic.Bool
	held     chan struct{}
	release  chan struct{}
	freeOnce sync.Once
}

func holdAck(t *testing.T, h *Hub, id string) *ackHold {
	t.Helper()
	a := &ackHold{held: make(chan struct{}), release: make(chan struct{})}
	err := h.Broker.Subscribe([]string{"kaiser/+/esp/" + id + "/system/heartbeat/ack"}, func(string, []byte, bool, bool) {
		if a.armed.CompareAndSwap(true, false) {
			close(a.held)
			<-a.release
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// arm holds the next heartbeat ack.
func (a *ackHold) arm() { a.armed.Store(true) }

// free lets the held heartbeat go on, and every later one.
func (a *ackHold) free() {
	a.freeOnce.Do(func() {
		a.armed.Store(false)
		close(a.release)
	})
}

// stream is a device sending QoS 1 heartbeats, each after the ack of the
// previous one, until stop is set.
type stream struct {
	dev  *client
	hb   string
	stop atomic.Bool
	done chan error
}

func startStream(t *testing.T, h *Hub, id string) *stream {
	t.Helper()
	dev := mustDial(t, h.MQTTAddr(), id)
	dev.subscribe(t, "kaiser/+/esp/"+id+"/system/heartbeat/ack")
	s := &stream{dev: dev, hb: "kaiser/god/esp/" + id + "/system/heartbeat", done: make(chan error, 1)}
	go func() { s.done <- s.run() }()
	t.Cleanup(func() {
		s.stop.Store(true)
		dev.close()
	})
	return s
}

func (s *stream) run() error {
	pace := time.NewTicker(5 * time.Millisecond) // about 200 heartbeats/s: a stream, not a flood
	defer pace.Stop()
	for uptime := 61; !s.stop.Load(); uptime++ {
		if err := s.dev.publish(s.hb, heartbeat(uptime), false); err != nil {
			return fmt.Errorf("heartbeat %d of %s: %w", uptime, s.hb, err)
		}
		select {
		case <-s.dev.msgs:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("no ack for heartbeat %d of %s", uptime, s.hb)
		}
		<-pace.C
	}
	return nil
}
