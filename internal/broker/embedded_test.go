package broker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A client that mochi's own list has lost (a session takeover racing the
// end of the old session deletes the id) is still disconnected at
// shutdown, and Close returns instead of waiting for it forever.
func TestShutdownDisconnectsAClientTheBrokerListLost(t *testing.T) {
	e, err := NewEmbedded(Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}

	w, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: "ESP_A1B2C3"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Kill()
	cl, ok := e.server.Clients.Get("ESP_A1B2C3")
	if !ok {
		t.Fatal("client not attached")
	}
	e.server.Clients.Delete(cl.ID) // what the takeover race leaves behind

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.StopAccepting(ctx); err != nil {
		t.Fatalf("stop accepting: %v", err)
	}
	select {
	case <-w.Done():
	case <-ctx.Done():
		t.Fatal("the lost client was never disconnected")
	}
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// Closed sessions that never reported their end do not accumulate.
func TestSessionSetPrunesClosedClients(t *testing.T) {
	var ss sessionSet
	e, err := NewEmbedded(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for range 1000 {
		cl := e.server.NewClient(nil, "t", "", false)
		cl.Stop(nil)
		ss.add(cl, grant{})
	}
	if n := len(ss.all()); n > 2*64+1 {
		t.Fatalf("%d closed sessions kept, want them pruned", n)
	}
}
