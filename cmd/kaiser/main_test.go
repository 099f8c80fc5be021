package main

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// The external broker's flags: the password comes from a file or the
// environment, never the command line; TLS files need mqtts://; nothing of
// it without --mqtt-broker.
func TestExternalBrokerFlags(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("-"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(env string, kv ...string) (string, string, error) {
		t.Helper()
		if env == "" {
			t.Setenv("KAISER_MQTT_PASSWORD", "")
			os.Unsetenv("KAISER_MQTT_PASSWORD")
		} else {
			t.Setenv("KAISER_MQTT_PASSWORD", env)
		}
		v, src := map[string]string{}, map[string]string{}
		for _, name := range []string{"mqtt-broker", "mqtt-username", "mqtt-password-file", "mqtt-ca",
			"mqtt-client-cert", "mqtt-client-key"} {
			src[name] = "--" + name
		}
		for i := 0; i < len(kv); i += 2 {
			v[kv[i]] = kv[i+1]
		}
		c, err := externalBroker(v, src)
		return c.URL, c.Password, err
	}

	if u, pw, err := parse("", "mqtt-broker", "mqtt://b.lan", "mqtt-password-file", pwFile); err != nil || u != "mqtt://b.lan" || pw != "from-the-file" {
		t.Fatalf("password file: %q %q %v", u, pw, err)
	}
	if _, pw, err := parse("from-env", "mqtt-broker", "mqtts://b.lan", "mqtt-ca", ca); err != nil || pw != "from-env" {
		t.Fatalf("password from the environment: %q %v", pw, err)
	}
	if u, _, err := parse(""); err != nil || u != "" {
		t.Fatalf("no broker: %q %v", u, err)
	}
	for name, kv := range map[string][]string{
		"both password sources": {"mqtt-broker", "mqtt://b.lan", "mqtt-password-file", pwFile},
		"password in the URL":   {"mqtt-broker", "mqtt://hub:secret@b.lan"},
		"user without broker":   {"mqtt-username", "hub"},
		"CA with mqtt://":       {"mqtt-broker", "mqtt://b.lan", "mqtt-ca", ca},
		"cert without key":      {"mqtt-broker", "mqtts://b.lan", "mqtt-client-cert", ca},
		"missing CA file":       {"mqtt-broker", "mqtts://b.lan", "mqtt-ca", filepath.Join(dir, "none")},
		"wrong scheme":          {"mqtt-broker", "tcp://b.lan:1883"},
	} {
		env := ""
		if name == "both password sources" {
			env = "from-env"
		}
		_, _, err := parse(env, kv...)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
}

// --lease-ttl sets the replicas' jobs lease within its bounds, whatever
// the store.
func TestLeaseTTLFlag(t *testing.T) {
	src := map[string]string{"lease-ttl": "--lease-ttl"}
	parse := func(ttl string) (time.Duration, error) {
		t.Helper()
		return leaseTTL(map[string]string{"lease-ttl": ttl}, src)
	}
	if d, err := parse("10s"); err != nil || d != 10*time.Second {
		t.Fatalf("10s: %v %v", d, err)
	}
	if d, err := parse("4s"); err != nil || d != 4*time.Second {
		t.Fatalf("4s: %v %v", d, err)
	}
	for _, bad := range []string{"1s", "6m", "ten", ""} {
		if _, err := parse(bad); err == nil || !strings.Contains(err.Error(), "--lease-ttl") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
