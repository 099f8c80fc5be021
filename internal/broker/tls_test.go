package broker

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/sim"
	"github.com/kaiserhub/kaiser/internal/tlscert/tlscerttest"
)

// startTLSBroker starts a broker with both listeners, serving a fresh
// self-signed certificate; the returned one trusts it.
func startTLSBroker(t *testing.T, cfg Config, adjust ...func(*Embedded)) (*Embedded, *logSink, tlscerttest.Cert) {
	t.Helper()
	cert := tlscerttest.New(t)
	pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSAddr = "127.0.0.1:0"
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	e, logs := startBroker(t, cfg, adjust...)
	if e.TLSAddr() == "" || e.TLSAddr() == e.Addr() {
		t.Fatalf("TLS listener at %q, plain at %q", e.TLSAddr(), e.Addr())
	}
	return e, logs, cert
}

// dialTLS opens a TLS connection to the broker's TLS listener.
func dialTLS(t *testing.T, e *Embedded, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLimit}, "tcp", e.TLSAddr(), cfg)
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A real MQTT 5 client over TLS publishes a heartbeat that reaches the
// hub's subscription, while the plain listener keeps serving.
func TestTLSListenerCarriesMQTT(t *testing.T) {
	e, _, cert := startTLSBroker(t, Config{})
	got := make(chan string, 4)
	if err := e.Subscribe(contract.HubSubscriptions, func(topic string, _ []byte, _, _ bool) {
		got <- topic
	}); err != nil {
		t.Fatal(err)
	}

	conn := dialTLS(t, e, cert.Client())
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "ESP_A1B2C3", KeepAlive: 60, CleanStart: true}); err != nil {
		t.Fatalf("connect over TLS: %v", err)
	}
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	topic := "kaiser/god/esp/ESP_A1B2C3/system/heartbeat"
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(`{"ts":1}`)}); err != nil {
		t.Fatalf("publish over TLS: %v", err)
	}
	awaitTopic(t, got, topic)

	// The simulator's client over TLS, and the plain listener as before.
	for _, d := range []struct {
		addr string
		tls  *tls.Config
	}{{e.TLSAddr(), cert.Client()}, {e.Addr(), nil}} {
		w, err := sim.DialWire(d.addr, sim.WireOptions{ClientID: "ESP_D4E5F6", TLS: d.tls})
		if err != nil {
			t.Fatalf("%s: %v", d.addr, err)
		}
		topic := "kaiser/god/esp/ESP_D4E5F6/system/heartbeat"
		if err := w.Publish(topic, []byte(`{"ts":2}`), false); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		awaitTopic(t, got, topic)
		w.Kill()
	}
}

func awaitTopic(t *testing.T, got <-chan string, want string) {
	t.Helper()
	select {
	case topic := <-got:
		if topic != want {
			t.Fatalf("delivered %s, want %s", topic, want)
		}
	case <-time.After(waitLimit):
		t.Fatalf("%s never delivered", want)
	}
}

// Plain MQTT on the TLS port is closed, counted and logged once.
func TestPlainMQTTOnTheTLSPortIsRefused(t *testing.T) {
	e, logs, _ := startTLSBroker(t, Config{})
	conn, err := net.DialTimeout("tcp", e.TLSAddr(), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := mqttString(nil, "MQTT")
	body = append(body, 4, 0x02, 0, 60)
	body = mqttString(body, "ESP_A1B2C3")
	rc := &rawClient{conn: conn, r: bufio.NewReader(conn)}
	rc.send(t, append(mqttLength([]byte{0x10}, len(body)), body...))
	rc.awaitClosed(t)
	logs.await(t, "not TLS on the TLS port")
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedTLSHandshake)); n != 1 {
		t.Fatalf("refused tls_handshake = %v, want 1", n)
	}
	if _, err := sim.DialWire(e.TLSAddr(), sim.WireOptions{ClientID: "ESP_A1B2C3"}); err == nil {
		t.Fatal("a plain MQTT client was admitted on the TLS port")
	}
}

// A client that does not trust the certificate, or offers only TLS 1.1,
// fails its handshake; the broker counts and logs it.
func TestFailedTLSHandshakesAreCounted(t *testing.T) {
	e, logs, cert := startTLSBroker(t, Config{})
	old := cert.Client()
	old.MinVersion, old.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	for i, cfg := range []*tls.Config{
		{MinVersion: tls.VersionTLS12, ServerName: "127.0.0.1"}, // system roots only
		old,
	} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLimit}, "tcp", e.TLSAddr(), cfg)
		if err == nil {
			c.Close()
			t.Fatalf("client %d: handshake succeeded", i)
		}
	}
	deadline := time.After(waitLimit)
	for len(logs.with("mqtt TLS handshake failed")) < 2 {
		select {
		case <-logs.notify:
		case <-deadline:
			t.Fatalf("handshake failures not logged: %q", logs.all())
		}
	}
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedTLSHandshake)); n != 2 {
		t.Fatalf("refused tls_handshake = %v, want 2", n)
	}
}

// The door's rules hold on the TLS listener: the CONNECT deadline (which
// covers the handshake) and the packet limit.
func TestTLSListenerKeepsTheDoor(t *testing.T) {
	e, logs, cert := startTLSBroker(t, Config{}, func(e *Embedded) { e.connectTimeout = 100 * time.Millisecond })

	// No handshake at all.
	silent, err := net.DialTimeout("tcp", e.TLSAddr(), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	(&rawClient{conn: silent, r: bufio.NewReader(silent)}).awaitClosed(t)
	logs.await(t, "no TLS handshake in time")

	// A handshake, then no CONNECT.
	quiet := dialTLS(t, e, cert.Client())
	(&rawClient{conn: quiet, r: bufio.NewReader(quiet)}).awaitClosed(t)
	logs.await(t, "no CONNECT in time")
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedConnectTimeout)); n != 2 {
		t.Fatalf("refused connect_timeout = %v, want 2", n)
	}

	// A declared 100 MB PUBLISH closes the connection unread.
	e, logs, cert = startTLSBroker(t, Config{})
	rc, code := connectRaw(t, dialTLS(t, e, cert.Client()), "ESP_A1B2C3")
	if code != 0 {
		t.Fatalf("connack %d", code)
	}
	rc.send(t, append(mqttLength([]byte{0x30}, 100<<20), mqttString(nil, "kaiser/god/esp/ESP_A1B2C3/sensor/4/data")...))
	rc.awaitClosed(t)
	if line := logs.await(t, "over the limit"); !strings.Contains(line, `"client_id":"ESP_A1B2C3"`) {
		t.Fatalf("the line does not name the client: %s", line)
	}
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedPacketTooLarge)); n != 1 {
		t.Fatalf("refused packet_too_large = %v, want 1", n)
	}
}

// The connect rate is the broker's: CONNECTs through either listener draw
// on one budget, so a second port is not a second allowance.
func TestBothListenersShareTheConnectRate(t *testing.T) {
	clock := &stoppedClock{t: time.Unix(1_800_000_000, 0)}
	e, _, cert := startTLSBroker(t, Config{
		Limits: Limits{ConnectRate: 1, ConnectDelay: time.Millisecond},
	}, clock.install)
	dial := func(addr, id string, cfg *tls.Config) error {
		w, err := sim.DialWire(addr, sim.WireOptions{ClientID: id, TLS: cfg})
		if err == nil {
			t.Cleanup(w.Kill)
		}
		return err
	}
	// The burst is 2: one through each listener.
	if err := dial(e.Addr(), "tool-1", nil); err != nil {
		t.Fatal(err)
	}
	if err := dial(e.TLSAddr(), "tool-2", cert.Client()); err != nil {
		t.Fatal(err)
	}
	if err := dial(e.TLSAddr(), "tool-3", cert.Client()); err == nil || !strings.Contains(err.Error(), "code 3") {
		t.Fatalf("third CONNECT, over TLS: %v, want CONNACK 3", err)
	}
	if err := dial(e.Addr(), "tool-4", nil); err == nil || !strings.Contains(err.Error(), "code 3") {
		t.Fatalf("fourth CONNECT, plain: %v, want CONNACK 3", err)
	}
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedConnectRate)); n != 2 {
		t.Fatalf("refused connect_rate = %v, want 2", n)
	}
}

// A TLS address without a certificate is refused at Start.
func TestTLSListenerNeedsACertificate(t *testing.T) {
	e, err := NewEmbedded(Config{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Start(); err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Fatalf("start = %v, want a refusal naming the missing certificate", err)
	}
}
