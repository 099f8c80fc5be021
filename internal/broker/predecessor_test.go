package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
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
	free     func() // closes release, once
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

// pausedCleanup starts a broker whose cleanup of id's first closed
// connection pauses (holdCleanup) and returns it once that connection,
// subscribed to topic, has closed and its cleanup is paused.
func pausedCleanup(t *testing.T, id, topic string) (*Embedded, *logSink, *holdCleanup) {
	t.Helper()
	hold := &holdCleanup{clientID: id, held: make(chan struct{}), release: make(chan struct{})}
	var once sync.Once
	hold.free = func() { once.Do(func() { close(hold.release) }) }
	t.Cleanup(hold.free)
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
	return e, sink, hold
}

// connecting is a raw client whose CONNECT went out and whose CONNACK is
// read in the background.
type connecting struct {
	*rawClient
	connack chan error
}

func startConnect(t *testing.T, addr, id string) *connecting {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &connecting{rawClient: &rawClient{conn: conn, r: bufio.NewReader(conn)}, connack: make(chan error, 1)}
	c.send(t, connectPacket(id))
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
		ack := make([]byte, 4)
		_, err := io.ReadFull(c.r, ack)
		if err == nil && (ack[0] != 0x20 || ack[3] != 0) {
			err = fmt.Errorf("connack %x", ack)
		}
		_ = conn.SetReadDeadline(time.Time{})
		c.connack <- err
	}()
	return c
}

func (c *connecting) awaitConnack(t *testing.T) {
	t.Helper()
	if err := <-c.connack; err != nil {
		t.Fatalf("connack: %v", err)
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
	e, sink, hold := pausedCleanup(t, id, topic)

	// The new CONNECT goes out while the old cleanup is paused. Without
	// the fix mochi answers it at once; with it, it waits for the old end.
	fresh := startConnect(t, e.Addr(), id)
	stopWaiting := make(chan struct{})
	select {
	case err := <-fresh.connack:
		// The race: subscribe in the window, then let the old cleanup go on.
		if err != nil {
			t.Fatalf("connack: %v", err)
		}
		fresh.send(t, subscribePacket(topic, 0))
		fresh.awaitSuback(t)
		hold.free()
	case <-awaitLine(sink, "reconnected before its previous connection ended", stopWaiting):
		hold.free()
		fresh.awaitConnack(t)
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

// Two CONNECTs of one id that wait for the same old connection go on one
// after the other: the later takes the earlier's session over, and exactly
// one session of the id is left, listed and hearing its topics.
func TestTwoReconnectsOfOneIDLeaveOneSession(t *testing.T) {
	const id = "ESP_A1B2C3"
	topic := "kaiser/god/esp/" + id + "/system/heartbeat/ack"
	e, sink, hold := pausedCleanup(t, id, topic)

	first, second := startConnect(t, e.Addr(), id), startConnect(t, e.Addr(), id)
	sink.await(t, "reconnected before its previous connection ended")
	hold.free()
	first.awaitConnack(t)
	second.awaitConnack(t)

	// The later one ended the earlier one: the second such line names both.
	var survivor, loser *connecting
	for survivor == nil {
		lines := sink.with("reconnected before its previous connection ended")
		if len(lines) < 2 {
			select {
			case <-sink.notify:
			case <-time.After(waitLimit):
				t.Fatalf("the second connection did not end the first: %q", lines)
			}
			continue
		}
		var l struct {
			Remote string `json:"remote"`
		}
		if err := json.Unmarshal([]byte(lines[1]), &l); err != nil {
			t.Fatal(err)
		}
		survivor, loser = first, second
		if l.Remote == second.conn.LocalAddr().String() {
			survivor, loser = second, first
		}
	}
	loser.awaitClosed(t)

	survivor.send(t, subscribePacket(topic, 0))
	survivor.awaitSuback(t)
	if cl, ok := e.server.Clients.Get(id); !ok || cl.Closed() {
		t.Fatalf("the surviving session is not in mochi's list: %v", ok)
	}
	if err := e.Publish(context.Background(), topic, []byte(`{"status":"online"}`), 0, false); err != nil {
		t.Fatal(err)
	}
	if got := survivor.awaitPublish(t); got != topic {
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
