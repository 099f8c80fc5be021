package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/sim"
)

func timeAfterLimit() <-chan time.Time { return time.After(waitLimit) }

// fakeCredentials are device passwords in plain text: the broker's side of
// the devices mode without the credential service's hashing (tested there).
type fakeCredentials struct {
	mu   sync.Mutex
	pw   map[string]string
	gen  map[string]uint64
	next uint64
}

func newFakeCredentials() *fakeCredentials {
	return &fakeCredentials{pw: map[string]string{}, gen: map[string]uint64{}}
}

// set gives espID the password pw and returns its generation.
func (f *fakeCredentials) set(espID, pw string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	f.pw[espID], f.gen[espID] = pw, f.next
	return f.next
}

func (f *fakeCredentials) Check(espID, username string, password []byte) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pw, ok := f.pw[espID]
	switch {
	case !ok:
		return 0, nil
	case username != espID || string(password) != pw:
		return 0, ErrBadCredentials
	}
	return f.gen[espID], nil
}

func (f *fakeCredentials) Generation(espID string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen[espID]
}

// devicesBroker is a broker in devices mode whose in-process subscriber
// (the hub's side) receives every device→hub message on got.
func devicesBroker(t *testing.T, creds *fakeCredentials, limits Limits, roots DeviceRoots) (*Embedded, <-chan string) {
	t.Helper()
	e, _ := startBroker(t, Config{Auth: AuthDevices, Credentials: creds, Limits: limits, Roots: roots})
	got := make(chan string, 256)
	filters := append([]string{"kaiser/+/esp/+/system/intent_outcome", "lab/#"}, contract.HubSubscriptions...)
	err := e.Subscribe(filters, func(topic string, payload []byte, _, _ bool) {
		got <- topic + " " + string(payload)
	})
	if err != nil {
		t.Fatal(err)
	}
	return e, got
}

// mqtt5 is a real MQTT 5 client of these tests.
type mqtt5 struct {
	*paho.Client
	conn net.Conn
	msgs chan string
	gone chan struct{}
}

// dial5 connects as id with the credentials given (user "" = anonymous).
func dial5(t *testing.T, addr, id, user, pass string, will *paho.WillMessage) (*mqtt5, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &mqtt5{conn: conn, msgs: make(chan string, 64), gone: make(chan struct{})}
	var once sync.Once
	end := func() { once.Do(func() { close(c.gone) }) }
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet.Topic + " " + string(pr.Packet.Payload)
			return true, nil
		}},
		OnServerDisconnect: func(*paho.Disconnect) { end() },
		OnClientError:      func(error) { end() },
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cp := &paho.Connect{ClientID: id, KeepAlive: 60, CleanStart: true, WillMessage: will}
	if user != "" {
		cp.UsernameFlag, cp.Username = true, user
		cp.PasswordFlag, cp.Password = true, []byte(pass)
	}
	if _, err := c.Connect(ctx, cp); err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return c, nil
}

func mustDial5(t *testing.T, addr, id, user, pass string) *mqtt5 {
	t.Helper()
	c, err := dial5(t, addr, id, user, pass, nil)
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return c
}

func (c *mqtt5) sub(filter string) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	_, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	return err
}

// pub publishes at QoS 1 and returns the PUBACK's reason code.
func (c *mqtt5) pub(t *testing.T, topic, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if err != nil && pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

func (c *mqtt5) await(t *testing.T, want string) {
	t.Helper()
	awaitTopic(t, c.msgs, want)
}

const (
	ackNotAuthorized = 0x87
	willTopicA       = "kaiser/god/esp/ESP_AAAAAA/system/will"
)

// An impostor with the id of a connected, credentialed node is refused,
// with no password and with a wrong one, over MQTT 3.1.1 and 5, and the
// node is undisturbed: its session stays up (so its will cannot fire) and
// what it publishes next still arrives.
func TestDevicesModeRefusesAnImpostorAndLeavesTheNodeAlone(t *testing.T) {
	creds := newFakeCredentials()
	creds.set("ESP_AAAAAA", "right")
	e, got := devicesBroker(t, creds, Limits{}, nil)

	node, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: "ESP_AAAAAA", Username: "ESP_AAAAAA",
		Password: "right", WillTopic: willTopicA, WillPayload: []byte("gone"), WillQoS: 1, WillRetain: true})
	if err != nil {
		t.Fatalf("the real node: %v", err)
	}
	defer node.Kill()

	for _, o := range []sim.WireOptions{
		{ClientID: "ESP_AAAAAA", WillTopic: willTopicA, WillPayload: []byte("forged")},
		{ClientID: "ESP_AAAAAA", Username: "ESP_AAAAAA", Password: "wrong"},
		{ClientID: "ESP_AAAAAA", Username: "ESP_BBBBBB", Password: "right"},
	} {
		if _, err := sim.DialWire(e.Addr(), o); err == nil || !strings.Contains(err.Error(), "code 5") {
			t.Fatalf("impostor %+v: %v, want CONNACK 5 (not authorized; mochi maps 0x86 so)", o, err)
		}
	}
	if _, err := dial5(t, e.Addr(), "ESP_AAAAAA", "ESP_AAAAAA", "wrong", nil); err == nil ||
		!strings.Contains(err.Error(), "bad username or password") {
		t.Fatalf("MQTT 5 impostor: %v, want 0x86", err)
	}

	select {
	case <-node.Done():
		t.Fatal("the real node's session was taken over")
	default:
	}
	if err := node.Publish("kaiser/god/esp/ESP_AAAAAA/system/heartbeat", []byte("still here"), false); err != nil {
		t.Fatal(err)
	}
	if err := node.Flush(); err != nil {
		t.Fatal(err)
	}
	// The first message the hub hears is the node's, not a will.
	awaitTopic(t, got, "kaiser/god/esp/ESP_AAAAAA/system/heartbeat still here")
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedBadCredentials)); n != 4 {
		t.Fatalf("refused bad_credentials = %v, want 4", n)
	}
}

// An authenticated device reads only its own hub→device topics, the
// broadcast emergency and the hub status, and writes only its own
// device→hub topics, on any root.
func TestDevicesModeACLKeepsDevicesApart(t *testing.T) {
	creds := newFakeCredentials()
	creds.set("ESP_AAAAAA", "pa")
	creds.set("ESP_BBBBBB", "pb")
	e, got := devicesBroker(t, creds, Limits{}, nil)
	a := mustDial5(t, e.Addr(), "ESP_AAAAAA", "ESP_AAAAAA", "pa")

	for _, f := range []string{
		"kaiser/god/esp/ESP_BBBBBB/actuator/+/command",
		"kaiser/+/esp/ESP_BBBBBB/config",
		"kaiser/+/esp/+/actuator/+/command",
		"kaiser/god/esp/ESP_AAAAAA/#",
		"kaiser/god/esp/ESP_AAAAAA/sensor/+/data",
		"kaiser/#",
		"#",
		"lab/x",
	} {
		if err := a.sub(f); err == nil {
			t.Errorf("A subscribed to %s", f)
		}
	}
	for _, f := range []string{
		"kaiser/god/esp/ESP_AAAAAA/actuator/+/command",
		"kaiser//esp/ESP_AAAAAA/config",
		"kaiser/+/esp/ESP_AAAAAA/zone/assign",
		"kaiser/broadcast/emergency",
		"kaiser/+/server/status",
	} {
		if err := a.sub(f); err != nil {
			t.Errorf("A's own subscription %s refused: %v", f, err)
		}
	}
	ctx := context.Background()
	for _, topic := range []string{
		"kaiser/god/esp/ESP_BBBBBB/actuator/5/command",
		"kaiser/god/esp/ESP_AAAAAA/actuator/5/command",
		"kaiser/broadcast/emergency",
		"kaiser/god/server/status",
	} {
		if err := e.Publish(ctx, topic, []byte("x"), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	a.await(t, "kaiser/god/esp/ESP_AAAAAA/actuator/5/command x") // B's command never came
	a.await(t, "kaiser/broadcast/emergency x")
	a.await(t, "kaiser/god/server/status x")

	for _, topic := range []string{
		"kaiser/god/esp/ESP_BBBBBB/sensor/34/data",
		"kaiser/god/esp/ESP_BBBBBB/system/heartbeat",
		"kaiser/god/esp/ESP_AAAAAA/config",
		"kaiser/god/esp/ESP_AAAAAA/actuator/5/command",
		"kaiser/god/esp/ESP_AAAAAA/not/a/device/topic",
		"kaiser/broadcast/emergency",
		"lab/x",
	} {
		if code := a.pub(t, topic, "forged"); code != ackNotAuthorized {
			t.Errorf("A published %s: reason 0x%x", topic, code)
		}
	}
	for _, topic := range []string{
		"kaiser//esp/ESP_AAAAAA/sensor/34/data",
		"kaiser/zone-7/esp/ESP_AAAAAA/actuator/5/status",
		"kaiser/god/esp/ESP_AAAAAA/system/intent_outcome",
	} {
		if code := a.pub(t, topic, "own"); code != 0 {
			t.Fatalf("A's own %s: reason 0x%x", topic, code)
		}
		awaitTopic(t, got, topic+" own") // no forged message came before it
	}
}

// A device id without credentials may connect only to register: publish
// its heartbeat, carry its will, read its heartbeat ack. Its firmware
// subscriptions are not restored, and a password it presents changes
// nothing.
func TestDevicesModeUncredentialedIDMayOnlyRegister(t *testing.T) {
	creds := newFakeCredentials()
	e, got := devicesBroker(t, creds, Limits{}, func(string) (string, bool) { return "god", true })
	if _, err := dial5(t, e.Addr(), "ESP_CCCCCC", "", "", &paho.WillMessage{
		Topic: "kaiser/god/esp/ESP_CCCCCC/sensor/1/data", Payload: []byte("x"),
	}); err == nil {
		t.Fatal("an uncredentialed id carried a will other than its system/will")
	}
	c, err := dial5(t, e.Addr(), "ESP_CCCCCC", "ESP_CCCCCC", "anything", &paho.WillMessage{
		Topic: "kaiser/god/esp/ESP_CCCCCC/system/will", Payload: []byte("gone"), QoS: 1, Retain: true,
	})
	if err != nil {
		t.Fatalf("registering id refused: %v", err)
	}

	if code := c.pub(t, "kaiser/god/esp/ESP_CCCCCC/sensor/34/data", "reading"); code != ackNotAuthorized {
		t.Fatalf("uncredentialed reading: reason 0x%x", code)
	}
	if code := c.pub(t, "kaiser/god/esp/ESP_CCCCCC/system/heartbeat", "beat"); code != 0 {
		t.Fatalf("heartbeat: reason 0x%x", code)
	}
	awaitTopic(t, got, "kaiser/god/esp/ESP_CCCCCC/system/heartbeat beat")
	for _, f := range []string{"kaiser/god/esp/ESP_CCCCCC/config", "kaiser/broadcast/emergency", "kaiser/+/server/status"} {
		if err := c.sub(f); err == nil {
			t.Errorf("uncredentialed id subscribed to %s", f)
		}
	}
	if err := c.sub("kaiser/god/esp/ESP_CCCCCC/system/heartbeat/ack"); err != nil {
		t.Fatalf("heartbeat ack: %v", err)
	}
	ctx := context.Background()
	// Were the firmware subscriptions restored, the config would come first.
	for _, topic := range []string{"kaiser/god/esp/ESP_CCCCCC/config", "kaiser/god/esp/ESP_CCCCCC/system/heartbeat/ack"} {
		if err := e.Publish(ctx, topic, []byte("x"), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	c.await(t, "kaiser/god/esp/ESP_CCCCCC/system/heartbeat/ack x")
	if n := testutil.ToFloat64(e.restored); n != 0 {
		t.Fatalf("%v subscription sets restored for an uncredentialed id", n)
	}
}

// A client whose id is not a device id (or whose id the broker assigns)
// is refused in devices mode unless the operator opened topic prefixes to
// other clients; then it may use those and nothing under kaiser/.
func TestDevicesModeOtherClientsOnlyUnderAllowedPrefixes(t *testing.T) {
	creds := newFakeCredentials()
	e, _ := devicesBroker(t, creds, Limits{}, nil)
	for _, id := range []string{"node-red.1", ""} {
		if _, err := dial5(t, e.Addr(), id, "", "", nil); err == nil {
			t.Fatalf("client %q admitted with no prefix open", id)
		}
	}
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedNotDevice)); n != 2 {
		t.Fatalf("refused not_a_device = %v, want 2", n)
	}

	e, got := devicesBroker(t, creds, Limits{AllowPrefixes: []string{"lab/"}}, nil)
	c := mustDial5(t, e.Addr(), "node-red.1", "", "")
	if err := c.sub("kaiser/+/esp/+/sensor/+/data"); err == nil {
		t.Fatal("another client read device data")
	}
	if err := c.sub("lab/#"); err != nil {
		t.Fatal(err)
	}
	if code := c.pub(t, "kaiser/god/esp/ESP_AAAAAA/system/heartbeat", "forged"); code != ackNotAuthorized {
		t.Fatalf("another client published a heartbeat: 0x%x", code)
	}
	if code := c.pub(t, "lab/bench", "ok"); code != 0 {
		t.Fatalf("allowed prefix: 0x%x", code)
	}
	awaitTopic(t, got, "lab/bench ok")
	c.await(t, "lab/bench ok")
}

// Revoke disconnects the sessions of a device that did not authenticate
// with the credentials in force, and only those; a CONNECT that verified
// the old password just before the rotation is refused.
func TestRevokeDisconnectsSessionsOfReplacedCredentials(t *testing.T) {
	creds := newFakeCredentials()
	creds.set("ESP_AAAAAA", "old")
	creds.set("ESP_BBBBBB", "pb")
	e, _ := devicesBroker(t, creds, Limits{}, nil)
	a := mustDial5(t, e.Addr(), "ESP_AAAAAA", "ESP_AAAAAA", "old")
	b := mustDial5(t, e.Addr(), "ESP_BBBBBB", "ESP_BBBBBB", "pb")

	gen := creds.set("ESP_AAAAAA", "new")
	if n := e.Revoke("ESP_AAAAAA", gen); n != 1 {
		t.Fatalf("revoked %d sessions, want 1", n)
	}
	select {
	case <-a.gone:
	case <-timeAfterLimit():
		t.Fatal("the session with the old password stayed connected")
	}
	if _, err := dial5(t, e.Addr(), "ESP_AAAAAA", "ESP_AAAAAA", "old", nil); err == nil {
		t.Fatal("the old password still works")
	}
	a2 := mustDial5(t, e.Addr(), "ESP_AAAAAA", "ESP_AAAAAA", "new")
	if n := e.Revoke("ESP_AAAAAA", gen); n != 0 {
		t.Fatalf("revoked %d sessions with the credentials in force", n)
	}
	if code := a2.pub(t, "kaiser/god/esp/ESP_AAAAAA/system/heartbeat", "x"); code != 0 {
		t.Fatalf("new session: 0x%x", code)
	}
	if code := b.pub(t, "kaiser/god/esp/ESP_BBBBBB/system/heartbeat", "x"); code != 0 {
		t.Fatalf("B was disturbed: 0x%x", code)
	}

	// Credentials that change between the check and the session's start.
	cl := e.server.NewClient(nil, "tcp", "ESP_AAAAAA", false)
	if e.stillCurrent(cl, grant{espID: "ESP_AAAAAA", generation: gen - 1}) {
		t.Fatal("a session of replaced credentials was let in")
	}
}

// Off mode is the anonymous door of before: any id connects without a
// password, reads are open, and the device write rule holds.
func TestOffModeStaysAnonymous(t *testing.T) {
	e, _ := startBroker(t, Config{Credentials: newFakeCredentials()})
	c := mustDial5(t, e.Addr(), "ESP_AAAAAA", "", "")
	if err := c.sub("kaiser/#"); err != nil {
		t.Fatalf("off mode read: %v", err)
	}
	if code := c.pub(t, "kaiser/god/esp/ESP_AAAAAA/sensor/34/data", "x"); code != 0 {
		t.Fatalf("off mode own publish: 0x%x", code)
	}
	if code := c.pub(t, "kaiser/god/esp/ESP_BBBBBB/sensor/34/data", "x"); code != ackNotAuthorized {
		t.Fatalf("off mode publish as another device: 0x%x", code)
	}
	if _, err := dial5(t, e.Addr(), "node-red.1", "", "", nil); err != nil {
		t.Fatalf("off mode other client: %v", err)
	}
}

// BenchmarkPublishACL is the hook's check of one device publish, the cost
// devices mode adds to every inbound message.
func BenchmarkPublishACL(b *testing.B) {
	const topic = "kaiser/god/esp/ESP_AAAAAA/sensor/34/data"
	for _, mode := range []AuthMode{AuthOff, AuthDevices} {
		b.Run(string(mode), func(b *testing.B) {
			e, err := NewEmbedded(Config{Auth: mode, Credentials: newFakeCredentials(),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			h := &hook{e: e}
			cl := e.server.NewClient(nil, "tcp", "ESP_AAAAAA", false)
			e.sessions.add(cl, grant{espID: "ESP_AAAAAA", generation: 1})
			for i := range 1000 { // a fleet's sessions in the set
				e.sessions.add(e.server.NewClient(nil, "tcp", fmt.Sprint("ESP_", i), false), grant{espID: fmt.Sprint(i)})
			}
			b.ResetTimer()
			for range b.N {
				if !h.OnACLCheck(cl, topic, true) {
					b.Fatal("refused")
				}
			}
		})
	}
}
