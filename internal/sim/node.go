package sim

import (
	"context"
	"crypto/tls"
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

// Quirks are the firmware behaviours of docs/protocol.md §6.6 that `--quirks`
// switches. A zero Quirks is newer firmware without `seq`; Seq marks the
// newer firmware's payloads and with them its texts and echoes
// (correlation ids, specific failure messages, tokens).
type Quirks struct {
	Retain             bool // Q1: "QoS 1" publishes go out as QoS 0 + RETAIN
	NoResubscribe      bool // Q3: subscribe only after the first connect
	LateFirstHeartbeat bool // Q6: first heartbeat at uptime ≥ 60 s
	EmptyKaiserID      bool // baseline default kaiser_id ""
	NTPZero            bool // Q7: ts = 0
	EmergencyRouting   bool // Q5: `actuator/emergency` dropped as an invalid command
	IgnoreDuration     bool // Q10: a command's duration is never enforced
	TwoStatuses        bool // Q16: status → response → status around a command
	Seq                bool // newer firmware: `seq` in every payload
}

// DefaultQuirks is the field firmware: retain, no-resubscribe, late first
// heartbeat, empty kaiser id, the emergency routing defect, no duration,
// two statuses per command; NTP synced.
const DefaultQuirks = "retain,no-resubscribe,late-first-heartbeat,empty-kaiser-id," +
	"emergency-routing,ignore-duration,two-statuses"

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
	switches := map[string]*bool{
		"retain":               &q.Retain,
		"no-resubscribe":       &q.NoResubscribe,
		"late-first-heartbeat": &q.LateFirstHeartbeat,
		"empty-kaiser-id":      &q.EmptyKaiserID,
		"ntp-zero":             &q.NTPZero,
		"emergency-routing":    &q.EmergencyRouting,
		"ignore-duration":      &q.IgnoreDuration,
		"two-statuses":         &q.TwoStatuses,
	}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		on, ok := switches[name]
		if !ok {
			return q, fmt.Errorf("unknown quirk %q (%s, ntp-zero, none, all)", name, DefaultQuirks)
		}
		*on = true
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

// SensorSpec is one simulated sensor (docs/domain.md §10.2).
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
	ZoneID         string // the zone the node believes it is in, until a zone/assign
	MasterZoneID   string
	// EmergencyToken and BroadcastToken are newer firmware's stored tokens;
	// empty accepts any (docs/protocol.md §3.2.8). set_emergency_token replaces them.
	EmergencyToken string
	BroadcastToken string
	// Username and Password are the node's MQTT credentials; empty
	// connects anonymously (docs/protocol.md D1).
	Username string
	Password string
	// Observe, if set, sees every message the node receives or publishes,
	// in order, on the node's goroutine; it must not call the node.
	Observe func(Message)
	// Lose, if set, is asked about every message the broker delivers; true
	// loses it on the way, so the node never sees it (a test seam for a lossy
	// network; Inject delivers a held-back message late). It runs on the
	// connection's goroutine and must not call the node.
	Lose func(topic string, payload []byte) bool

	// TLS, when set, connects over TLS (the hub's MQTT TLS listener);
	// baseline firmware speaks plain MQTT only.
	TLS *tls.Config
}

// Stats are a node's counters.
type Stats struct {
	Sent, Received, Errors, Reconnects atomic.Int64
}

// Node is one simulated ESP32 running the baseline firmware model.
type Node struct {
	cfg        NodeConfig
	rng        *rand.Rand
	booted     time.Time // simulated boot time
	kaiser     string
	zone       string
	masterZone string
	mu         sync.Mutex
	wire       link
	dial       func(addr string, o WireOptions) (link, error)
	connected  bool
	subscribed bool
	buffer     [][3]string // offline buffer: topic, payload, retain flag (U3)
	actuators  map[int]*actuator
	// fwActuators is the firmware's own actuator count for the heartbeat;
	// the baseline loses one per re-configuration (docs/protocol.md §3.1.2).
	fwActuators    int
	stoppedOnce    bool
	lastStop       time.Duration // uptime of the last emergency stop
	resumeAt       time.Duration // end of an accepted clear's 2-s block
	espToken       string
	broadcastToken string
	values         map[int]float64
	dir            map[int]float64
	inbox          chan [2]string
	ctl            chan func()
	override       map[int]float64
	nextRead       map[int]time.Duration
	state          string
	nextHB         time.Duration
	logMu          sync.Mutex
	messages       []Message
	Stats          Stats
	killed         atomic.Bool
	paused         atomic.Bool
	linkDown       atomic.Bool
	stopped        chan struct{}
}

// link is the node's MQTT connection: a Wire, or a test's fake.
type link interface {
	Publish(topic string, payload []byte, retain bool) error
	Flush() error
	Subscribe(filters ...string) error
	Kill()
	Done() <-chan struct{}
}

var _ link = (*Wire)(nil)

func dialWire(addr string, o WireOptions) (link, error) { return DialWire(addr, o) }

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
	n := &Node{
		cfg:       cfg,
		rng:       rand.New(rand.NewSource(cfg.Seed)),
		actuators: map[int]*actuator{},
		values:    map[int]float64{},
		dir:       map[int]float64{},
		inbox:     make(chan [2]string, 256),
		stopped:   make(chan struct{}),
		ctl:       make(chan func(), 16),
		override:  map[int]float64{},
		nextRead:  map[int]time.Duration{},
		state:     "OPERATIONAL",
	}
	n.dial = dialWire
	n.zone, n.masterZone = cfg.ZoneID, cfg.MasterZoneID
	n.espToken, n.broadcastToken = cfg.EmergencyToken, cfg.BroadcastToken
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

func (n *Node) banner(level, title string) {
	for _, l := range box(title) {
		n.logf(level, "%s", l)
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
		inbox := n.inbox
		if n.blocked() {
			inbox = nil // an accepted clear blocks the main loop for 2 s
		}
		select {
		case <-ctx.Done():
			n.kill()
			return nil
		case m := <-inbox:
			n.handle(m[0], []byte(m[1]))
		case f := <-n.ctl:
			f()
		case <-tick.C:
		}
		if n.killed.Load() {
			return nil
		}
		if n.resumeAt != 0 {
			if n.blocked() {
				continue
			}
			n.resume()
		}
		up := n.uptime()
		if n.paused.Load() {
			continue
		}
		// The actuator loop runs without MQTT too; its statuses are buffered (U3).
		n.autoOffs(up)
		if up >= nextStatus {
			n.periodicStatuses()
			nextStatus = up + n.cfg.StatusEvery
		}
		if !n.isConnected() {
			if failures >= 10 || n.linkDown.Load() {
				continue // Q8: gives up until power-cycled; or no WiFi
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
	w, err := n.dial(n.cfg.Broker, WireOptions{
		ClientID:    n.cfg.EspID,
		Username:    n.cfg.Username,
		Password:    n.cfg.Password,
		TLS:         n.cfg.TLS,
		KeepAlive:   60,
		WillTopic:   n.topic("system/will"),
		WillPayload: will,
		WillQoS:     1,
		WillRetain:  true,
		OnMessage: func(topic string, payload []byte) {
			if n.cfg.Lose != nil && n.cfg.Lose(topic, payload) {
				return
			}
			n.Stats.Received.Add(1)
			select {
			case n.inbox <- [2]string{topic, string(payload)}:
			default:
			}
		},
	})
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
		subs := []string{
			n.topic("system/command"),
			n.topic("config"),
			"kaiser/broadcast/emergency",
			n.topic("actuator/+/command"),
			n.topic("actuator/emergency"),
			"kaiser/" + zoneRoot + "/esp/" + n.cfg.EspID + "/zone/assign",
			n.topic("subzone/assign"),
			n.topic("subzone/remove"),
		}
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
	if len(n.messages) >= 500 {
		n.messages = n.messages[1:]
	}
	m := Message{
		Topic:     topic,
		Payload:   string(payload),
		Timestamp: time.Now().UTC(),
		Direction: dir,
	}
	n.messages = append(n.messages, m)
	n.logMu.Unlock()
	if n.cfg.Observe != nil {
		n.cfg.Observe(m)
	}
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
	hb := map[string]any{
		"esp_id":         n.cfg.EspID,
		"zone_id":        n.zone,
		"master_zone_id": n.masterZone,
		"zone_assigned":  n.zone != "",
		"ts":             n.unix(),
		"uptime":         int64(n.uptime().Seconds()),
		"heap_free":      180000 + n.rng.Intn(10000),
		"wifi_rssi":      -70 + n.rng.Intn(20),
		"sensor_count":   len(n.cfg.Sensors),
		"actuator_count": n.fwActuators,
	}
	if n.cfg.Quirks.Seq {
		hb["state"] = n.state // newer firmware and mocks report their system state
	}
	n.publishJSON("system/heartbeat", hb, false, false)
	return hb
}

// value advances a sensor's pattern (docs/domain.md §10.2), rounded to 2
// places, so that a fractional value is published as it is.
func (n *Node) value(s SensorSpec) float64 {
	return math.Round(n.pattern(s)*100) / 100
}

func (n *Node) pattern(s SensorSpec) float64 {
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
	return v
}

// reading publishes the fallback format (HTTP processing off): unit "raw",
// quality "fair" (docs/protocol.md §4.4). The wire's raw word is an integer,
// the nearest to the value; the value goes unchanged, which the hub keeps as
// the reading of a raw_mode:false sensor.
func (n *Node) reading(s SensorSpec) {
	v := n.value(s)
	raw := math.Round(v)
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
	payload := fmt.Sprintf(`{"esp_id":"%s","zone_id":"%s","subzone_id":"","gpio":%d,"sensor_type":"%s",`+
		`"raw":%d,"value":%.2f,"unit":"%s","quality":"%s","ts":%d,"raw_mode":%t`,
		n.cfg.EspID, n.zone, s.GPIO, s.Type, int64(raw), v, unit, quality, n.unix(), rawMode)
	if n.cfg.Quirks.Seq {
		payload += fmt.Sprintf(`,"seq":%d`, n.Stats.Sent.Load()+1)
	}
	n.send(n.topic(fmt.Sprintf("sensor/%d/data", s.GPIO)), []byte(payload+"}"), true, false)
}

// handle reacts to a hub message (docs/protocol.md §6.3).
func (n *Node) handle(topic string, payload []byte) {
	n.record(topic, payload, "in")
	n.logf("INFO", "MQTT message received: %s", topic)
	switch {
	case strings.HasSuffix(topic, "/config"):
		n.handleConfig(payload)
	case topic == "kaiser/broadcast/emergency":
		n.handleBroadcast(payload)
	case strings.HasSuffix(topic, "/actuator/emergency") && !n.cfg.Quirks.EmergencyRouting:
		n.handleDeviceEmergency(payload)
	case strings.Contains(topic, "/actuator/"):
		n.handleCommand(topic, payload) // with Q5 also the emergency topic, refused as gpio 255
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
		n.banner("INFO", "║        ZONE ASSIGNMENT RECEIVED        ║")
		if k, _ := z["kaiser_id"].(string); k != "" {
			n.kaiser = k // Q4: the publish root moves at once
		} else {
			n.kaiser = "god"
		}
		master, _ := z["master_zone_id"].(string)
		n.zone, n.masterZone = zone, master
		n.publishJSON("zone/ack", map[string]any{
			"esp_id":         n.cfg.EspID,
			"status":         "zone_assigned",
			"zone_id":        zone,
			"master_zone_id": master,
			"ts":             n.unix(),
		}, true, true)
	case strings.HasSuffix(topic, "/system/command"):
		var c map[string]any
		if json.Unmarshal(payload, &c) != nil {
			return
		}
		if c["command"] == "set_emergency_token" && n.cfg.Quirks.Seq {
			n.setEmergencyToken(c)
			return
		}
		if c["command"] != "factory_reset" || c["confirm"] != true {
			return
		}
		n.banner("WARNING", "║          FACTORY RESET via MQTT        ║")
		reply := map[string]any{"status": "factory_reset_initiated", "esp_id": n.cfg.EspID}
		n.publishJSON("system/command/response", reply, true, true)
		time.AfterFunc(n.cfg.Clock.Real(3*time.Second), n.kill)
	case strings.HasSuffix(topic, "/subzone/assign"):
		n.banner("INFO", "║      SUBZONE ASSIGNMENT RECEIVED       ║")
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
		n.banner("INFO", "║       SUBZONE REMOVAL RECEIVED         ║") // baseline: no ack
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

// Inject hands the node a hub message as if the broker delivered it now,
// e.g. one that Lose held back; false if the node stopped.
func (n *Node) Inject(topic string, payload []byte) bool {
	select {
	case n.inbox <- [2]string{topic, string(payload)}:
		n.Stats.Received.Add(1)
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

// Never is an interval that never elapses: a node with heartbeats off
// sends them only on request.
const Never = time.Duration(1 << 62)

// SetHeartbeat switches automatic heartbeats (interval in simulated time).
func (n *Node) SetHeartbeat(enabled bool, every time.Duration) bool {
	return n.Do(func() {
		if !enabled {
			n.cfg.HeartbeatEvery = Never
		} else {
			n.cfg.HeartbeatEvery = every
		}
		n.nextHB = n.uptime() + n.cfg.HeartbeatEvery
	})
}

// SetState sets the reported system state.
func (n *Node) SetState(s string) bool { return n.Do(func() { n.state = s }) }

// Pause keeps the connection but stops publishing (a hung main loop);
// Resume continues.
func (n *Node) Pause()  { n.paused.Store(true) }
func (n *Node) Resume() { n.paused.Store(false) }

// DropLink simulates a lost WiFi link: the TCP connection closes without
// DISCONNECT, so the broker publishes the will, and the node stays
// disconnected until RestoreLink, without rebooting. Its actuator loop runs
// on and buffers what U3 buffers.
func (n *Node) DropLink() {
	n.linkDown.Store(true)
	n.mu.Lock()
	w := n.wire
	n.connected = false
	n.mu.Unlock()
	if w != nil {
		w.Kill()
	}
}

// RestoreLink lets a node after DropLink reconnect at its next attempt; the
// baseline does not subscribe again (Q3).
func (n *Node) RestoreLink() { n.linkDown.Store(false) }

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
