package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// handleConfig runs the firmware's two passes over a `config` message, the
// sensor pass and then the actuator pass, each answering by itself (C1–C7).
func (n *Node) handleConfig(raw []byte) {
	var cfg map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&cfg); err != nil || len(raw) > 4096 {
		n.configResponse("sensor", "error", 0, "Failed to parse sensor config JSON: NoMemory", "JSON_PARSE_ERROR", "")
		n.configResponse("actuator", "error", 0, "Failed to parse actuator config JSON: NoMemory", "JSON_PARSE_ERROR", "")
		return
	}
	correlation, _ := cfg["correlation_id"].(string)
	for _, section := range []string{"sensor", "actuator"} {
		n.configSection(section, cfg[section+"s"], correlation)
	}
}

// configSection applies one pass: one error per failing item, one success
// only when every item succeeded (C2, C4).
func (n *Node) configSection(section string, v any, correlation string) {
	items, ok := v.([]any)
	title := strings.ToUpper(section[:1]) + section[1:]
	switch {
	case !ok:
		n.configResponse(section, "error", 0, title+" config missing '"+section+"s' array", "MISSING_FIELD", correlation)
		return
	case len(items) == 0:
		n.configResponse(section, "error", 0, title+" config array is empty", "MISSING_FIELD", correlation)
		return
	}
	good := 0
	for _, it := range items {
		m, _ := it.(map[string]any)
		apply := n.applySensor
		if section == "actuator" {
			apply = n.applyActuator
		}
		if code, msg := apply(m); code != "" {
			n.configResponse(section, "error", 0, msg, code, correlation)
			continue
		}
		good++
	}
	if good == len(items) {
		msg := fmt.Sprintf("Configured %d %s(s) successfully", good, section)
		n.configResponse(section, "success", good, msg, "", correlation)
	}
}

// configResponse publishes `config_response` (docs/protocol.md §3.1.6) in the
// firmware's key order. It never carries failed_item (Q15); newer firmware
// echoes the config's correlation_id.
func (n *Node) configResponse(section, status string, count int, msg, code, correlation string) {
	p := object().
		str("status", status).
		str("type", section).
		num("count", int64(count)).
		str("message", msg)
	if code != "" {
		p = p.str("error_code", code)
	}
	if n.cfg.Quirks.Seq {
		if correlation != "" {
			p = p.str("correlation_id", correlation)
		}
		p = p.num("seq", n.Stats.Sent.Load()+1)
	}
	n.send(n.topic("config_response"), p.end(), true, true)
}

// intOf is ArduinoJson's is<int>: a JSON number written without a
// fraction or exponent.
func intOf(v any) (int, bool) {
	num, ok := v.(json.Number)
	if !ok || strings.ContainsAny(string(num), ".eE") {
		return 0, false
	}
	i, err := strconv.Atoi(string(num))
	return i, err == nil
}

// applySensor applies one sensor item: an upsert, or a removal with
// `active:false` (C3–C6).
func (n *Node) applySensor(m map[string]any) (string, string) {
	g, present := m["gpio"]
	if !present {
		return "MISSING_FIELD", "Sensor config missing required field 'gpio'"
	}
	gpio, ok := intOf(g)
	if !ok {
		return "TYPE_MISMATCH", "Sensor field 'gpio' must be an integer"
	}
	for _, k := range []string{"sensor_type", "sensor_name"} {
		if _, present := m[k]; !present {
			return "MISSING_FIELD", "Sensor config missing required field '" + k + "'"
		}
	}
	typ, _ := m["sensor_type"].(string)
	if gpio > 39 || typ == "" {
		return "VALIDATION_FAILED", fmt.Sprintf("Sensor validation failed for GPIO %d", gpio)
	}
	if active, set := m["active"].(bool); set && !active {
		n.removeSensor(gpio)
		return "", ""
	}
	if !n.hasSensor(gpio) && n.pinOwner(gpio) != nil {
		return "UNKNOWN_ERROR", fmt.Sprintf("Failed to configure sensor on GPIO %d", gpio) // pin unavailable (C6)
	}
	n.upsertSensor(SensorSpec{
		GPIO:    gpio,
		Type:    typ,
		Base:    2048,
		Pattern: "constant",
	})
	return "", ""
}

// actuatorItem reads an actuator item with the firmware's checks and
// messages, in its order (docs/protocol.md §3.2.2, §7.1).
func actuatorItem(m map[string]any) (*actuator, bool, string, string) {
	g, present := m["gpio"]
	if !present {
		return nil, false, "MISSING_FIELD", "Actuator config missing required field 'gpio'"
	}
	gpio, ok := intOf(g)
	if !ok {
		return nil, false, "TYPE_MISMATCH", "Actuator field 'gpio' must be an integer"
	}
	typ, code, msg := aliased(m, "actuator_type", "type")
	if code != "" {
		return nil, false, code, msg
	}
	if typ == "" {
		return nil, false, "VALIDATION_FAILED", "Actuator type cannot be empty"
	}
	name, code, msg := aliased(m, "actuator_name", "name")
	if code != "" {
		return nil, false, code, msg
	}
	a := &actuator{
		gpio: int(uint8(gpio)),
		aux:  noPin,
		typ:  typ,
		name: name,
	}
	if aux, ok := intOf(m["aux_gpio"]); ok {
		a.aux = int(uint8(aux))
	}
	a.subzone, _ = m["subzone_id"].(string)
	inverted, ok := m["inverted_logic"].(bool)
	if !ok {
		inverted, _ = m["inverted"].(bool)
	}
	a.inverted = inverted
	a.defaultState, _ = m["default_state"].(bool)
	active, set := m["active"].(bool)
	return a, !set || active, "", ""
}

// aliased reads a required string key or its firmware alias.
func aliased(m map[string]any, key, alias string) (string, string, string) {
	for _, k := range []string{key, alias} {
		v, present := m[k]
		if !present {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return "", "TYPE_MISMATCH", "Actuator field '" + k + "' must be a string"
		}
		return s, "", ""
	}
	return "", "MISSING_FIELD", "Actuator config missing required field '" + key + "'"
}

// applyActuator applies one actuator item. A listed actuator is torn down
// and re-created: output off (a valve is not driven closed, Q14),
// default_state for pumps and relays (Q17) without inverted_logic (Q13),
// latch cleared, one status (C5). Every failure after parsing is
// UNKNOWN_ERROR naming the gpio (C6), also when the old actuator is
// already gone.
func (n *Node) applyActuator(m map[string]any) (string, string) {
	a, active, code, msg := actuatorItem(m)
	if code != "" {
		return code, msg
	}
	failed := fmt.Sprintf("Failed to configure actuator on GPIO %d", a.gpio)
	if a.gpio == noPin {
		return "UNKNOWN_ERROR", failed
	}
	up := n.uptime()
	if !active {
		n.removeActuator(a.gpio)
		return "", ""
	}
	if n.hasSensor(a.gpio) {
		return "UNKNOWN_ERROR", failed
	}
	var physical float64
	reconfigured := n.actuators[a.gpio] != nil
	if old := n.removeActuator(a.gpio); old != nil && old.typ == "valve" {
		physical = old.physical
	}
	if a.typ == "valve" && a.aux == noPin {
		a.aux = a.gpio + 1
	}
	switch {
	case len(n.actuators) >= maxActuators:
		return "UNKNOWN_ERROR", failed
	case a.typ != "pump" && a.typ != "relay" && a.typ != "valve" && a.typ != "pwm": // exact, case-sensitive
		return "UNKNOWN_ERROR", failed
	case !n.pinsFree(a):
		return "UNKNOWN_ERROR", failed
	}
	a.begin(up, physical)
	n.actuators[a.gpio] = a
	if !reconfigured || n.cfg.Quirks.Seq {
		n.fwActuators++ // the baseline never counts a re-configured one again
	}
	n.logf("INFO", "Actuator configured on GPIO %d type: %s", a.gpio, a.typ)
	n.status(a)
	return "", ""
}

// removeActuator tears an actuator down and forgets it.
func (n *Node) removeActuator(gpio int) *actuator {
	a := n.actuators[gpio]
	if a == nil {
		return nil
	}
	a.teardown(n.uptime())
	delete(n.actuators, gpio)
	n.fwActuators = max(n.fwActuators-1, 0)
	return a
}

// pinsFree is the driver's pin reservation: output-capable pins 0–39 not
// held by a sensor or another actuator (a valve also holds its enable pin).
func (n *Node) pinsFree(a *actuator) bool {
	pins := []int{a.gpio}
	if a.typ == "valve" {
		pins = append(pins, a.aux)
	}
	for _, p := range pins {
		switch p {
		case 34, 35, 36, 39: // input-only
			return false
		}
		if p > 39 || n.hasSensor(p) || n.pinOwner(p) != nil {
			return false
		}
	}
	return true
}

// pinOwner is the actuator holding a pin, as its main or enable pin.
func (n *Node) pinOwner(pin int) *actuator {
	for _, a := range n.actuators {
		if a.gpio == pin || (a.typ == "valve" && a.aux == pin) {
			return a
		}
	}
	return nil
}

func (n *Node) hasSensor(gpio int) bool {
	for _, s := range n.cfg.Sensors {
		if s.GPIO == gpio {
			return true
		}
	}
	return false
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
