package rule

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// The examples of docs/domain.md §6.13, as a client sends them.
const (
	ventFan = `{"name": "Vent fan when hot",
 "description": "Run the roof fan for 10 minutes when air temperature exceeds 30 °C",
 "enabled": true, "priority": 40, "logic_operator": "AND",
 "conditions": [{"type": "sensor_threshold", "esp_id": "ESP_12AB34", "gpio": 21,
                 "sensor_type": "sht31_temp", "operator": ">", "value": 30.0}],
 "actions": [{"type": "actuator_command", "esp_id": "ESP_12AB34", "gpio": 25,
              "command": "ON", "value": 1.0, "duration_seconds": 600}],
 "cooldown_seconds": 900, "max_executions_per_hour": 4}`

	heater = `{"name": "Greenhouse heater", "enabled": true, "priority": 20,
 "conditions": [{"type": "hysteresis", "esp_id": "ESP_12AB34", "gpio": 4, "sensor_type": "ds18b20",
                 "activate_below": 18.0, "deactivate_above": 21.0}],
 "actions": [{"type": "actuator_command", "esp_id": "ESP_12AB34", "gpio": 26,
              "command": "ON", "value": 1.0, "duration_seconds": 0}],
 "cooldown_seconds": 300}`

	fertigation = `{"name": "Morning fertigation", "enabled": true, "priority": 30, "logic_operator": "AND",
 "conditions": [
   {"type": "time_window", "start_time": "06:00", "end_time": "10:00",
    "timezone": "Europe/Berlin", "days_of_week": [0, 1, 2, 3, 4]},
   {"type": "sensor_threshold", "esp_id": "ESP_A1B2C3", "gpio": 34,
    "sensor_type": "moisture", "operator": "<", "value": 35.0},
   {"type": "sensor_threshold", "esp_id": "ESP_A1B2C3", "gpio": 35, "sensor_type": "ec",
    "operator": "between", "min": 800, "max": 1800, "max_age_seconds": 600}],
 "actions": [
   {"type": "sequence", "description": "Open valve, pump 2 min, close valve",
    "abort_on_failure": true, "max_duration_seconds": 600,
    "steps": [
      {"name": "Open valve", "delay_after_seconds": 5,
       "action": {"type": "actuator_command", "esp_id": "ESP_A1B2C3", "gpio": 27, "command": "ON"}},
      {"name": "Pump 60 %", "retry_count": 1,
       "action": {"type": "actuator_command", "esp_id": "ESP_A1B2C3", "gpio": 32,
                  "command": "PWM", "value": 0.6, "duration_seconds": 120}},
      {"name": "Wait", "delay_seconds": 125},
      {"name": "Close valve", "on_failure": "continue",
       "action": {"type": "actuator_command", "esp_id": "ESP_A1B2C3", "gpio": 27, "command": "OFF"}},
      {"name": "Report",
       "action": {"type": "notification", "channel": "websocket", "target": "operators",
                  "message_template": "Fertigation done by {rule_name}, moisture was {sensor_value}"}}]}],
 "cooldown_seconds": 3600}`
)

func mustDecode(t *testing.T, doc string) Rule {
	t.Helper()
	r, issues := Decode([]byte(doc))
	if len(issues) > 0 {
		t.Fatalf("Decode: %v", issues)
	}
	return r
}

func TestDecodeExamples(t *testing.T) {
	fan := mustDecode(t, ventFan)
	c := fan.Conditions[0].Threshold
	if c == nil || c.EspID != "ESP_12AB34" || c.GPIO != 21 || c.SensorType != "sht31_temp" ||
		c.Operator != ">" || *c.Value != 30 || c.MaxAgeSeconds != nil {
		t.Errorf("fan condition = %+v", c)
	}
	a := fan.Actions[0].Command
	if a == nil || a.GPIO != 25 || a.Command != "ON" || a.DurationSeconds != 600 {
		t.Errorf("fan action = %+v", a)
	}
	if fan.Priority != 40 || fan.CooldownSeconds != 900 || *fan.MaxExecutionsPerHour != 4 {
		t.Errorf("fan header = %+v", fan)
	}

	h := mustDecode(t, heater)
	hy := h.Conditions[0].Hysteresis
	if hy == nil || hy.Cooling() || *hy.ActivateBelow != 18 || *hy.DeactivateAbove != 21 {
		t.Errorf("heater condition = %+v", hy)
	}
	if h.LogicOperator != "AND" || h.MaxExecutionsPerHour != nil {
		t.Errorf("heater defaults = %+v", h)
	}

	f := mustDecode(t, fertigation)
	w := f.Conditions[0].Window
	if w == nil || w.Start != 360 || w.End != 600 || w.Timezone != "Europe/Berlin" ||
		!slices.Equal(w.Days, []int{0, 1, 2, 3, 4}) {
		t.Errorf("window = %+v", w)
	}
	seq := f.Actions[0].Sequence
	if seq == nil || len(seq.Steps) != 5 || seq.MaxDurationSeconds != 600 || !seq.AbortOnFailure {
		t.Fatalf("sequence = %+v", seq)
	}
	if st := seq.Steps[2]; st.DelaySeconds == nil || *st.DelaySeconds != 125 || st.Action != nil {
		t.Errorf("wait step = %+v", st)
	}
	if st := seq.Steps[3]; st.OnFailure != "continue" || st.TimeoutSeconds != 30 || st.RetryDelaySeconds != 1 {
		t.Errorf("close step = %+v", st)
	}
	if got := f.Targets(false); len(got) != 0 {
		t.Errorf("immediate targets = %v, want none (all in the sequence)", got)
	}
	if got := f.Targets(true); !slices.Equal(got, []Target{{"ESP_A1B2C3", 27}, {"ESP_A1B2C3", 32}}) {
		t.Errorf("targets with steps = %v", got)
	}
}

func TestDecodeDefaultsAndAliases(t *testing.T) {
	r := mustDecode(t, `{"name":"abc","conditions":[
		{"type":"sensor","esp_id":"ESP_1","gpio":"34","sensor_type":"Temperature_DS18B20","operator":"<","value":1},
		{"type":"time","start_hour":22,"start_minute":30,"end_hour":6}],
		"actions":[{"type":"actuator","esp_id":"ESP_1","gpio":5.0,"command":"off","duration":7}]}`)
	if !r.Enabled || r.Priority != 50 || r.CooldownSeconds != 60 || r.LogicOperator != "AND" {
		t.Errorf("rule defaults = %+v", r)
	}
	th := r.Conditions[0].Threshold
	if th.GPIO != 34 || th.SensorType != "ds18b20" {
		t.Errorf("gpio as string and type alias: %+v", th)
	}
	w := r.Conditions[1].Window
	if w.Start != 22*60+30 || w.End != 6*60 || w.Timezone != "" || w.Days != nil {
		t.Errorf("window from hours = %+v", w)
	}
	c := r.Actions[0].Command
	if c.Command != "OFF" || c.GPIO != 5 || c.DurationSeconds != 7 || c.Value != 1 {
		t.Errorf("command = %+v", c)
	}

	// A client reads back what it wrote: aliases stay, the window is HH:MM.
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"type":"sensor"`, `"start_time":"22:30"`, `"end_time":"06:00"`, `"type":"actuator"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("marshalled rule lacks %s: %s", want, out)
		}
	}
	again := mustDecode(t, string(out))
	again2, _ := json.Marshal(again)
	if string(again2) != string(out) {
		t.Errorf("round trip differs:\n%s\n%s", out, again2)
	}
}

func TestDecodeCompound(t *testing.T) {
	r := mustDecode(t, `{"name":"abc","logic_operator":"or","conditions":[
		{"logic":"AND","conditions":[
			{"type":"time","start_time":"01:00","end_time":"02:00"},
			{"type":"compound","logic":"or","conditions":[
				{"type":"time","start_time":"03:00","end_time":"04:00"},
				{"logic":"AND","conditions":[{"type":"time","start_time":"05:00","end_time":"06:00"}]}]}]},
		{"type":"time","start_time":"07:00","end_time":"08:00"}],
		"actions":[{"type":"delay","seconds":5}]}`)
	var paths []string
	for _, l := range r.Leaves() {
		paths = append(paths, l.Path)
	}
	if want := []string{"0.0", "0.1.0", "0.1.1.0", "1"}; !slices.Equal(paths, want) {
		t.Errorf("leaf paths = %v, want %v", paths, want)
	}
	if r.LogicOperator != "OR" || r.Conditions[0].Compound.Conditions[1].Compound.Logic != "OR" {
		t.Errorf("logic not upper-cased: %+v", r)
	}
}

// issueAt finds the issue at path, failing the test when there is none.
func issueAt(t *testing.T, issues []Issue, path, code string) {
	t.Helper()
	for _, i := range issues {
		if i.Path() == path && (code == "" || i.Code == code) {
			return
		}
	}
	t.Errorf("no %s issue at %s in %v", code, path, issues)
}

func TestDecodeErrors(t *testing.T) {
	wrap := func(conds, acts string) string {
		return `{"name":"abc","conditions":[` + conds + `],"actions":[` + acts + `]}`
	}
	okCond := `{"type":"time","start_time":"01:00","end_time":"02:00"}`
	okAct := `{"type":"delay","seconds":1}`
	deep := `{"logic":"AND","conditions":[{"logic":"AND","conditions":[{"logic":"AND","conditions":[` +
		`{"logic":"AND","conditions":[` + okCond + `]}]}]}]}`
	many := strings.Repeat(`{"logic":"AND","conditions":[`+strings.TrimSuffix(strings.Repeat(okCond+",", 3), ",")+`]},`, 7)
	many = strings.TrimSuffix(many, ",")

	cases := []struct {
		name, doc, path, code string
	}{
		{"not an object", `[1]`, "", CodeType},
		{"name missing", `{"conditions":[` + okCond + `],"actions":[` + okAct + `]}`, "name", CodeMissing},
		{"name short", `{"name":"ab","conditions":[` + okCond + `],"actions":[` + okAct + `]}`, "name", CodeRange},
		{"name type", `{"name":5,"conditions":[` + okCond + `],"actions":[` + okAct + `]}`, "name", CodeType},
		{"priority range", `{"name":"abc","priority":0,"conditions":[` + okCond + `],"actions":[` + okAct + `]}`, "priority", CodeRange},
		{"priority fraction", `{"name":"abc","priority":4.5,"conditions":[` + okCond + `],"actions":[` + okAct + `]}`, "priority", CodeType},
		{"cooldown range", `{"name":"abc","cooldown_seconds":86401,"conditions":[` + okCond + `],"actions":[` + okAct + `]}`, "cooldown_seconds", CodeRange},
		{"max per hour range", `{"name":"abc","max_executions_per_hour":61,"conditions":[` + okCond + `],"actions":[` + okAct + `]}`, "max_executions_per_hour", CodeRange},
		{"logic operator", `{"name":"abc","logic_operator":"XOR","conditions":[` + okCond + `],"actions":[` + okAct + `]}`, "logic_operator", CodeEnum},
		{"no conditions", wrap("", okAct), "conditions", CodeRange},
		{"no actions", wrap(okCond, ""), "actions", CodeRange},
		{"eleven conditions", wrap(strings.TrimSuffix(strings.Repeat(okCond+",", 11), ","), okAct), "conditions", CodeRange},
		{"actuator_state", wrap(`{"type":"actuator_state","esp_id":"E","gpio":1}`, okAct), "conditions.0.type", CodeUnknownType},
		{"unknown condition", wrap(okCond+`,{"type":"weather"}`, okAct), "conditions.1.type", CodeUnknownType},
		{"action as condition", wrap(`{"type":"delay","seconds":3}`, okAct), "conditions.0.type", CodeUnknownType},
		{"missing type", wrap(`{"esp_id":"E","gpio":1}`, okAct), "conditions.0.type", CodeMissing},
		{"sensor gpio missing", wrap(`{"type":"sensor","esp_id":"E","operator":">","value":1}`, okAct), "conditions.0.gpio", CodeMissing},
		{"sensor gpio range", wrap(`{"type":"sensor","esp_id":"E","gpio":40,"operator":">","value":1}`, okAct), "conditions.0.gpio", CodeRange},
		{"sensor gpio text", wrap(`{"type":"sensor","esp_id":"E","gpio":"x","operator":">","value":1}`, okAct), "conditions.0.gpio", CodeType},
		{"sensor esp pattern", wrap(`{"type":"sensor","esp_id":"E S","gpio":1,"operator":">","value":1}`, okAct), "conditions.0.esp_id", CodeFormat},
		{"sensor operator", wrap(`{"type":"sensor","esp_id":"E","gpio":1,"operator":"=>","value":1}`, okAct), "conditions.0.operator", CodeEnum},
		{"sensor value missing", wrap(`{"type":"sensor","esp_id":"E","gpio":1,"operator":">"}`, okAct), "conditions.0.value", CodeMissing},
		{"between max missing", wrap(`{"type":"sensor","esp_id":"E","gpio":1,"operator":"between","min":1}`, okAct), "conditions.0.max", CodeMissing},
		{"max age", wrap(`{"type":"sensor","esp_id":"E","gpio":1,"operator":">","value":1,"max_age_seconds":0}`, okAct), "conditions.0.max_age_seconds", CodeRange},
		{"start equals end", wrap(`{"type":"time","start_time":"06:00","end_hour":6}`, okAct), "conditions.0.end_time", CodeInconsistent},
		{"end 24:30", wrap(`{"type":"time","start_time":"06:00","end_hour":24,"end_minute":30}`, okAct), "conditions.0.end_minute", CodeRange},
		{"start 24", wrap(`{"type":"time","start_hour":24}`, okAct), "conditions.0.start_hour", CodeRange},
		{"minute range", wrap(`{"type":"time","start_hour":1,"start_minute":60}`, okAct), "conditions.0.start_minute", CodeRange},
		{"minute without hour", wrap(`{"type":"time","start_minute":5}`, okAct), "conditions.0.start_hour", CodeMissing},
		{"clock format", wrap(`{"type":"time","start_time":"6:00"}`, okAct), "conditions.0.start_time", CodeFormat},
		{"clock range", wrap(`{"type":"time","start_time":"23:60"}`, okAct), "conditions.0.start_time", CodeRange},
		{"forms disagree", wrap(`{"type":"time","start_time":"06:00","start_hour":7}`, okAct), "conditions.0.start_time", CodeInconsistent},
		{"unknown zone", wrap(`{"type":"time","start_time":"06:00","timezone":"Mars/Olympus"}`, okAct), "conditions.0.timezone", CodeTimezone},
		{"day range", wrap(`{"type":"time","start_time":"06:00","days_of_week":[1,7]}`, okAct), "conditions.0.days_of_week.1", CodeRange},
		{"no days", wrap(`{"type":"time","start_time":"06:00","days_of_week":[]}`, okAct), "conditions.0.days_of_week", CodeRange},
		{"hysteresis both modes", wrap(`{"type":"hysteresis","esp_id":"E","gpio":1,"activate_above":5,"activate_below":1}`, okAct), "conditions.0", CodeInconsistent},
		{"hysteresis half", wrap(`{"type":"hysteresis","esp_id":"E","gpio":1,"activate_above":5}`, okAct), "conditions.0.deactivate_below", CodeMissing},
		{"hysteresis none", wrap(`{"type":"hysteresis","esp_id":"E","gpio":1}`, okAct), "conditions.0", CodeMissing},
		{"cooling order", wrap(`{"type":"hysteresis","esp_id":"E","gpio":1,"activate_above":5,"deactivate_below":5}`, okAct), "conditions.0.deactivate_below", CodeInconsistent},
		{"heating order", wrap(`{"type":"hysteresis","esp_id":"E","gpio":1,"activate_below":5,"deactivate_above":4}`, okAct), "conditions.0.deactivate_above", CodeInconsistent},
		{"compound empty", wrap(`{"logic":"AND","conditions":[]}`, okAct), "conditions.0.conditions", CodeRange},
		{"compound no logic", wrap(`{"type":"compound","conditions":[`+okCond+`]}`, okAct), "conditions.0.logic", CodeMissing},
		{"compound bad leaf", wrap(`{"logic":"AND","conditions":[`+okCond+`,{"type":"sensor"}]}`, okAct), "conditions.0.conditions.1.esp_id", CodeMissing},
		{"too deep", wrap(deep, okAct), "conditions.0.conditions.0.conditions.0.conditions.0", CodeTooDeep},
		{"too many leaves", wrap(many, okAct), "conditions", CodeTooMany},
		{"unknown action", wrap(okCond, `{"type":"email"}`), "actions.0.type", CodeUnknownType},
		{"condition as action", wrap(okCond, `{"type":"sensor"}`), "actions.0.type", CodeUnknownType},
		{"command enum", wrap(okCond, `{"type":"actuator","esp_id":"E","gpio":1,"command":"BLINK"}`), "actions.0.command", CodeEnum},
		{"command 0-255", wrap(okCond, `{"type":"actuator","esp_id":"E","gpio":1,"command":"PWM","value":128}`), "actions.0.value", CodeRange},
		{"duration range", wrap(okCond, `{"type":"actuator","esp_id":"E","gpio":1,"duration_seconds":86401}`), "actions.0.duration_seconds", CodeRange},
		{"durations disagree", wrap(okCond, `{"type":"actuator","esp_id":"E","gpio":1,"duration_seconds":5,"duration":6}`), "actions.0.duration", CodeInconsistent},
		{"delay range", wrap(okCond, `{"type":"delay","seconds":0}`), "actions.0.seconds", CodeRange},
		{"delay missing", wrap(okCond, `{"type":"delay"}`), "actions.0.seconds", CodeMissing},
		{"channel", wrap(okCond, `{"type":"notification","channel":"sms","target":"x","message_template":"m"}`), "actions.0.channel", CodeEnum},
		{"webhook scheme", wrap(okCond, `{"type":"notification","channel":"webhook","target":"ftp://h/x","message_template":"m"}`), "actions.0.target", CodeFormat},
		{"email address", wrap(okCond, `{"type":"notification","channel":"email","target":"nobody","message_template":"m"}`), "actions.0.target", CodeFormat},
		{"template missing", wrap(okCond, `{"type":"notification","channel":"websocket","target":"operators"}`), "actions.0.message_template", CodeMissing},
		{"template long", wrap(okCond, `{"type":"notification","channel":"websocket","target":"operators","message_template":"`+strings.Repeat("x", 1001)+`"}`), "actions.0.message_template", CodeRange},
		{"severity", wrap(okCond, `{"type":"notification","channel":"websocket","target":"operators","message_template":"m","severity":"fatal"}`), "actions.0.severity", CodeEnum},
		{"no steps", wrap(okCond, `{"type":"sequence","steps":[]}`), "actions.0.steps", CodeRange},
		{"51 steps", wrap(okCond, `{"type":"sequence","steps":[`+strings.TrimSuffix(strings.Repeat(`{"delay_seconds":1},`, 51), ",")+`]}`), "actions.0.steps", CodeRange},
		{"step empty", wrap(okCond, `{"type":"sequence","steps":[{"name":"x"}]}`), "actions.0.steps.0.action", CodeMissing},
		{"step both", wrap(okCond, `{"type":"sequence","steps":[{"delay_seconds":1,"action":{"type":"delay","seconds":1}}]}`), "actions.0.steps.0.delay_seconds", CodeInconsistent},
		{"nested sequence", wrap(okCond, `{"type":"sequence","steps":[{"action":{"type":"sequence","steps":[{"delay_seconds":1}]}}]}`), "actions.0.steps.0.action.type", CodeInconsistent},
		{"step timeout", wrap(okCond, `{"type":"sequence","steps":[{"delay_seconds":1,"timeout_seconds":301}]}`), "actions.0.steps.0.timeout_seconds", CodeRange},
		{"step retries", wrap(okCond, `{"type":"sequence","steps":[{"delay_seconds":1,"retry_count":4}]}`), "actions.0.steps.0.retry_count", CodeRange},
		{"step retry delay", wrap(okCond, `{"type":"sequence","steps":[{"delay_seconds":1,"retry_delay_seconds":61}]}`), "actions.0.steps.0.retry_delay_seconds", CodeRange},
		{"step on_failure", wrap(okCond, `{"type":"sequence","steps":[{"delay_seconds":1,"on_failure":"retry"}]}`), "actions.0.steps.0.on_failure", CodeEnum},
		{"sequence duration", wrap(okCond, `{"type":"sequence","max_duration_seconds":3601,"steps":[{"delay_seconds":1}]}`), "actions.0.max_duration_seconds", CodeRange},
		{"step action target", wrap(okCond, `{"type":"sequence","steps":[{"action":{"type":"actuator_command","gpio":3}}]}`), "actions.0.steps.0.action.esp_id", CodeMissing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, issues := Decode([]byte(tc.doc))
			issueAt(t, issues, tc.path, tc.code)
		})
	}
}

func TestDecodeReportsEveryError(t *testing.T) {
	_, issues := Decode([]byte(`{"name":"x","priority":101,"conditions":[
		{"type":"sensor","esp_id":"E","gpio":99,"operator":">"},
		{"type":"time","start_time":"06:00","end_time":"06:00","timezone":"Nowhere/City"}],
		"actions":[{"type":"actuator","gpio":1,"value":2}]}`))
	for _, want := range []string{"name", "priority", "conditions.0.gpio", "conditions.0.value",
		"conditions.1.end_time", "conditions.1.timezone", "actions.0.esp_id", "actions.0.value"} {
		issueAt(t, issues, want, "")
	}
}
