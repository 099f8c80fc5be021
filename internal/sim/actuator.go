package sim

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// The firmware's actuator limits (docs/protocol.md §3.1.4, §3.1.3, §7.4; board esp32_dev).
const (
	maxActuators       = 12
	valveStep          = 2500 * time.Millisecond // one of the valve's two steps (Q14)
	valveOpen          = 2
	pumpWindow         = time.Hour // the activation window, and the runtime after which the cooldown applies
	pumpMaxActivations = 60
	pumpCooldown       = 30 * time.Second
	noPin              = 255
)

// actuator is one configured output with the state its firmware driver
// keeps: the pump driver (pump and relay), the pwm driver or the valve driver.
type actuator struct {
	gpio, aux    int // aux: the valve's enable pin
	typ          string
	name         string
	subzone      string
	inverted     bool
	defaultState bool
	latched      bool
	autoOffAt    time.Duration // newer firmware: uptime at which an ON's duration ends, 0 = none

	// pump driver
	running     bool
	pinHigh     bool
	timing      bool // an ON's run is being timed (not after a default_state ON)
	activeSince time.Duration
	lastStop    time.Duration
	runtime     time.Duration
	activations []time.Duration // newest first, at most 60

	// pwm driver
	duty int

	// valve driver: position is what the firmware believes (steps 0–2),
	// physical where the valve really is
	position, target int
	moving           bool
	moveStart        time.Duration
	moveFor          time.Duration
	direction        float64
	physicalAtStart  float64
	physical         float64
}

// ActuatorState is what a simulated actuator reports and what its hardware
// really does, for tests and mock devices.
type ActuatorState struct {
	GPIO      int    `json:"gpio"`
	AuxGPIO   int    `json:"aux_gpio"` // the valve's enable pin; 255 for other types
	Type      string `json:"type"`
	Name      string `json:"name"`
	SubzoneID string `json:"subzone_id"`
	// On, PWM and RuntimeMS are what the next status message says.
	On        bool  `json:"on"`
	PWM       int   `json:"pwm"`
	RuntimeMS int64 `json:"runtime_ms"`
	Latched   bool  `json:"latched"` // emergency-stopped on the device
	// Energised is the load's power: the pin level after inverted_logic
	// for pumps and relays, a duty above 0 for pwm, the motor's enable
	// pin for valves.
	Energised bool `json:"energised"`
	// Opening is where a valve physically is, 0 closed … 1 open; the
	// firmware may believe otherwise (Q14).
	Opening float64 `json:"opening"`
	Moving  bool    `json:"moving"`
	// AutoOffIn is the time left of an ON's duration on newer firmware.
	AutoOffIn time.Duration `json:"auto_off_in"`
}

// deviceType maps the types the hub and the debug API know to the four the
// firmware knows (docs/domain.md §4.1: servo is sent as pwm).
func deviceType(t string) string {
	switch t {
	case "digital", "binary", "switch":
		return "relay"
	case "servo":
		return "pwm"
	}
	return t
}

func (a *actuator) pumpDriver() bool { return a.typ == "pump" || a.typ == "relay" }

// reported is the state and pwm the driver puts in a status.
func (a *actuator) reported() (bool, int) {
	switch {
	case a.pumpDriver():
		if a.running {
			return true, 255
		}
		return false, 0
	case a.typ == "valve":
		return a.position > 0, a.position * 127
	}
	return a.duty > 0, a.duty
}

// runtimeMS is the pump driver's accumulated on-time, the current run included.
func (a *actuator) runtimeMS(now time.Duration) int64 {
	if !a.pumpDriver() {
		return 0
	}
	total := a.runtime
	if a.running && a.timing {
		total += now - a.activeSince
	}
	return total.Milliseconds()
}

// begin is the driver's start on (re)configuration: default_state for the
// pump driver only (Q17), written without inverted_logic (Q13); a valve is
// assumed closed without moving (Q14).
func (a *actuator) begin(now time.Duration, physical float64) {
	a.lastStop = now
	switch {
	case a.pumpDriver():
		a.running, a.pinHigh = a.defaultState, a.defaultState
	case a.typ == "valve":
		a.physical = physical
	}
}

// canActivate is the pump protection of docs/protocol.md §3.1.4. Below one hour of
// uptime the activation window wraps around on the device and counts nothing.
func (a *actuator) canActivate(now time.Duration) bool {
	if a.runtime >= pumpWindow && now-a.lastStop < pumpCooldown {
		return false
	}
	if now < pumpWindow {
		return true
	}
	recent := 0
	for _, at := range a.activations {
		if at >= now-pumpWindow {
			recent++
		}
	}
	return recent < pumpMaxActivations
}

// applyPump is the pump driver's state change. Without force the
// protection runs first, also for an ON to a running pump; a state that
// already matches returns early without touching the pin (Q13) unless
// rewrite is set (newer firmware's forced stop).
func (a *actuator) applyPump(now time.Duration, on, force, rewrite bool) bool {
	if on && !force && !a.canActivate(now) {
		return false
	}
	if on == a.running {
		if rewrite {
			a.pinHigh = on != a.inverted
		}
		return true
	}
	if on {
		a.timing, a.activeSince = true, now
		a.activations = append([]time.Duration{now}, a.activations...)
		if len(a.activations) > pumpMaxActivations {
			a.activations = a.activations[:pumpMaxActivations]
		}
	} else if a.timing {
		a.runtime += now - a.activeSince
		a.timing = false
		a.lastStop = now
	}
	a.running = on
	a.pinHigh = on != a.inverted
	return true
}

// physicalAt is where the valve is at now: it moves one step per 2.5 s
// while its enable pin is on, from wherever it really was.
func (a *actuator) physicalAt(now time.Duration) float64 {
	if !a.moving {
		return a.physical
	}
	elapsed := min(now-a.moveStart, a.moveFor)
	p := a.physicalAtStart + a.direction*float64(elapsed)/float64(valveStep)
	return math.Max(0, math.Min(valveOpen, p))
}

// settle ends a valve move whose time is up; nothing is published (Q14).
func (a *actuator) settle(now time.Duration) {
	if a.typ == "valve" && a.moving && now-a.moveStart >= a.moveFor {
		a.stopValve(now)
	}
}

// stopValve cuts the enable pin: the valve stays where it is, the firmware
// takes the target as reached.
func (a *actuator) stopValve(now time.Duration) {
	a.physical = a.physicalAt(now)
	a.moving = false
	a.position = a.target
}

// moveValve starts a move; the statuses around it still show the old
// position (docs/protocol.md §3.1.3).
func (a *actuator) moveValve(now time.Duration, target int) bool {
	a.settle(now)
	if target == a.position && !a.moving {
		return true
	}
	delta := target - a.position
	if delta == 0 {
		a.target = target
		a.stopValve(now)
		return true
	}
	a.physicalAtStart = a.physicalAt(now)
	a.moveStart, a.moveFor = now, time.Duration(abs(delta))*valveStep
	a.direction = float64(delta / abs(delta))
	a.moving, a.target = true, target
	return true
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// setBinary is the driver's ON/OFF.
func (a *actuator) setBinary(now time.Duration, on bool) bool {
	switch {
	case a.pumpDriver():
		return a.applyPump(now, on, false, false)
	case a.typ == "valve":
		return a.moveValve(now, map[bool]int{true: valveOpen}[on])
	}
	a.duty = map[bool]int{true: 255}[on]
	return true
}

// setValue is the driver's PWM, v already checked or clamped by the manager.
func (a *actuator) setValue(now time.Duration, v float32) bool {
	switch {
	case a.pumpDriver():
		return a.applyPump(now, v >= 0.5, false, false)
	case a.typ == "valve":
		target := 0
		if v >= 0.66 {
			target = valveOpen
		} else if v >= 0.33 {
			target = 1
		}
		return a.moveValve(now, target)
	}
	a.duty = int(math.Floor(float64(v) * 255))
	return true
}

// emergencyStop switches the output off: a valve only loses its enable pin
// and is then believed closed wherever it is (Q14).
func (a *actuator) emergencyStop(now time.Duration, rewrite bool) {
	a.latched, a.autoOffAt = true, 0
	switch {
	case a.pumpDriver():
		a.applyPump(now, false, true, rewrite)
	case a.typ == "valve":
		a.settle(now)
		if a.moving {
			a.stopValve(now)
		}
		a.position, a.target = 0, 0
	default:
		a.duty = 0
	}
}

// teardown is the removal before a re-creation or an `active:false` item:
// OFF, then the driver's end. A valve's OFF is cut at once, so it is not
// driven closed (Q14).
func (a *actuator) teardown(now time.Duration) {
	if !a.latched {
		a.setBinary(now, false)
	}
	switch {
	case a.pumpDriver():
		a.applyPump(now, false, true, false)
	case a.typ == "valve":
		a.settle(now)
		if a.moving {
			a.stopValve(now)
		}
	}
}

func (a *actuator) state(now time.Duration) ActuatorState {
	a.settle(now)
	on, pwm := a.reported()
	s := ActuatorState{
		GPIO:      a.gpio,
		AuxGPIO:   noPin,
		Type:      a.typ,
		Name:      a.name,
		SubzoneID: a.subzone,
		On:        on,
		PWM:       pwm,
		RuntimeMS: a.runtimeMS(now),
		Latched:   a.latched,
	}
	switch {
	case a.pumpDriver():
		s.Energised = a.pinHigh != a.inverted
	case a.typ == "valve":
		s.AuxGPIO, s.Energised, s.Moving = a.aux, a.moving, a.moving
		s.Opening = a.physicalAt(now) / valveOpen
	default:
		s.Energised = a.duty > 0
	}
	if a.autoOffAt > now {
		s.AutoOffIn = a.autoOffAt - now
	}
	return s
}

func (n *Node) sortedActuators() []*actuator {
	out := make([]*actuator, 0, len(n.actuators))
	for _, a := range n.actuators {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].gpio < out[j].gpio })
	return out
}

// status publishes `actuator/{gpio}/status` (docs/protocol.md §3.1.3).
func (n *Node) status(a *actuator) {
	up := n.uptime()
	a.settle(up)
	on, pwm := a.reported()
	emergency := "normal"
	if a.latched {
		emergency = "active"
	}
	p := n.head().
		str("zone_id", n.zone).
		str("subzone_id", a.subzone).
		num("ts", n.unix()).
		num("gpio", int64(a.gpio)).
		str("type", a.typ).
		flag("state", on).
		num("pwm", int64(pwm)).
		num("runtime_ms", a.runtimeMS(up)).
		str("emergency", emergency)
	n.send(n.topic(fmt.Sprintf("actuator/%d/status", a.gpio)), p.end(), true, true)
}

// alert publishes `actuator/{gpio}/alert` (docs/protocol.md §3.1.5, §7.3).
func (n *Node) alert(gpio int, kind, message string) {
	p := n.head().
		str("zone_id", n.zone).
		num("ts", n.unix()).
		num("gpio", int64(gpio)).
		str("alert_type", kind).
		str("message", message)
	n.send(n.topic(fmt.Sprintf("actuator/%d/alert", gpio)), p.end(), true, true)
}

// head starts a payload the firmware builds by hand: esp_id, then seq on
// newer firmware.
func (n *Node) head() payload {
	p := object().str("esp_id", n.cfg.EspID)
	if n.cfg.Quirks.Seq {
		p = p.num("seq", n.Stats.Sent.Load()+1)
	}
	return p
}

// periodicStatuses is the 30-s cycle: one status per configured actuator.
func (n *Node) periodicStatuses() {
	for _, a := range n.sortedActuators() {
		n.status(a)
	}
}

// autoOffs switches an ON off when its duration ends: newer firmware only,
// never a PWM, and only while the output is reported on (Q10).
func (n *Node) autoOffs(up time.Duration) {
	armed := false
	for _, a := range n.actuators {
		armed = armed || a.autoOffAt != 0
	}
	if !armed {
		return // the common case, checked on every tick of every node
	}
	for _, a := range n.sortedActuators() {
		a.settle(up)
		if on, _ := a.reported(); a.autoOffAt == 0 || !on || up < a.autoOffAt {
			continue
		}
		a.autoOffAt = 0
		n.logf("INFO", "Actuator duration elapsed: GPIO %d auto-OFF after command duration", a.gpio)
		if !a.latched && a.setBinary(up, false) {
			n.status(a)
		}
	}
}

// command is an `actuator/{gpio}/command` as the firmware reads it.
type command struct {
	gpio        int
	name        string
	value       float32
	duration    uint32
	correlation string
}

// handleCommand applies an actuator command (docs/protocol.md §3.2.1, §3.1.4, §6.3).
func (n *Node) handleCommand(topic string, raw []byte) {
	gpio := gpioOfTopic(topic)
	if gpio == noPin {
		n.logf("ERROR", "Invalid actuator command topic: %s", topic) // also the emergency topic on the baseline (Q5)
		return
	}
	text := string(raw)
	c := command{
		gpio:        gpio,
		name:        fieldOf(text, "command"),
		value:       toFloat(fieldOf(text, "value")),
		duration:    toUint32(fieldOf(text, "duration")),
		correlation: fieldOf(text, "correlation_id"),
	}
	a := n.actuators[gpio]
	switch {
	case a == nil:
		n.logf("ERROR", "No actuator configured on GPIO %d", gpio)
		n.respond(c, false, n.texts("Actuator not configured on GPIO %d. Configure via API first.", gpio))
	case a.latched:
		n.logf("WARNING", "Actuator GPIO %d is emergency stopped", gpio)
		n.respond(c, false, n.texts("Actuator in emergency stop state. Clear emergency first."))
	default:
		a.autoOffAt = 0 // every command that reaches the driver replaces a running duration
		if n.cfg.Quirks.TwoStatuses {
			n.executeBaseline(a, c)
		} else {
			n.executeNewer(a, c)
		}
	}
}

// texts is the newer firmware's specific failure message, or the
// baseline's "Command failed".
func (n *Node) texts(format string, args ...any) string {
	if !n.cfg.Quirks.Seq {
		return "Command failed"
	}
	return fmt.Sprintf(format, args...)
}

// gpioOfTopic reads the level after `/actuator/` as the firmware does:
// toInt, cast to uint8; 255 when there is no level (the emergency topic).
func gpioOfTopic(topic string) int {
	at := strings.Index(topic, "/actuator/")
	if at < 0 {
		return noPin
	}
	rest := topic[at+len("/actuator/"):]
	end := strings.IndexByte(rest, '/')
	if end < 0 || strings.TrimSpace(rest[:end]) == "" {
		return noPin
	}
	return toUint8(rest[:end])
}

// control runs one command on the driver, with the manager's value checks.
func (n *Node) control(a *actuator, c command, up time.Duration) bool {
	switch strings.ToUpper(c.name) {
	case "ON":
		return a.setBinary(up, true)
	case "OFF":
		return a.setBinary(up, false)
	case "TOGGLE":
		on, _ := a.reported()
		return a.setBinary(up, !on)
	case "PWM":
		v := c.value
		if a.typ == "pwm" {
			v = float32(math.Max(0, math.Min(1, float64(v))))
		} else if v < 0 || v > 1 {
			return false
		}
		return a.setValue(up, v)
	}
	n.logf("ERROR", "Unknown actuator command: %s", c.name)
	return false
}

// executeBaseline: status → response → status on success (Q16), a bare
// response on failure.
func (n *Node) executeBaseline(a *actuator, c command) {
	if !n.control(a, c, n.uptime()) {
		n.respond(c, false, "Command failed")
		return
	}
	n.armAutoOff(a, c)
	n.status(a)
	n.respond(c, true, "Command executed")
	n.status(a)
}

// executeNewer: an ON/OFF that matches the reported state is a no-op
// answered before its status; any other success publishes its status
// first (Q16).
func (n *Node) executeNewer(a *actuator, c command) {
	up := n.uptime()
	a.settle(up)
	name := strings.ToUpper(c.name)
	on, _ := a.reported()
	noop := (name == "ON" && on) || (name == "OFF" && !on)
	if !noop && !n.control(a, c, up) {
		n.respond(c, false, newerFailure(name, c.name))
		return
	}
	n.armAutoOff(a, c)
	if noop {
		n.respond(c, true, "Command executed")
		n.status(a)
		return
	}
	n.status(a)
	n.respond(c, true, "Command executed")
}

// armAutoOff: with enforce_duration (newer firmware) a successful ON with a
// duration switches itself off when it ends; the baseline ignores the
// duration (Q10), and no firmware enforces a PWM's.
func (n *Node) armAutoOff(a *actuator, c command) {
	if strings.EqualFold(c.name, "ON") && c.duration > 0 && !n.cfg.Quirks.IgnoreDuration {
		a.autoOffAt = n.uptime() + time.Duration(c.duration)*time.Second
	}
}

func newerFailure(upper, name string) string {
	switch upper {
	case "ON":
		return "Failed to turn actuator ON"
	case "OFF":
		return "Failed to turn actuator OFF"
	case "PWM":
		return "Failed to set PWM value"
	case "TOGGLE":
		return "Failed to toggle actuator"
	}
	return "Unknown command: " + name
}

// respond publishes `actuator/{gpio}/response` (docs/protocol.md §3.1.4): the
// command echoed as received, the parsed value with 3 decimals, the
// duration as uint32; correlation_id echoed by newer firmware.
func (n *Node) respond(c command, ok bool, message string) {
	p := n.head().
		str("zone_id", n.zone).
		num("ts", n.unix()).
		num("gpio", int64(c.gpio)).
		str("command", c.name).
		raw("value", threeDecimals(c.value)).
		num("duration", int64(c.duration)).
		flag("success", ok).
		str("message", message)
	if n.cfg.Quirks.Seq && c.correlation != "" {
		p = p.str("correlation_id", c.correlation)
	}
	n.send(n.topic(fmt.Sprintf("actuator/%d/response", c.gpio)), p.end(), true, true)
}

// Actuators returns the node's actuators by gpio. Run must be running, or
// have returned.
func (n *Node) Actuators() []ActuatorState {
	var out []ActuatorState
	read := func() {
		up := n.uptime()
		for _, a := range n.sortedActuators() {
			out = append(out, a.state(up))
		}
	}
	if !n.Do(read) {
		read() // Run has returned: nothing writes any more
	}
	return out
}

// SetActuator creates or sets a simulated actuator directly (a debug
// operation, not a firmware reaction) and publishes its status.
func (n *Node) SetActuator(gpio int, typ string, on bool, value float64, publish bool) bool {
	return n.Do(func() {
		a := n.actuators[gpio]
		if a == nil {
			a = &actuator{gpio: gpio, aux: noPin, typ: "relay"}
			n.actuators[gpio] = a
			n.fwActuators++
		}
		if typ != "" {
			a.typ = deviceType(typ)
		}
		if a.typ == "valve" && a.aux == noPin {
			a.aux = gpio + 1
		}
		set(a, n.uptime(), on, value)
		if publish {
			n.status(a)
		}
	})
}

// set forces a state, the hardware included.
func set(a *actuator, now time.Duration, on bool, value float64) {
	a.settle(now)
	switch {
	case a.pumpDriver():
		a.applyPump(now, on, true, true)
	case a.typ == "valve":
		a.moving, a.position = false, 0
		if on {
			a.position = valveOpen
			if value > 0 && value < 0.66 {
				a.position = 1
			}
		}
		a.target, a.physical = a.position, float64(a.position)
	default:
		a.duty = int(math.Round(value * 255))
		if on && a.duty == 0 {
			a.duty = 255
		}
		if !on {
			a.duty = 0
		}
	}
}
