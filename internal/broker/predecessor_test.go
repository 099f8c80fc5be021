package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// holdCleanup pauses mochi's cleanup of a closed connection of one client
// id, once, inside the window where mochi deletes by id (between removing
// the session's subscriptions and removing the id from its client list),
// until release is closed.
type holdCleanup struct {
	mqtt.HookBase
	clientID string
	held     chan struct{} // closed once the cleanup is paused
	release  chan struct{}
	once     atomic.Bool
}

func (h *holdCleanup) ID() string { return "hold-cleanup" }

func (h *holdCleanup) Provides(b byte) bool { return b == mqtt.OnUnsubscribed }

func (h *holdCleanup) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) {
	if cl.ID != h.clientID || !cl.Closed() || cl.IsTakenOver() || !h.once.CompareAndSwap(false, true) {
		return
	}
	close(h.held)
	select {
	case <-h.release:
	case <-time.After(waitLimit):
	}
}

// A node that reconnects while mochi is still cleaning its previous
// connection up hears its topics on the new one: the old cleanup, which
// deletes by client id, removes neither the new subscription nor the new
// client (it did before: the heartbeat ack of a node that reconnected
// after a credential rotation never arrived).
func TestReconnectDuringTheOldCleanupStillHearsItsTopics(t *testing.T) {
	const id = "ESP_A1B2C3"
	topic := "kaiser/god/esp/" + id + "/system/heartbeat/ack"
	hold := &holdCleanup{clientID: id, held: make(chan struct{}), release: make(chan struct{})}
	e, sink := startBroker(t, Config{}, func(e *Embedded) {
		if err := e.server.AddHook(hold, nil); err != nil {
			t.Fatal(err)
		}
	})

	old, code := dialRaw(t, e.Addr(), id)
	if code != 0 {
		t.Fatalf("connack %d", code)
	}
	old.send(t, subscribePacket(topic, 0))
	old.awaitSuback(t)
	old.conn.Close()
	awaitClosedChan(t, hold.held, "the old connection's cleanup")

	// The new CONNECT goes out while the old cleanup is paused. Before the
	// fix mochi answered it at once; now it waits for the old connection.
	conn, err := net.DialTimeout("tcp", e.Addr(), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fresh := &rawClient{conn: conn, r: bufio.NewReader(conn)}
	fresh.send(t, connectPacket(id))
	connack := make(chan error, 1)
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
		ack := make([]byte, 4)
		_, err := io.ReadFull(fresh.r, ack)
		connack <- err
	}()
	stopWaiting := make(chan struct{})
	select {
	case err := <-connack:
		// The race: subscribe in the window, then let the old cleanup go on.
		if err != nil {
			t.Fatalf("connack: %v", err)
		}
		fresh.send(t, subscribePacket(topic, 0))
		fresh.awaitSuback(t)
		close(hold.release)
	case <-awaitLine(sink, "reconnected before its previous connection ended", stopWaiting):
		close(hold.release)
		if err := <-connack; err != nil {
			t.Fatalf("connack: %v", err)
		}
		fresh.send(t, subscribePacket(topic, 0))
		fresh.awaitSuback(t)
	}
	close(stopWaiting)
	sink.await(t, `"msg":"mqtt connection ended"`) // the old one: its cleanup is over

	if err := e.Publish(context.Background(), topic, []byte(`{"status":"online"}`), 0, false); err != nil {
		t.Fatal(err)
	}
	if got := fresh.awaitPublish(t); got != topic {
		t.Fatalf("delivered %q, want %q", got, topic)
	}
}

func awaitClosedChan(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("%s never happened", what)
	}
}

// awaitLine returns a channel closed once the sink holds a line with
// substr; it gives up when stop is closed or after waitLimit. It must be
// the sink's only waiter until then.
func awaitLine(s *logSink, substr string, stop <-chan struct{}) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		deadline := time.After(waitLimit)
		for len(s.with(substr)) == 0 {
			select {
			case <-s.notify:
			case <-stop:
				return
			case <-deadline:
				return
			}
		}
		close(ch)
	}()
	return ch
}

// awaitPublish reads the next packet, which must be a QoS 0 PUBLISH, and
// returns its topic.
func (rc *rawClient) awaitPublish(t *testing.T) string {
	t.Helper()
	_ = rc.conn.SetReadDeadline(time.Now().Add(waitLimit))
	defer func() { _ = rc.conn.SetReadDeadline(time.Time{}) }()
	h, err := rc.r.ReadByte()
	if err != nil {
		t.Fatalf("no delivery: %v", err)
	}
	if h>>4 != 3 {
		t.Fatalf("packet type %d, want PUBLISH", h>>4)
	}
	n, mult := 0, 1
	for {
		d, err := rc.r.ReadByte()
		if err != nil {
			t.Fatalf("publish length: %v", err)
		}
		n += int(d&127) * mult
		if d&128 == 0 {
			break
		}
		mult *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rc.r, body); err != nil || n < 2 {
		t.Fatalf("publish body: %v", err)
	}
	tl := int(binary.BigEndian.Uint16(body))
	return string(body[2 : 2+tl])
}
