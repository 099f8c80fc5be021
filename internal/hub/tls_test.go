package hub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/tlscert/tlscerttest"
)

// tlsHub is a configuration with both TLS listeners on free ports and a
// fresh self-signed certificate; the returned one trusts it.
func tlsHub(t *testing.T) (Config, tlscerttest.Cert) {
	t.Helper()
	cert := tlscerttest.New(t)
	certFile, keyFile := cert.Write(t, t.TempDir())
	return Config{
		HTTPSAddr:   "127.0.0.1:0",
		MQTTTLSAddr: "127.0.0.1:0",
		TLSCertFile: certFile,
		TLSKeyFile:  keyFile,
		// The default cost makes the start's dummy hash take seconds
		// under -race, CPU that a loaded CI machine lends the other tests.
		BcryptCost: 4,
	}, cert
}

// httpsClient trusts only cfg's roots and speaks HTTP/2, as browsers do.
func httpsClient(cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   cfg,
		ForceAttemptHTTP2: true,
	}}
}

// With TLS on, a real MQTT client over TLS is a device like any other, the
// HTTPS listener serves the API with the certificate, and the plain
// listeners the firmware needs (:1883, :8000) keep serving.
func TestTLSListenersServeBesideThePlainOnes(t *testing.T) {
	cfg, cert := tlsHub(t)
	h := startHub(t, cfg)
	defer stopHub(t, h)

	// MQTT over TLS: the heartbeat is ingested and acknowledged.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", h.MQTTTLSAddr(), cert.Client())
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	dev, err := connectClient(t, conn, "ESP_A1B2C3", nil)
	if err != nil {
		t.Fatalf("MQTT over TLS: %v", err)
	}
	dev.subscribe(t, "kaiser/god/esp/ESP_A1B2C3/system/heartbeat/ack")
	if err := dev.publish(contract.DeviceTopic("god", "ESP_A1B2C3", "system/heartbeat"), heartbeat(61), false); err != nil {
		t.Fatal(err)
	}
	if m := dev.next(t, 5*time.Second); !strings.Contains(m.payload, `"status":"pending_approval"`) {
		t.Fatalf("ack over TLS: %s", m.payload)
	}
	if err := h.Store.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	devs, err := h.Store.LoadDevices(context.Background())
	if err != nil || len(devs) != 1 || devs[0].DeviceID != "ESP_A1B2C3" || devs[0].Status != device.StatusPending {
		t.Fatalf("device over TLS not stored: %+v %v", devs, err)
	}

	// Plain MQTT on the TLS port fails; on the plain port it works.
	if c, err := dial(t, h.MQTTTLSAddr(), "ESP_D4E5F6", nil); err == nil {
		c.close()
		t.Fatal("plain MQTT admitted on the TLS port")
	}
	mustDial(t, h.MQTTAddr(), "ESP_D4E5F6").close()

	// HTTPS answers with the certificate, TLS 1.2 at least.
	resp, err := httpsClient(cert.Client()).Get("https://" + h.HTTPSAddr() + "/api/v1/health")
	if err != nil {
		t.Fatalf("https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil ||
		resp.TLS.PeerCertificates[0].SerialNumber.Cmp(cert.Leaf.SerialNumber) != 0 ||
		resp.TLS.Version < tls.VersionTLS12 || resp.ProtoMajor != 2 {
		t.Fatalf("https health: %d over %s, tls %+v", resp.StatusCode, resp.Proto, resp.TLS)
	}
	// An HTTP/1.1 client is served as well.
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cert.Client()}}
	if resp, err := h1.Get("https://" + h.HTTPSAddr() + "/api/v1/health"); err != nil || resp.ProtoMajor != 1 {
		t.Fatalf("https over HTTP/1.1: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Same routes, same answers: the auth status tells of the MQTT TLS listener.
	resp, err = httpsClient(cert.Client()).Get("https://" + h.HTTPSAddr() + "/api/v1/auth/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		MQTTTLSEnabled bool `json:"mqtt_tls_enabled"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || !st.MQTTTLSEnabled {
		t.Fatalf("auth status over HTTPS: %+v %v", st, err)
	}
	// Plain HTTP to the HTTPS port is not served.
	if resp, err := http.Get("http://" + h.HTTPSAddr() + "/api/v1/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP on the HTTPS port: %d", resp.StatusCode)
		}
	}

	// The plain listener still serves the firmware's processing call.
	if resp := rawHTTP(t, h.HTTPAddr(), `{"esp_id":"ESP_UNKNWN","gpio":34,"sensor_type":"ph",`+
		`"raw_value":2048,"timestamp":1,"metadata":{}}`); !strings.HasPrefix(resp, "HTTP/1.1 200") {
		t.Fatalf("plain processing call: %q", resp)
	}
}

// Without TLS, nothing listens for it and the auth status says so.
func TestTLSIsOffByDefault(t *testing.T) {
	h := startHub(t, Config{BcryptCost: 4})
	defer stopHub(t, h)
	if h.HTTPSAddr() != "" || h.MQTTTLSAddr() != "" || h.TLS != nil {
		t.Fatalf("TLS listeners without TLS configured: %q %q", h.HTTPSAddr(), h.MQTTTLSAddr())
	}
	resp, err := http.Get("http://" + h.HTTPAddr() + "/api/v1/auth/status")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"mqtt_tls_enabled":false`) {
		t.Fatalf("auth status: %s", b)
	}
}

// A TLS listener without a certificate that loads is refused at start, and
// so is a certificate nothing would use and MQTT TLS on 8883.
func TestTLSMisconfigurationRefusesToStart(t *testing.T) {
	good, _ := tlsHub(t)
	dir := t.TempDir()
	garbage := dir + "/garbage.pem"
	if err := os.WriteFile(garbage, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no key", Config{HTTPSAddr: "127.0.0.1:0", TLSCertFile: good.TLSCertFile}, "both a certificate file and a key file"},
		{"no files", Config{MQTTTLSAddr: "127.0.0.1:0"}, "both a certificate file and a key file"},
		{"no listener", Config{TLSCertFile: good.TLSCertFile, TLSKeyFile: good.TLSKeyFile}, "no TLS listener"},
		{"unloadable", Config{HTTPSAddr: "127.0.0.1:0", TLSCertFile: garbage, TLSKeyFile: good.TLSKeyFile}, "garbage.pem"},
		{"port 8883", Config{MQTTTLSAddr: "127.0.0.1:8883", TLSCertFile: good.TLSCertFile,
			TLSKeyFile: good.TLSKeyFile}, "8883"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.DataDir = t.TempDir()
			c.cfg.HTTPAddr, c.cfg.MQTTAddr = "127.0.0.1:0", "127.0.0.1:0"
			h, err := Start(context.Background(), c.cfg)
			if err == nil {
				stopHub(t, h)
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one naming %q", err, c.want)
			}
		})
	}
}

// lineWaiter is a console that tells a waiter of each log line.
type lineWaiter struct {
	mu    sync.Mutex
	lines []string
	more  chan struct{}
}

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.lines = append(w.lines, string(p))
	w.mu.Unlock()
	select {
	case w.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

// await waits until n lines contain substr.
func (w *lineWaiter) await(t *testing.T, substr string, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		w.mu.Lock()
		seen := 0
		for _, l := range w.lines {
			if strings.Contains(l, substr) {
				seen++
			}
		}
		w.mu.Unlock()
		if seen >= n {
			return
		}
		select {
		case <-w.more:
		case <-deadline:
			t.Fatalf("%d of %d lines with %q: %q", seen, n, substr, w.lines)
		}
	}
}

// A value on Reload (SIGHUP in kaiser serve) reads the certificate again:
// the renewed one is served from the next handshake, with no restart.
func TestReloadServesTheRenewedCertificate(t *testing.T) {
	cfg, first := tlsHub(t)
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.MQTTAddr = freeAddr(t), freeAddr(t)
	cfg.HTTPSAddr, cfg.MQTTTLSAddr = freeAddr(t), freeAddr(t)
	console := &lineWaiter{more: make(chan struct{}, 1)}
	cfg.Console = console
	reload := make(chan os.Signal, 1)
	cfg.Reload = reload
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	console.await(t, "kaiser hub ready", 1)

	trust := first.Client()
	serial := func() string {
		t.Helper()
		resp, err := httpsClient(trust).Get("https://" + cfg.HTTPSAddr + "/api/v1/health")
		if err != nil {
			t.Fatalf("https: %v", err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	if got := serial(); got != first.Leaf.SerialNumber.String() {
		t.Fatalf("served %s, want %s", got, first.Leaf.SerialNumber)
	}

	second := tlscerttest.New(t)
	trust.RootCAs.AddCert(second.Leaf)
	if err := os.WriteFile(cfg.TLSCertFile, second.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.TLSKeyFile, second.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- os.Interrupt // any value; kaiser serve sends SIGHUP
	console.await(t, "TLS certificate loaded", 2)
	if got := serial(); got != second.Leaf.SerialNumber.String() {
		t.Fatalf("after reload served %s, want the renewed %s", got, second.Leaf.SerialNumber)
	}
}
