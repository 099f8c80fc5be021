package hub

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/broker/mosquitto"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// Two replicas on one Mosquitto and one PostgreSQL
// (docs/decisions/0029-replicas.md): the first becomes the primary, the
// second stands by and forwards the API to it; when the primary stops,
// the standby takes over and serves the same site. The whole fleet's
// behaviour across replicas is internal/faults' TestTwoReplicas, with
// real processes.
func TestReplicasHandOver(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	dbURL := pgtest.Start(t, pgtest.Config{}).NewDatabaseURL(t)
	// Every replica signs and checks tokens with the same secret.
	secret := t.TempDir() + "/jwt"
	if err := os.WriteFile(secret, []byte("replicas-share-this-secret-0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	replica := func() (Config, apiClient) {
		addr := freeAddr(t)
		cfg := externalConfig(m, Config{
			DataDir:       t.TempDir(),
			Database:      dbURL,
			HTTPAddr:      addr,
			JWTSecretFile: secret,
			BcryptCost:    4,
			LoginLimit:    10000,
			LeaseTTL:      2 * time.Second,
		})
		return cfg, apiClient{t: t, base: "http://" + addr}
	}
	run := func(cfg Config) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			err := Run(ctx, cfg)
			if ctx.Err() == nil {
				t.Errorf("replica ended on its own: %v", err)
			}
			done <- err
		}()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("replica stopped with %v", err)
			}
		}
	}

	cfgA, a := replica()
	stopA := run(cfgA)
	primaryA := awaitRole(t, a, "primary", 20*time.Second)
	cfgB, b := replica()
	stopB := run(cfgB)
	defer stopB()
	standbyB := awaitRole(t, b, "standby", 20*time.Second)
	if standbyB.Primary == nil || standbyB.Primary.Holder != primaryA.Holder || standbyB.Primary.URL != a.base {
		t.Fatalf("B sees primary %+v, want %s at %s", standbyB.Primary, primaryA.Holder, a.base)
	}

	// Set up through B: only the primary has users, so the call was forwarded.
	setupUsers(t, b)
	viewer := login(t, b, "viewer", "Pass-word1")
	if r := b.do("GET", "/api/v1/esp/devices", viewer, nil); r.status != 200 {
		t.Fatalf("devices through the standby: %d %s", r.status, r.raw)
	}

	// A stops and releases its lease: B is the primary and still knows
	// the users (same database, same JWT secret).
	stopA()
	awaitRole(t, b, "primary", 15*time.Second)
	if r := b.do("GET", "/api/v1/esp/devices", viewer, nil); r.status != 200 {
		t.Fatalf("devices on the new primary: %d %s", r.status, r.raw)
	}

	// The lease manager, which outlives B's standby hub, logs into B's log.
	logged, err := os.ReadFile(filepath.Join(cfgB.DataDir, "logs", "kaiser.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), `"msg":"lease gained","component":"lease"`) {
		t.Fatalf("no lease gained in B's log:\n%s", logged)
	}
}

// replicaStatus is GET /api/v1/health/replica.
type replicaStatus struct {
	Holder  string
	Role    string
	Primary *struct {
		Holder string
		URL    string
	}
}

func awaitRole(t *testing.T, c apiClient, role string, within time.Duration) replicaStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		if st, ok := getReplicaStatus(c); ok {
			last = st.Role
			if st.Role == role && (role == "primary" || st.Primary != nil) {
				return st
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: role %q after %v, want %s", c.base, last, within, role)
	return replicaStatus{}
}

// getReplicaStatus asks c's replica; false while it does not answer (it
// is starting, or changing roles).
func getReplicaStatus(c apiClient) (replicaStatus, bool) {
	var st replicaStatus
	r, err := http.Get(c.base + "/api/v1/health/replica")
	if err != nil {
		return st, false
	}
	defer r.Body.Close()
	return st, r.StatusCode == 200 && json.NewDecoder(r.Body).Decode(&st) == nil
}
