package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/sim"
	"github.com/kaiserhub/kaiser/internal/sim/simtest"
)

// The actuator acceptance points of issue 9, end to end with
// firmware-faithful simulated nodes (internal/sim) against a real hub: in
// this process, or as a separate process that is killed with SIGKILL.

// accSecond is one second of the hub's actuator timings (Config.ActuatorSecond)
// and one second on the simulated nodes' clocks, so that both sides agree on
// what 20 s are: a newer node's own duration, its heartbeats and statuses.
const accSecond = 100 * time.Millisecond

// secs is n seconds of the tests' scale.
func secs(n float64) time.Duration { return time.Duration(n * float64(accSecond)) }

// hubSeconds is a wall duration in the tests' seconds.
func hubSeconds(d time.Duration) float64 { return float64(d) / float64(accSecond) }

// The timing tolerances: skew between the hub's and the node's view of one
// instant (publish vs. receipt), and lateness of a timer's effect on a busy
// machine (a commit, a publish); far below the 10 s of a retry period.
const (
	skew = 50 * time.Millisecond
	late = 5 * accSecond
)

// The two firmware profiles (docs/protocol.md §2.3, `kaiser sim --quirks`).
const (
	baselineFW = "default" // ignores duration, two statuses per command, no correlation echo
	newerFW    = "none"    // enforces duration, echoes correlation ids
)

// rig is a hub under test as its clients see it.
type rig struct {
	t                       *testing.T
	api                     apiClient
	mqtt                    string
	admin, operator, viewer string
}

// inProcess starts a hub in this process with the tests' actuator second.
func inProcess(t *testing.T) (*Hub, *rig) {
	t.Helper()
	h, c := apiHub(t, Config{ActuatorSecond: accSecond})
	t.Cleanup(func() { stopHub(t, h) })
	r := &rig{t: t, api: c, mqtt: h.MQTTAddr()}
	r.admin, r.operator, r.viewer = setupUsers(t, c)
	return h, r
}

// simNode is a simulated node whose traffic the test reads, and which can
// lose the hub's commands on the way (sim.NodeConfig.Lose).
type simNode struct {
	*sim.Node
	*simtest.Recorder
	id string

	mu   sync.Mutex
	lose map[string]int
	lost []sim.Message
}

// startSimNode runs a node with the given firmware profile against broker;
// its clock runs at the tests' scale.
func startSimNode(t *testing.T, broker, id, quirks string) *simNode {
	t.Helper()
	q, err := sim.ParseQuirks(quirks)
	if err != nil {
		t.Fatal(err)
	}
	return runSimNode(t, sim.NodeConfig{EspID: id, Broker: broker, Quirks: q})
}

// runSimNode runs a node of cfg whose clock runs at the tests' scale and
// whose traffic the test reads, until the test ends.
func runSimNode(t *testing.T, cfg sim.NodeConfig) *simNode {
	t.Helper()
	n := &simNode{id: cfg.EspID, Recorder: simtest.NewRecorder(cfg.EspID, 10*time.Second), lose: map[string]int{}}
	cfg.Clock = sim.NewClock(float64(time.Second / accSecond))
	cfg.Observe, cfg.Lose = n.Observe, n.loses
	n.Node = sim.NewNode(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-n.Stopped() })
	return n
}

// loses is the node's network: it loses the commands loseNext asked for.
func (n *simNode) loses(topic string, payload []byte) bool {
	if !strings.Contains(topic, "/actuator/") || !strings.HasSuffix(topic, "/command") {
		return false
	}
	name, _ := body(payload)["command"].(string)
	n.mu.Lock()
	defer n.mu.Unlock()
	left := n.lose[name]
	if left == 0 {
		return false
	}
	if left > 0 {
		n.lose[name] = left - 1
	}
	n.lost = append(n.lost, sim.Message{
		Topic:     topic,
		Payload:   string(payload),
		Timestamp: time.Now(),
	})
	return true
}

// loseNext loses the next count commands named name (-1: all of them).
func (n *simNode) loseNext(name string, count int) {
	n.mu.Lock()
	n.lose[name] = count
	n.mu.Unlock()
}

func (n *simNode) lostCommands() []sim.Message {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]sim.Message(nil), n.lost...)
}

func body(payload []byte) map[string]any {
	var m map[string]any
	_ = json.Unmarshal(payload, &m)
	return m
}

// fields is a message's payload.
func fields(m sim.Message) map[string]any { return body([]byte(m.Payload)) }

func isTopic(m sim.Message, dir string, gpio int, kind string) bool {
	return m.Direction == dir && strings.HasSuffix(m.Topic, fmt.Sprintf("/actuator/%d/%s", gpio, kind))
}

// commandIn matches a command the node received.
func commandIn(gpio int, name string) func(sim.Message) bool {
	return func(m sim.Message) bool {
		return isTopic(m, "in", gpio, "command") && fields(m)["command"] == name
	}
}

// statusOut matches a status the node published.
func statusOut(gpio int, on bool) func(sim.Message) bool {
	return func(m sim.Message) bool { return isTopic(m, "out", gpio, "status") && fields(m)["state"] == on }
}

// answerOut matches anything the node published about gpio: status or response.
func answerOut(gpio int) func(sim.Message) bool {
	return func(m sim.Message) bool {
		return m.Direction == "out" && (isTopic(m, "out", gpio, "status") || isTopic(m, "out", gpio, "response"))
	}
}

// admit brings a node from its first heartbeat to online: pending, approved
// by the admin, online with the next heartbeat.
func (r *rig) admit(n *simNode) {
	r.t.Helper()
	heartbeat := func() {
		if _, ok := n.HeartbeatNow(); !ok {
			r.t.Fatalf("%s stopped", n.id)
		}
	}
	heartbeat()
	r.waitDevice(n.id, "pending_approval")
	if a := r.api.do("POST", "/api/v1/esp/devices/"+n.id+"/approve", r.admin, nil); a.status != 200 {
		r.t.Fatalf("approve: %d %s", a.status, a.raw)
	}
	heartbeat()
	r.waitDevice(n.id, "online")
}

func (r *rig) waitDevice(id, status string) {
	r.t.Helper()
	r.poll("/api/v1/esp/devices/"+id, func(b map[string]any) bool { return b["status"] == status })
}

// poll polls path as the viewer until ok accepts the body.
func (r *rig) poll(path string, ok func(map[string]any) bool) map[string]any {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := r.api.do("GET", path, r.viewer, nil)
		if ok(got.body) {
			return got.body
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s never as expected: %s", path, got.raw)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pump configures a pump with max runtime 60 s on gpio and waits until the
// node applied it and reported it off.
func (r *rig) pump(n *simNode, gpio int) {
	r.t.Helper()
	path := fmt.Sprintf("/api/v1/actuators/%s/%d", n.id, gpio)
	cfg := map[string]any{"actuator_type": "pump", "name": "Irrigation pump", "max_runtime_seconds": 60}
	if c := r.api.do("POST", path, r.operator, cfg); c.status != 200 || c.body["config_sent"] != true {
		r.t.Fatalf("configure: %d %s", c.status, c.raw)
	}
	r.poll(path, func(b map[string]any) bool { return b["config_status"] == "applied" && b["state"] == "off" })
}

// command sends a command as the operator; it returns the command id.
func (r *rig) command(id string, gpio int, cmd map[string]any) string {
	r.t.Helper()
	return r.commandAs(r.operator, id, gpio, cmd)
}

func (r *rig) commandAs(token, id string, gpio int, cmd map[string]any) string {
	r.t.Helper()
	got := r.api.do("POST", fmt.Sprintf("/api/v1/actuators/%s/%d/command", id, gpio), token, cmd)
	if got.status != 200 || got.body["command_sent"] != true {
		r.t.Fatalf("command %v: %d %s", cmd, got.status, got.raw)
	}
	return got.body["command_id"].(string)
}

func (r *rig) commandRecord(id string, ok func(map[string]any) bool) map[string]any {
	r.t.Helper()
	return r.poll("/api/v1/actuators/commands/"+id, ok)
}

func (r *rig) state(id string, gpio int, ok func(st map[string]any) bool) map[string]any {
	r.t.Helper()
	b := r.poll(fmt.Sprintf("/api/v1/actuators/%s/%d/status", id, gpio), func(b map[string]any) bool {
		st, _ := b["state"].(map[string]any)
		return ok(st)
	})
	return b["state"].(map[string]any)
}

// fresh matches a state the device confirmed and that is current.
func fresh(state string) func(map[string]any) bool {
	return func(st map[string]any) bool { return st["state"] == state && st["stale"] == false }
}

// corrID is a received command's correlation id.
func corrID(m sim.Message) string { s, _ := fields(m)["correlation_id"].(string); return s }

// between fails unless d lies in [lo, hi].
func between(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Fatalf("%s after %s, want %s–%s", what, d, lo, hi)
	}
}

// With a simulated baseline node: REST ON with duration 20 s for a pump
// whose max runtime is 60 s → the device gets ON, duration 20 and a
// correlation id → its status, response, status → the command reads
// acknowledged and the actuator on; the node ignores the duration, so after
// 20 s the hub sends OFF (system:duration) and the state becomes off.
func TestAcceptanceBaselineOnForDuration(t *testing.T) {
	h, r := inProcess(t)
	n := startSimNode(t, r.mqtt, "ESP_0A11CE", baselineFW)
	r.admit(n)
	r.pump(n, 5)
	ws := dialWS(t, h, r.viewer, "accept")

	from := n.Mark()
	id := r.command(n.id, 5, map[string]any{"command": "ON", "duration": 20})
	on, next := n.Await(t, from, "the ON", commandIn(5, "ON"))
	if b := fields(on); b["value"] != 1.0 || b["duration"] != 20.0 || b["correlation_id"] != id {
		t.Fatalf("the device got %s", on.Payload)
	}

	// The baseline answers status → response → status (Q16), without the correlation id.
	var answer []string
	for len(answer) < 3 {
		m, at := n.Await(t, next, "the answer", answerOut(5))
		next = at
		b := fields(m)
		switch {
		case strings.HasSuffix(m.Topic, "/status") && b["state"] == true:
			answer = append(answer, "status on")
		case strings.HasSuffix(m.Topic, "/response") && b["success"] == true && b["correlation_id"] == nil:
			answer = append(answer, "response")
		default:
			t.Fatalf("unexpected answer %s %s", m.Topic, m.Payload)
		}
	}
	if strings.Join(answer, ", ") != "status on, response, status on" {
		t.Fatalf("the node answered %v", answer)
	}
	r.commandRecord(id, commandIs("acknowledged"))
	r.state(n.id, 5, fresh("on"))
	seen := map[string]bool{}
	ws.await(t, func(m map[string]any) bool {
		d, _ := m["data"].(map[string]any)
		switch {
		case m["type"] == "command_status" && d["command_id"] == id && d["status"] == "acknowledged":
			seen["ack"] = true
		case m["type"] == "actuator_status" && d["state"] == "on" && d["gpio"] == 5.0:
			seen["on"] = true
		case m["type"] == "actuator_response" && d["command_id"] == id:
			seen["response"] = true
		}
		return len(seen) == 3
	})
	if !simtest.Output(t, n.Node, 5).Energised {
		t.Fatal("the pump is not running on the node")
	}

	off, _ := n.Await(t, next, "the auto-off", commandIn(5, "OFF"))
	between(t, "the OFF came", off.Timestamp.Sub(on.Timestamp), secs(20)-skew, secs(20)+late)
	t.Logf("ON → the hub's OFF: %.2f s", hubSeconds(off.Timestamp.Sub(on.Timestamp)))
	r.state(n.id, 5, fresh("off"))
	rec := r.commandRecord(corrID(off), commandIs("acknowledged"))
	if rec["issued_by"] != "system:duration" || rec["command"] != "OFF" {
		t.Fatalf("the OFF: %v", rec)
	}
	if simtest.Output(t, n.Node, 5).Energised {
		t.Fatal("the pump still runs on the node")
	}
	hist := r.api.do("GET", "/api/v1/actuators/"+n.id+"/5/history?limit=20", r.viewer, nil)
	entries, _ := hist.body["entries"].([]any)
	found := false
	for _, e := range entries {
		e := e.(map[string]any)
		found = found || (e["command_id"] == corrID(off) && e["issued_by"] == "system:duration")
	}
	if !found {
		t.Fatalf("history lacks the auto-off: %s", hist.raw)
	}
}

// A device that never answers: the command ends timeout after 10 s; an
// answer after that is kept as late_ack and changes nothing of the command.
// The late ON still ran on the node, and the auto-off armed at its publish
// still bounds it. Both firmware profiles: the baseline's answer is matched
// by its command, the newer one's by the correlation id.
func TestAcceptanceTimeoutThenLateAck(t *testing.T) {
	for _, fw := range []string{baselineFW, newerFW} {
		t.Run(fw, func(t *testing.T) {
			_, r := inProcess(t)
			n := startSimNode(t, r.mqtt, "ESP_0B0B0B", fw)
			r.admit(n)
			r.pump(n, 5)

			n.loseNext("ON", -1)
			from := n.Mark()
			sent := time.Now()
			id := r.command(n.id, 5, map[string]any{"command": "ON", "duration": 20})
			timedOut := r.commandRecord(id, commandIs("timeout"))
			between(t, "timeout", time.Since(sent), secs(10), secs(10)+late)
			t.Logf("REST ON → timeout seen: %.2f s", hubSeconds(time.Since(sent)))
			if timedOut["late_ack"] != nil {
				t.Fatalf("late_ack before any answer: %v", timedOut)
			}
			lost := n.lostCommands()
			if len(lost) != 1 || n.Since(from, answerOut(5)) != nil {
				t.Fatalf("the node answered or saw more than the one ON: lost %d", len(lost))
			}

			n.Inject(lost[0].Topic, []byte(lost[0].Payload)) // the ON arrives late
			answered := r.commandRecord(id, func(b map[string]any) bool { return b["late_ack"] != nil })
			ack, _ := answered["late_ack"].(map[string]any)
			if answered["status"] != "timeout" || answered["completed_at"] != timedOut["completed_at"] ||
				answered["error"] != timedOut["error"] || ack["success"] != true {
				t.Fatalf("the late answer changed the command: %v, was %v", answered, timedOut)
			}
			r.state(n.id, 5, fresh("on")) // the state is what the device reports

			off, _ := n.Await(t, from, "the auto-off", commandIn(5, "OFF"))
			between(t, "the auto-off came", off.Timestamp.Sub(lost[0].Timestamp), secs(20)-skew, secs(20)+late)
			r.state(n.id, 5, fresh("off"))
		})
	}
}

// An OFF lost on the way is retried, each time with a new correlation id,
// every 10 s, until the status says off (docs/protocol.md K8); then no more.
func TestAcceptanceLostAutoOffRetriedUntilOff(t *testing.T) {
	_, r := inProcess(t)
	n := startSimNode(t, r.mqtt, "ESP_0C0FF0", baselineFW)
	r.admit(n)
	r.pump(n, 5)

	n.loseNext("OFF", 2)
	from := n.Mark()
	r.command(n.id, 5, map[string]any{"command": "ON", "duration": 20})
	on, next := n.Await(t, from, "the ON", commandIn(5, "ON"))
	off, _ := n.Await(t, next, "the third OFF", commandIn(5, "OFF"))
	r.state(n.id, 5, fresh("off"))

	lost := n.lostCommands()
	if len(lost) != 2 {
		t.Fatalf("%d OFFs lost, want 2", len(lost))
	}
	attempts := append(lost, off)
	between(t, "the first OFF", attempts[0].Timestamp.Sub(on.Timestamp), secs(20)-skew, secs(20)+late)
	ids := map[string]bool{}
	for i, a := range attempts {
		ids[corrID(a)] = true
		if i > 0 {
			gap := a.Timestamp.Sub(attempts[i-1].Timestamp)
			between(t, fmt.Sprintf("OFF %d", i+1), gap, secs(10)-skew, secs(10)+late)
			t.Logf("OFF %d → OFF %d: %.2f s", i, i+1, hubSeconds(gap))
		}
		want := map[bool]string{true: "acknowledged", false: "timeout"}[i == 2]
		rec := r.commandRecord(corrID(a), commandIs(want))
		if rec["issued_by"] != "system:duration" {
			t.Fatalf("attempt %d: %v", i+1, rec)
		}
	}
	if len(ids) != 3 {
		t.Fatalf("the retries reuse correlation ids: %v", ids)
	}
	if st := r.state(n.id, 5, fresh("off")); st["pending_off"] != nil {
		t.Fatalf("the OFF is still pending after the confirmed off: %v", st)
	}

	// Confirmed off: nothing more is sent, not even after another retry period.
	settled := n.Mark()
	time.Sleep(secs(12))
	if more := n.Since(settled, commandIn(5, "OFF")); len(more) != 0 {
		t.Fatalf("%d OFFs after the confirmed off", len(more))
	}
}

// The roles and the order of the checks as the REST client meets them
// with a real node: a viewer may not command (403), an operator and an
// admin may; a device latched by an emergency stop that then goes offline
// refuses ON with EMERGENCY_STOP_ACTIVE (row 4 before row 7) and OFF with
// DEVICE_OFFLINE (OFF passes the latch). Every row's code and status is
// tested in internal/api/actuatorapi (TestCommandRejectionsInOrder) and
// internal/actuator (TestChecksInOrder).
func TestAcceptanceCommandRolesAndLatchBeforeOffline(t *testing.T) {
	_, r := inProcess(t)
	n := startSimNode(t, r.mqtt, "ESP_0D0D0D", baselineFW)
	r.admit(n)
	r.pump(n, 5)
	path := "/api/v1/actuators/" + n.id + "/5/command"
	off := map[string]any{"command": "OFF"}

	if got := r.api.do("POST", path, r.viewer, off); got.status != 403 || errCode(got) != "FORBIDDEN" {
		t.Fatalf("viewer: %d %s", got.status, got.raw)
	}
	for _, tok := range []string{r.operator, r.admin} {
		from := n.Mark()
		id := r.commandAs(tok, n.id, 5, off)
		if got, _ := n.Await(t, from, "the OFF", commandIn(5, "OFF")); corrID(got) != id {
			t.Fatalf("the device got %s for command %s", got.Payload, id)
		}
		r.commandRecord(id, commandIs("acknowledged"))
	}

	stop := r.api.do("POST", "/api/v1/actuators/emergency_stop", r.operator,
		map[string]any{"esp_id": n.id, "reason": "acceptance"})
	if stop.status != 200 {
		t.Fatalf("emergency stop: %d %s", stop.status, stop.raw)
	}
	n.Kill()
	r.waitDevice(n.id, "offline")

	cases := []struct {
		cmd    string
		status int
		code   string
		detail string
	}{
		{"ON", 409, "EMERGENCY_STOP_ACTIVE", `"latch":"hub"`},
		{"TOGGLE", 409, "STATE_UNKNOWN", ""}, // stale: row 3 before the latch
		{"OFF", 409, "DEVICE_OFFLINE", ""},
	}
	for _, tc := range cases {
		t.Run(tc.cmd, func(t *testing.T) {
			got := r.api.do("POST", path, r.operator, map[string]any{"command": tc.cmd})
			if got.status != tc.status || errCode(got) != tc.code || !strings.Contains(got.raw, tc.detail) {
				t.Fatalf("%s to a latched offline device: %d %s", tc.cmd, got.status, got.raw)
			}
		})
	}
}

// hubProcess is a hub in a process of its own (this test binary running
// TestHelperHubProcess), so that it can be killed with SIGKILL. It runs
// hub.Run as `kaiser serve` does, with the tests' actuator second, which
// `kaiser serve` does not expose.
type hubProcess struct {
	t          *testing.T
	dir        string
	http, mqtt string
	cmd        *exec.Cmd
	exited     chan struct{}
}

// TestHelperHubProcess is the hub process of the SIGKILL tests; it does
// nothing in a normal run.
func TestHelperHubProcess(t *testing.T) {
	dir := os.Getenv("KAISER_ACCEPT_HUB_DIR")
	if dir == "" {
		t.Skip("the hub process of the SIGKILL tests")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := Run(ctx, Config{
		DataDir:        dir,
		HTTPAddr:       os.Getenv("KAISER_ACCEPT_HUB_HTTP"),
		MQTTAddr:       os.Getenv("KAISER_ACCEPT_HUB_MQTT"),
		ActuatorSecond: accSecond,
		BcryptCost:     4,
		LoginLimit:     10000,
		Console:        os.Stderr,
		LogLevel:       slog.LevelError,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startHubProcess starts a hub process on dir and the given addresses and
// waits until it is ready.
func startHubProcess(t *testing.T, dir, httpAddr, mqttAddr string) *hubProcess {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the hub in a process of its own")
	}
	p := &hubProcess{t: t, dir: dir, http: httpAddr, mqtt: mqttAddr, exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperHubProcess$", "-test.count=1")
	p.cmd.Env = append(os.Environ(),
		"KAISER_ACCEPT_HUB_DIR="+dir,
		"KAISER_ACCEPT_HUB_HTTP="+httpAddr,
		"KAISER_ACCEPT_HUB_MQTT="+mqttAddr)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.kill)

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/api/v1/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatal("the hub process exited before it was ready")
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the hub process was not ready within 20 s")
		}
	}
}

// kill kills the process with SIGKILL and waits until it is gone.
func (p *hubProcess) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Errorf("SIGKILL: %v", err)
	}
	<-p.exited
}

// processRig starts a hub process on a new data dir with its users.
func processRig(t *testing.T) (*hubProcess, *rig) {
	t.Helper()
	p := startHubProcess(t, t.TempDir(), freeAddr(t), freeAddr(t))
	r := &rig{t: t, api: apiClient{t: t, base: "http://" + p.http}, mqtt: p.mqtt}
	r.admin, r.operator, r.viewer = setupUsers(t, r.api)
	return p, r
}

// restart starts the hub again on the same data dir and addresses.
func (p *hubProcess) restart() *hubProcess {
	p.t.Helper()
	p.kill()
	return startHubProcess(p.t, p.dir, p.http, p.mqtt)
}

// reconnected waits until the node's connection is back after count reconnects.
func reconnected(t *testing.T, n *simNode, count int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.Stats.Reconnects.Load() < count {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reconnect", n.id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The hub killed with SIGKILL while a pump is ON on a newer-firmware node:
// the node switches off by itself when its duration ends; after a restart
// the hub shows what it stored as stale, never as confirmed, and the real
// state (off) from the node's next status.
func TestAcceptanceSIGKILLNewerNodeSwitchesItselfOff(t *testing.T) {
	p, r := processRig(t)
	n := startSimNode(t, r.mqtt, "ESP_0E0E0E", newerFW)
	r.admit(n)
	r.pump(n, 5)

	from := n.Mark()
	id := r.command(n.id, 5, map[string]any{"command": "ON", "duration": 20})
	on, _ := n.Await(t, from, "the ON", commandIn(5, "ON"))
	if corrID(on) != id || fields(on)["duration"] != 20.0 {
		t.Fatalf("the device got %s", on.Payload)
	}
	r.commandRecord(id, commandIs("acknowledged"))
	r.state(n.id, 5, fresh("on"))

	p.kill()
	killed := time.Now()
	var offAt time.Time
	for simtest.Output(t, n.Node, 5).Energised {
		if time.Since(on.Timestamp) > secs(25) {
			t.Fatal("the node did not switch off by itself within its duration")
		}
		time.Sleep(5 * time.Millisecond)
	}
	offAt = time.Now()
	if !offAt.After(killed) {
		t.Fatal("the pump went off before the hub was killed")
	}
	between(t, "the node switched off", offAt.Sub(on.Timestamp), secs(20)-skew, secs(20)+late)
	t.Logf("ON → the node switched off by itself, the hub killed: %.2f s", hubSeconds(offAt.Sub(on.Timestamp)))

	// Hold the node's reconnect until the restarted hub has been looked at.
	n.Pause()
	reconnects := n.Stats.Reconnects.Load()
	p = p.restart()
	// What the hub last stored may be older than what it last knew (state
	// rows are queued, a SIGKILL loses the newest), so it counts as stale.
	if st := r.state(n.id, 5, func(map[string]any) bool { return true }); st["stale"] != true {
		t.Fatalf("before the node reports, the restarted hub claims %v", st)
	}

	mark := n.Mark()
	n.Resume()
	reconnected(t, n, reconnects+1)
	first, _ := n.Await(t, mark, "the next status", func(m sim.Message) bool { return isTopic(m, "out", 5, "status") })
	if fields(first)["state"] != false {
		t.Fatalf("the node's next status: %s", first.Payload)
	}
	if st := r.state(n.id, 5, fresh("off")); st["pending_off"] != nil {
		t.Fatalf("after the status the hub still has a pending OFF: %v", st)
	}
	if simtest.Output(t, n.Node, 5).Energised {
		t.Fatal("the pump runs again")
	}
}

// A baseline node, ON for 20 s, the hub killed with SIGKILL after 5 s and
// restarted: the hub's OFF (system:duration) arrives at the original
// deadline, or at once when the device is heard if the deadline passed
// while the hub was down; the state becomes off.
func TestAcceptanceSIGKILLBaselineAutoOffAtTheDeadline(t *testing.T) {
	for _, passed := range []bool{false, true} {
		t.Run(map[bool]string{false: "deadline ahead", true: "deadline passed"}[passed], func(t *testing.T) {
			p, r := processRig(t)
			n := startSimNode(t, r.mqtt, "ESP_0F0F0F", baselineFW)
			r.admit(n)
			r.pump(n, 5)

			from := n.Mark()
			r.command(n.id, 5, map[string]any{"command": "ON", "duration": 20})
			on, next := n.Await(t, from, "the ON", commandIn(5, "ON"))
			r.state(n.id, 5, fresh("on"))
			deadline := on.Timestamp.Add(secs(20))

			time.Sleep(time.Until(on.Timestamp.Add(secs(5))))
			p.kill()
			// The node's reconnect backoff is not in step with the restart:
			// holding it until the hub is back makes it reconnect at once.
			n.Pause()
			reconnects := n.Stats.Reconnects.Load()
			if passed {
				time.Sleep(time.Until(deadline.Add(secs(2))))
			}
			p.restart()
			if !passed && time.Now().After(deadline.Add(-secs(3))) {
				t.Fatalf("the restart took too long for the deadline %s ahead", time.Until(deadline))
			}
			if !simtest.Output(t, n.Node, 5).Energised {
				t.Fatal("the baseline switched off by itself: it ignores the duration")
			}
			// The hub may hear the node as soon as it reconnects, before
			// the test sees the reconnect: the OFF is bounded below by
			// the resume, above by the heartbeat that surely is heard.
			resumed := time.Now()
			n.Resume()
			reconnected(t, n, reconnects+1)
			heard := time.Now()
			if _, ok := n.HeartbeatNow(); !ok {
				t.Fatal("node stopped")
			}

			off, _ := n.Await(t, next, "the auto-off", commandIn(5, "OFF"))
			if passed {
				between(t, "the overdue OFF came", off.Timestamp.Sub(resumed), 0, heard.Sub(resumed)+late)
				t.Logf("node heard → the overdue OFF: %.2f s", hubSeconds(off.Timestamp.Sub(heard)))
			} else {
				between(t, "the OFF came", off.Timestamp.Sub(deadline), -skew, late)
				t.Logf("ON → the OFF across the SIGKILL: %.2f s", hubSeconds(off.Timestamp.Sub(on.Timestamp)))
			}
			rec := r.commandRecord(corrID(off), commandIs("acknowledged"))
			if rec["issued_by"] != "system:duration" {
				t.Fatalf("the OFF: %v", rec)
			}
			r.state(n.id, 5, fresh("off"))
			if simtest.Output(t, n.Node, 5).Energised {
				t.Fatal("the pump still runs on the node")
			}
		})
	}
}
