package faults

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/sim"
)

// Promise (docs/decisions/0031-lease-fail-safe.md): a primary that cannot
// renew its lease, because the database does not answer, switches off the
// outputs it may have left running before the lease can expire, and then
// exits. A field-firmware node ignores a command's duration, so without
// this its pump would run until a primary is back.
func TestLeaseLossSwitchesOutputsOff(t *testing.T) {
	const ttl = 2 * time.Second
	s := startSite(t)
	a := s.replica(t, "--lease-ttl", ttl.String())
	awaitRole(t, a, "primary", 30*time.Second)
	token := a.setupAdmin()
	const id = "ESP_FA15AF"
	a.register(token, id)
	n := s.node(t, id, "default", nil)
	awaitDevice(t, a, token, id, "online")
	configurePump(t, a, token, id)

	from := n.Mark()
	on := command(t, a, token, id, map[string]any{"command": "ON", "duration": 600})
	_, next := n.Await(t, from, "the ON for 10 min", commandIn(5, "ON"))
	awaitCommand(t, a, token, on, "acknowledged")
	awaitOutput(t, n, 5, "energised by the ON", func(st sim.ActuatorState) bool { return st.Energised })

	// The database stops answering the replica's lease calls (and its
	// fenced writes): they wait for this lock until the test ends.
	ctx := context.Background()
	tx, err := s.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, `LOCK TABLE leases IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	locked := time.Now() // after the last renewal that could succeed

	off, _ := n.AwaitWithin(t, next, "the fail-safe OFF", commandIn(5, "OFF"), 20*time.Second)
	// Sent before the lease could expire: at most a TTL after the last
	// renewal, which came before the lock; the node hears it a moment later.
	if late := off.Timestamp.Sub(locked.Add(ttl)); late > time.Second {
		t.Fatalf("the fail-safe OFF reached the node %s after the lease could expire", late)
	}
	awaitOutput(t, n, 5, "off after the fail-safe OFF", func(st sim.ActuatorState) bool { return !st.Energised })
	t.Logf("lock → fail-safe OFF at the node: %.2f s (lease TTL %s)", off.Timestamp.Sub(locked).Seconds(), ttl)

	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the replica still runs 30 s after losing its lease")
	}
	if code := a.cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatal("the replica that lost its lease exited 0: its supervisor would not know")
	}
	logged, err := os.ReadFile(filepath.Join(a.dir, "logs", "kaiser.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), "fail-safe OFF sent to every output that may run") ||
		!strings.Contains(string(logged), `"sent":1`) {
		t.Fatalf("no fail-safe line with one OFF in the log:\n%s", tail(logged, 4<<10))
	}
}

// tail is the end of b, at most n bytes.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
