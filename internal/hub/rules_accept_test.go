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
	return runSimNode(t, sim.NodeConfig{EspID: id, Broker: broker, Quirks: q, Interval: time.Hour})
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
	from := n.Mark()
	reading(21, 30.4)
	on, _ := n.Await(t, from, "the fan's ON", commandIn(25, "ON"))
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
	afterFan := n.Mark()
	reading(21, 31.0)

	// Heater: 19.0 °C keeps it inactive, 17.5 °C activates it (ON).
	reading(4, 19.0)
	reading(4, 17.5)
	heaterOn, next := n.Await(t, afterFan, "the heater's ON", commandIn(26, "ON"))
	if b := fields(heaterOn); b["duration"] != 3600.0 {
		t.Fatalf("the heater got %s (want the max runtime as its bound)", heaterOn.Payload)
	}
	if ons := n.Since(afterFan, commandIn(25, "ON")); len(ons) != 0 {
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
	off, _ := n.Await(t, next, "the heater's OFF", commandIn(26, "OFF"))
	if ons := n.Since(next, commandIn(26, "ON")); len(ons) != 0 {
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

// The rule routes of docs/api.md §10.1 over a real hub: the save-time
// checks answer 400 with every finding's path, the top-level schema 422,
// and the rule's lifecycle and history read back as stored.
func TestRuleRoutes(t *testing.T) {
	_, r := inProcess(t)
	op := r.operator
	paths := func(rep reply) map[string]bool {
		e, _ := rep.body["error"].(map[string]any)
		d, _ := e["details"].(map[string]any)
		list, _ := d["errors"].([]any)
		out := map[string]bool{}
		for _, x := range list {
			out[x.(map[string]any)["path"].(string)] = true
		}
		return out
	}

	bad := r.api.do("POST", "/api/v1/logic/rules", op, `{"name":"Broken","conditions":[{"type":"actuator_state"},
		{"type":"time","start_time":"06:00","end_time":"06:00","timezone":"Mars/Base"}],
		"actions":[{"type":"actuator","gpio":3,"value":7}]}`)
	got := paths(bad)
	if bad.status != 400 || errCode(bad) != "RULE_VALIDATION_FAILED" {
		t.Fatalf("invalid rule: %d %s", bad.status, bad.raw)
	}
	for _, p := range []string{"conditions.0.type", "conditions.1.end_time", "conditions.1.timezone",
		"actions.0.esp_id", "actions.0.value"} {
		if !got[p] {
			t.Errorf("no finding at %s: %s", p, bad.raw)
		}
	}
	if short := r.api.do("POST", "/api/v1/logic/rules", op, `{"name":"ab","conditions":[{}],"actions":[{}]}`); short.status != 422 {
		t.Errorf("schema violation: %d %s", short.status, short.raw)
	}

	doc := `{"name":"Shift report","priority":60,"conditions":[{"type":"time","start_time":"00:00","end_time":"24:00"}],
		"actions":[{"type":"notification","channel":"websocket","target":"operators","message_template":"{rule_name} at {timestamp}"}]}`
	c := r.api.do("POST", "/api/v1/logic/rules", op, doc)
	if c.status != 201 || c.body["enabled"] != true || c.body["cooldown_seconds"] != 60.0 || c.body["logic_operator"] != "AND" {
		t.Fatalf("create: %d %s", c.status, c.raw)
	}
	id := c.body["id"].(string)
	if dup := r.api.do("POST", "/api/v1/logic/rules", op, doc); dup.status != 409 || errCode(dup) != "DUPLICATE" {
		t.Errorf("duplicate: %d %s", dup.status, dup.raw)
	}

	// Created and enabled, the rule ran once (rule_update): its notification reached the operators.
	es := r.executions(id, finished(1, "completed"))
	if es[0]["trigger_reason"] != "rule_update" || firstAction(t, es[0])["status"] != "succeeded" {
		t.Fatalf("history %v", es[0])
	}
	if one := r.api.do("GET", "/api/v1/logic/rules/"+id, r.viewer, nil); one.status != 200 || one.body["execution_count"] != 1.0 ||
		one.body["last_execution_success"] != true {
		t.Fatalf("get: %d %s", one.status, one.raw)
	}
	list := r.api.do("GET", "/api/v1/logic/rules?enabled=true", r.viewer, nil)
	if data, _ := list.body["data"].([]any); list.status != 200 || len(data) != 1 {
		t.Fatalf("list: %d %s", list.status, list.raw)
	}

	p := r.api.do("PATCH", "/api/v1/logic/rules/"+id, op, `{"priority":5,"description":"nightly"}`)
	if p.status != 200 || p.body["priority"] != 5.0 || p.body["description"] != "nightly" || p.body["name"] != "Shift report" {
		t.Fatalf("patch: %d %s", p.status, p.raw)
	}
	if u := r.api.do("PUT", "/api/v1/logic/rules/"+id, op, `{"conditions":[{"type":"time","start_time":"25:00"}]}`); u.status != 400 ||
		!paths(u)["conditions.0.start_time"] {
		t.Errorf("invalid update: %d %s", u.status, u.raw)
	}
	tg := r.api.do("POST", "/api/v1/logic/rules/"+id+"/toggle", op, map[string]any{"enabled": false, "reason": "holiday"})
	if tg.status != 200 || tg.body["enabled"] != false || tg.body["previous_state"] != true {
		t.Fatalf("toggle: %d %s", tg.status, tg.raw)
	}
	if tg := r.api.do("POST", "/api/v1/logic/rules/"+id+"/toggle", op, `{}`); tg.status != 422 {
		t.Errorf("toggle without enabled: %d", tg.status)
	}
	if g := r.api.do("GET", "/api/v1/logic/rules/not-a-uuid", r.viewer, nil); g.status != 422 {
		t.Errorf("malformed id: %d", g.status)
	}
	missing := "/api/v1/logic/rules/00000000-0000-4000-8000-000000000000"
	if g := r.api.do("GET", missing, r.viewer, nil); g.status != 404 || errCode(g) != "RULE_NOT_FOUND" {
		t.Errorf("unknown id: %d %s", g.status, g.raw)
	}

	d := r.api.do("DELETE", "/api/v1/logic/rules/"+id, op, nil)
	if d.status != 200 || d.body["id"] != id {
		t.Fatalf("delete: %d %s", d.status, d.raw)
	}
	if g := r.api.do("GET", "/api/v1/logic/rules/"+id, r.viewer, nil); g.status != 404 {
		t.Errorf("deleted rule: %d", g.status)
	}
	if h := r.api.do("GET", "/api/v1/logic/execution_history?rule_id="+id, r.viewer, nil); h.body["total_count"] != 0.0 {
		t.Errorf("a deleted rule's history stays: %s", h.raw)
	}
}
