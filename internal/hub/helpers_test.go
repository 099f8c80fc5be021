package hub

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/store"
)

func startHub(t *testing.T, cfg Config) *Hub {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.MQTTAddr = "127.0.0.1:0"
	if cfg.DiscoveryPerMin == 0 {
		cfg.DiscoveryPerMin = 10000
	}
	h, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func stopHub(t *testing.T, h *Hub) {
	t.Helper()
	if err := h.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// client is a real MQTT 5 client for tests.
type client struct {
	*paho.Client
	conn net.Conn
	mu   sync.Mutex
	msgs chan message
	// session ends when the connection does: a publish waiting for its
	// PUBACK then fails at once (paho itself would wait out its deadline).
	session context.Context
	end     context.CancelFunc
}

type message struct {
	topic   string
	payload string
	retain  bool
}

func dial(t *testing.T, addr, id string, will *paho.WillMessage) (*client, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return connectClient(t, conn, id, will)
}

// connectClient connects an MQTT 5 client over conn (plain or TLS).
func connectClient(t *testing.T, conn net.Conn, id string, will *paho.WillMessage) (*client, error) {
	t.Helper()
	c := &client{conn: conn, msgs: make(chan message, 1024)}
	c.session, c.end = context.WithCancel(context.Background())
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				select {
				case c.msgs <- message{pr.Packet.Topic, string(pr.Packet.Payload), pr.Packet.Retain}:
				default:
				}
				return true, nil
			}},
		OnServerDisconnect: func(*paho.Disconnect) { c.end() },
		OnClientError:      func(error) { c.end() },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{
		ClientID:    id,
		KeepAlive:   60,
		CleanStart:  true,
		WillMessage: will,
	})
	if err != nil {
		conn.Close()
		c.end()
		return nil, err
	}
	if ca.ReasonCode != 0 {
		conn.Close()
		c.end()
		return nil, fmt.Errorf("connack reason %d", ca.ReasonCode)
	}
	t.Cleanup(func() {
		c.conn.Close()
		c.end()
	})
	return c, nil
}

func mustDial(t *testing.T, addr, id string) *client {
	t.Helper()
	c, err := dial(t, addr, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// subscribe waits for the SUBACK as long as publish waits for a PUBACK: a
// loaded CI machine held one up for more than 5 s.
func (c *client) subscribe(t *testing.T, filters ...string) {
	t.Helper()
	var subs []paho.SubscribeOptions
	for _, f := range filters {
		subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
		t.Fatal(err)
	}
}

// publish sends at QoS 1 and reports whether the broker acknowledged it.
// The acknowledgement waits for the commit (docs/protocol.md M3), which a
// loaded CI machine running -race beside other packages can hold up for
// seconds; the bound only decides when a test gives up.
func (c *client) publish(topic, payload string, retain bool) error {
	ctx, cancel := context.WithTimeout(c.session, 20*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{
		Topic:   topic,
		QoS:     1,
		Retain:  retain,
		Payload: []byte(payload),
	})
	if err != nil {
		return err
	}
	if pr != nil && pr.ReasonCode >= 0x80 {
		return fmt.Errorf("puback reason 0x%x", pr.ReasonCode)
	}
	return nil
}

func (c *client) next(t *testing.T, timeout time.Duration) message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(timeout):
		t.Fatalf("no message within %s", timeout)
	}
	return message{}
}

func (c *client) close() {
	_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	c.conn.Close()
}

func heartbeat(uptime int) string {
	return fmt.Sprintf(`{"ts":1767600930,"uptime":%d,"heap_free":187432,"wifi_rssi":-61,`+
		`"sensor_count":0,"actuator_count":0}`, uptime)
}

// awaitEvent waits for an event matching pred.
func awaitEvent(t *testing.T, sub *event.Subscription, timeout time.Duration, pred func(event.Event) bool) event.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e := <-sub.C:
			if pred(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("event not seen within %s", timeout)
		}
	}
}

func statusIs(id, status, reason string) func(event.Event) bool {
	return func(e event.Event) bool {
		d, ok := e.Data.(event.DeviceStatus)
		return ok && d.EspID == id && d.Status == status && (reason == "" || d.Reason == reason)
	}
}

func scrape(t *testing.T, h *Hub) string {
	t.Helper()
	resp, err := http.Get("http://" + h.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func metricLine(body, prefix string) string {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

type sqliteTransition = store.Transition

// seqEvent is a system_event with a sequence number the WebSocket tests wait for.
type seqEvent struct {
	Event   string `json:"event"`
	Seq     int    `json:"seq"`
	Message string `json:"message"`
}

func (seqEvent) EventType() event.Type { return event.TypeSystemEvent }

func eventFor(i int) event.Event {
	return event.Event{Data: seqEvent{Event: "startup_complete", Seq: i, Message: strings.Repeat("x", 4096)}}
}

// sensorData returns e's payload when e is a sensor_data event.
func sensorData(e event.Event) (event.SensorData, bool) {
	d, ok := e.Data.(event.SensorData)
	return d, ok
}

type eventT = event.Event
