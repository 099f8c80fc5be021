package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Quirks are the firmware behaviours of CONTRACT §6.6 that `--quirks` switches.
type Quirks struct {
	Retain             bool // Q1: "QoS 1" publishes go out as QoS 0 + RETAIN
	NoResubscribe      bool // Q3: subscribe only after the first connect
	LateFirstHeartbeat bool // Q6: first heartbeat at uptime ≥ 60 s
	EmptyKaiserID      bool // baseline default kaiser_id ""
	NTPZero            bool // Q7: ts = 0
	Seq                bool // newer firmware: `seq` in every payload
}

// DefaultQuirks is the field firmware: retain, no-resubscribe, late first
// heartbeat, empty kaiser id, NTP synced.
const DefaultQuirks = "retain,no-resubscribe,late-first-heartbeat,empty-kaiser-id"

// ParseQuirks reads a --quirks list; "none" is the newer firmware, "all"
// adds ntp-zero to the default.
func ParseQuirks(s string) (Quirks, error) {
	switch strings.TrimSpace(s) {
	case "", "default":
		s = DefaultQuirks
	case "all":
		s = DefaultQuirks + ",ntp-zero"
	case "none":
		return Quirks{Seq: true}, nil
	}
	var q Quirks
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "retain":
			q.Retain = true
		case "no-resubscribe":
			q.NoResubscribe = true
		case "late-first-heartbeat":
			q.LateFirstHeartbeat = true
		case "empty-kaiser-id":
			q.EmptyKaiserID = true
		case "ntp-zero":
			q.NTPZero = true
		case "":
		default:
			return q, fmt.Errorf("unknown quirk %q (retain, no-resubscribe, late-first-heartbeat, empty-kaiser-id, ntp-zero, none, all)", name)
		}
	}
	return q, nil
}

// Clock is simulated device time: it starts at real now and runs Speed
// times faster than the wall clock.
type Clock struct {
	start time.Time
	real  time.Time
	Speed float64
}

// NewClock starts a clock at real now.
func NewClock(speed float64) *Clock {
	if speed <= 0 {
		speed = 1
	}
	now := time.Now()
	return &Clock{start: now, real: now, Speed: speed}
}

// Now is the simulated time.
func (c *Clock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.real)) * c.Speed))
}

// Real converts a simulated duration into wall time.
func (c *Clock) Real(d time.Duration) time.Duration { return time.Duration(float64(d) / c.Speed) }

// SensorSpec is one simulated sensor (DOMAIN §10.2).
type SensorSpec struct {
	GPIO     int
	Type     string
	Base     float64
	Pattern  string // constant, random, drift
	Range    float64
	Interval time.Duration // 0 = the node's measurement cycle
	Unit     string
	Quality  string
	RawMode  *bool // nil = true
}

// NodeConfig configures one simulated node.
type NodeConfig struct {
	EspID          string
	Broker         string // host:port
	Quirks         Quirks
	Sensors        []SensorSpec
	Interval       time.Duration // measurement cycle (firmware: 5 s)
	HeartbeatEvery time.Duration // 60 s
	StatusEvery    time.Duration // 30 s
	Clock          *Clock
	BootLog        io.Writer
	Seed           int64
}

// Stats are a node's counters.
type Stats struct {
	Sent, Received, Errors, Reconnects atomic.Int64
}

type actuator struct {
	gpio    int
	typ     string
	on      bool
	pwm     int
	latched bool
}

// Node is one simulated ESP32 running the baseline firmware model.
type Node struct {
	cfg        NodeConfig
	rng        *rand.Rand
	booted     time.Time // simulated boot time
	kaiser     string
	mu         sync.Mutex
	wire       *Wire
	connected  bool
	subscribed bool
	buffer     [][3]string // offline buffer: topic, payload, retain flag (U3)
	actuators  map[int]*actuator
	values     map[int]float64
	dir        map[int]float64
	inbox      chan [2]string
	ctl        chan func()
	override   map[int]float64
	nextRead   map[int]time.Duration
	state      string
	nextHB     time.Duration
	logMu      sync.Mutex
	messages   []Message
	Stats      Stats
	killed     atomic.Bool
	paused     atomic.Bool
	stopped    chan struct{}
}

// NewNode builds a node; Run starts it.
func NewNode(cfg NodeConfig) *Node {
	if cfg.Clock == nil {
		cfg.Clock = NewClock(1)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = 60 * time.Second
	}
	if cfg.StatusEvery <= 0 {
		cfg.StatusEvery = 30 * time.Second
	}
	n := &Node{cfg: cfg, rng: rand.New(rand.NewSource(cfg.Seed)), actuators: map[int]*actuator{}, values: map[int]float64{},
		dir: map[int]float64{}, inbox: make(chan [2]string, 256), stopped: make(chan struct{}), ctl: make(chan func(), 16),
		override: map[int]float64{}, nextRead: map[int]time.Duration{}, state: "OPERATIONAL"}
	if !cfg.Quirks.EmptyKaiserID {
		n.kaiser = "god"
	}
	for _, s := range cfg.Sensors {
		n.values[s.GPIO] = s.Base
		n.dir[s.GPIO] = 1
	}
	return n
}

// EspID is the node's id.
func (n *Node) EspID() string { return n.cfg.EspID }

func (n *Node) topic(suffix string) string {
	return "kaiser/" + n.kaiser + "/esp/" + n.cfg.EspID + "/" + suffix
}

func (n *Node) uptime() time.Duration { return n.cfg.Clock.Now().Sub(n.booted) }

// logf writes a firmware log line: `[%10lu] [%-8s] %s`.
func (n *Node) logf(level, format string, a ...any) {
	if n.cfg.BootLog == nil {
		return
	}
	fmt.Fprintf(n.cfg.BootLog, "[%10d] [%-8s] %s\n", n.uptime().Milliseconds(), level, fmt.Sprintf(format, a...))
}

func (n *Node) raw(line string) {
	if n.cfg.BootLog != nil {
		fmt.Fprintln(n.cfg.BootLog, line)
	}
}

func box(title string) []string {
	bar := strings.Repeat("═", 40)
	return []string{"╔" + bar + "╗", title, "╚" + bar + "╝"}
}

func (n *Node) banner(title string) {
	for _, l := range box(title) {
		n.logf("INFO", "%s", l)
	}
}

// unix is the device's `ts`: Unix seconds, or 0 without NTP (Q7).
func (n *Node) unix() int64 {
	if n.cfg.Quirks.NTPZero {
		return 0
	}
	return n.cfg.Clock.Now().Unix()
}

func (n *Node) seq(m map[string]any) map[string]any {
	if n.cfg.Quirks.Seq {
		m["seq"] = n.Stats.Sent.Load() + 1
	}
	return m
}

// Run boots the node and runs until ctx ends or it is killed.
func (n *Node) Run(ctx context.Context) error {
	defer close(n.stopped)
	n.booted = n.cfg.Clock.Now()
	n.bootLog()
	if err := n.connect(true); err != nil {
		n.logf("ERROR", "MQTT connection failed")
		n.logf("WARNING", "System will continue but MQTT features unavailable")
	}
	n.phases()
	tick := time.NewTicker(max(n.cfg.Clock.Real(100*time.Millisecond), time.Millisecond))
	defer tick.Stop()
	n.nextHB = n.cfg.HeartbeatEvery
	if !n.cfg.Quirks.LateFirstHeartbeat {
		n.heartbeat() // newer firmware: bootstrap heartbeat at connect
	}
	nextRead, nextStatus := n.cfg.Interval, n.cfg.StatusEvery
	failures := 0
	var retryAt time.Duration
	for {
		select {
		case <-ctx.Done():
			n.kill()
			return nil
		case m := <-n.inbox:
			n.handle(m[0], []byte(m[1]))
		case f := <-n.ctl:
			f()
		case <-tick.C:
		}
		if n.killed.Load() {
			return nil
		}
		up := n.uptime()
		if n.paused.Load() {
			continue
		}
		if !n.isConnected() {
			if failures >= 10 {
				continue // Q8: gives up until power-cycled
			}
			if up >= retryAt {
				if err := n.connect(false); err != nil {
					failures++
					n.Stats.Errors.Add(1)
					retryAt = up + min(time.Duration(1<<failures)*time.Second, 60*time.Second)
				} else {
					failures = 0
					n.Stats.Reconnects.Add(1)
				}
			}
			continue
		}
		if up >= n.nextHB {
			n.heartbeat()
			n.nextHB = up + n.cfg.HeartbeatEvery
		}
		if up >= nextRead {
			for _, s := range n.cfg.Sensors {
				if s.Interval == 0 {
					n.reading(s)
				}
			}
			nextRead = up + n.cfg.Interval
		}
		for _, s := range n.cfg.Sensors {
			if s.Interval > 0 && up >= n.nextRead[s.GPIO] {
				n.reading(s)
				n.nextRead[s.GPIO] = up + s.Interval
			}
		}
		if up >= nextStatus {
			for _, a := range n.sortedActuators() {
				n.status(a)
			}
			nextStatus = up + n.cfg.StatusEvery
		}
	}
}

func (n *Node) isConnected() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.connected
}

func (n *Node) connect(first bool) error {
	willTS := n.unix()
	will, _ := json.Marshal(map[string]any{"status": "offline", "reason": "unexpected_disconnect", "timestamp": willTS})
	w, err := DialWire(n.cfg.Broker, WireOptions{ClientID: n.cfg.EspID, KeepAlive: 60, WillTopic: n.topic("system/will"),
		WillPayload: will, WillQoS: 1, WillRetain: true, OnMessage: func(topic string, payload []byte) {
			n.Stats.Received.Add(1)
			select {
			case n.inbox <- [2]string{topic, string(payload)}:
			default:
			}
		}})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.wire, n.connected = w, true
	subscribe := !n.subscribed || !n.cfg.Quirks.NoResubscribe
	n.subscribed = n.subscribed || subscribe
	buffered := n.buffer
	n.buffer = nil
	n.mu.Unlock()
	go func() {
		<-w.Done()
		n.mu.Lock()
		if n.wire == w {
			n.connected = false
		}
		n.mu.Unlock()
	}()
	if first {
		n.logf("INFO", "MQTT connected!")
		n.logf("INFO", "Initial heartbeat sent for ESP registration")
	}
	if subscribe {
		zoneRoot := n.kaiser
		if zoneRoot == "" {
			zoneRoot = "god"
		}
		subs := []string{n.topic("system/command"), n.topic("config"), "kaiser/broadcast/emergency", n.topic("actuator/+/command"),
			n.topic("actuator/emergency"), "kaiser/" + zoneRoot + "/esp/" + n.cfg.EspID + "/zone/assign", n.topic("subzone/assign"), n.topic("subzone/remove")}
		if err := w.Subscribe(subs...); err != nil {
			return err
		}
		for _, s := range subs {
			n.logf("INFO", "Subscribed to: %s", s)
		}
		n.logf("INFO", "Subscribed to system + actuator + zone assignment + subzone management topics")
	}
	for _, b := range buffered { // U3: flushed in order after reconnect
		n.send(b[0], []byte(b[1]), b[2] == "r", false)
	}
	return nil
}

// send publishes; "QoS 1" messages are retained with the Q1 quirk, and are
// buffered while disconnected (U3); telemetry is never buffered.
func (n *Node) send(topic string, payload []byte, qos1, bufferable bool) {
	retain := qos1 && n.cfg.Quirks.Retain
	n.mu.Lock()
	w, ok := n.wire, n.connected
	if !ok {
		if bufferable && len(n.buffer) < 100 {
			r := ""
			if retain {
				r = "r"
			}
			n.buffer = append(n.buffer, [3]string{topic, string(payload), r})
		}
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	if err := w.Publish(topic, payload, retain); err != nil {
		n.Stats.Errors.Add(1)
		return
	}
	if err := w.Flush(); err != nil {
		n.Stats.Errors.Add(1)
		return
	}
	n.Stats.Sent.Add(1)
	n.record(topic, payload, "out")
}

// Message is one entry of the node's message log (the last 500).
type Message struct {
	Topic     string    `json:"topic"`
	Payload   string    `json:"payload"`
	Timestamp time.Time `json:"timestamp"`
	QoS       int       `json:"qos"`
	Direction string    `json:"direction"`
}

func (n *Node) record(topic string, payload []byte, dir string) {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	if len(n.messages) >= 500 {
		n.messages = n.messages[1:]
	}
	n.messages = append(n.messages, Message{Topic: topic, Payload: string(payload), Timestamp: time.Now().UTC(), Direction: dir})
}

// Messages returns the newest messages first, at most limit.
func (n *Node) Messages(limit int) []Message {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	var out []Message
	for i := len(n.messages) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, n.messages[i])
	}
	return out
}

// ClearMessages empties the message log.
func (n *Node) ClearMessages() {
	n.logMu.Lock()
	n.messages = nil
	n.logMu.Unlock()
}

func (n *Node) publishJSON(suffix string, v map[string]any, qos1, bufferable bool) {
	b, _ := json.Marshal(n.seq(v))
	n.send(n.topic(suffix), b, qos1, bufferable)
}

func (n *Node) heartbeat() map[string]any {
	hb := map[string]any{"esp_id": n.cfg.EspID, "zone_id": "", "master_zone_id": "",
		"zone_assigned": false, "ts": n.unix(), "uptime": int64(n.uptime().Seconds()), "heap_free": 180000 + n.rng.Intn(10000),
		"wifi_rssi": -70 + n.rng.Intn(20), "sensor_count": len(n.cfg.Sensors), "actuator_count": len(n.actuators)}
	if n.cfg.Quirks.Seq {
		hb["state"] = n.state // newer firmware and mocks report their system state
	}
	n.publishJSON("system/heartbeat", hb, false, false)
	return hb
}

// value advances a sensor's pattern (DOMAIN §10.2).
func (n *Node) value(s SensorSpec) float64 {
	if o, ok := n.override[s.GPIO]; ok {
		return o // a manual override wins over the pattern
	}
	v := s.Base
	switch s.Pattern {
	case "random":
		v = s.Base + (n.rng.Float64()*2-1)*s.Range
	case "drift":
		v = n.values[s.GPIO] + n.dir[s.GPIO]*0.1*s.Range
		if v > s.Base+s.Range || v < s.Base-s.Range {
			n.dir[s.GPIO] = -n.dir[s.GPIO]
			v = math.Max(s.Base-s.Range, math.Min(s.Base+s.Range, v))
		}
		n.values[s.GPIO] = v
	}
	return math.Round(v)
}

// reading publishes the fallback format (HTTP processing off): value = raw,
// unit "raw", quality "fair" (CONTRACT §4.4).
func (n *Node) reading(s SensorSpec) {
	raw := n.value(s)
	unit, quality, rawMode := "raw", "fair", true
	if s.RawMode != nil {
		rawMode = *s.RawMode
	}
	if s.Unit != "" {
		unit = s.Unit
	}
	if s.Quality != "" {
		quality = s.Quality
	}
	payload := fmt.Sprintf(`{"esp_id":"%s","zone_id":"","subzone_id":"","gpio":%d,"sensor_type":"%s","raw":%d,"value":%.2f,"unit":"%s","quality":"%s","ts":%d,"raw_mode":%t`,
		n.cfg.EspID, s.GPIO, s.Type, int64(raw), raw, unit, quality, n.unix(), rawMode)
	if n.cfg.Quirks.Seq {
		payload += fmt.Sprintf(`,"seq":%d`, n.Stats.Sent.Load()+1)
	}
	n.send(n.topic(fmt.Sprintf("sensor/%d/data", s.GPIO)), []byte(payload+"}"), true, false)
}

func (n *Node) status(a *actuator) {
	emergency := "normal"
	if a.latched {
		emergency = "active"
	}
	n.publishJSON(fmt.Sprintf("actuator/%d/status", a.gpio), map[string]any{"esp_id": n.cfg.EspID, "zone_id": "", "subzone_id": "",
		"ts": n.unix(), "gpio": a.gpio, "type": a.typ, "state": a.on, "pwm": a.pwm, "runtime_ms": 0, "emergency": emergency}, true, true)
}

func (n *Node) sortedActuators() []*actuator {
	var out []*actuator
	for g := 0; g < 40; g++ {
		if a := n.actuators[g]; a != nil {
			out = append(out, a)
		}
	}
	return out
}

// handle reacts to a hub message (CONTRACT §6.3).
func (n *Node) handle(topic string, payload []byte) {
	n.record(topic, payload, "in")
	n.logf("INFO", "MQTT message received: %s", topic)
	switch {
	case strings.HasSuffix(topic, "/config"):
		n.handleConfig(payload)
	case strings.Contains(topic, "/actuator/") && strings.HasSuffix(topic, "/command"):
		n.handleCommand(topic, payload)
	case topic == "kaiser/broadcast/emergency":
		var v map[string]any
		if json.Unmarshal(payload, &v) != nil || len(payload) > 256 {
			n.logf("ERROR", "Failed to parse broadcast emergency JSON")
			return
		}
		n.banner("║   BROADCAST EMERGENCY-STOP RECEIVED    ║")
		for _, a := range n.sortedActuators() {
			a.on, a.pwm, a.latched = false, 0, true
			n.publishJSON(fmt.Sprintf("actuator/%d/alert", a.gpio), map[string]any{"esp_id": n.cfg.EspID, "zone_id": "", "ts": n.unix(),
				"gpio": a.gpio, "alert_type": "emergency_stop", "message": "Actuator stopped"}, true, true)
		}
	case strings.HasSuffix(topic, "/zone/assign"):
		var z map[string]any
		if json.Unmarshal(payload, &z) != nil {
			return
		}
		zone, _ := z["zone_id"].(string)
		if zone == "" {
			n.logf("ERROR", "Zone assignment with empty zone_id ignored")
			return
		}
		n.banner("║        ZONE ASSIGNMENT RECEIVED        ║")
		if k, _ := z["kaiser_id"].(string); k != "" {
			n.kaiser = k // Q4: the publish root moves at once
		} else {
			n.kaiser = "god"
		}
		master, _ := z["master_zone_id"].(string)
		n.publishJSON("zone/ack", map[string]any{"esp_id": n.cfg.EspID, "status": "zone_assigned", "zone_id": zone,
			"master_zone_id": master, "ts": n.unix()}, true, true)
	case strings.HasSuffix(topic, "/system/command"):
		var c map[string]any
		if json.Unmarshal(payload, &c) != nil || c["command"] != "factory_reset" || c["confirm"] != true {
			return
		}
		n.banner("║          FACTORY RESET via MQTT        ║")
		n.publishJSON("system/command/response", map[string]any{"status": "factory_reset_initiated", "esp_id": n.cfg.EspID}, true, true)
		time.AfterFunc(n.cfg.Clock.Real(3*time.Second), n.kill)
	case strings.HasSuffix(topic, "/subzone/assign"):
		n.banner("║      SUBZONE ASSIGNMENT RECEIVED       ║")
		var z map[string]any
		ack := map[string]any{"esp_id": n.cfg.EspID, "timestamp": int64(n.uptime().Seconds())}
		if err := json.Unmarshal(payload, &z); err != nil {
			ack["status"], ack["subzone_id"], ack["error_code"], ack["message"] = "error", "", 2506, "JSON parse failed"
		} else if id, _ := z["subzone_id"].(string); id == "" || len(id) > 32 {
			ack["status"], ack["subzone_id"], ack["error_code"], ack["message"] = "error", id, 2506, "subzone_id is required"
		} else {
			ack["status"], ack["subzone_id"] = "subzone_assigned", id
		}
		n.publishJSON("subzone/ack", ack, true, true)
	case strings.HasSuffix(topic, "/subzone/remove"):
		n.banner("║       SUBZONE REMOVAL RECEIVED         ║") // baseline: no ack
	case strings.HasSuffix(topic, "/actuator/emergency"):
		n.logf("ERROR", "Invalid actuator command topic: %s", topic) // Q5
	}
}

func (n *Node) handleConfig(payload []byte) {
	var cfg map[string]any
	if err := json.Unmarshal(payload, &cfg); err != nil || len(payload) > 4096 {
		n.configResponse("sensor", "error", 0, "Failed to parse sensor config JSON: NoMemory", "JSON_PARSE_ERROR", nil)
		n.configResponse("actuator", "error", 0, "Failed to parse actuator config JSON: NoMemory", "JSON_PARSE_ERROR", nil)
		return
	}
	for _, section := range []string{"sensor", "actuator"} {
		items, ok := cfg[section+"s"].([]any)
		title := strings.ToUpper(section[:1]) + section[1:]
		switch {
		case !ok:
			n.configResponse(section, "error", 0, title+" config missing '"+section+"s' array", "MISSING_FIELD", nil)
			continue
		case len(items) == 0:
			n.configResponse(section, "error", 0, title+" config array is empty", "MISSING_FIELD", nil)
			continue
		}
		good := 0
		for _, it := range items {
			m, _ := it.(map[string]any)
			if code, msg := n.applyItem(section, m); code != "" {
				n.configResponse(section, "error", 0, msg, code, m)
				continue
			}
			good++
		}
		if good == len(items) {
			n.configResponse(section, "success", good, fmt.Sprintf("Configured %d %s(s) successfully", good, section), "", nil)
		}
	}
}

// applyItem applies one config item (C3–C6); it returns an error code and message.
func (n *Node) applyItem(section string, m map[string]any) (string, string) {
	title := strings.ToUpper(section[:1]) + section[1:]
	g, ok := m["gpio"].(float64)
	if _, present := m["gpio"]; !present {
		return "MISSING_FIELD", title + " config missing required field 'gpio'"
	}
	if !ok {
		return "TYPE_MISMATCH", title + " field 'gpio' must be an integer"
	}
	gpio := int(g)
	if section == "sensor" {
		for _, k := range []string{"sensor_type", "sensor_name"} {
			if _, present := m[k]; !present {
				return "MISSING_FIELD", "Sensor config missing required field '" + k + "'"
			}
		}
		typ, _ := m["sensor_type"].(string)
		if gpio > 39 || typ == "" {
			return "VALIDATION_FAILED", fmt.Sprintf("Sensor validation failed for GPIO %d", gpio)
		}
		active, set := m["active"].(bool)
		if set && !active {
			n.removeSensor(gpio)
			return "", ""
		}
		n.upsertSensor(SensorSpec{GPIO: gpio, Type: typ, Base: 2048, Pattern: "constant"})
		return "", ""
	}
	typ, _ := m["actuator_type"].(string)
	if typ == "" {
		typ, _ = m["type"].(string)
	}
	if _, present := m["actuator_name"]; !present {
		if _, alias := m["name"]; !alias {
			return "MISSING_FIELD", "Actuator config missing required field 'actuator_name'"
		}
	}
	switch typ {
	case "":
		return "VALIDATION_FAILED", "Actuator type cannot be empty"
	case "pump", "valve", "pwm", "relay":
	default:
		return "UNKNOWN_ERROR", fmt.Sprintf("Failed to configure actuator on GPIO %d", gpio)
	}
	if active, set := m["active"].(bool); set && !active {
		delete(n.actuators, gpio)
		return "", ""
	}
	def, _ := m["default_state"].(bool)
	a := &actuator{gpio: gpio, typ: typ, on: def}
	if def {
		a.pwm = 255
	}
	n.actuators[gpio] = a // C5: re-created, latch cleared
	n.status(a)
	return "", ""
}

func (n *Node) upsertSensor(s SensorSpec) {
	for i := range n.cfg.Sensors {
		if n.cfg.Sensors[i].GPIO == s.GPIO {
			n.cfg.Sensors[i].Type = s.Type
			return
		}
	}
	n.cfg.Sensors = append(n.cfg.Sensors, s)
	n.values[s.GPIO], n.dir[s.GPIO] = s.Base, 1
}

func (n *Node) removeSensor(gpio int) {
	out := n.cfg.Sensors[:0]
	for _, s := range n.cfg.Sensors {
		if s.GPIO != gpio {
			out = append(out, s)
		}
	}
	n.cfg.Sensors = out
}

func (n *Node) configResponse(section, status string, count int, msg, code string, item map[string]any) {
	m := map[string]any{"status": status, "type": section, "count": count, "message": msg}
	if code != "" {
		m["error_code"] = code
	}
	if item != nil {
		m["failed_item"] = item
	}
	n.publishJSON("config_response", m, true, true)
}

// handleCommand applies an actuator command (CONTRACT §3.2.1, §6.3).
func (n *Node) handleCommand(topic string, payload []byte) {
	parts := strings.Split(topic, "/")
	var gpio int
	fmt.Sscan(parts[len(parts)-2], &gpio)
	var c map[string]any
	_ = json.Unmarshal(payload, &c)
	cmd, _ := c["command"].(string)
	v, _ := c["value"].(float64)
	dur, _ := c["duration"].(float64)
	a := n.actuators[gpio]
	ok := a != nil && !a.latched
	if ok {
		switch strings.ToUpper(cmd) {
		case "ON":
			a.on, a.pwm = true, 255
		case "OFF":
			a.on, a.pwm = false, 0
		case "PWM":
			if v < 0 || v > 1 {
				ok = false
			} else if a.typ == "pwm" {
				a.pwm = int(v * 255)
				a.on = a.pwm > 0
			} else {
				a.on = v >= 0.5
				a.pwm = map[bool]int{true: 255, false: 0}[a.on]
			}
		default:
			ok = false
		}
	}
	msg := "Command executed"
	if !ok {
		msg = "Command failed"
	}
	resp := map[string]any{"esp_id": n.cfg.EspID, "zone_id": "", "ts": n.unix(), "gpio": gpio, "command": cmd,
		"value": math.Round(v*1000) / 1000, "duration": int(dur), "success": ok, "message": msg}
	if corr, _ := c["correlation_id"].(string); corr != "" && n.cfg.Quirks.Seq {
		resp["correlation_id"] = corr
	}
	n.publishJSON(fmt.Sprintf("actuator/%d/response", gpio), resp, true, true)
	if ok {
		n.status(a)
		n.status(a)
	}
}

// Do runs f on the node's goroutine and waits for it (false if the node stopped).
func (n *Node) Do(f func()) bool {
	done := make(chan struct{})
	select {
	case n.ctl <- func() { f(); close(done) }:
	case <-n.stopped:
		return false
	}
	select {
	case <-done:
		return true
	case <-n.stopped:
		return false
	}
}

// SetOverride fixes a sensor's value (publish: send one reading now).
func (n *Node) SetOverride(gpio int, v float64, publish bool) bool {
	return n.Do(func() {
		n.override[gpio] = v
		if publish {
			for _, s := range n.cfg.Sensors {
				if s.GPIO == gpio {
					n.reading(s)
				}
			}
		}
	})
}

// ClearOverride returns a sensor to its pattern.
func (n *Node) ClearOverride(gpio int) bool { return n.Do(func() { delete(n.override, gpio) }) }

// HeartbeatNow publishes one heartbeat and returns its payload.
func (n *Node) HeartbeatNow() (map[string]any, bool) {
	var hb map[string]any
	ok := n.Do(func() { hb = n.heartbeat() })
	return hb, ok
}

// AddSensor adds or replaces a simulated sensor.
func (n *Node) AddSensor(sp SensorSpec) bool {
	return n.Do(func() {
		n.removeSensor(sp.GPIO)
		n.cfg.Sensors = append(n.cfg.Sensors, sp)
		n.values[sp.GPIO], n.dir[sp.GPIO] = sp.Base, 1
	})
}

// RemoveSensor removes a simulated sensor.
func (n *Node) RemoveSensor(gpio int) bool {
	return n.Do(func() { n.removeSensor(gpio); delete(n.override, gpio) })
}

// SetActuator creates or sets a simulated actuator and publishes its status.
func (n *Node) SetActuator(gpio int, typ string, on bool, value float64, publish bool) bool {
	return n.Do(func() {
		a := n.actuators[gpio]
		if a == nil {
			a = &actuator{gpio: gpio, typ: typ}
			n.actuators[gpio] = a
		}
		if typ != "" {
			a.typ = typ
		}
		a.on, a.pwm = on, int(math.Round(value*255))
		if on && a.pwm == 0 {
			a.pwm = 255
		}
		if publish {
			n.status(a)
		}
	})
}

// SetHeartbeat switches automatic heartbeats (interval in simulated time).
func (n *Node) SetHeartbeat(enabled bool, every time.Duration) bool {
	return n.Do(func() {
		if !enabled {
			n.cfg.HeartbeatEvery = 1 << 62
		} else {
			n.cfg.HeartbeatEvery = every
		}
		n.nextHB = n.uptime() + n.cfg.HeartbeatEvery
	})
}

// EmergencyStop latches every actuator of the node itself (not the hub's
// latch): outputs off, one emergency_stop alert each; clear unlatches.
func (n *Node) EmergencyStop(stop bool) bool {
	return n.Do(func() {
		for _, a := range n.sortedActuators() {
			a.latched = stop
			if stop {
				a.on, a.pwm = false, 0
				n.publishJSON(fmt.Sprintf("actuator/%d/alert", a.gpio), map[string]any{"esp_id": n.cfg.EspID, "zone_id": "",
					"ts": n.unix(), "gpio": a.gpio, "alert_type": "emergency_stop", "message": "Actuator stopped"}, true, true)
			}
			n.status(a)
		}
		if stop {
			n.state = "SAFE_MODE"
		} else {
			n.state = "OPERATIONAL"
		}
	})
}

// SetState sets the reported system state.
func (n *Node) SetState(s string) bool { return n.Do(func() { n.state = s }) }

// Pause keeps the connection but stops publishing (a hung main loop);
// Resume continues.
func (n *Node) Pause()  { n.paused.Store(true) }
func (n *Node) Resume() { n.paused.Store(false) }

// Kill simulates a crash: TCP closes without DISCONNECT, the will fires (D6).
func (n *Node) Kill() { n.kill() }

func (n *Node) kill() {
	n.killed.Store(true)
	n.mu.Lock()
	w := n.wire
	n.connected = false
	n.mu.Unlock()
	if w != nil {
		w.Kill()
	}
}

// Stopped is closed when Run has returned.
func (n *Node) Stopped() <-chan struct{} { return n.stopped }
