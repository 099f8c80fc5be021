package broker

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/sim"
	"github.com/kaiserhub/kaiser/internal/tlscert/tlscerttest"
)

// counter counts deliveries and signals when a target is reached.
type counter struct {
	n, target atomic.Int64
	reached   chan struct{}
}

func (c *counter) add() {
	if c.n.Add(1) == c.target.Load() {
		c.reached <- struct{}{}
	}
}

// benchBroker is a broker with both listeners, a connect rate no benchmark
// reaches, and a subscription that counts deliveries.
func benchBroker(b *testing.B) (*Embedded, *tls.Config, *counter) {
	b.Helper()
	cert := tlscerttest.New(b)
	pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewEmbedded(Config{
		Addr:    "127.0.0.1:0",
		TLSAddr: "127.0.0.1:0",
		TLS:     &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		Logger:  slog.New(slog.DiscardHandler),
		Limits:  Limits{ConnectRate: 1e9},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	c := &counter{reached: make(chan struct{}, 1)}
	if err := e.Subscribe([]string{"kaiser/#"}, func(string, []byte, bool, bool) { c.add() }); err != nil {
		b.Fatal(err)
	}
	return e, cert.Client(), c
}

// BenchmarkConnect is one connection to CONNACK and its close, plain and
// over TLS (ECDSA P-256 certificate, TLS 1.3).
func BenchmarkConnect(b *testing.B) {
	e, client, _ := benchBroker(b)
	for _, c := range []struct {
		name, addr string
		tls        *tls.Config
	}{{"plain", e.Addr(), nil}, {"tls", e.TLSAddr(), client}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				w, err := sim.DialWire(c.addr, sim.WireOptions{ClientID: fmt.Sprintf("bench-%d", i), TLS: c.tls})
				if err != nil {
					b.Fatal(err)
				}
				w.Kill()
			}
		})
	}
}

// BenchmarkPublish is QoS 0 publishes of a 200-byte reading from one
// client until the hub's subscription has them all, plain and over TLS.
func BenchmarkPublish(b *testing.B) {
	e, client, delivered := benchBroker(b)
	payload := []byte(fmt.Sprintf(`{"esp_id":"ESP_A1B2C3","gpio":34,"sensor_type":"ph","raw":2048,`+
		`"value":6.47,"unit":"pH","quality":"good","ts":1767600930,"raw_mode":true,"pad":"%0100d"}`, 0))
	for _, c := range []struct {
		name, addr string
		tls        *tls.Config
	}{{"plain", e.Addr(), nil}, {"tls", e.TLSAddr(), client}} {
		b.Run(c.name, func(b *testing.B) {
			w, err := sim.DialWire(c.addr, sim.WireOptions{ClientID: "ESP_A1B2C3", TLS: c.tls})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Kill()
			delivered.target.Store(delivered.n.Load() + int64(b.N))
			b.ResetTimer()
			for range b.N {
				if err := w.Publish("kaiser/god/esp/ESP_A1B2C3/sensor/34/data", payload, false); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			select {
			case <-delivered.reached:
			case <-time.After(30 * time.Second):
				b.Fatalf("%d of %d delivered", delivered.n.Load(), delivered.target.Load())
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
