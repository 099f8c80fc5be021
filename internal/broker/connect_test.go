package broker

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kaiserhub/kaiser/internal/sim"
)

// stoppedClock is a clock that never moves, and the waits the broker asked
// for: the connect rate's arithmetic without timing.
type stoppedClock struct {
	mu    sync.Mutex
	t     time.Time
	waits []time.Duration
}

func (c *stoppedClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *stoppedClock) wait(d time.Duration, _ <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
}

func (c *stoppedClock) recorded() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

func (c *stoppedClock) install(e *Embedded) {
	e.now = c.now
	e.wait = c.wait
}

func knownESP(id string) bool { return strings.HasPrefix(id, "ESP_") }

// Past the connect rate a CONNACK waits for the client's turn; an unknown
// client that would wait longer than ConnectDelay is refused, a known
// device is never refused (baseline nodes give up after 10 failed
// attempts) and waits at most ConnectDelay.
func TestConnectRateDelaysAndRefusesOnlyUnknownClients(t *testing.T) {
	clock := &stoppedClock{t: time.Unix(1_800_000_000, 0)}
	e, logs := startBroker(t, Config{
		Known:  knownESP,
		Limits: Limits{ConnectRate: 1, ConnectDelay: 3 * time.Second},
	}, clock.install)

	// The burst is 2; then 1 s, 2 s and 3 s of debt.
	for _, id := range []string{"tool-1", "tool-2", "tool-3", "tool-4", "tool-5"} {
		w, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: id})
		if err != nil {
			t.Fatalf("%s within the rate and the delay: %v", id, err)
		}
		defer w.Kill()
	}
	if _, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: "tool-6"}); err == nil ||
		!strings.Contains(err.Error(), "code 3") {
		t.Fatalf("unknown client past the delay: %v, want CONNACK 3 (server unavailable)", err)
	}
	refusedV5 := dialPahoErr(t, e.Addr(), "tool-7")
	if refusedV5 == nil || !strings.Contains(refusedV5.Error(), "connection rate exceeded") {
		t.Fatalf("MQTT 5 client past the delay: %v, want 0x9F", refusedV5)
	}
	for _, id := range []string{"ESP_A00001", "ESP_A00002", "ESP_A00003"} {
		w, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: id})
		if err != nil {
			t.Fatalf("known device %s refused: %v", id, err)
		}
		defer w.Kill()
	}

	s := time.Second
	want := []time.Duration{s, 2 * s, 3 * s, 3 * s, 3 * s, 3 * s}
	if waits := clock.recorded(); fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedConnectRate)); n != 2 {
		t.Fatalf("refused connect_rate = %v, want 2", n)
	}
	if n := testutil.ToFloat64(e.delayed); n != 6 {
		t.Fatalf("connects delayed = %v, want 6", n)
	}
	if n := len(logs.with(`"reason":"connect_rate"`)); n != 2 {
		t.Fatalf("%d refusal lines, want 2", n)
	}
}

// A delayed CONNECT ends when shutdown begins instead of holding it up.
func TestShutdownEndsADelayedConnect(t *testing.T) {
	waiting := make(chan struct{})
	e, _ := startBroker(t, Config{
		Known:  knownESP,
		Limits: Limits{ConnectRate: 0.001, ConnectDelay: time.Hour},
	}, func(e *Embedded) {
		wait := e.wait
		e.wait = func(d time.Duration, stop <-chan struct{}) {
			close(waiting)
			wait(d, stop)
		}
	})
	dialed := make(chan error, 1)
	go func() {
		w, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: "ESP_A00001"})
		if err == nil {
			w.Kill()
		}
		dialed <- err
	}()
	select {
	case <-waiting:
	case <-time.After(waitLimit):
		t.Fatal("the known device's CONNECT was not delayed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := e.StopAccepting(ctx); err != nil {
		t.Fatalf("stop accepting with a delayed connect: %v", err)
	}
	if err := <-dialed; err == nil {
		t.Fatal("the delayed device was admitted during shutdown")
	}
}

// Beyond MaxClients sessions an unknown client is refused; a known device
// is admitted whatever the count, and the limit in force is at least twice
// the registered fleet.
func TestClientLimitSparesKnownDevicesAndGrowsWithTheFleet(t *testing.T) {
	var fleet atomic.Int64
	e, _ := startBroker(t, Config{
		Known:  knownESP,
		Fleet:  func() int { return int(fleet.Load()) },
		Limits: Limits{MaxClients: 2, ConnectRate: 1000},
	})
	dial := func(id string) error {
		w, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: id})
		if err == nil {
			t.Cleanup(w.Kill)
		}
		return err
	}
	for _, id := range []string{"tool-1", "tool-2"} {
		if err := dial(id); err != nil {
			t.Fatalf("%s within the limit: %v", id, err)
		}
	}
	if err := dial("tool-3"); err == nil {
		t.Fatal("unknown client beyond the limit admitted")
	}
	if err := dial("ESP_A00001"); err != nil {
		t.Fatalf("known device refused by the client limit: %v", err)
	}

	fleet.Store(2) // limit in force: 4 sessions; 3 are held
	if err := dial("tool-3"); err != nil {
		t.Fatalf("unknown client within twice the fleet: %v", err)
	}
	if err := dial("tool-4"); err == nil {
		t.Fatal("unknown client beyond twice the fleet admitted")
	}
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedClientLimit)); n != 2 {
		t.Fatalf("refused client_limit = %v, want 2", n)
	}
}

// A connection that never sends CONNECT is closed (mochi waited forever).
func TestSilentConnectionIsClosed(t *testing.T) {
	e, logs := startBroker(t, Config{}, func(e *Embedded) { e.connectTimeout = 50 * time.Millisecond })
	conn, err := net.Dial("tcp", e.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := &rawClient{conn: conn, r: bufio.NewReader(conn)}
	rc.awaitClosed(t)
	logs.await(t, "no CONNECT in time")
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedConnectTimeout)); n != 1 {
		t.Fatalf("refused connect_timeout = %v, want 1", n)
	}
}

// dialPahoErr connects an MQTT 5 client and returns the refusal.
func dialPahoErr(t *testing.T, addr, id string) error {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	_, err = c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 60, CleanStart: true})
	if err == nil {
		_ = c.Disconnect(&paho.Disconnect{})
	}
	return err
}
