package broker

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kaiserhub/kaiser/internal/contract"
)

const dataFilter = "kaiser/+/esp/+/sensor/+/data"

func dataTopicOf(id string) string { return "kaiser/god/esp/" + id + "/sensor/34/data" }

// settleCall is one settlement the broker asked for; answer releases it.
type settleCall struct {
	topic   string
	payload string
	ctx     context.Context
	answer  chan settleAnswer
}

type settleAnswer struct {
	reason string
	err    error
}

// settler hands every settlement to the test, which answers it.
type settler struct{ calls chan settleCall }

func newSettler() *settler { return &settler{calls: make(chan settleCall, 16)} }

func (s *settler) settle(ctx context.Context, topic string, payload []byte, _ bool) (string, error) {
	c := settleCall{topic: topic, payload: string(payload), ctx: ctx, answer: make(chan settleAnswer, 1)}
	s.calls <- c
	a := <-c.answer
	return a.reason, a.err
}

func (s *settler) next(t *testing.T) settleCall {
	t.Helper()
	select {
	case c := <-s.calls:
		return c
	case <-time.After(waitLimit):
		t.Fatal("no settlement asked for")
	}
	return settleCall{}
}

// deliveries records what reaches the in-process subscriber after the PUBACK.
type deliveries struct{ ch chan string }

func (d *deliveries) deliver(_ string, payload []byte, _, _ bool) { d.ch <- string(payload) }

func (d *deliveries) next(t *testing.T) string {
	t.Helper()
	select {
	case p := <-d.ch:
		return p
	case <-time.After(waitLimit):
		t.Fatal("nothing delivered")
	}
	return ""
}

// otherSubscriber is an ordinary MQTT client subscribed to the data topics.
func otherSubscriber(t *testing.T, addr string) <-chan string {
	t.Helper()
	got := make(chan string, 16)
	c := dialPahoWith(t, addr, "dashboard", func(pr paho.PublishReceived) (bool, error) {
		got <- string(pr.Packet.Payload)
		return true, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: dataFilter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return got
}

// dialPahoSession connects an MQTT 5 client and returns a context that
// ends with its connection: paho itself keeps waiting for the PUBACK of a
// message sent before the connection was cut, until its deadline.
func dialPahoSession(t *testing.T, addr, id string) (*paho.Client, context.Context) {
	t.Helper()
	session, end := context.WithCancel(context.Background())
	t.Cleanup(end)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{
		Conn:               conn,
		OnServerDisconnect: func(*paho.Disconnect) { end() },
		OnClientError:      func(error) { end() },
	})
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
	return c, session
}

func dialPahoWith(t *testing.T, addr, id string, onPublish func(paho.PublishReceived) (bool, error)) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){onPublish}})
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

// A QoS 1 PUBLISH on a settled subscription is settled before its PUBACK:
// the publisher waits while the settlement does, other subscribers get the
// message once it is acknowledged, and the in-process subscriber is not
// handed it a second time. QoS 0 still goes to the in-process subscriber.
func TestQoS1PubackWaitsForSettlement(t *testing.T) {
	e, _ := startBroker(t, Config{})
	s := newSettler()
	d := &deliveries{ch: make(chan string, 16)}
	if err := e.SubscribeSettled([]string{dataFilter}, d.deliver, s.settle); err != nil {
		t.Fatal(err)
	}
	others := otherSubscriber(t, e.Addr())
	dev := dialPaho(t, e.Addr(), "ESP_A1B2C3")

	acked := make(chan error, 1)
	go func() { acked <- publishQoS1(dev, dataTopicOf("ESP_A1B2C3"), []byte("qos1"), false) }()
	call := s.next(t)
	if call.topic != dataTopicOf("ESP_A1B2C3") || call.payload != "qos1" {
		t.Fatalf("settlement asked for %q %q", call.topic, call.payload)
	}
	select {
	case err := <-acked:
		t.Fatalf("PUBACK before the settlement: %v", err)
	case p := <-others:
		t.Fatalf("another subscriber got %q before the PUBACK", p)
	default:
	}
	call.answer <- settleAnswer{}
	if err := <-acked; err != nil {
		t.Fatalf("publish after the settlement: %v", err)
	}
	if p := <-others; p != "qos1" {
		t.Fatalf("other subscriber got %q", p)
	}

	// The client's packets are handled in order: had the settled message
	// been delivered in process, it would come before this one.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := dev.Publish(ctx, &paho.Publish{Topic: dataTopicOf("ESP_A1B2C3"), QoS: 0, Payload: []byte("qos0")}); err != nil {
		t.Fatal(err)
	}
	if p := d.next(t); p != "qos0" {
		t.Fatalf("in-process subscriber got %q first, want only the QoS 0 message", p)
	}
}

// MQTT 5 hears a drop in the PUBACK's reason code (0x97 for a full queue,
// 0x80 otherwise; a duplicate is a success); MQTT 3.1.1, which has no
// negative PUBACK, gets its PUBACK once the drop is counted.
func TestSettledDropsAnswerWithReasonCodes(t *testing.T) {
	e, _ := startBroker(t, Config{})
	s := newSettler()
	d := &deliveries{ch: make(chan string, 16)}
	if err := e.SubscribeSettled([]string{dataFilter}, d.deliver, s.settle); err != nil {
		t.Fatal(err)
	}
	dev := dialPaho(t, e.Addr(), "ESP_A1B2C3")
	for _, tc := range []struct {
		reason string
		code   byte
	}{
		{contract.ReasonQueueOverflow, 0x97},
		{contract.ReasonNotApproved, 0x80},
		{contract.ReasonDuplicate, 0x00},
	} {
		go func() {
			c := <-s.calls
			c.answer <- settleAnswer{reason: tc.reason}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		pr, err := dev.Publish(ctx, &paho.Publish{Topic: dataTopicOf("ESP_A1B2C3"), QoS: 1, Payload: []byte(tc.reason)})
		cancel()
		if pr == nil || pr.ReasonCode != tc.code {
			t.Fatalf("%s: PUBACK %+v, %v; want reason code 0x%02x", tc.reason, pr, err, tc.code)
		}
	}

	rc, code := dialRaw(t, e.Addr(), "ESP_D4E5F6")
	if code != 0 {
		t.Fatalf("connack %d", code)
	}
	rc.send(t, publishPacket(dataTopicOf("ESP_D4E5F6"), []byte("{}"), 1, false))
	s.next(t).answer <- settleAnswer{reason: contract.ReasonNotApproved}
	rc.awaitPuback(t)
}

// A message that cannot be settled (a failed commit, or the deadline) is
// not acknowledged: the client is disconnected and the refusal counted.
// Shutdown ends a settlement that is still waiting.
func TestUnsettledPublishIsNotAcknowledged(t *testing.T) {
	e, _ := startBroker(t, Config{})
	s := newSettler()
	d := &deliveries{ch: make(chan string, 16)}
	if err := e.SubscribeSettled([]string{dataFilter}, d.deliver, s.settle); err != nil {
		t.Fatal(err)
	}
	rc, code := dialRaw(t, e.Addr(), "ESP_A1B2C3")
	if code != 0 {
		t.Fatalf("connack %d", code)
	}
	rc.send(t, publishPacket(dataTopicOf("ESP_A1B2C3"), []byte("{}"), 1, true))
	s.next(t).answer <- settleAnswer{err: errors.New("disk full")}
	rc.awaitClosedWithout(t, 0x40)
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedAckWithheld)); n != 1 {
		t.Fatalf("withheld acknowledgements counted %v, want 1", n)
	}
	_, stored := e.server.Topics.Retained.Get(dataTopicOf("ESP_A1B2C3"))
	if n, _ := e.retained.held(); n != 0 || stored {
		t.Fatalf("a refused retained PUBLISH was booked (%d) or stored (%v)", n, stored)
	}

	dev, session := dialPahoSession(t, e.Addr(), "ESP_D4E5F6")
	acked := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(session, waitLimit)
		defer cancel()
		_, err := dev.Publish(ctx, &paho.Publish{Topic: dataTopicOf("ESP_D4E5F6"), QoS: 1, Payload: []byte("{}")})
		acked <- err
	}()
	waiting := s.next(t)
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		stopped <- e.StopAccepting(ctx)
	}()
	select {
	case <-waiting.ctx.Done():
	case <-time.After(waitLimit):
		t.Fatal("shutdown did not end the settlement's wait")
	}
	waiting.answer <- settleAnswer{err: waiting.ctx.Err()}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if err := <-acked; err == nil {
		t.Fatal("a publish not settled before shutdown was acknowledged")
	}
}

func TestFilterMatches(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{dataFilter, "kaiser/god/esp/ESP_1/sensor/34/data", true},
		{dataFilter, "kaiser//esp/ESP_1/sensor/34/data", true},
		{dataFilter, "kaiser/god/esp/ESP_1/sensor/34/processed", false},
		{dataFilter, "kaiser/god/esp/ESP_1/sensor/data", false},
		{"kaiser/#", "kaiser", true},
		{"kaiser/#", "kaiser/a/b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"a/b", "a/b/c", false},
	} {
		if got := filterMatches(tc.filter, tc.topic); got != tc.want {
			t.Errorf("filterMatches(%q, %q) = %v", tc.filter, tc.topic, got)
		}
	}
}

// awaitPuback reads one PUBACK.
func (rc *rawClient) awaitPuback(t *testing.T) {
	t.Helper()
	_ = rc.conn.SetReadDeadline(time.Now().Add(waitLimit))
	defer func() { _ = rc.conn.SetReadDeadline(time.Time{}) }()
	ack := make([]byte, 4)
	if _, err := io.ReadFull(rc.r, ack); err != nil || ack[0] != 0x40 {
		t.Fatalf("puback %x: %v", ack, err)
	}
}

// awaitClosedWithout reads until the connection closes and fails when a
// packet of the given type came first.
func (rc *rawClient) awaitClosedWithout(t *testing.T, packetType byte) {
	t.Helper()
	_ = rc.conn.SetReadDeadline(time.Now().Add(waitLimit))
	b, err := io.ReadAll(rc.r)
	if len(b) > 0 && b[0]&0xF0 == packetType {
		t.Fatalf("packet %x before the close", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the broker did not close the connection: %v", err)
	}
}
