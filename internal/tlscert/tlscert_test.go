package tlscert

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kaiserhub/kaiser/internal/tlscert/tlscerttest"
)

// serve answers TLS handshakes with s on a loopback port.
func serve(t *testing.T, s *Source) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}

// served is the serial number of the certificate a handshake with addr gets.
func served(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestLoadRefusesWhatCannotBeUsed(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := tlscerttest.New(t).Write(t, dir)
	other := tlscerttest.New(t)
	otherKey := filepath.Join(dir, "other-key.pem")
	if err := os.WriteFile(otherKey, other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, cert, key, want string
	}{
		{"no key", certFile, "", "both needed"},
		{"no cert", "", keyFile, "both needed"},
		{"missing cert", filepath.Join(dir, "none.pem"), keyFile, "none.pem"},
		{"missing key", certFile, filepath.Join(dir, "none-key.pem"), "none-key.pem"},
		{"key of another certificate", certFile, otherKey, "private key does not match"},
		{"not PEM", garbage, keyFile, "garbage.pem"},
		{"cert and key swapped", keyFile, certFile, "key.pem"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.cert, c.key, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one naming %q", err, c.want)
			}
		})
	}
}

// TLS 1.0 and 1.1 clients are refused; 1.2 and 1.3 are served.
func TestOldTLSVersionsAreRefused(t *testing.T) {
	cert := tlscerttest.New(t)
	certFile, keyFile := cert.Write(t, t.TempDir())
	s, err := Load(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		cfg := cert.Client()
		cfg.MinVersion, cfg.MaxVersion = v, v
		if c, err := tls.Dial("tcp", addr, cfg); err == nil {
			c.Close()
			t.Fatalf("TLS version %x accepted", v)
		}
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := cert.Client()
		cfg.MaxVersion = v
		if got := served(t, addr, cfg); got != cert.Leaf.SerialNumber.String() {
			t.Fatalf("TLS %x: served serial %s", v, got)
		}
	}
}

// A renewed pair written over the files is served from the next handshake
// on; a broken one is refused and the previous certificate stays.
func TestChangedFilesAreServedFromTheNextHandshake(t *testing.T) {
	dir := t.TempDir()
	first := tlscerttest.New(t)
	certFile, keyFile := first.Write(t, dir)
	var logs bytes.Buffer
	s, err := Load(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s.Register(reg)
	addr := serve(t, s)
	trustBoth := first.Client()

	second := tlscerttest.New(t)
	trustBoth.RootCAs.AddCert(second.Leaf)
	second.Write(t, dir)
	touch(t, 1, certFile, keyFile)
	if got := served(t, addr, trustBoth); got != second.Leaf.SerialNumber.String() {
		t.Fatalf("after renewal served serial %s, want the new %s", got, second.Leaf.SerialNumber)
	}

	// Half a renewal: the certificate written, the key still the old one.
	third := tlscerttest.New(t)
	if err := os.WriteFile(certFile, third.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	touch(t, 2, certFile)
	if got := served(t, addr, trustBoth); got != second.Leaf.SerialNumber.String() {
		t.Fatalf("after a broken renewal served serial %s, want the previous %s", got, second.Leaf.SerialNumber)
	}
	// The broken change is tried once, not on every handshake.
	served(t, addr, trustBoth)
	if n := testutil.ToFloat64(s.reloads.WithLabelValues("failed")); n != 1 {
		t.Fatalf("failed reloads = %v, want 1", n)
	}
	if n := testutil.ToFloat64(s.reloads.WithLabelValues("loaded")); n != 1 {
		t.Fatalf("loaded reloads = %v, want 1", n)
	}
	if !strings.Contains(logs.String(), "previous one stays in use") {
		t.Fatalf("broken renewal not logged:\n%s", logs.String())
	}
	if got, want := gauge(t, reg, "kaiser_tls_certificate_expiry_timestamp_seconds"),
		float64(second.Leaf.NotAfter.Unix()); got != want {
		t.Fatalf("expiry gauge = %v, want %v (the certificate in use)", got, want)
	}
}

// Reload (SIGHUP) reads the files whatever their stamps say; an error keeps
// the certificate in use.
func TestReloadReadsTheFilesAgain(t *testing.T) {
	dir := t.TempDir()
	first := tlscerttest.New(t)
	certFile, keyFile := first.Write(t, dir)
	s, err := Load(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	second := tlscerttest.New(t)
	second.Write(t, dir)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := s.Leaf().SerialNumber; got.Cmp(second.Leaf.SerialNumber) != 0 {
		t.Fatalf("serial %s after reload, want %s", got, second.Leaf.SerialNumber)
	}
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("reload without a key file succeeded")
	}
	if got := s.Leaf().SerialNumber; got.Cmp(second.Leaf.SerialNumber) != 0 {
		t.Fatalf("a failed reload replaced the certificate: serial %s", got)
	}
}

// An expired certificate loads with a warning: a hub whose clock is behind
// (no real-time clock) must still start.
func TestExpiredCertificateLoadsWithAWarning(t *testing.T) {
	old := tlscerttest.NewValid(t, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	var logs bytes.Buffer
	certFile, keyFile := old.Write(t, t.TempDir())
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"has expired", "readable by every user"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("no warning %q:\n%s", want, logs.String())
		}
	}
}

// gauge is the value of the gauge named name in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// touch moves the files' modification time ahead by step minutes, so a
// rewrite within the file system's time granularity still changes them.
func touch(t *testing.T, step int, files ...string) {
	t.Helper()
	at := time.Now().Add(time.Duration(step) * time.Minute)
	for _, f := range files {
		if err := os.Chtimes(f, at, at); err != nil {
			t.Fatal(err)
		}
	}
}
