package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/emergency"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/sim"
)

// The acceptance points of the emergency stop (issue 9) with simulated
// nodes over the real broker. emSecond is the hub's second here
// (Config.ActuatorSecond): the 6 s guard is 600 ms, the 10 s clear wait 1 s.
// The nodes' clocks run as much faster, so the firmware's own timings (its
// 5 s clear guard, 2.5 s valve steps, 2 s clear block) keep their
// proportion to the hub's.
const (
	emSecond = 100 * time.Millisecond
	simSpeed = float64(time.Second / emSecond)
)

// simDevice is a simulated node and what it received and published, in
// the order the node handled it (sim's Observe hook).
type simDevice struct {
	t      *testing.T
	id     string
	node   *sim.Node
	cancel context.CancelFunc

	mu   sync.Mutex
	log  []nodeMessage
	more chan struct{}
}

// nodeMessage is one message of a node: dir "in" or "out", topic the part
// after the device id ("broadcast" for the broadcast stop).
type nodeMessage struct {
	dir   string
	topic string
	body  map[string]any
	at    time.Time
}

func (m nodeMessage) command() string { s, _ := m.body["command"].(string); return s }

// label names a hub message the way the order assertions read it: "OFF 5",
// "emergency_stop", "broadcast", "config", "set_emergency_token".
func (m nodeMessage) label() string {
	switch {
	case m.topic == "broadcast":
		return "broadcast"
	case m.topic == "config":
		return "config"
	case strings.HasPrefix(m.topic, "actuator/") && strings.HasSuffix(m.topic, "/command"):
		return m.command() + " " + strings.TrimSuffix(strings.TrimPrefix(m.topic, "actuator/"), "/command")
	}
	return m.command()
}

func startSim(t *testing.T, broker, id, quirks string, edit ...func(*sim.NodeConfig)) *simDevice {
	t.Helper()
	q, err := sim.ParseQuirks(quirks)
	if err != nil {
		t.Fatal(err)
	}
	d := &simDevice{t: t, id: id, more: make(chan struct{}, 1)}
	cfg := sim.NodeConfig{
		EspID:          id,
		Broker:         broker,
		Quirks:         q,
		Clock:          sim.NewClock(simSpeed),
		HeartbeatEvery: 5 * time.Second, // 500 ms: the baseline's first heartbeat comes this late (Q6)
		Observe:        d.observe,
	}
	for _, e := range edit {
		e(&cfg)
	}
	d.node = sim.NewNode(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { _ = d.node.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-d.node.Stopped() })
	return d
}

// stop ends the node's run (a power cut) and waits for it.
func (d *simDevice) stop() {
	d.cancel()
	<-d.node.Stopped()
}

func (d *simDevice) observe(m sim.Message) {
	if strings.HasSuffix(m.Topic, "/system/heartbeat") {
		return
	}
	topic := "broadcast"
	if _, suffix, ok := strings.Cut(m.Topic, "/esp/"+d.id+"/"); ok {
		topic = suffix
	}
	var body map[string]any
	_ = json.Unmarshal([]byte(m.Payload), &body)
	d.mu.Lock()
	d.log = append(d.log, nodeMessage{dir: m.Direction, topic: topic, body: body, at: time.Now()})
	d.mu.Unlock()
	select {
	case d.more <- struct{}{}:
	default:
	}
}

// mark is the position of the node's next message.
func (d *simDevice) mark() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.log)
}

// since returns the node's messages from mark on.
func (d *simDevice) since(mark int) []nodeMessage {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.log[mark:])
}

// received returns the hub messages the node handled from mark on.
func (d *simDevice) received(mark int) []nodeMessage {
	var in []nodeMessage
	for _, m := range d.since(mark) {
		if m.dir == "in" {
			in = append(in, m)
		}
	}
	return in
}

// await waits until a message from mark on satisfies ok and returns it.
func (d *simDevice) await(mark int, what string, ok func(nodeMessage) bool) nodeMessage {
	d.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, m := range d.since(mark) {
			if ok(m) {
				return m
			}
		}
		select {
		case <-d.more:
		case <-deadline:
			d.t.Fatalf("%s never %s; it handled %v", d.id, what, labels(d.received(mark)))
		}
	}
}

// awaitIn waits for a hub message labelled label from mark on.
func (d *simDevice) awaitIn(mark int, label string) nodeMessage {
	d.t.Helper()
	return d.await(mark, "received "+label, func(m nodeMessage) bool { return m.dir == "in" && m.label() == label })
}

func labels(msgs []nodeMessage) []string {
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, m.label())
	}
	return out
}

// actuators polls the node's actuators until ok accepts all of them.
func (d *simDevice) actuators(what string, ok func(sim.ActuatorState) bool) []sim.ActuatorState {
	d.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		states := d.node.Actuators()
		all := len(states) > 0
		for _, s := range states {
			all = all && ok(s)
		}
		if all {
			return states
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: actuators never %s: %+v", d.id, what, states)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stoppedOnDevice(s sim.ActuatorState) bool { return s.Latched && !s.On && !s.Energised }

func offAndFree(s sim.ActuatorState) bool { return !s.Latched && !s.On && !s.Energised }

// admit approves a node that registered and waits until it is online.
func admit(t *testing.T, h *Hub, c apiClient, tok, id string) {
	t.Helper()
	waitDevice(t, h, id, device.StatusPending)
	if r := c.do("POST", "/api/v1/esp/devices/"+id+"/approve", tok, nil); r.status != 200 {
		t.Fatalf("approve %s: %d %s", id, r.status, r.raw)
	}
	waitDevice(t, h, id, device.StatusOnline)
}

// configure creates an actuator and waits until the node applied it.
func configure(t *testing.T, c apiClient, tok, id string, gpio int, cfg map[string]any) {
	t.Helper()
	path := fmt.Sprintf("/api/v1/actuators/%s/%d", id, gpio)
	if r := c.do("POST", path, tok, cfg); r.status != 200 {
		t.Fatalf("configure %s: %d %s", path, r.status, r.raw)
	}
	pollJSON(t, c, tok, path, func(b map[string]any) bool { return b["config_status"] == "applied" })
}

var (
	pumpConfig  = map[string]any{"actuator_type": "pump", "name": "Pump", "max_runtime_seconds": 3600}
	relayConfig = map[string]any{"actuator_type": "relay", "name": "Fan"}
)

// switchOn commands ON and waits until the hub shows the actuator on.
func switchOn(t *testing.T, c apiClient, tok, id string, gpio int) {
	t.Helper()
	path := fmt.Sprintf("/api/v1/actuators/%s/%d", id, gpio)
	if r := c.do("POST", path+"/command", tok, map[string]any{"command": "ON"}); r.status != 200 {
		t.Fatalf("ON %s: %d %s", path, r.status, r.raw)
	}
	pollJSON(t, c, tok, path+"/status", statusIsState("on"))
}

// awaitTokens waits until the hub stored the device's token as confirmed
// and returns it.
func awaitTokens(t *testing.T, h *Hub, id string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		toks, err := h.Store.LoadEmergencyTokens(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range toks {
			if tk.EspID == id && tk.ConfirmedAt != nil {
				return tk.Token
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never confirmed its emergency token", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// resafedFirst checks that the first hub messages a node handled from mark
// on are, after the given leading messages (a reboot's config push), an OFF
// to each of gpios in any order and then the device stop (docs/protocol.md
// E3: only OFFs may precede it). It returns the device stop.
func resafedFirst(t *testing.T, d *simDevice, mark int, leading []string, gpios ...int) nodeMessage {
	t.Helper()
	stop := d.awaitIn(mark, "emergency_stop")
	in := d.received(mark)
	got := labels(in)
	n := len(leading) + len(gpios) + 1
	if len(got) < n {
		t.Fatalf("%s handled %v", d.id, got)
	}
	offs := slices.Sorted(slices.Values(got[len(leading) : n-1]))
	if !slices.Equal(got[:len(leading)], leading) || !slices.Equal(offs, offLabels(gpios)) ||
		got[n-1] != "emergency_stop" {
		for _, m := range d.since(mark) {
			t.Logf("%s %s %s %v", m.at.Format("15:04:05.000000"), m.dir, m.topic, m.body)
		}
		t.Fatalf("%s handled %v, want %v, then OFF to %v in any order, then emergency_stop", d.id, got, leading, gpios)
	}
	return stop
}

// offLabels are the labels of OFFs to gpios, sorted.
func offLabels(gpios []int) []string {
	var out []string
	for _, g := range gpios {
		out = append(out, fmt.Sprintf("OFF %d", g))
	}
	return slices.Sorted(slices.Values(out))
}

// restartHub starts a hub on dir whose broker listens on mqttAddr again, so
// that running nodes reconnect to it.
func restartHub(t *testing.T, dir, mqttAddr string) (*Hub, apiClient) {
	t.Helper()
	h, err := Start(context.Background(), Config{
		DataDir:         dir,
		HTTPAddr:        "127.0.0.1:0",
		MQTTAddr:        mqttAddr,
		ActuatorSecond:  emSecond,
		BcryptCost:      4,
		LoginLimit:      10000,
		DiscoveryPerMin: 10000,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, apiClient{t: t, base: "http://" + h.HTTPAddr()}
}

func clearDetail(t *testing.T, r reply, id string) map[string]any {
	t.Helper()
	details, _ := r.body["details"].([]any)
	for _, d := range details {
		if m := d.(map[string]any); m["esp_id"] == id {
			return m
		}
	}
	t.Fatalf("no clear detail for %s: %s", id, r.raw)
	return nil
}

// A global stop with a baseline and a newer-firmware node: every actuator
// gets its OFF, then the broadcast, and both nodes stop and latch; the
// latch is committed: after a hub restart it is still reported and an ON
// is refused with 409; a clear inside the 6 s guard is refused; the
// baseline never answers a clear (timeout), and the clear by
// re-configuration unlatches it, on the hub and on the node.
func TestGlobalStopWithSimulatedNodesSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	h, c := apiHub(t, Config{DataDir: dir, ActuatorSecond: emSecond})
	mqttAddr := h.MQTTAddr()
	_, op, viewer := setupUsers(t, c)
	base := startSim(t, mqttAddr, "ESP_BA5E01", "default")
	// Newer firmware with tokens of its own honours only the hub's once provisioned (S4).
	newer := startSim(t, mqttAddr, "ESP_9E1E01", "none", func(cfg *sim.NodeConfig) {
		cfg.EmergencyToken, cfg.BroadcastToken = "F4ct0ryT0ken0001", "F4ct0ryT0ken0002"
	})
	for _, d := range []*simDevice{base, newer} {
		admit(t, h, c, op, d.id)
		configure(t, c, op, d.id, 5, pumpConfig)
	}
	configure(t, c, op, base.id, 16, relayConfig)
	awaitTokens(t, h, newer.id)
	switchOn(t, c, op, base.id, 5)
	switchOn(t, c, op, newer.id, 5)

	marks := map[*simDevice]int{base: base.mark(), newer: newer.mark()}
	r := c.do("POST", "/api/v1/actuators/emergency_stop", op, map[string]any{"reason": "flood in bed 3"})
	if r.status != 200 || r.body["scope"] != "global" || r.body["devices_stopped"] != 2.0 ||
		r.body["actuators_stopped"] != 3.0 || r.body["latch_persisted"] != true {
		t.Fatalf("stop: %d %s", r.status, r.raw)
	}
	incident := r.body["incident_correlation_id"].(string)

	// On the wire: each node gets an OFF for each of its actuators, then the
	// broadcast, and nothing else; both honour it.
	for d, gpios := range map[*simDevice][]int{base: {5, 16}, newer: {5}} {
		d.awaitIn(marks[d], "broadcast")
		got := labels(d.received(marks[d]))
		want := offLabels(gpios)
		if len(got) != len(gpios)+1 || !slices.Equal(slices.Sorted(slices.Values(got[:len(gpios)])), want) ||
			got[len(gpios)] != "broadcast" {
			t.Fatalf("%s handled %v, want %v then the broadcast", d.id, got, want)
		}
		d.actuators("stopped and latched on the device", stoppedOnDevice)
	}

	st := c.do("GET", "/api/v1/actuators/emergency", viewer, nil)
	if g, _ := st.body["global"].(map[string]any); st.body["active"] != true || g["incident_correlation_id"] != incident ||
		fmt.Sprint(latchedDevices(st)) != fmt.Sprintf("[%s %s]", newer.id, base.id) {
		t.Fatalf("status: %s", st.raw)
	}
	cl := c.do("POST", "/api/v1/actuators/clear_emergency", op, map[string]any{"reason": "dry"})
	for _, id := range []string{base.id, newer.id} {
		if d := clearDetail(t, cl, id); d["outcome"] != emergency.OutcomeGuard {
			t.Fatalf("clear inside the guard, %s: %v", id, d)
		}
	}
	if cl.body["success"] != false || cl.body["still_active"] != true {
		t.Fatalf("clear inside the guard: %s", cl.raw)
	}

	// A restart on the same data directory: the latches come back from the
	// store; the nodes reconnect by themselves and are re-safed.
	stopHub(t, h)
	marks = map[*simDevice]int{base: base.mark(), newer: newer.mark()}
	h, c = restartHub(t, dir, mqttAddr)
	defer stopHub(t, h)
	op = login(t, c, "operator", "Pass-word1")
	st = c.do("GET", "/api/v1/actuators/emergency", op, nil)
	if g, _ := st.body["global"].(map[string]any); st.body["active"] != true || g["incident_correlation_id"] != incident ||
		fmt.Sprint(latchedDevices(st)) != fmt.Sprintf("[%s %s]", newer.id, base.id) {
		t.Fatalf("status after the restart: %s", st.raw)
	}
	on := c.do("POST", "/api/v1/actuators/"+base.id+"/5/command", op, map[string]any{"command": "ON"})
	if on.status != 409 || errCode(on) != "EMERGENCY_STOP_ACTIVE" {
		t.Fatalf("ON after the restart: %d %s", on.status, on.raw)
	}
	var resafed time.Time
	for d, gpios := range map[*simDevice][]int{base: {5, 16}, newer: {5}} {
		if at := resafedFirst(t, d, marks[d], nil, gpios...).at; at.After(resafed) {
			resafed = at
		}
	}
	on = c.do("POST", "/api/v1/actuators/"+newer.id+"/5/command", op, map[string]any{"command": "ON"})
	if on.status != 409 {
		t.Fatalf("ON to the re-safed newer node: %d %s", on.status, on.raw)
	}

	// The guard counts from the re-safing's stop message: wait it out.
	time.Sleep(time.Until(resafed.Add(emergency.ClearGuard / time.Second * emSecond)))
	mark := base.mark()
	started := time.Now()
	cl = c.do("POST", "/api/v1/actuators/clear_emergency", op, map[string]any{"esp_id": base.id, "reason": "dry"})
	if d := clearDetail(t, cl, base.id); d["outcome"] != emergency.OutcomeTimeout || cl.body["still_active"] != true {
		t.Fatalf("baseline clear: %s", cl.raw)
	}
	if waited := time.Since(started); waited < emergency.ClearWait/time.Second*emSecond {
		t.Fatalf("the baseline's clear timed out after %s, before 10 hub seconds", waited)
	}
	if got := labels(base.received(mark)); !slices.Equal(got, []string{"clear_emergency"}) {
		t.Fatalf("the baseline got %v for the clear", got)
	}
	base.actuators("still latched on the device", stoppedOnDevice)

	mark = base.mark()
	cl = c.do("POST", "/api/v1/actuators/clear_emergency", op, map[string]any{
		"reason":                   "dry",
		"reconfigure_if_no_answer": true,
	})
	if cl.status != 200 || cl.body["success"] != true || cl.body["still_active"] != false ||
		clearDetail(t, cl, base.id)["outcome"] != emergency.OutcomeReconfigured ||
		clearDetail(t, cl, newer.id)["outcome"] != emergency.OutcomeCleared {
		t.Fatalf("clear by re-configuration: %s", cl.raw)
	}
	cfg := base.awaitIn(mark, "config")
	for _, it := range cfg.body["actuators"].([]any) {
		if it.(map[string]any)["default_state"] != false {
			t.Fatalf("the re-configuration of a latched device carries %v", it)
		}
	}
	base.actuators("re-created off and unlatched", offAndFree)
	newer.actuators("unlatched by the device's clear", offAndFree)

	switchOn(t, c, op, base.id, 5)
	base.actuators("on after the clear", func(s sim.ActuatorState) bool { return s.GPIO != 5 || s.Energised })
}

// A latched node that comes back gets the OFFs and the device stop before
// any other command: after a lost link (no reboot) both firmware
// generations, and after a reboot the baseline right after its config push.
func TestLatchedSimulatedNodesAreResafedFirst(t *testing.T) {
	h, c := apiHub(t, Config{ActuatorSecond: emSecond})
	defer stopHub(t, h)
	_, op, _ := setupUsers(t, c)
	statuses := h.Events.Subscribe(256, event.TypeDeviceStatus)
	defer h.Events.Unsubscribe(statuses)
	base := startSim(t, h.MQTTAddr(), "ESP_BA5E02", "default")
	newer := startSim(t, h.MQTTAddr(), "ESP_9E1E02", "none")
	for _, d := range []*simDevice{base, newer} {
		admit(t, h, c, op, d.id)
		configure(t, c, op, d.id, 5, pumpConfig)
		configure(t, c, op, d.id, 16, relayConfig)
	}
	token := awaitTokens(t, h, newer.id)
	switchOn(t, c, op, newer.id, 5)

	for _, d := range []*simDevice{base, newer} {
		d.node.DropLink()
		awaitEvent(t, statuses, 5*time.Second, statusIs(d.id, device.StatusOffline, "lwt"))
	}
	r := c.do("POST", "/api/v1/actuators/emergency_stop", op, map[string]any{"reason": "smoke"})
	if r.status != 200 || r.body["devices_stopped"] != 2.0 || r.body["actuators_stopped"] != 0.0 {
		t.Fatalf("stop while both are offline: %d %s", r.status, r.raw)
	}
	newer.actuators("still running on the disconnected node", func(s sim.ActuatorState) bool {
		return s.GPIO != 5 || s.Energised
	})

	marks := map[*simDevice]int{base: base.mark(), newer: newer.mark()}
	for _, d := range []*simDevice{base, newer} {
		d.node.RestoreLink()
	}
	stop := resafedFirst(t, base, marks[base], nil, 5, 16)
	if stop.body["auth_token"] != base.id {
		t.Fatalf("baseline device stop %v, want its esp_id as the token", stop.body)
	}
	base.actuators("off (the baseline honours only the OFFs)", func(s sim.ActuatorState) bool { return !s.Energised })
	stop = resafedFirst(t, newer, marks[newer], nil, 5, 16)
	if stop.body["auth_token"] != token {
		t.Fatalf("newer device stop %v, want its token %s", stop.body, token)
	}
	newer.actuators("stopped and latched on the device", stoppedOnDevice)
	// The tokens are offered again on the reconnect (S4), after the re-safing.
	offer := newer.awaitIn(marks[newer], "set_emergency_token")
	if !offer.at.After(stop.at) || offer.body["token_type"] != "esp" || offer.body["token"] != token {
		t.Fatalf("token offer %v at %s, the device stop at %s", offer.body, offer.at, stop.at)
	}

	// A reboot (power cycle): the B2 config push goes first, the re-safing right after it.
	base.stop()
	awaitEvent(t, statuses, 5*time.Second, statusIs(base.id, device.StatusOffline, "lwt"))
	base = startSim(t, h.MQTTAddr(), base.id, "default")
	resafedFirst(t, base, 0, []string{"config"}, 5, 16)
	base.actuators("off after the reboot", func(s sim.ActuatorState) bool { return !s.Energised })
}

// A global stop with a valve in scope: OFF to every actuator at once, the
// broadcast only after the valve's travel time, so that the valve is closed
// when the broadcast cuts its enable pin (docs/protocol.md Q14); the pump
// is off before the broadcast latches the valve.
func TestGlobalStopWaitsForTheValve(t *testing.T) {
	h, c := apiHub(t, Config{ActuatorSecond: emSecond})
	defer stopHub(t, h)
	_, op, _ := setupUsers(t, c)
	d := startSim(t, h.MQTTAddr(), "ESP_BA5E03", "default")
	admit(t, h, c, op, d.id)
	configure(t, c, op, d.id, 5, pumpConfig)
	// 6 s of travel for a valve the firmware moves in 5 s (two 2.5 s steps).
	const travel = 6
	configure(t, c, op, d.id, 25, map[string]any{
		"actuator_type":        "valve",
		"name":                 "Main valve",
		"aux_gpio":             26,
		"valve_travel_seconds": travel,
	})
	switchOn(t, c, op, d.id, 5)
	if r := c.do("POST", "/api/v1/actuators/"+d.id+"/25/command", op, map[string]any{"command": "ON"}); r.status != 200 {
		t.Fatalf("valve ON: %d %s", r.status, r.raw)
	}
	d.actuators("pump on and valve open", func(s sim.ActuatorState) bool {
		return (s.GPIO == 5 && s.Energised) || (s.GPIO == 25 && s.Opening == 1 && !s.Moving)
	})

	mark := d.mark()
	asked := time.Now()
	r := c.do("POST", "/api/v1/actuators/emergency_stop", op, map[string]any{"reason": "burst pipe"})
	answered := time.Now()
	if r.status != 200 || r.body["actuators_stopped"] != 2.0 {
		t.Fatalf("stop: %d %s", r.status, r.raw)
	}
	broadcast := d.awaitIn(mark, "broadcast")

	in := d.received(mark)
	if got := labels(in); len(got) != 3 || !slices.Equal(slices.Sorted(slices.Values(got[:2])), offLabels([]int{5, 25})) {
		for _, m := range d.since(mark) {
			t.Logf("%s %s %s %v", m.at.Sub(asked), m.dir, m.topic, m.body)
		}
		t.Fatalf("the node handled %v, want both OFFs, then the broadcast", got)
	}
	if lastOff := in[1].at; lastOff.Sub(asked) > broadcast.at.Sub(lastOff) {
		t.Fatalf("the OFFs came %s after the request, the broadcast %s after them: not at once",
			lastOff.Sub(asked), broadcast.at.Sub(lastOff))
	}
	if wait := broadcast.at.Sub(in[0].at); wait < travel*emSecond-20*time.Millisecond {
		t.Fatalf("the broadcast came %s after the valve's OFF, before its travel time %s", wait, travel*emSecond)
	}
	if answered.After(broadcast.at) {
		t.Error("the stop's reply waited for the valve")
	}

	pumpOff := d.await(mark, "reported the pump off", func(m nodeMessage) bool {
		return m.dir == "out" && m.topic == "actuator/5/status" && m.body["state"] == false
	})
	if !pumpOff.at.Before(broadcast.at) {
		t.Fatal("the pump was reported off only after the broadcast")
	}
	for _, s := range d.actuators("stopped and latched on the device", stoppedOnDevice) {
		if s.GPIO == 25 && s.Opening != 0 {
			t.Fatalf("the valve was latched %.0f %% open", 100*s.Opening)
		}
	}
}

// A latch made while the device's heartbeats stream in is still in force
// after a restart: one heartbeat is held between its record snapshot and
// its save while the stop is made (see devicesave_test.go).
func TestLatchSurvivesStreamingHeartbeatsAndRestart(t *testing.T) {
	const id = "ESP_1A7C40"
	dir := t.TempDir()
	func() {
		h, c := apiHub(t, Config{DataDir: dir})
		defer stopHub(t, h)
		_, tok, _ := setupUsers(t, c)
		statuses := h.Events.Subscribe(256, event.TypeDeviceStatus)
		defer h.Events.Unsubscribe(statuses)
		hold := holdAck(t, h, id)
		defer hold.free()
		s := startStream(t, h, id)
		awaitEvent(t, statuses, 5*time.Second, statusIs(id, device.StatusPending, "discovered"))
		if r := c.do("POST", "/api/v1/esp/devices/"+id+"/approve", tok, nil); r.status != 200 {
			t.Fatalf("approve: %d %s", r.status, r.raw)
		}
		awaitEvent(t, statuses, 5*time.Second, statusIs(id, device.StatusOnline, "heartbeat"))
		if r := c.do("POST", "/api/v1/actuators/"+id+"/5", tok, pumpConfig); r.status != 200 {
			t.Fatalf("configure: %d %s", r.status, r.raw)
		}

		amid(t, hold, s, func() {
			r := c.do("POST", "/api/v1/actuators/emergency_stop", tok, map[string]any{"esp_id": id, "reason": "leak"})
			if r.status != 200 || r.body["latch_persisted"] != true {
				t.Errorf("stop: %d %s", r.status, r.raw)
			}
		})
		if !h.Emergency.Latched(id) {
			t.Error("not latched in memory")
		}
	}()

	h, c := apiHub(t, Config{DataDir: dir})
	defer stopHub(t, h)
	tok := login(t, c, "operator", "Pass-word1")
	if st := c.do("GET", "/api/v1/actuators/emergency", tok, nil); st.body["active"] != true ||
		fmt.Sprint(latchedDevices(st)) != "["+id+"]" {
		t.Fatalf("status after the restart: %s", st.raw)
	}
	if r := c.do("POST", "/api/v1/actuators/"+id+"/5/command", tok, map[string]any{"command": "ON"}); r.status != 409 ||
		errCode(r) != "EMERGENCY_STOP_ACTIVE" {
		t.Fatalf("ON after the restart: %d %s", r.status, r.raw)
	}
	if r := c.do("GET", "/api/v1/esp/devices/"+id, tok, nil); r.status != 200 || r.body["status"] == device.StatusPending {
		t.Fatalf("device after the restart: %d %s", r.status, r.raw)
	}
}

// A newer-firmware node gets its token, refuses a stop with the token it
// had before, honours the hub's device stop with the provisioned one, and
// is cleared by its own answer after the guard.
func TestNewerNodeHonoursADeviceStopWithItsToken(t *testing.T) {
	const factory = "F4ct0ryT0ken0000"
	h, c := apiHub(t, Config{ActuatorSecond: emSecond})
	defer stopHub(t, h)
	_, op, _ := setupUsers(t, c)
	d := startSim(t, h.MQTTAddr(), "ESP_9E1E05", "none", func(cfg *sim.NodeConfig) {
		cfg.EmergencyToken, cfg.BroadcastToken = factory, factory
	})
	admit(t, h, c, op, d.id)
	configure(t, c, op, d.id, 5, pumpConfig)
	token := awaitTokens(t, h, d.id)
	set := d.awaitIn(0, "set_emergency_token")
	if token == factory || len(token) != 16 || set.body["token"] != token {
		t.Fatalf("provisioned token %q, the node got %v", token, set.body)
	}
	switchOn(t, c, op, d.id, 5)

	// The token the node had is no longer accepted.
	forged := fmt.Sprintf(`{"command":"emergency_stop","auth_token":%q,"correlation_id":"em-forged"}`, factory)
	if err := h.Broker.Publish(context.Background(), "kaiser/god/esp/"+d.id+"/actuator/emergency",
		[]byte(forged), 1, false); err != nil {
		t.Fatal(err)
	}
	d.await(0, "refused the old token", func(m nodeMessage) bool {
		return m.dir == "out" && m.topic == "actuator/emergency/error" && m.body["error"] == "unauthorized"
	})
	d.actuators("still running", func(s sim.ActuatorState) bool { return s.Energised && !s.Latched })
	waitFor(t, "the refused stop reported", func() bool { return h.Alerts.IsOpen("emergency_refused:" + d.id) })

	mark := d.mark()
	r := c.do("POST", "/api/v1/actuators/emergency_stop", op, map[string]any{"esp_id": d.id, "reason": "leak"})
	if r.status != 200 || r.body["scope"] != "device" || r.body["actuators_stopped"] != 1.0 {
		t.Fatalf("device stop: %d %s", r.status, r.raw)
	}
	stop := resafedFirst(t, d, mark, nil, 5)
	if stop.body["auth_token"] != token {
		t.Fatalf("device stop %v, want the token %s", stop.body, token)
	}
	d.await(mark, "acknowledged the stop", func(m nodeMessage) bool {
		return m.dir == "out" && m.topic == "actuator/emergency/ack" && m.body["outcome"] == "executed"
	})
	d.actuators("stopped and latched on the device", stoppedOnDevice)

	time.Sleep(time.Until(stop.at.Add(emergency.ClearGuard / time.Second * emSecond)))
	cl := c.do("POST", "/api/v1/actuators/clear_emergency", op, map[string]any{"esp_id": d.id, "reason": "fixed"})
	if cl.body["success"] != true || clearDetail(t, cl, d.id)["outcome"] != emergency.OutcomeCleared {
		t.Fatalf("clear: %s", cl.raw)
	}
	if clr := d.awaitIn(mark, "clear_emergency"); clr.body["auth_token"] != token {
		t.Fatalf("clear message %v", clr.body)
	}
	d.actuators("unlatched by the device", offAndFree)
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
