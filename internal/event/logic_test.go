package event

import (
	"encoding/json"
	"testing"
)

func TestLogicExecutionJSON(t *testing.T) {
	gpio, v, at := 21, 30.4, int64(1767600940)
	p := LogicExecution{
		RuleID:      "r1",
		RuleName:    "Vent fan when hot",
		ExecutionID: "x1",
		Trigger: LogicTrigger{Type: "sensor", EspID: "ESP_12AB34", GPIO: &gpio, SensorType: "sht31_temp",
			Value: &v, ReadingTime: &at},
		Action:    LogicAction{Index: 0, Type: "actuator_command", Target: "ESP_12AB34:25", Status: "succeeded", CommandID: "c1"},
		Success:   true,
		Timestamp: at,
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"rule_id":"r1","rule_name":"Vent fan when hot","execution_id":"x1","trigger":{"type":"sensor",` +
		`"esp_id":"ESP_12AB34","gpio":21,"sensor_type":"sht31_temp","value":30.4,"reading_time":1767600940},` +
		`"action":{"index":0,"type":"actuator_command","target":"ESP_12AB34:25","status":"succeeded",` +
		`"command_id":"c1"},"success":true,"message":"","timestamp":1767600940}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	if p.EventType() != TypeLogicExecution {
		t.Errorf("type %s", p.EventType())
	}
}
