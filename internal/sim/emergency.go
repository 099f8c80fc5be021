package sim

import (
	"strconv"
	"time"
)

// The firmware's emergency limits (docs/protocol.md §3.2.8, §3.2.9, §7.4).
const (
	emergencyPool       = 256 // `actuator/emergency` and the baseline's broadcast
	newerBroadcastPool  = 512
	clearGuard          = 5 * time.Second
	clearBlocks         = 2 * time.Second
	maxEmergencyToken   = 64
	emergencyStopReason = "Actuator stopped"
)

// handleBroadcast reacts to `kaiser/broadcast/emergency` (docs/protocol.md §3.2.9). The
// baseline stops on any JSON value that fits its pool and checks nothing;
// newer firmware checks the command, the timestamp's type and its
// broadcast token, and stops without a token check when the command or the
// token is not a string.
func (n *Node) handleBroadcast(raw []byte) {
	pool := emergencyPool
	if n.cfg.Quirks.Seq {
		pool = newerBroadcastPool
	}
	v, ok := parseInPool(raw, pool)
	if !ok {
		n.logf("ERROR", "Failed to parse broadcast emergency JSON")
		return
	}
	if n.cfg.Quirks.Seq && !n.broadcastAccepted(v) {
		return
	}
	n.banner("WARNING", "║   BROADCAST EMERGENCY-STOP RECEIVED    ║")
	n.stopAll(n.cfg.Quirks.Seq)
}

func (n *Node) broadcastAccepted(v any) bool {
	m, _ := v.(map[string]any)
	cmd, cmdIsText := m["command"].(string)
	if _, present := m["command"]; !present {
		cmd, cmdIsText = m["action"].(string)
	}
	if cmdIsText && cmd != "emergency_stop" && cmd != "stop_all" {
		n.logf("WARNING", "Broadcast emergency ignored: unknown command %s", cmd)
		return false
	}
	if _, numeric := m["timestamp"].(float64); numeric {
		n.logf("ERROR", "Broadcast emergency rejected: numeric timestamp")
		return false
	}
	token, tokenIsText := m["auth_token"].(string)
	if cmdIsText && tokenIsText && n.broadcastToken != "" && token != n.broadcastToken {
		n.banner("ERROR", "║   [SECURITY] UNAUTHORIZED BROADCAST    ║")
		n.logf("ERROR", "[SECURITY] Broadcast emergency-stop rejected: invalid token")
		return false
	}
	return true
}

// stopAll latches every actuator with its output off (a valve keeps its
// position, Q14) and one `emergency_stop` alert each; newer firmware also
// publishes a status per actuator.
func (n *Node) stopAll(statuses bool) {
	up := n.uptime()
	n.stoppedOnce, n.lastStop = true, up
	for _, a := range n.sortedActuators() {
		a.emergencyStop(up, n.cfg.Quirks.Seq)
		n.alert(a.gpio, "emergency_stop", emergencyStopReason)
		if statuses {
			n.status(a)
		}
	}
	n.state = "SAFE_MODE"
}

// handleDeviceEmergency is `actuator/emergency` on firmware without the
// routing defect (Q5 off, docs/protocol.md §3.2.8).
func (n *Node) handleDeviceEmergency(raw []byte) {
	v, ok := parseInPool(raw, emergencyPool)
	if !ok {
		n.logf("ERROR", "Failed to parse emergency command JSON")
		return
	}
	m, _ := v.(map[string]any) // any other JSON value reads as an object without keys
	if token := asString(m, "auth_token"); n.espToken != "" && token != n.espToken {
		n.banner("ERROR", "║  UNAUTHORIZED EMERGENCY-STOP ATTEMPT  ║")
		n.emergencyReply("error", object().str("error", "unauthorized").str("message", "Invalid auth_token"))
		return
	}
	switch asString(m, "command") {
	case "emergency_stop":
		n.banner("WARNING", "║  AUTHORIZED EMERGENCY-STOP TRIGGERED  ║")
		n.stopAll(true)
		n.emergencyAck(asString(m, "correlation_id"))
	case "clear_emergency":
		n.banner("INFO", "║  AUTHORIZED EMERGENCY-CLEAR TRIGGERED ║")
		n.clearEmergency()
	}
}

// clearEmergency refuses a clear within 5 s of the last stop, measured on
// the device clock; an accepted one unlatches at once, blocks the device
// for 2 s and then answers. No status follows: the next 30-s cycle brings
// `emergency:"normal"`.
func (n *Node) clearEmergency() {
	up := n.uptime()
	if n.stoppedOnce && up-n.lastStop < clearGuard {
		n.alert(noPin, "verification_failed", "clear_emergency")
		n.emergencyReply("error", object().str("error", "clear_failed").str("message", "Safety verification failed"))
		return
	}
	for _, a := range n.actuators {
		a.latched = false
	}
	n.resumeAt = up + clearBlocks
}

// resume ends the 2-s block of an accepted clear.
func (n *Node) resume() {
	n.resumeAt = 0
	n.state = "OPERATIONAL"
	ms := strconv.FormatInt(n.uptime().Milliseconds(), 10)
	n.emergencyReply("response", object().str("status", "emergency_cleared").raw("timestamp", ms))
}

// blocked reports an accepted clear's 2-s block: the firmware's main loop
// sleeps, so nothing is read or published.
func (n *Node) blocked() bool { return n.resumeAt != 0 && n.uptime() < n.resumeAt }

func (n *Node) emergencyReply(suffix string, p payload) {
	if n.cfg.Quirks.Seq {
		p = p.num("seq", n.Stats.Sent.Load()+1)
	}
	n.send(n.topic("actuator/emergency/"+suffix), p.end(), true, true)
}

func (n *Node) emergencyAck(correlation string) {
	if correlation == "null" {
		correlation = ""
	}
	p := object().
		num("ts", n.unix()).
		str("esp_id", n.cfg.EspID).
		str("correlation_id", correlation).
		str("command", "emergency_stop").
		num("gpio_count", int64(len(n.actuators))).
		str("outcome", "executed").
		num("seq", n.Stats.Sent.Load()+1)
	n.send(n.topic("actuator/emergency/ack"), p.end(), true, true)
}

// setEmergencyToken is newer firmware's `set_emergency_token` (docs/protocol.md §3.2.3, S4).
func (n *Node) setEmergencyToken(m map[string]any) {
	n.banner("INFO", "║  SET_EMERGENCY_TOKEN COMMAND RECEIVED  ║")
	kind, _ := m["token_type"].(string)
	if kind == "" {
		kind = "esp"
	}
	token := asString(m, "token") // a missing token is stored as "null", like the device does
	p := object().str("command", "set_emergency_token").str("esp_id", n.cfg.EspID)
	switch {
	case len(token) == 0 || len(token) > maxEmergencyToken:
		p = p.flag("success", false).str("error", "Token must be 1-64 characters")
	case kind == "broadcast":
		n.broadcastToken = token
		p = p.flag("success", true).str("token_type", "broadcast").str("message", "Broadcast emergency token updated")
	default:
		n.espToken = token
		p = p.flag("success", true).str("token_type", "esp").str("message", "ESP emergency token updated")
	}
	p = p.num("ts", n.unix()).num("seq", n.Stats.Sent.Load()+1)
	n.send(n.topic("system/command/response"), p.end(), true, true)
}

// EmergencyStop latches every actuator of the node itself (not the hub's
// latch): outputs off, one emergency_stop alert and one status each; clear
// unlatches and publishes a status each.
func (n *Node) EmergencyStop(stop bool) bool {
	return n.Do(func() {
		if stop {
			n.stopAll(true)
			return
		}
		for _, a := range n.sortedActuators() {
			a.latched = false
			n.status(a)
		}
		n.state = "OPERATIONAL"
	})
}
