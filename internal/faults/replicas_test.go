package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kaiserhub/kaiser/internal/broker/mosquitto"
	"github.com/kaiserhub/kaiser/internal/sim"
	"github.com/kaiserhub/kaiser/internal/sim/simtest"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// Promise (issue 13, docs/decisions/0029-replicas.md): two `kaiser serve`
// replicas on one Mosquitto and one PostgreSQL are one site. Every reading
// of 50 simulated nodes is stored exactly once and both replicas ingest a
// share; an approval made on one replica admits the device on the other;
// a command made on either reaches the node and is confirmed, and a
// WebSocket client of the standby sees it and the readings both replicas
// ingest; after a SIGKILL of the primary the other replica is primary
// within 15 s and sends the auto-off of a duration command made before the
// kill, once, on time but for the failover; an emergency stop made on one
// replica stops the nodes and latches commands made on the other.
func TestTwoReplicas(t *testing.T) {
	s := startSite(t)
	a := s.replica(t)
	awaitRole(t, a, "primary", 30*time.Second)
	token := a.setupAdmin()
	// The fleet is registered before B joins, so that point 1 counts
	// ingest alone; point 2 is an approval B learns of while it runs.
	fleet := make([]string, 50)
	for i := range fleet {
		fleet[i] = fmt.Sprintf("ESP_F1E%03X", i)
		a.register(token, fleet[i])
	}
	// Two field-firmware nodes (they ignore a command's duration, so the
	// hub's auto-off is what ends it), for a pump each.
	pumpIDs := []string{"ESP_AC0001", "ESP_AC0002"}
	for _, id := range pumpIDs {
		a.register(token, id)
	}
	b := s.replica(t)
	if st := awaitRole(t, b, "standby", 30*time.Second); st.Primary.URL != "http://"+a.http {
		t.Fatalf("the standby's primary is %+v, want A at http://%s", st.Primary, a.http)
	}

	nodes := make([]*simNode, len(fleet))
	for i, id := range fleet {
		nodes[i] = s.node(t, id, "none", phSensor)
	}
	var pumps []*simNode
	for _, id := range pumpIDs {
		pumps = append(pumps, s.node(t, id, "default", nil))
	}

	t.Run("every reading stored exactly once, both replicas ingest", func(t *testing.T) {
		readingsExactlyOnce(t, s, a, b, nodes)
	})
	t.Run("an approval on the primary admits the device on the standby", func(t *testing.T) {
		approvalReachesStandby(t, s, a, b, token)
	})
	t.Run("commands through either replica, seen by a standby's WebSocket", func(t *testing.T) {
		commandsThroughEitherReplica(t, a, b, token, pumps)
	})
	t.Run("a standby's WebSocket sees the readings both replicas ingest", func(t *testing.T) {
		liveReadingsOfBothReplicas(t, a, b, token, nodes[0])
	})
	t.Run("SIGKILL of the primary: takeover, the auto-off once and on time", func(t *testing.T) {
		takeoverKeepsTheAutoOff(t, s, a, b, token, pumps[1])
	})
	t.Run("an emergency stop through one replica latches the other", func(t *testing.T) {
		emergencyStopAcrossReplicas(t, a, b, token, pumps)
	})
}

// readingsExactlyOnce: the fleet publishes until both replicas have had a
// share and every node a few readings, then stops publishing; the stored
// rows are exactly the published readings, and each was received by one
// replica only (the two counters add up to what was published).
func readingsExactlyOnce(t *testing.T, s *site, a, b *hub, fleet []*simNode) {
	// The later points read the standby's counters: the fleet ends quiet
	// whatever happens here.
	defer func() {
		for _, n := range fleet {
			n.RemoveSensor(34)
		}
	}()
	const perNode = 10
	deadline := time.Now().Add(60 * time.Second)
	for {
		least := perNode
		for _, n := range fleet {
			least = min(least, len(n.readings()))
		}
		if least == perNode && counter(t, a, received, sensorData) > 0 && counter(t, b, received, sensorData) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 60 s: a node with only %d readings, received by A %v, by B %v", least,
				counter(t, a, received, sensorData), counter(t, b, received, sensorData))
		}
		time.Sleep(100 * time.Millisecond)
	}
	sent := 0
	for _, n := range fleet {
		n.quiet(t)
		sent += len(n.readings())
	}

	var missing, extra int
	deadline = time.Now().Add(30 * time.Second)
	for {
		stored := s.storedReadings(t)
		missing, extra = 0, 0
		for _, n := range fleet {
			want := n.readings()
			got := stored[n.id]
			missing += len(difference(want, got))
			extra += len(difference(got, want))
		}
		if missing == 0 && extra == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("of %d readings published, %d not stored within 30 s and %d stored that no node published",
				sent, missing, extra)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Each replica counts a message it received before it handles it, so
	// the received counters are final now; handled ones follow the handler.
	recvA, recvB := counter(t, a, received, sensorData), counter(t, b, received, sensorData)
	if recvA+recvB != float64(sent) {
		t.Fatalf("%d readings published, received %v times by A and %v by B: a reading went to both or to neither",
			sent, recvA, recvB)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		hA, hB := counter(t, a, handled, sensorData), counter(t, b, handled, sensorData)
		if hA+hB == float64(sent) && hA > 0 && hB > 0 {
			break
		}
		if hA+hB > float64(sent) || time.Now().After(deadline) {
			t.Fatalf("%d readings published, handled %v by A and %v by B", sent, hA, hB)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d readings of %d nodes: every one stored once; A received %v, B %v", sent, len(fleet), recvA, recvB)
}

// approvalReachesStandby: a node nobody registered is pending, and both
// replicas drop its readings; approved through the primary's API, its
// readings are stored, those the standby takes included, and the standby
// counts them handled. The fleet is quiet, so the standby's counters move
// for this node alone.
func approvalReachesStandby(t *testing.T, s *site, a, b *hub, token string) {
	n := s.node(t, "ESP_A99001", "none", phSensor)
	defer n.RemoveSensor(34) // quiet for the later points, whatever happens here
	awaitDevice(t, a, token, n.id, "pending_approval")
	dropped := counter(t, b, droppedTotal, sensorData)
	awaitCounter(t, b, droppedTotal, sensorData, dropped, "the standby dropping the pending node's readings")

	handledBefore := counter(t, b, handled, sensorData)
	if r := a.api("POST", "/api/v1/esp/devices/"+n.id+"/approve", token, nil); r.status != http.StatusOK {
		t.Fatalf("approve on A: %d %s", r.status, r.raw)
	}
	learned := awaitCounter(t, b, handled, sensorData, handledBefore, "the standby handling the approved node's readings")

	// From here on the standby knows the device: every reading is stored.
	from := len(n.readings())
	deadline := time.Now().Add(30 * time.Second)
	for len(n.readings()) < from+6 {
		if time.Now().After(deadline) {
			t.Fatalf("%s published %d readings in 30 s", n.id, len(n.readings())-from)
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.quiet(t)
	after := n.readings()[from:]
	deadline = time.Now().Add(30 * time.Second)
	for {
		missing := difference(after, s.storedReadings(t)[n.id])
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the %d readings after the standby learned of the approval not stored: %v",
				len(missing), len(after), missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if now := counter(t, b, handled, sensorData); now <= learned {
		t.Fatalf("the standby handled none of %s's last %d readings (handled %v)", n.id, len(after), now)
	}
	t.Logf("approved on A: the standby handled %v of %s's readings, every later one stored",
		counter(t, b, handled, sensorData)-handledBefore, n.id)
}

// commandsThroughEitherReplica: pumps configured through the primary; an
// ON made on A and an OFF made on B reach the node and are acknowledged; a
// WebSocket client connected to B sees the command_status of A's command.
func commandsThroughEitherReplica(t *testing.T, a, b *hub, token string, pumps []*simNode) {
	for _, n := range pumps {
		awaitDevice(t, a, token, n.id, "online")
		configurePump(t, a, token, n.id)
	}
	ws := dialWS(t, b, token, "replicas-commands", wsFilter{Types: []string{"command_status"}})

	n := pumps[0]
	from := n.Mark()
	on := command(t, a, token, n.id, map[string]any{"command": "ON"})
	n.Await(t, from, "the ON made on A", commandIn(5, "ON"))
	awaitCommand(t, a, token, on, "acknowledged")
	ws.await(t, "the command_status of A's ON on B's WebSocket", func(m wsMessage) bool {
		return m.Type == "command_status" && m.Data["command_id"] == on && m.Data["status"] == "acknowledged"
	})
	awaitOutput(t, n, 5, "energised by A's ON", func(s sim.ActuatorState) bool { return s.Energised })

	from = n.Mark()
	off := command(t, b, token, n.id, map[string]any{"command": "OFF"})
	n.Await(t, from, "the OFF made on B", commandIn(5, "OFF"))
	awaitCommand(t, b, token, off, "acknowledged")
	awaitOutput(t, n, 5, "off after B's OFF", func(s sim.ActuatorState) bool { return !s.Energised })
	awaitState(t, b, token, n.id, 5, "off")
	t.Logf("ON made on A and OFF made on B acknowledged; B's WebSocket saw A's command")
}

// liveReadingsOfBothReplicas: a WebSocket client of the standby (its feed
// is the primary's) gets every reading of a node, those the primary
// ingested and those the standby did and relayed.
func liveReadingsOfBothReplicas(t *testing.T, a, b *hub, token string, n *simNode) {
	ws := dialWS(t, b, token, "replicas-readings", wsFilter{Types: []string{"sensor_data"}, EspIDs: []string{n.id}})
	handledA, handledB := counter(t, a, handled, sensorData), counter(t, b, handled, sensorData)
	from := len(n.readings())
	if !n.AddSensor(phSensor[0]) {
		t.Fatalf("%s stopped", n.id)
	}
	defer n.RemoveSensor(34)
	deadline := time.Now().Add(30 * time.Second)
	for len(n.readings()) < from+10 {
		if time.Now().After(deadline) {
			t.Fatalf("%s published %d readings in 30 s", n.id, len(n.readings())-from)
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.quiet(t)
	want := n.readings()[from:]

	seen := map[int64]bool{}
	ws.await(t, fmt.Sprintf("the %d readings of %s on B's WebSocket", len(want), n.id), func(m wsMessage) bool {
		if ts, ok := m.Data["timestamp"].(float64); ok && m.Type == "sensor_data" && m.Data["esp_id"] == n.id {
			seen[int64(ts)] = true
		}
		for _, ts := range want {
			if !seen[ts] {
				return false
			}
		}
		return true
	})
	deadline = time.Now().Add(10 * time.Second)
	for {
		dA, dB := counter(t, a, handled, sensorData)-handledA, counter(t, b, handled, sensorData)-handledB
		if dA+dB == float64(len(want)) && dA > 0 && dB > 0 {
			t.Logf("B's WebSocket got all %d readings: %v ingested by A, %v by B", len(want), dA, dB)
			return
		}
		if dA+dB > float64(len(want)) || time.Now().After(deadline) {
			t.Fatalf("%d readings published, handled %v by A and %v by B", len(want), dA, dB)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// takeoverKeepsTheAutoOff: an ON for 20 s made on the primary, persisted
// with its deadline; the primary is SIGKILLed; the other replica reports
// primary within 15 s and sends the auto-off at the deadline (or as soon
// as it leads, if that is later), and the node gets exactly one OFF. The
// killed replica, started again, stands by.
func takeoverKeepsTheAutoOff(t *testing.T, s *site, a, b *hub, token string, n *simNode) {
	primary, standby := a, b
	if st, _ := replicaStatusOf(a); st.Role != "primary" {
		primary, standby = b, a
	}
	from := n.Mark()
	id := command(t, primary, token, n.id, map[string]any{"command": "ON", "duration": 20})
	on, next := n.Await(t, from, "the ON for 20 s", commandIn(5, "ON"))
	awaitCommand(t, primary, token, id, "acknowledged")
	s.awaitAutoOffStored(t, n.id, 5)

	killed := time.Now() // before the kill: the last renewal precedes it
	primary.kill()
	awaitRole(t, standby, "primary", 15*time.Second-time.Since(killed))
	tookOver := time.Since(killed)
	t.Logf("SIGKILL → the other replica primary: %.1f s", tookOver.Seconds())

	off, _ := n.AwaitWithin(t, next, "the auto-off", commandIn(5, "OFF"), 60*time.Second)
	deadline := on.Timestamp.Add(20 * time.Second)
	// On time, or at once when the new primary leads after the deadline;
	// it hears a node within one heartbeat (5 s); a commit or a publish
	// may lag on a loaded machine.
	due := deadline
	if led := killed.Add(tookOver); led.After(due) {
		due = led
	}
	if early := off.Timestamp.Sub(deadline); early < -skew {
		t.Fatalf("the auto-off came %s before the deadline", -early)
	}
	if lateBy := off.Timestamp.Sub(due); lateBy > 5*time.Second {
		t.Fatalf("the auto-off came %s after %s (the deadline, or the takeover if later)", lateBy,
			due.Sub(on.Timestamp))
	}
	t.Logf("ON → the new primary's OFF: %.2f s (deadline 20 s, takeover %.1f s after the ON)",
		off.Timestamp.Sub(on.Timestamp).Seconds(), killed.Add(tookOver).Sub(on.Timestamp).Seconds())

	rec := awaitCommand(t, standby, token, corrID(off), "acknowledged")
	if rec["issued_by"] != "system:duration" || rec["command"] != "OFF" {
		t.Fatalf("the OFF the node got: %v", rec)
	}
	awaitState(t, standby, token, n.id, 5, "off")
	if offs := n.Since(from, commandIn(5, "OFF")); len(offs) != 1 {
		t.Fatalf("the node got %d OFFs for its ON: %v", len(offs), offs)
	}
	if simtest.Output(t, n.Node, 5).Energised {
		t.Fatal("the pump still runs on the node")
	}

	primary.start()
	if st := awaitRole(t, primary, "standby", 30*time.Second); st.Primary.Holder == st.Holder {
		t.Fatalf("the restarted replica stands by for itself: %+v", st)
	}
}

// emergencyStopAcrossReplicas: both pumps on, a global emergency stop made
// on A stops and latches them on the nodes; an ON made on B is refused.
func emergencyStopAcrossReplicas(t *testing.T, a, b *hub, token string, pumps []*simNode) {
	for i, n := range pumps {
		via := []*hub{a, b}[i%2]
		id := command(t, via, token, n.id, map[string]any{"command": "ON"})
		awaitCommand(t, via, token, id, "acknowledged")
		awaitOutput(t, n, 5, "on before the stop", func(s sim.ActuatorState) bool { return s.Energised })
	}
	r := a.api("POST", "/api/v1/actuators/emergency_stop", token, map[string]any{"reason": "replicas test"})
	if r.status != http.StatusOK || r.body["scope"] != "global" || r.body["latch_persisted"] != true {
		t.Fatalf("emergency stop on A: %d %s", r.status, r.raw)
	}
	for _, n := range pumps {
		awaitOutput(t, n, 5, "stopped and latched on the device", func(s sim.ActuatorState) bool {
			return s.Latched && !s.On && !s.Energised
		})
	}
	on := b.api("POST", "/api/v1/actuators/"+pumps[0].id+"/5/command", token, map[string]any{"command": "ON"})
	if code, _ := on.body["error"].(map[string]any)["code"].(string); on.status != http.StatusConflict ||
		code != "EMERGENCY_STOP_ACTIVE" {
		t.Fatalf("ON on B after the stop on A: %d %s", on.status, on.raw)
	}
	t.Logf("the stop made on A latched both nodes; B refuses an ON with %d %s", on.status, "EMERGENCY_STOP_ACTIVE")
}

// site is what the replicas share: one Mosquitto, one PostgreSQL database
// and the JWT secret.
type site struct {
	broker *mosquitto.Broker
	dbURL  string
	db     *pgxpool.Pool
	secret string
}

func startSite(t *testing.T) *site {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the kaiser binary")
	}
	s := &site{broker: mosquitto.Start(t, mosquitto.Options{})}
	s.dbURL = pgtest.Start(t, pgtest.Config{}).NewDatabaseURL(t)
	pool, err := pgxpool.New(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s.db = pool
	s.secret = filepath.Join(t.TempDir(), "jwt-secret")
	if err := os.WriteFile(s.secret, []byte("the replicas of one site share this secret 0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// replica starts one `kaiser serve` of the site on a data directory of
// its own, with extra flags.
func (s *site) replica(t *testing.T, flags ...string) *hub {
	t.Helper()
	return startHub(t, t.TempDir(), append([]string{
		"--database", s.dbURL,
		"--mqtt-broker", s.broker.URL(false),
		"--jwt-secret-file", s.secret,
	}, flags...)...)
}

// storedReadings are the device times (unix seconds) of the stored pH
// readings of gpio 34, by device.
func (s *site) storedReadings(t *testing.T) map[string][]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := s.db.Query(ctx, `SELECT s.esp_id, r.ts FROM readings r JOIN sensor_series s ON s.id = r.series_id
		WHERE s.gpio = 34 AND s.sensor_type = 'ph' ORDER BY s.esp_id, r.ts`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]int64{}
	for rows.Next() {
		var id string
		var ts int64
		if err := rows.Scan(&id, &ts); err != nil {
			t.Fatal(err)
		}
		out[id] = append(out[id], ts/1000)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// awaitAutoOffStored waits until the actuator's persisted state carries
// the deadline of its ON, which a new primary loads.
func (s *site) awaitAutoOffStored(t *testing.T, id string, gpio int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var doc string
		err := s.db.QueryRow(context.Background(),
			`SELECT doc FROM actuator_states WHERE esp_id = $1 AND gpio = $2`, id, gpio).Scan(&doc)
		var st struct {
			State   string          `json:"state"`
			AutoOff json.RawMessage `json:"auto_off"`
		}
		if err == nil && json.Unmarshal([]byte(doc), &st) == nil && st.State == "on" && len(st.AutoOff) > 0 &&
			string(st.AutoOff) != "null" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%d: no stored auto-off within 20 s (%v): %s", id, gpio, err, doc)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// phSensor is a pH sensor on gpio 34 with a reading every second: at the
// node's real-time clock each reading has a device time of its own, so
// every published reading is one row.
var phSensor = []sim.SensorSpec{{GPIO: 34, Type: "ph", Base: 2048, Pattern: "random", Range: 20, Interval: time.Second}}

// node runs a simulated node against the site's broker until t ends; its
// clock is real time, its heartbeat every 5 s (the field firmware's first
// one comes only then, Q6).
func (s *site) node(t *testing.T, id, quirks string, sensors []sim.SensorSpec) *simNode {
	t.Helper()
	q, err := sim.ParseQuirks(quirks)
	if err != nil {
		t.Fatal(err)
	}
	n := &simNode{id: id, Recorder: simtest.NewRecorder(id, 20*time.Second)}
	n.Node = sim.NewNode(sim.NodeConfig{
		EspID:          id,
		Broker:         s.broker.Addr(),
		Quirks:         q,
		Sensors:        slices.Clone(sensors),
		Interval:       time.Hour, // the sensors' own intervals
		HeartbeatEvery: 5 * time.Second,
		Seed:           int64(len(id)) + int64(id[len(id)-1]),
		Observe:        n.observe,
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-n.Stopped() })
	return n
}

// simNode is a simulated node and every message it handled or sent, in
// its order (sim's Observe), but for its readings: of those it keeps the
// device times.
type simNode struct {
	*sim.Node
	*simtest.Recorder
	id string

	mu sync.Mutex
	ts []int64 // device times of the readings it published
}

func (n *simNode) observe(m sim.Message) {
	if m.Direction == "out" && strings.HasSuffix(m.Topic, "/sensor/34/data") {
		var r struct {
			TS int64 `json:"ts"`
		}
		if json.Unmarshal([]byte(m.Payload), &r) == nil {
			n.mu.Lock()
			n.ts = append(n.ts, r.TS)
			n.mu.Unlock()
		}
		return
	}
	n.Observe(m)
}

// readings are the device times of the readings the node published.
func (n *simNode) readings() []int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.ts)
}

// quiet removes the node's sensor: once it returns the node publishes no
// more readings (it runs on the node's loop), and stays connected.
func (n *simNode) quiet(t *testing.T) {
	t.Helper()
	if !n.RemoveSensor(34) {
		t.Fatalf("%s stopped", n.id)
	}
}

// awaitOutput polls the node's hardware: its state changes on the node's
// loop, after the message that caused it.
func awaitOutput(t *testing.T, n *simNode, gpio int, what string, ok func(sim.ActuatorState) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok(simtest.Output(t, n.Node, gpio)) {
		if time.Now().After(deadline) {
			t.Fatalf("%s/%d not %s within 20 s: %+v", n.id, gpio, what, simtest.Output(t, n.Node, gpio))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// commandIn matches a command the node received for gpio.
func commandIn(gpio int, name string) func(sim.Message) bool {
	return func(m sim.Message) bool {
		if m.Direction != "in" || !strings.HasSuffix(m.Topic, fmt.Sprintf("/actuator/%d/command", gpio)) {
			return false
		}
		var c struct {
			Command string `json:"command"`
		}
		return json.Unmarshal([]byte(m.Payload), &c) == nil && c.Command == name
	}
}

// corrID is a received command's correlation id.
func corrID(m sim.Message) string {
	var c struct {
		CorrelationID string `json:"correlation_id"`
	}
	_ = json.Unmarshal([]byte(m.Payload), &c)
	return c.CorrelationID
}

// skew is how far the hub's and the node's view of one instant may differ.
const skew = 100 * time.Millisecond

// difference returns the elements of a that b lacks.
func difference(a, b []int64) []int64 {
	in := make(map[int64]bool, len(b))
	for _, v := range b {
		in[v] = true
	}
	var out []int64
	for _, v := range a {
		if !in[v] {
			out = append(out, v)
		}
	}
	return out
}

// replicaStatus is GET /api/v1/health/replica.
type replicaStatus struct {
	Holder  string `json:"holder"`
	Role    string `json:"role"`
	Primary *struct {
		Holder string `json:"holder"`
		URL    string `json:"url"`
	} `json:"primary"`
}

// replicaStatusOf asks h; false while it does not answer (starting, or
// changing roles).
func replicaStatusOf(h *hub) (replicaStatus, bool) {
	var st replicaStatus
	r := h.api("GET", "/api/v1/health/replica", "", nil)
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.raw), &st) != nil {
		return st, false
	}
	return st, true
}

// awaitRole waits until h reports role; a standby also names a primary.
func awaitRole(t *testing.T, h *hub, role string, within time.Duration) replicaStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	last := "no answer"
	for {
		if st, ok := replicaStatusOf(h); ok {
			last = fmt.Sprintf("%+v", st)
			if st.Role == role && (role != "standby" || st.Primary != nil) {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %s within %s; last %s", h.http, role, within, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The ingest metrics the test reads.
const (
	received     = "god_kaiser_mqtt_messages_received_total"
	handled      = "kaiser_ingest_messages_handled_total"
	droppedTotal = "kaiser_ingest_messages_dropped_total"
	sensorData   = `kind="sensor_data"`
)

// counter sums the samples of metric on h's /metrics whose labels include
// label (every reason of a dropped count, say).
func counter(t *testing.T, h *hub, metric, label string) float64 {
	t.Helper()
	r := h.api("GET", "/metrics", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("%s/metrics: %d %s", h.http, r.status, r.raw)
	}
	sum := 0.0
	for _, line := range strings.Split(r.raw, "\n") {
		rest, ok := strings.CutPrefix(line, metric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || !strings.Contains(labels, label) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", metric, line, err)
		}
		sum += v
	}
	return sum
}

// awaitCounter waits until the counter exceeds from and returns it.
func awaitCounter(t *testing.T, h *hub, metric, label string, from float64, what string) float64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if v := counter(t, h, metric, label); v > from {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s{%s} still %v after 20 s", what, metric, label, from)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// poll GETs path on h until ok accepts the body; a standby answers 502 or
// 503 while the primary changes, which the deadline covers.
func poll(t *testing.T, h *hub, token, path, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := h.api("GET", path, token, nil)
		if r.status == http.StatusOK && ok(r.body) {
			return r.body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s on %s after 20 s: %d %s", what, path, h.http, r.status, r.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func awaitDevice(t *testing.T, h *hub, token, id, status string) {
	t.Helper()
	poll(t, h, token, "/api/v1/esp/devices/"+id, id+" "+status, func(b map[string]any) bool { return b["status"] == status })
}

// configurePump creates a pump on gpio 5 and waits until the node applied it.
func configurePump(t *testing.T, h *hub, token, id string) {
	t.Helper()
	path := "/api/v1/actuators/" + id + "/5"
	cfg := map[string]any{"actuator_type": "pump", "name": "Pump", "max_runtime_seconds": 3600}
	if r := h.api("POST", path, token, cfg); r.status != http.StatusOK {
		t.Fatalf("configure %s: %d %s", path, r.status, r.raw)
	}
	poll(t, h, token, path, "the pump config applied", func(b map[string]any) bool {
		return b["config_status"] == "applied" && b["state"] == "off"
	})
}

// command sends a command to gpio 5 of id through h; it returns the command id.
func command(t *testing.T, h *hub, token, id string, cmd map[string]any) string {
	t.Helper()
	r := h.api("POST", "/api/v1/actuators/"+id+"/5/command", token, cmd)
	if r.status != http.StatusOK || r.body["command_sent"] != true {
		t.Fatalf("command %v through %s: %d %s", cmd, h.http, r.status, r.raw)
	}
	return r.body["command_id"].(string)
}

func awaitCommand(t *testing.T, h *hub, token, id, status string) map[string]any {
	t.Helper()
	return poll(t, h, token, "/api/v1/actuators/commands/"+id, "command "+status,
		func(b map[string]any) bool { return b["status"] == status })
}

// awaitState waits until the hub shows the actuator in state, confirmed
// by the device and current.
func awaitState(t *testing.T, h *hub, token, id string, gpio int, state string) {
	t.Helper()
	poll(t, h, token, fmt.Sprintf("/api/v1/actuators/%s/%d/status", id, gpio), "state "+state,
		func(b map[string]any) bool {
			st, _ := b["state"].(map[string]any)
			return st["state"] == state && st["stale"] == false
		})
}

// wsClient is a live-feed client of one replica.
type wsClient struct {
	msgs chan wsMessage
}

type wsMessage struct {
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

// wsFilter is a live-feed subscription (docs/api.md §17.2).
type wsFilter struct {
	Types  []string `json:"types,omitempty"`
	EspIDs []string `json:"esp_ids,omitempty"`
}

// dialWS connects to h's live feed with one filter.
func dialWS(t *testing.T, h *hub, token, clientID string, filter wsFilter) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+h.http+"/api/v1/ws/realtime/"+clientID+"?token="+token, nil)
	if err != nil {
		t.Fatalf("websocket on %s: %v", h.http, err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	sub, _ := json.Marshal(struct {
		Action  string   `json:"action"`
		Filters wsFilter `json:"filters"`
	}{"subscribe", filter})
	if err := conn.Write(ctx, websocket.MessageText, sub); err != nil {
		t.Fatal(err)
	}
	w := &wsClient{msgs: make(chan wsMessage, 1024)}
	go func() {
		defer close(w.msgs)
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			var m wsMessage
			if json.Unmarshal(data, &m) == nil {
				w.msgs <- m
			}
		}
	}()
	w.await(t, "the subscription_ack", func(m wsMessage) bool { return m.Type == "subscription_ack" })
	return w
}

func (w *wsClient) await(t *testing.T, what string, ok func(wsMessage) bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m, open := <-w.msgs:
			if !open {
				t.Fatalf("%s: the websocket closed", what)
			}
			if ok(m) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: not received within 20 s", what)
		}
	}
}
