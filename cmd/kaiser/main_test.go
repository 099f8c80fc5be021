package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
