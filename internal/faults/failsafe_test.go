package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
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
	const ttl = 5 * time.Second
	s, a, n, next := runningPump(t, ttl)

	locked := s.lockLeases(t)
	off, _ := n.AwaitWithin(t, next, "the fail-safe OFF", commandIn(5, "OFF"), 30*time.Second)
	// Sent in the grace, which ends half the margin (a twentieth of the
	// TTL) before the lease can expire, at most a TTL after the last
	// renewal, which came before the lock.
	if late := off.Timestamp.Sub(locked.Add(ttl)); late > 0 {
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
	if sent := loggedSent(t, a, "jobs lease not renewed: fail-safe OFF sent to every output that may run"); sent != 1 {
		t.Fatalf("the fail-safe line reports %d OFFs, want 1", sent)
	}
}

// A primary stopped (SIGTERM) while it cannot renew its lease leaves no
// primary behind either: it switches the outputs off before it stops.
func TestStopDuringDatabaseOutageSwitchesOutputsOff(t *testing.T) {
	// A long lease: the stop comes while the term still lasts, after a
	// renewal has failed (each call gives up after 2 s).
	const ttl = 20 * time.Second
	s, a, n, next := runningPump(t, ttl)

	s.lockLeases(t)
	a.awaitLogged(t, "a failed renewal", 15*time.Second, func(l logLine) bool {
		return l.Msg == "lease call failed; retrying" && l.Op == "renew"
	})
	a.stop()
	n.AwaitWithin(t, next, "the fail-safe OFF", commandIn(5, "OFF"), 30*time.Second)
	awaitOutput(t, n, 5, "off after the fail-safe OFF", func(st sim.ActuatorState) bool { return !st.Energised })
	const line = "stopping while the jobs lease cannot be renewed: fail-safe OFF sent to every output that may run"
	if sent := loggedSent(t, a, line); sent != 1 {
		t.Fatalf("the fail-safe line reports %d OFFs, want 1", sent)
	}
}

// runningPump starts a site with one replica on a lease of ttl and a
// field-firmware node whose pump runs, switched on for 10 min; next is
// where the node's later messages start.
func runningPump(t *testing.T, ttl time.Duration) (*site, *hub, *simNode, int) {
	t.Helper()
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
	return s, a, n, next
}

// lockLeases makes the database stop answering the replicas' lease calls
// (and their fenced writes): they wait for this lock until the test ends.
// It returns when the lock is held.
func (s *site) lockLeases(t *testing.T) time.Time {
	t.Helper()
	ctx := context.Background()
	tx, err := s.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, `LOCK TABLE leases IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// logLine is the part of a JSON log line these tests read.
type logLine struct {
	Msg  string `json:"msg"`
	Op   string `json:"op"`
	Sent *int   `json:"sent"`
}

// logged are the lines of the hub's log file.
func (h *hub) logged(t *testing.T) []logLine {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(h.dir, "logs", "kaiser.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []logLine
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			lines = append(lines, l)
		}
	}
	return lines
}

// awaitLogged waits until the hub has logged a line that is what.
func (h *hub) awaitLogged(t *testing.T, what string, within time.Duration, is func(logLine) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, l := range h.logged(t) {
			if is(l) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the hub did not log %s within %s", what, within)
}

// loggedSent is the sent count of the hub's log line msg; it fails t
// without one.
func loggedSent(t *testing.T, h *hub, msg string) int {
	t.Helper()
	for _, l := range h.logged(t) {
		if l.Msg == msg && l.Sent != nil {
			return *l.Sent
		}
	}
	t.Fatalf("no log line %q with a sent count", msg)
	return 0
}
