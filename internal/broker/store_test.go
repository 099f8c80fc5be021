package broker

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kaiserhub/kaiser/internal/sim"
)

// dialPaho connects an MQTT 5 client.
func dialPaho(t *testing.T, addr, id string) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 60, CleanStart: true}); err != nil {
		conn.Close()
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		conn.Close()
	})
	return c
}

func publishQoS1(c *paho.Client, topic string, payload []byte, retain bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	_, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: payload})
	return err
}

// Outside kaiser/ nobody may publish, retained or not (150 retained 1 MB
// messages took the hub from 21 to 350 MB RSS, for good), unless the
// operator allowed the prefix.
func TestPublishesOutsideTheHubTreeAreRefusedUnlessAllowed(t *testing.T) {
	e, _ := startBroker(t, Config{Limits: Limits{AllowPrefixes: []string{"lab/"}}})
	c := dialPaho(t, e.Addr(), "dashboard")
	payload := bytes.Repeat([]byte("r"), 1000)

	if err := publishQoS1(c, "junk/a", payload, true); err == nil {
		t.Fatal("publish outside kaiser/ accepted")
	}
	if err := publishQoS1(c, "lab/a", payload, true); err != nil {
		t.Fatalf("publish under an allowed prefix: %v", err)
	}
	if _, ok := e.server.Topics.Retained.Get("junk/a"); ok {
		t.Fatal("refused message retained")
	}
	if _, ok := e.server.Topics.Retained.Get("lab/a"); !ok {
		t.Fatal("allowed message not retained")
	}
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedNotWritable)); n != 1 {
		t.Fatalf("refused topic_not_writable = %v, want 1", n)
	}
}

// A will outside the hub's tree is refused at CONNECT like a publish.
func TestWillOutsideTheHubTreeIsRefused(t *testing.T) {
	e, _ := startBroker(t, Config{})
	_, err := sim.DialWire(e.Addr(), sim.WireOptions{
		ClientID:    "ESP_A1B2C3",
		WillTopic:   "junk/will",
		WillPayload: []byte("x"),
		WillRetain:  true,
	})
	if err == nil {
		t.Fatal("connect with a will outside kaiser/ accepted")
	}
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedWill)); n != 1 {
		t.Fatalf("refused will_not_writable = %v, want 1", n)
	}
}

// Beyond the retained bound a retained device message is delivered live
// and not stored, never refused (every baseline publish carries RETAIN);
// the hub's own retained messages are stored whatever the bound.
func TestRetainedStoreIsBoundedInCount(t *testing.T) {
	e, _ := startBroker(t, Config{Limits: Limits{RetainedMessages: 3}})
	delivered := subscribeAll(t, e)
	w, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: "ESP_A1B2C3"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Kill()

	for gpio := range 5 {
		topic := fmt.Sprintf("kaiser/god/esp/ESP_A1B2C3/sensor/%d/data", gpio)
		publishWire(t, w, topic, []byte(`{"raw":1}`))
		if got := awaitDelivery(t, delivered); got != topic {
			t.Fatalf("delivered %s, want %s", got, topic)
		}
	}
	if n := len(e.server.Topics.Messages("kaiser/#")); n != 3 {
		t.Fatalf("%d retained messages, want 3", n)
	}
	if n := testutil.ToFloat64(e.notStored); n != 2 {
		t.Fatalf("retained_not_stored = %v, want 2", n)
	}

	if err := e.Publish(context.Background(), "kaiser/god/server/status", []byte(`{"status":"online"}`), 1, true); err != nil {
		t.Fatal(err)
	}
	awaitDelivery(t, delivered)
	if _, ok := e.server.Topics.Retained.Get("kaiser/god/server/status"); !ok {
		t.Fatal("the hub's retained message was not stored")
	}
}

// The byte bound holds too, and a message that does not fit removes its
// topic's older stored copy instead of leaving it to be replayed.
func TestRetainedStoreIsBoundedInBytes(t *testing.T) {
	e, _ := startBroker(t, Config{Limits: Limits{RetainedBytes: 2000}})
	delivered := subscribeAll(t, e)
	w, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: "ESP_A1B2C3"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Kill()

	a := "kaiser/god/esp/ESP_A1B2C3/sensor/1/data"
	b := "kaiser/god/esp/ESP_A1B2C3/sensor/2/data"
	for _, m := range []struct {
		topic string
		size  int
	}{{a, 800}, {b, 800}, {b, 1500}} {
		publishWire(t, w, m.topic, bytes.Repeat([]byte("v"), m.size))
		awaitDelivery(t, delivered)
	}
	if _, ok := e.server.Topics.Retained.Get(a); !ok {
		t.Fatal("the first message, within the bound, was not stored")
	}
	if _, ok := e.server.Topics.Retained.Get(b); ok {
		t.Fatal("a stale copy stayed stored after a newer message did not fit")
	}
	if count, n := e.retained.held(); count != 1 || n != len(a)+800 {
		t.Fatalf("booked %d messages, %d bytes", count, n)
	}
}

// A retained will beyond the bound is delivered live and not stored.
func TestRetainedWillBeyondTheBoundIsDeliveredLive(t *testing.T) {
	e, _ := startBroker(t, Config{Limits: Limits{RetainedMessages: 1}})
	delivered := subscribeAll(t, e)
	a, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: "ESP_A1B2C3"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Kill()
	publishWire(t, a, "kaiser/god/esp/ESP_A1B2C3/system/heartbeat", []byte(`{"uptime":1}`))
	awaitDelivery(t, delivered)

	will := "kaiser/god/esp/ESP_D4E5F6/system/will"
	b, err := sim.DialWire(e.Addr(), sim.WireOptions{
		ClientID:    "ESP_D4E5F6",
		WillTopic:   will,
		WillPayload: []byte(`{"status":"offline"}`),
		WillQoS:     1,
		WillRetain:  true,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Kill()
	if got := awaitDelivery(t, delivered); got != will {
		t.Fatalf("delivered %s, want the will", got)
	}
	if _, ok := e.server.Topics.Retained.Get(will); ok {
		t.Fatal("will stored beyond the bound")
	}
}

// A QoS 1 subscriber that never acknowledges holds at most Limits.Inflight
// messages, and the broker's line for each further one is rate-limited.
func TestInflightIsBoundedPerClient(t *testing.T) {
	e, logs := startBroker(t, Config{})
	rc, code := dialRaw(t, e.Addr(), "stuck")
	if code != 0 {
		t.Fatalf("connack %d", code)
	}
	rc.send(t, subscribePacket("lab/#", 1))
	rc.awaitSuback(t)

	for range 2 * DefaultInflight {
		_ = e.Publish(context.Background(), "lab/x", []byte("1"), 1, false)
	}
	cl, ok := e.server.Clients.Get("stuck")
	if !ok {
		t.Fatal("subscriber gone")
	}
	if n := cl.State.Inflight.Len(); n > DefaultInflight {
		t.Fatalf("%d messages in flight, want at most %d", n, DefaultInflight)
	}
	if n := len(logs.with("client store quota reached")); n > logBurst {
		t.Fatalf("%d lines about the full client store, want at most %d", n, logBurst)
	}
	if n := testutil.ToFloat64(e.suppressed); n == 0 {
		t.Fatal("suppressed lines not counted")
	}
}

// subscribeAll delivers every kaiser/ topic to the returned channel.
func subscribeAll(t *testing.T, e *Embedded) <-chan string {
	t.Helper()
	delivered := make(chan string, 64)
	if err := e.Subscribe([]string{"kaiser/#"}, func(topic string, _ []byte, _, _ bool) { delivered <- topic }); err != nil {
		t.Fatal(err)
	}
	return delivered
}

func publishWire(t *testing.T, w *sim.Wire, topic string, payload []byte) {
	t.Helper()
	if err := w.Publish(topic, payload, true); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}
