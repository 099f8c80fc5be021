package hub

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/sim"
)

// The first two examples of docs/domain.md §6.13, end to end: a simulated
// node with the examples' relays and sensors, the rules created over REST,
// readings published by the node, the rules' commands arriving on the node
// and the execution history as the API shows it.

// startRuleNode is a node whose sensors publish only when the test says so
// (an hour-long measurement cycle) and whose readings carry no device time,
// so that readings a moment apart are never taken for duplicates.
func startRuleNode(t *testing.T, broker, id string) *simNode {
	t.Helper()
	q, err := sim.ParseQuirks("ntp-zero")
	if err != nil {
		t.Fatal(err)
	}
	n := &simNode{id: id, changed: make(chan struct{}), lose: map[string]int{}}
	n.Node = sim.NewNode(sim.NodeConfig{
		EspID:    id,
		Broker:   broker,
		Quirks:   q,
		Interval: time.Hour,
		Clock:    sim.NewClock(float64(time.Second / accSecond)),
		Observe:  n.observe,
		Lose:     n.loses,
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-n.Stopped() })
	return n
}

// relay configures a relay on gpio and waits until the node reports it off.
func (r *rig) relay(n *simNode, gpio int, name string) {
	r.t.Helper()
	path := fmt.Sprintf("/api/v1/actuators/%s/%d", n.id, gpio)
	if c := r.api.do("POST", path, r.operator, map[string]any{"actuator_type": "relay", "name": name}); c.status != 200 {
		r.t.Fatalf("configure relay: %d %s", c.status, c.raw)
	}
	r.poll(path, func(b map[string]any) bool { return b["config_status"] == "applied" && b["state"] == "off" })
}

// sensor configures a sensor and makes the node publish it with its value
// as is (raw_mode false), only when the test sets a value.
func (r *rig) sensor(n *simNode, gpio int, typ string) {
	r.t.Helper()
	path := fmt.Sprintf("/api/v1/sensors/%s/%d", n.id, gpio)
	if c := r.api.do("POST", path, r.operator, map[string]any{"sensor_type": typ, "name": typ}); c.status != 200 {
		r.t.Fatalf("configure sensor: %d %s", c.status, c.raw)
	}
	local := false
	n.AddSensor(sim.SensorSpec{GPIO: gpio, Type: typ, Pattern: "constant", RawMode: &local, Interval: time.Hour})
}

// createRule posts a rule document and returns its id.
func (r *rig) createRule(doc string) string {
	r.t.Helper()
	got := r.api.do("POST", "/api/v1/logic/rules", r.operator, doc)
	if got.status != 201 {
		r.t.Fatalf("create rule: %d %s", got.status, got.raw)
	}
	return got.body["id"].(string)
}

// executions polls the rule's history until ok accepts its entries.
func (r *rig) executions(ruleID string, ok func([]map[string]any) bool) []map[string]any {
	r.t.Helper()
	var out []map[string]any
	r.poll("/api/v1/logic/execution_history?rule_id="+ruleID, func(b map[string]any) bool {
		out = nil
		list, _ := b["entries"].([]any)
		for _, e := range list {
			out = append(out, e.(map[string]any))
		}
		return ok(out)
	})
	return out
}

// finished matches a history whose newest entry is final with reason.
func finished(count int, reason string) func([]map[string]any) bool {
	return func(es []map[string]any) bool {
		return len(es) == count && es[0]["terminal_reason_code"] == reason
	}
}

func firstAction(t *testing.T, e map[string]any) map[string]any {
	t.Helper()
	acts, _ := e["action_results"].([]any)
	if len(acts) == 0 {
		t.Fatalf("execution without action results: %v", e)
	}
	return acts[0].(map[string]any)
}

const (
	ventFanRule = `{"name": "Vent fan when hot",
 "description": "Run the roof fan for 10 minutes when air temperature exceeds 30 °C",
 "enabled": true, "priority": 40, "logic_operator": "AND",
 "conditions": [{"type": "sensor_threshold", "esp_id": "ESP_12AB34", "gpio": 21,
                 "sensor_type": "sht31_temp", "operator": ">", "value": 30.0}],
 "actions": [{"type": "actuator_command", "esp_id": "ESP_12AB34", "gpio": 25,
              "command": "ON", "value": 1.0, "duration_seconds": 600}],
 "cooldown_seconds": 900, "max_executions_per_hour": 4}`

	heaterRule = `{"name": "Greenhouse heater", "enabled": true, "priority": 20,
 "conditions": [{"type": "hysteresis", "esp_id": "ESP_12AB34", "gpio": 4, "sensor_type": "ds18b20",
                 "activate_below": 18.0, "deactivate_above": 21.0}],
 "actions": [{"type": "actuator_command", "esp_id": "ESP_12AB34", "gpio": 26,
              "command": "ON", "value": 1.0, "duration_seconds": 0}],
 "cooldown_seconds": 300}`
)

func TestAcceptanceRuleExamples(t *testing.T) {
	h, r := inProcess(t)
	n := startRuleNode(t, r.mqtt, "ESP_12AB34")
	r.admit(n)
	r.relay(n, 25, "Roof fan")
	r.relay(n, 26, "Heater")
	r.sensor(n, 21, "sht31_temp")
	r.sensor(n, 4, "ds18b20")
	ws := dialWS(t, h, r.viewer, "rules")

	fan := r.createRule(ventFanRule)
	heater := r.createRule(heaterRule)
	reading := func(gpio int, v float64) {
		if !n.SetOverride(gpio, v, true) {
			t.Fatalf("%s stopped", n.id)
		}
	}

	// Vent fan: 30.4 °C sends ON for 600 s with the rule as issuer.
	from := n.mark()
	reading(21, 30.4)
	on, _ := n.await(t, from, "the fan's ON", commandIn(25, "ON"))
	if b := fields(on); b["duration"] != 600.0 || b["value"] != 1.0 {
		t.Fatalf("the fan got %s", on.Payload)
	}
	es := r.executions(fan, finished(1, "completed"))
	act := firstAction(t, es[0])
	if es[0]["success"] != true || act["status"] != "succeeded" || act["command_id"] != corrID(on) ||
		es[0]["trigger_reason"] != "sensor" {
		t.Fatalf("fan execution %v", es[0])
	}
	if rec := r.commandRecord(corrID(on), commandIs("acknowledged")); rec["issued_by"] != "logic:"+fan {
		t.Fatalf("the fan's command: %v", rec)
	}
	ws.await(t, func(m map[string]any) bool {
		d, _ := m["data"].(map[string]any)
		a, _ := d["action"].(map[string]any)
		return m["type"] == "logic_execution" && d["rule_id"] == fan && a["status"] == "succeeded"
	})

	// 31.0 °C a moment later is inside the 900 s cooldown. The heater's
	// readings that follow go through the same device's queue, so once the
	// heater has acted the fan's second reading has been evaluated.
	afterFan := n.mark()
	reading(21, 31.0)

	// Heater: 19.0 °C keeps it inactive, 17.5 °C activates it (ON).
	reading(4, 19.0)
	reading(4, 17.5)
	heaterOn, next := n.await(t, afterFan, "the heater's ON", commandIn(26, "ON"))
	if b := fields(heaterOn); b["duration"] != 3600.0 {
		t.Fatalf("the heater got %s (want the max runtime as its bound)", heaterOn.Payload)
	}
	if ons := n.since(afterFan, commandIn(25, "ON")); len(ons) != 0 {
		t.Fatalf("the fan was switched on again inside its cooldown: %v", ons)
	}
	r.executions(fan, func(es []map[string]any) bool { return len(es) == 1 })
	es = r.executions(heater, finished(1, "completed"))
	if c := es[0]["condition_results"].([]any)[0].(map[string]any); c["actual_value"] != 17.5 || c["result"] != true {
		t.Fatalf("heater condition %v", c)
	}

	// 19.9 °C: still active, but inside the 300 s cooldown, so no ON;
	// 21.3 °C deactivates: OFF at once, recorded as hysteresis_off.
	reading(4, 19.9)
	reading(4, 21.3)
	off, _ := n.await(t, next, "the heater's OFF", commandIn(26, "OFF"))
	if ons := n.since(next, commandIn(26, "ON")); len(ons) != 0 {
		t.Fatalf("the heater's ON was repeated inside its cooldown: %v", ons)
	}
	es = r.executions(heater, finished(2, "completed"))
	if es[0]["trigger_reason"] != "hysteresis_off" || firstAction(t, es[0])["command_id"] != corrID(off) {
		t.Fatalf("the hysteresis OFF execution: %v", es[0])
	}
	if rec := r.commandRecord(corrID(off), commandIs("acknowledged")); rec["issued_by"] != "logic:"+heater {
		t.Fatalf("the heater's OFF: %v", rec)
	}
	r.state(n.id, 26, fresh("off"))

	// The state survives in the store: inactive again after the OFF.
	if err := h.Store.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs, err := h.Store.LoadHysteresis(context.Background())
	if err != nil || len(hs) != 1 || hs[0].RuleID != heater || hs[0].Active || *hs[0].LastValue != 21.3 {
		t.Fatalf("stored hysteresis %+v %v", hs, err)
	}
}
