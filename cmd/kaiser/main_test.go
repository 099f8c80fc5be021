package main

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/tlscert/tlscerttest"
)

// A TLS listener asked for without a certificate that loads, a certificate
// nothing uses, or MQTT TLS on 8883 stops kaiser serve before anything
// starts, with the flags named (docs/decisions/0019-tls.md).
func TestServeRefusesTLSMisconfiguration(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := tlscerttest.New(t).Write(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"https without files", []string{"--https-addr", ":8443"}, nil,
			"--tls-key (KAISER_TLS_KEY): a TLS listener needs both a certificate file and a key file"},
		{"mqtt tls without key", []string{"--mqtt-tls-addr", ":8884", "--tls-cert", certFile}, nil,
			"needs both a certificate file and a key file"},
		{"files without listener", []string{"--tls-cert", certFile, "--tls-key", keyFile}, nil,
			"no TLS listener asked for"},
		{"unloadable", []string{"--https-addr", ":8443", "--tls-cert", garbage, "--tls-key", keyFile}, nil,
			"garbage.pem"},
		{"8883 from the environment", []string{"--tls-cert", certFile, "--tls-key", keyFile},
			map[string]string{"KAISER_MQTT_TLS_ADDR": ":8883"}, "--mqtt-tls-addr (KAISER_MQTT_TLS_ADDR), --tls-cert (KAISER_TLS_CERT), --tls-key (KAISER_TLS_KEY): mqtt tls address :8883: not port 8883"},
		{"not an address", []string{"--https-addr", "8443", "--tls-cert", certFile, "--tls-key", keyFile}, nil,
			`--https-addr (KAISER_HTTPS_ADDR): "8443" is not a host:port address`},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			args := append([]string{"serve", "--data-dir", t.TempDir()}, c.args...)
			if code := run(args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("stderr %q, want %q", stderr.String(), c.want)
			}
		})
	}
}

// kaiser sim trusts the --ca file's certificates and refuses a file without one.
func TestSimTLSTrustsTheCAFile(t *testing.T) {
	cert := tlscerttest.New(t)
	certFile, keyFile := cert.Write(t, t.TempDir())
	cfg, err := simTLS(false, certFile)
	if err != nil || cfg == nil || cfg.RootCAs == nil {
		t.Fatalf("--ca: %+v %v", cfg, err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: cfg.RootCAs, DNSName: "localhost"}); err != nil {
		t.Fatalf("the CA file's certificate is not trusted: %v", err)
	}
	if _, err := simTLS(true, keyFile); err == nil {
		t.Fatal("a key file accepted as CA file")
	}
	if cfg, err := simTLS(false, ""); cfg != nil || err != nil {
		t.Fatalf("plain: %+v %v", cfg, err)
	}
}
