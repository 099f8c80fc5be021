package hub

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/sim"
)

// The third example of docs/domain.md §6.13 end to end, with a simulated
// node: a time window and two sensors start the fertigation sequence, whose
// commands arrive on the node in order with their delays, whose report
// reaches the operators, and whose progress the API and the live feed
// show. The example's timings are shortened (one hub second is accSecond,
// the pump runs 30 s and the wait is 35 s), and its window is the two hours
// around now in Europe/Berlin, on today's weekday.

// fertigationRule is the example with shortened timings and a window
// around now.
func fertigationRule(t *testing.T) string {
	t.Helper()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(berlin)
	day := (int(now.Weekday()) + 6) % 7 // 0 = Monday
	hhmm := func(t time.Time) string { return t.Format("15:04") }
	return fmt.Sprintf(`{"name": "Morning fertigation", "enabled": true, "priority": 30, "logic_operator": "AND",
 "conditions": [
   {"type": "time_window", "start_time": %q, "end_time": %q,
    "timezone": "Europe/Berlin", "days_of_week": [%d]},
   {"type": "sensor_threshold", "esp_id": "ESP_A1B2C3", "gpio": 34,
    "sensor_type": "moisture", "operator": "<", "value": 35.0},
   {"type": "sensor_threshold", "esp_id": "ESP_A1B2C3", "gpio": 35, "sensor_type": "ec",
    "operator": "between", "min": 800, "max": 1800, "max_age_seconds": 600}],
 "actions": [
   {"type": "sequence", "description": "Open valve, pump, close valve",
    "abort_on_failure": true, "max_duration_seconds": 600,
    "steps": [
      {"name": "Open valve", "delay_after_seconds": 5,
       "action": {"type": "actuator_command", "esp_id": "ESP_A1B2C3", "gpio": 27, "command": "ON"}},
      {"name": "Pump 60 %%", "retry_count": 1,
       "action": {"type": "actuator_command", "esp_id": "ESP_A1B2C3", "gpio": 32,
                  "command": "PWM", "value": 0.6, "duration_seconds": 30}},
      {"name": "Wait", "delay_seconds": 35},
      {"name": "Close valve", "on_failure": "continue",
       "action": {"type": "actuator_command", "esp_id": "ESP_A1B2C3", "gpio": 27, "command": "OFF"}},
      {"name": "Report",
       "action": {"type": "notification", "channel": "websocket", "target": "operators",
                  "message_template": "Fertigation done by {rule_name}, moisture was {sensor_value}"}}]}],
 "cooldown_seconds": 3600}`, hhmm(now.Add(-time.Hour)), hhmm(now.Add(time.Hour)), day)
}

// actuator configures an actuator of type typ on gpio and waits until the
// node applied it and reported it off.
func (r *rig) actuator(n *simNode, gpio int, typ, name string) {
	r.t.Helper()
	path := fmt.Sprintf("/api/v1/actuators/%s/%d", n.id, gpio)
	if c := r.api.do("POST", path, r.operator, map[string]any{"actuator_type": typ, "name": name}); c.status != 200 {
		r.t.Fatalf("configure %s: %d %s", typ, c.status, c.raw)
	}
	r.poll(path, func(b map[string]any) bool { return b["config_status"] == "applied" && b["state"] == "off" })
}

// fertigationNode is the example's node with its valve, pump driver and
// sensors.
func fertigationNode(t *testing.T, r *rig) *simNode {
	t.Helper()
	n := startRuleNode(t, r.mqtt, "ESP_A1B2C3")
	r.admit(n)
	r.actuator(n, 27, "relay", "Solenoid valve")
	r.actuator(n, 32, "pwm", "Pump driver")
	r.sensor(n, 34, "moisture")
	r.sensor(n, 35, "ec")
	return n
}

// latest waits until the latest stored reading of the pin shows value.
func (r *rig) latest(gpio int, value string) {
	r.t.Helper()
	r.poll(fmt.Sprintf("/api/v1/sensors/data/latest?esp_id=ESP_A1B2C3&gpio=%d", gpio), func(b map[string]any) bool {
		return strings.Contains(fmt.Sprint(b), "value:"+value+" ")
	})
}

func (n *simNode) publish(t *testing.T, gpio int, v float64) {
	t.Helper()
	if !n.SetOverride(gpio, v, true) {
		t.Fatalf("%s stopped", n.id)
	}
}

func TestAcceptanceFertigationSequence(t *testing.T) {
	h, r := inProcess(t)
	n := fertigationNode(t, r)
	ws := dialWS(t, h, r.viewer, "sequences")
	id := r.createRule(fertigationRule(t))

	// The soil is wet (the node's first readings are 0), then EC 1250 is
	// stored; the moisture reading of 31.2 then triggers.
	n.publish(t, 34, 50)
	r.latest(34, "50")
	n.publish(t, 35, 1250)
	r.latest(35, "1250")
	from := n.Mark()
	n.publish(t, 34, 31.2)

	open, next := n.Await(t, from, "the valve's ON", commandIn(27, "ON"))
	pump, next := n.Await(t, next, "the pump's PWM", commandIn(32, "PWM"))
	closed, _ := n.Await(t, next, "the valve's OFF", commandIn(27, "OFF"))
	if b := fields(pump); b["value"] != 0.6 || b["duration"] != 30.0 {
		t.Fatalf("the pump got %s", pump.Payload)
	}
	if d := pump.Timestamp.Sub(open.Timestamp); d < secs(5)-skew {
		t.Errorf("the pump started %s after the valve, before its delay_after (5 s)", d)
	}
	if d := closed.Timestamp.Sub(pump.Timestamp); d < secs(35)-skew {
		t.Errorf("the valve closed %s after the pump started, before the wait (35 s)", d)
	}

	// The rule's execution records the sequence as started.
	es := r.executions(id, finished(1, "completed"))
	act := firstAction(t, es[0])
	seqID, _ := act["sequence_id"].(string)
	if act["status"] != "started" || !strings.HasPrefix(seqID, "seq-"+id+"-") {
		t.Fatalf("execution %v", es[0])
	}

	// Progress: completed, every step a success, the report delivered.
	p := r.poll("/api/v1/sequences/"+seqID, func(b map[string]any) bool { return b["status"] == "completed" })
	steps, _ := p["step_results"].([]any)
	if len(steps) != 5 || p["progress_percent"] != 100.0 || p["rule_id"] != id || p["error"] != nil {
		t.Fatalf("progress %v", p)
	}
	for i, s := range steps {
		if s := s.(map[string]any); s["success"] != true || s["step_index"] != float64(i) {
			t.Errorf("step %d: %v", i, s)
		}
	}
	for _, m := range []sim.Message{open, pump, closed} {
		if rec := r.commandRecord(corrID(m), commandIs("acknowledged")); rec["issued_by"] != "logic:"+id {
			t.Errorf("command %s: %v", corrID(m), rec)
		}
	}
	list := r.api.do("GET", "/api/v1/sequences", r.viewer, nil)
	if list.status != 200 || list.body["total"] != 1.0 || list.body["completed"] != 1.0 || list.body["running"] != 0.0 {
		t.Fatalf("list: %d %s", list.status, list.raw)
	}
	if st := r.api.do("GET", "/api/v1/sequences/stats", r.viewer, nil); st.body["completed_last_hour"] != 1.0 ||
		st.body["total_sequences"] != 1.0 {
		t.Fatalf("stats: %s", st.raw)
	}
	notes := r.api.do("GET", "/api/v1/notifications?source=logic_engine", r.operator, nil)
	if !strings.Contains(notes.raw, "Fertigation done by Morning fertigation, moisture was 31.2") {
		t.Fatalf("the operator's notifications: %s", notes.raw)
	}

	// The live feed showed the run.
	var seen []string
	ws.await(t, func(m map[string]any) bool {
		d, _ := m["data"].(map[string]any)
		if d["sequence_id"] != seqID {
			return false
		}
		typ, _ := m["type"].(string)
		if st, ok := d["status"].(string); ok && typ == "sequence_step" {
			typ += ":" + st
		}
		seen = append(seen, typ)
		return typ == "sequence_completed"
	})
	if seen[0] != "sequence_started" || len(seen) != 12 || !slices.Contains(seen, "sequence_step:starting") {
		t.Fatalf("events %v", seen)
	}

	// The second reading is inside the cooldown: no second sequence.
	n.publish(t, 34, 30.0)
	if again := r.api.do("GET", "/api/v1/sequences", r.viewer, nil); again.body["total"] != 1.0 {
		t.Fatalf("a second sequence: %s", again.raw)
	}
}

// A running sequence cancelled over REST switches off what it switched on
// (issued by the rule, reason sequence_abort); the routes answer 403, 404,
// 409 and 422 as docs/api.md §11 says.
func TestSequenceCancelOverREST(t *testing.T) {
	_, r := inProcess(t)
	n := startRuleNode(t, r.mqtt, "ESP_A1B2C3")
	r.admit(n)
	r.actuator(n, 27, "relay", "Solenoid valve")
	from := n.Mark()
	// An all-day window: the rule runs at once when it is created.
	id := r.createRule(`{"name":"Flush","conditions":[{"type":"time","start_time":"00:00","end_time":"24:00"}],
		"actions":[{"type":"sequence","sequence_id":"flush-1","steps":[
		  {"name":"Open","action":{"type":"actuator","esp_id":"ESP_A1B2C3","gpio":27}},
		  {"name":"Flush","delay_seconds":600}]}]}`)
	on, next := n.Await(t, from, "the valve's ON", commandIn(27, "ON"))
	r.poll("/api/v1/sequences/flush-1", func(b map[string]any) bool {
		return b["status"] == "running" && b["current_step_name"] == "Flush"
	})

	path := "/api/v1/sequences/flush-1/cancel"
	if c := r.api.do("POST", path, r.viewer, nil); c.status != 403 {
		t.Fatalf("viewer cancel: %d", c.status)
	}
	if c := r.api.do("POST", path+"?reason="+strings.Repeat("x", 201), r.operator, nil); c.status != 422 {
		t.Fatalf("long reason: %d %s", c.status, c.raw)
	}
	c := r.api.do("POST", path, r.operator, map[string]any{"reason": "valve check"})
	if c.status != 200 || c.body["status"] != "cancelled" || c.body["reason"] != "valve check" {
		t.Fatalf("cancel: %d %s", c.status, c.raw)
	}
	off, _ := n.Await(t, next, "the cleanup OFF", commandIn(27, "OFF"))
	r.commandRecord(corrID(off), commandIs("acknowledged"))
	hist := r.api.do("GET", "/api/v1/actuators/ESP_A1B2C3/27/history", r.viewer, nil)
	var cleanup map[string]any
	entries, _ := hist.body["entries"].([]any)
	for _, e := range entries {
		if e := e.(map[string]any); e["command_id"] == corrID(off) {
			cleanup = e
		}
	}
	if md, _ := cleanup["metadata"].(map[string]any); cleanup["issued_by"] != "logic:"+id ||
		md["reason"] != "sequence_abort" || md["sequence_id"] != "flush-1" {
		t.Fatalf("cleanup OFF in the history %v (%s)", cleanup, hist.raw)
	}
	p := r.api.do("GET", "/api/v1/sequences/flush-1", r.viewer, nil)
	offs, _ := p.body["cleanup_offs"].([]any)
	if p.body["status"] != "cancelled" || p.body["error"] != "valve check" || len(offs) != 1 ||
		offs[0].(map[string]any)["command_id"] != corrID(off) || corrID(on) == corrID(off) {
		t.Fatalf("progress %s", p.raw)
	}
	if again := r.api.do("POST", path, r.operator, nil); again.status != 409 || errCode(again) != "INVALID_STATE" {
		t.Fatalf("second cancel: %d %s", again.status, again.raw)
	}
	if g := r.api.do("GET", "/api/v1/sequences/nope", r.viewer, nil); g.status != 404 || errCode(g) != "SEQUENCE_NOT_FOUND" {
		t.Fatalf("unknown: %d %s", g.status, g.raw)
	}
	if l := r.api.do("GET", "/api/v1/sequences?limit=0", r.viewer, nil); l.status != 422 {
		t.Fatalf("limit 0: %d", l.status)
	}
	if l := r.api.do("GET", "/api/v1/sequences?running_only=true", r.viewer, nil); l.body["total"] != 0.0 ||
		l.body["failed"] != 0.0 {
		t.Fatalf("running only: %s", l.raw)
	}
}

// tableRows reads every row of the named tables, in a fixed order, from a
// database file beside the running hub.
func tableRows(t *testing.T, path string, queries ...string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []string
	for _, q := range queries {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s %v", q, vals))
		}
		rows.Close()
	}
	return out
}

// The dry-run of docs/domain.md §6.12 over a real hub: it answers what the
// rule would do, and changes no stored row and sends no MQTT message.
func TestRuleDryRunHasNoSideEffects(t *testing.T) {
	h, r := inProcess(t)
	n := fertigationNode(t, r)
	id := r.createRule(fertigationRule(t))

	snapshot := func() []string {
		if err := h.Store.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		rows := tableRows(t, filepath.Join(h.cfg.DataDir, "kaiser.db"),
			"SELECT * FROM rules ORDER BY id", "SELECT * FROM rule_executions ORDER BY id",
			"SELECT * FROM rule_hysteresis ORDER BY rule_id, path", "SELECT * FROM rule_continuations ORDER BY id",
			"SELECT * FROM sequences ORDER BY id", "SELECT * FROM notifications ORDER BY id",
			"SELECT * FROM alerts ORDER BY id", "SELECT * FROM audit_log ORDER BY id")
		return append(rows, tableRows(t, filepath.Join(h.cfg.DataDir, "control.db"),
			"SELECT * FROM actuator_history WHERE issued_by NOT LIKE 'esp32%' ORDER BY id",
			"SELECT * FROM emergency_latches")...)
	}
	before := snapshot()
	from := n.Mark()

	test := "/api/v1/logic/rules/" + id + "/test"
	got := r.api.do("POST", test, r.operator, map[string]any{
		"mock_sensor_values": map[string]any{"ESP_A1B2C3:34": 31.2, "ESP_A1B2C3:35:ec": 1250},
		"dry_run":            true,
	})
	if got.status != 200 || got.body["would_trigger"] != true || got.body["dry_run"] != true {
		t.Fatalf("dry-run: %d %s", got.status, got.raw)
	}
	acts, _ := got.body["action_results"].([]any)
	a, _ := acts[0].(map[string]any)
	v, _ := a["safety_verdict"].(map[string]any)
	if len(acts) != 1 || a["action_type"] != "sequence" || a["would_execute"] != true || v["allowed"] != true {
		t.Fatalf("action results %s", got.raw)
	}
	gates, _ := got.body["gates"].(map[string]any)
	if gates["cooldown_remaining_seconds"] != 0.0 || gates["rate_limited"] != false {
		t.Fatalf("gates %v", gates)
	}

	// Outside the window by mock_time; EC without a mock is the stored
	// reading's (the node's first, 0).
	late := r.api.do("POST", test, r.operator, map[string]any{
		"mock_sensor_values": map[string]any{"ESP_A1B2C3:34": 31.2},
		"mock_time":          time.Now().Add(3 * time.Hour).In(mustZone(t, "Europe/Berlin")).Format("15:04"),
	})
	conds, _ := late.body["condition_results"].([]any)
	if late.status != 200 || late.body["would_trigger"] != false || len(conds) != 3 {
		t.Fatalf("late dry-run: %d %s", late.status, late.raw)
	}
	if c := conds[0].(map[string]any); c["result"] != false || !strings.HasPrefix(fmt.Sprint(c["details"]), "outside_window") {
		t.Fatalf("window %v", c)
	}
	if c := conds[2].(map[string]any); c["result"] != false || c["actual_value"] != 0.0 || c["condition_index"] != 2.0 {
		t.Fatalf("EC without a mock %v", c)
	}

	for _, bad := range []map[string]any{
		{"dry_run": false},
		{"mock_time": "25:00"},
		{"mock_sensor_values": map[string]any{"ESP_A1B2C3": 1}},
		{"mock_sensor_values": map[string]any{"ESP_A1B2C3:34": "wet"}},
	} {
		if b := r.api.do("POST", test, r.operator, bad); b.status != 422 {
			t.Errorf("%v: %d %s", bad, b.status, b.raw)
		}
	}
	if u := r.api.do("POST", "/api/v1/logic/rules/00000000-0000-4000-8000-000000000000/test", r.operator, nil); u.status != 404 {
		t.Errorf("unknown rule: %d", u.status)
	}

	after := snapshot()
	if gone, added := difference(before, after), difference(after, before); len(gone)+len(added) > 0 {
		t.Fatalf("the dry-run changed stored rows:\nremoved %v\nadded %v", gone, added)
	}
	if sent := n.Since(from, func(m sim.Message) bool {
		return m.Direction == "in" && !strings.HasSuffix(m.Topic, "/system/heartbeat/ack")
	}); len(sent) != 0 {
		t.Fatalf("the dry-run published %v", sent)
	}
	// (A viewer's refused call is audited as permission_denied, so it comes last.)
	if v := r.api.do("POST", test, r.viewer, nil); v.status != 403 {
		t.Errorf("viewer: %d", v.status)
	}
}

// difference lists the rows of a that b lacks.
func difference(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
