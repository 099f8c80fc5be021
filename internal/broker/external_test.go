package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kaiserhub/kaiser/internal/broker/mosquitto"
	"github.com/kaiserhub/kaiser/internal/contract"
)

// delivery is what the external client handed to the hub.
type delivery struct {
	topic, payload string
	qos1           bool // through the handover (a live QoS 1 delivery)
	replay         bool
}

// hubSide records deliveries; a QoS 1 delivery's outcome waits for release.
type hubSide struct {
	got     chan delivery
	release chan string // the drop reason to settle the next awaited delivery with
}

func newHubSide() *hubSide {
	return &hubSide{got: make(chan delivery, 256), release: make(chan string, 256)}
}

func (h *hubSide) deliver(topic string, payload []byte, _, replay bool) {
	h.got <- delivery{topic: topic, payload: string(payload), replay: replay}
}

func (h *hubSide) handover(topic string, payload []byte, _ bool) func(context.Context) (string, error) {
	h.got <- delivery{topic: topic, payload: string(payload), qos1: true}
	return func(ctx context.Context) (string, error) {
		select {
		case r := <-h.release:
			return r, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func (h *hubSide) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-h.got:
		return d
	case <-time.After(waitLimit):
		t.Fatal("no delivery")
	}
	return delivery{}
}

// quickBackoff reconnects at once and then every 50 ms: the tests restart
// the broker and must not wait out the 1–60 s of production.
func quickBackoff(int) time.Duration { return 50 * time.Millisecond }

func startExternal(t *testing.T, cfg ExternalConfig, h *hubSide) *External {
	t.Helper()
	if cfg.ClientID == "" {
		cfg.ClientID = "hub-test-" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	if cfg.Backoff == nil {
		cfg.Backoff = quickBackoff
	}
	if cfg.ConnectWait == 0 {
		cfg.ConnectWait = waitLimit
	}
	x, err := NewExternal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	x.Subscribe(contract.SharedSubscriptions, contract.OrderedSubscriptions(), h.deliver, h.handover)
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x
}

func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("%s: not within %s", what, waitLimit)
	}
}

func hbTopicOf(id string) string { return "kaiser/god/esp/" + id + "/system/heartbeat" }

// Through Mosquitto: readings arrive over the shared subscription and
// heartbeats over the plain one; a live message a device published with
// RETAIN=1 (the baseline's Q1) is live, and the same message replayed from
// the retained store to a hub that subscribes later is a replay.
func TestExternalDeliversLiveAndFlagsRetainedReplays(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	h := newHubSide()
	x := startExternal(t, ExternalConfig{URL: m.URL(false)}, h)
	if !x.Connected() {
		t.Fatal("not connected after Start")
	}
	dev, _ := dialPahoSession(t, m.Addr(), "ESP_E00001")
	ctx := context.Background()
	for _, p := range []*paho.Publish{
		{Topic: hbTopicOf("ESP_E00001"), Payload: []byte("hb"), Retain: true},
		{Topic: dataTopicOf("ESP_E00001"), Payload: []byte("reading"), Retain: true},
	} {
		if _, err := dev.Publish(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"hb", "reading"} {
		if d := h.next(t); d.payload != want || d.replay || d.qos1 {
			t.Fatalf("live delivery %+v, want %q live at QoS 0", d, want)
		}
	}

	later := newHubSide()
	startExternal(t, ExternalConfig{URL: m.URL(false), ClientID: "hub-test-later"}, later)
	// Both retained messages come again as replays (Mosquitto 2.0 replays
	// on a shared subscription too, which MQTT 5 leaves open).
	replayed := map[string]bool{}
	for range 2 {
		d := later.next(t)
		if !d.replay {
			t.Fatalf("second hub: %+v, want a replay", d)
		}
		replayed[d.topic] = true
	}
	if !replayed[hbTopicOf("ESP_E00001")] || !replayed[dataTopicOf("ESP_E00001")] {
		t.Fatalf("replays %v", replayed)
	}
	// The next heartbeat is live for both hubs; the next reading goes to
	// one of the two, the shared subscription's group splitting them.
	if _, err := dev.Publish(ctx, &paho.Publish{Topic: hbTopicOf("ESP_E00001"), Payload: []byte("next")}); err != nil {
		t.Fatal(err)
	}
	for _, side := range []*hubSide{h, later} {
		if d := side.next(t); d.payload != "next" || d.replay {
			t.Fatalf("after the replays: %+v", d)
		}
	}
	if _, err := dev.Publish(ctx, &paho.Publish{Topic: dataTopicOf("ESP_E00001"), Payload: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-h.got:
		if d.payload != "one" {
			t.Fatalf("first hub: %+v", d)
		}
	case d := <-later.got:
		if d.payload != "one" {
			t.Fatalf("second hub: %+v", d)
		}
	case <-time.After(waitLimit):
		t.Fatal("the shared reading reached neither hub")
	}
}

// A live QoS 1 delivery is acknowledged to the broker only once settled:
// with a Receive Maximum of 1 the broker holds the next QoS 1 message back
// until then, while QoS 0 traffic published after it still flows.
func TestExternalAcknowledgesQoS1OnlyOnceSettled(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	h := newHubSide()
	x := startExternal(t, ExternalConfig{URL: m.URL(false), ReceiveMaximum: 1}, h)
	dev, session := dialPahoSession(t, m.Addr(), "ESP_E00002")
	pub := func(payload string, qos byte) {
		ctx, cancel := context.WithTimeout(session, waitLimit)
		defer cancel()
		if _, err := dev.Publish(ctx, &paho.Publish{Topic: dataTopicOf("ESP_E00002"), QoS: qos, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	pub("q1", 1)
	if d := h.next(t); d.payload != "q1" || !d.qos1 {
		t.Fatalf("first: %+v", d)
	}
	pub("q2", 1) // the device's PUBACK comes from the broker at once
	pub("after", 0)
	if d := h.next(t); d.payload != "after" {
		t.Fatalf("while q1 is unsettled the broker sent %+v; want the QoS 0 message, q2 held back", d)
	}
	if x.Settling() != 1 {
		t.Fatalf("settling %d, want 1", x.Settling())
	}
	h.release <- ""
	if d := h.next(t); d.payload != "q2" || !d.qos1 {
		t.Fatalf("after q1 settled: %+v", d)
	}
	h.release <- contract.ReasonDuplicate // a counted drop settles too
	pub("q3", 1)
	if d := h.next(t); d.payload != "q3" {
		t.Fatalf("after q2 settled: %+v", d)
	}
	h.release <- ""
}

// A delivery whose outcome is not known within the acknowledgement
// deadline is acknowledged all the same, counted, so later ones are not
// held back for good.
func TestExternalAcknowledgesAnUnsettledDeliveryAfterItsDeadline(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	h := newHubSide()
	reg := prometheus.NewRegistry()
	x := startExternal(t, ExternalConfig{URL: m.URL(false), ReceiveMaximum: 1,
		AckDeadline: 200 * time.Millisecond, Registerer: reg}, h)
	dev, session := dialPahoSession(t, m.Addr(), "ESP_E00003")
	for _, p := range []string{"stuck", "next"} {
		ctx, cancel := context.WithTimeout(session, waitLimit)
		if _, err := dev.Publish(ctx, &paho.Publish{Topic: dataTopicOf("ESP_E00003"), QoS: 1, Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	if d := h.next(t); d.payload != "stuck" {
		t.Fatalf("first: %+v", d)
	}
	if d := h.next(t); d.payload != "next" {
		t.Fatalf("after the deadline: %+v", d)
	}
	h.release <- ""
	if n := testutil.ToFloat64(x.unsettled.WithLabelValues("deadline")); n != 1 {
		t.Fatalf("unsettled by deadline: %v, want 1", n)
	}
}

// A QoS 1 publish returns once the broker acknowledged it; with the broker
// gone it fails at once instead of queueing. After a broker restart the
// client reconnects, subscribes again and runs OnConnect; deliveries flow.
func TestExternalPublishReconnectAndResubscribe(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	h := newHubSide()
	connects, lost := make(chan struct{}, 8), make(chan struct{}, 8)
	x := startExternal(t, ExternalConfig{URL: m.URL(false),
		OnConnect:        func(context.Context) { connects <- struct{}{} },
		OnConnectionLost: func() { lost <- struct{}{} },
	}, h)
	await(t, connects, "first connect")

	heard := make(chan string, 16)
	node := dialPahoWith(t, m.Addr(), "ESP_E00004", func(pr paho.PublishReceived) (bool, error) {
		heard <- string(pr.Packet.Payload)
		return true, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := node.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "kaiser/god/esp/ESP_E00004/actuator/+/command"}}}); err != nil {
		t.Fatal(err)
	}
	if err := x.Publish(ctx, "kaiser/god/esp/ESP_E00004/actuator/5/command", []byte(`{"command":"ON"}`), 1, false); err != nil {
		t.Fatalf("publish: %v", err)
	}
	select {
	case p := <-heard:
		if p != `{"command":"ON"}` {
			t.Fatalf("node heard %s", p)
		}
	case <-time.After(waitLimit):
		t.Fatal("the node did not hear the command")
	}

	m.Stop()
	await(t, lost, "connection lost")
	if x.Connected() {
		t.Fatal("connected after the connection was lost")
	}
	start := time.Now()
	err := x.Publish(context.Background(), "kaiser/god/esp/ESP_E00004/actuator/5/command", []byte(`{}`), 1, false)
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("publish with the broker down: %v after %s", err, time.Since(start))
	}

	m.Restart()
	await(t, connects, "reconnect")
	if !x.Connected() {
		t.Fatal("not connected after the reconnect")
	}
	dev, _ := dialPahoSession(t, m.Addr(), "ESP_E00005")
	for _, topic := range []string{hbTopicOf("ESP_E00005"), dataTopicOf("ESP_E00005")} {
		if _, err := dev.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte("again")}); err != nil {
			t.Fatal(err)
		}
		if d := h.next(t); d.topic != topic {
			t.Fatalf("after the restart: %+v, want %s", d, topic)
		}
	}
}

// The will: when the hub's connection dies without a DISCONNECT the broker
// publishes the retained "offline"; the reconnect announces it again.
func TestExternalWillAndAnnounceAfterReconnect(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	status := contract.ServerStatusTopic("god")
	var x *External
	x, err := NewExternal(ExternalConfig{
		URL:      m.URL(false),
		ClientID: "hub-test-will",
		Backoff:  quickBackoff,
		Will:     &Message{Topic: status, Payload: []byte(`{"status":"offline","reason":"unexpected_disconnect"}`), QoS: 1, Retain: true},
		OnConnect: func(ctx context.Context) {
			_ = x.Publish(ctx, status, []byte(`{"status":"online"}`), 1, true)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := newHubSide()
	x.Subscribe(contract.SharedSubscriptions, contract.OrderedSubscriptions(), h.deliver, h.handover)
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() })
	heard := make(chan string, 16)
	w := dialPahoWith(t, m.Addr(), "watcher", func(pr paho.PublishReceived) (bool, error) {
		heard <- string(pr.Packet.Payload)
		return true, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := w.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: status, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	expect := func(want string) {
		t.Helper()
		select {
		case p := <-heard:
			if !strings.Contains(p, want) {
				t.Fatalf("server status %s, want %s", p, want)
			}
		case <-time.After(waitLimit):
			t.Fatalf("no server status %s", want)
		}
	}
	expect(`"online"`) // retained, from the first connect
	x.cm.TerminateConnectionForTest()
	expect("unexpected_disconnect")
	expect(`"online"`)
}

// The ordered set can be released and taken again (the device-events lease
// of several replicas): while released only readings and diagnostics come.
func TestExternalOrderedSetOnDemand(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	h := newHubSide()
	x := startExternal(t, ExternalConfig{URL: m.URL(false)}, h)
	dev, _ := dialPahoSession(t, m.Addr(), "ESP_E00006")
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	send := func(topic, payload string) {
		if _, err := dev.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Ordered(ctx, false); err != nil {
		t.Fatal(err)
	}
	send(hbTopicOf("ESP_E00006"), "unheard")
	send(dataTopicOf("ESP_E00006"), "r1")
	if d := h.next(t); d.payload != "r1" {
		t.Fatalf("ordered set released: got %+v before the reading", d)
	}
	if err := x.Ordered(ctx, true); err != nil {
		t.Fatal(err)
	}
	send(hbTopicOf("ESP_E00006"), "heard")
	if d := h.next(t); d.payload != "heard" {
		t.Fatalf("ordered set taken again: %+v", d)
	}
}

// Username and password: right ones connect, a wrong password never does
// (the hub keeps trying, not connected).
func TestExternalPasswordAuthentication(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{Users: map[string]string{"kaiser": "s3cret-pw"}})
	x := startExternal(t, ExternalConfig{URL: m.URL(false), Username: "kaiser", Password: "s3cret-pw"}, newHubSide())
	if !x.Connected() {
		t.Fatal("not connected with the right password")
	}
	reg := prometheus.NewRegistry()
	bad := startExternal(t, ExternalConfig{URL: m.URL(false), Username: "kaiser", Password: "wrong",
		ClientID: "hub-test-bad", ConnectWait: 300 * time.Millisecond, Registerer: reg}, newHubSide())
	if bad.Connected() || testutil.ToFloat64(bad.connFails) == 0 {
		t.Fatalf("wrong password: connected %v, failures %v", bad.Connected(), testutil.ToFloat64(bad.connFails))
	}
}

// mqtts:// with the broker's CA and a client certificate the broker requires.
func TestExternalTLSWithClientCertificate(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	m := mosquitto.Start(t, mosquitto.Options{TLS: &mosquitto.TLSFiles{
		CA: pki.ca, Cert: pki.serverCert, Key: pki.serverKey, RequireCertificate: true}})
	h := newHubSide()
	x := startExternal(t, ExternalConfig{URL: m.URL(true), CAFile: pki.ca,
		CertFile: pki.clientCert, KeyFile: pki.clientKey}, h)
	if !x.Connected() {
		t.Fatalf("not connected over TLS; broker log:\n%s", m.Log())
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := x.Publish(ctx, contract.ServerStatusTopic("god"), []byte(`{"status":"online"}`), 1, true); err != nil {
		t.Fatal(err)
	}
	if _, err := NewExternal(ExternalConfig{URL: m.URL(false), ClientID: "x", CAFile: pki.ca}); err == nil {
		t.Fatal("a CA with mqtt:// was accepted")
	}
}

func TestParseBrokerURL(t *testing.T) {
	for raw, want := range map[string]string{
		"mqtt://broker.lan":        "mqtt://broker.lan:1883",
		"mqtts://broker.lan":       "mqtts://broker.lan:8883",
		"mqtt://10.0.0.5:1884/":    "mqtt://10.0.0.5:1884",
		"mqtts://[::1]:8884":       "mqtts://[::1]:8884",
		"mqtt://user:pw@host:1883": "",
		"http://host":              "",
		"mqtt://":                  "",
		"mqtt://host:0":            "",
		"mqtt://host/topic":        "",
	} {
		u, err := ParseBrokerURL(raw)
		switch {
		case want == "" && err == nil:
			t.Errorf("%s accepted as %s", raw, u)
		case want != "" && (err != nil || u.String() != want):
			t.Errorf("%s: %v %v, want %s", raw, u, err, want)
		}
	}
	if _, err := ParseBrokerURL("mqtt://user:pw@host"); err == nil || strings.Contains(err.Error(), "pw") {
		t.Fatalf("the password is echoed: %v", err)
	}
}

type testPKI struct{ ca, serverCert, serverKey, clientCert, clientKey string }

// newTestPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, as PEM files.
func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kaiser test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ip bool) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return write(cn+".crt", "CERTIFICATE", der), write(cn+".key", "EC PRIVATE KEY", kder)
	}
	p := testPKI{ca: write("ca.crt", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf(2, "broker", x509.ExtKeyUsageServerAuth, true)
	p.clientCert, p.clientKey = leaf(3, "hub", x509.ExtKeyUsageClientAuth, false)
	return p
}
