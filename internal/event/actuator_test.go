package event

import (
	"encoding/json"
	"testing"
)

// The actuator payloads carry every key of docs/api.md §17.5, null where
// unknown, and say which device they are about and what they coalesce on.
func TestActuatorPayloads(t *testing.T) {
	tests := []struct {
		name    string
		payload Payload
		typ     Type
		want    string
		subject string // "" = no state message
	}{
		{
			name: "actuator_status",
			payload: ActuatorStatus{
				EspID:        "E",
				GPIO:         5,
				ActuatorType: "pump",
				State:        "on",
				Value:        1,
				Emergency:    "normal",
				RuntimeMS:    ptr(int64(42000)),
				Timestamp:    1767600931,
			},
			typ: TypeActuatorStatus,
			want: `{"esp_id":"E","gpio":5,"actuator_type":"pump","state":"on","value":1,"stale":false,
				"emergency":"normal","last_command":null,"runtime_ms":42000,"timestamp":1767600931}`,
			subject: "E|5",
		},
		{
			name: "actuator_response unmatched",
			payload: ActuatorResponse{
				EspID:   "E",
				GPIO:    5,
				Command: "ON",
				Value:   ptr(1.0),
				Success: true,
				Message: "Command executed",
			},
			typ: TypeActuatorResponse,
			want: `{"esp_id":"E","gpio":5,"command":"ON","value":1,"success":true,"message":"Command executed",
				"command_id":null,"timestamp":0}`,
		},
		{
			name: "actuator_alert",
			payload: ActuatorAlert{
				EspID:     "E",
				GPIO:      5,
				AlertType: "emergency_stop",
				Severity:  "critical",
				Message:   "Actuator stopped",
			},
			typ: TypeActuatorAlert,
			want: `{"esp_id":"E","gpio":5,"alert_type":"emergency_stop","severity":"critical",
				"message":"Actuator stopped","zone_id":"","timestamp":0}`,
		},
		{
			name: "command_status",
			payload: CommandStatus{
				CommandID:     "c1",
				CorrelationID: "c1",
				EspID:         "E",
				GPIO:          5,
				Command:       "ON",
				Value:         1,
				Status:        "timeout",
				IssuedBy:      "user:op",
				Error:         ptr("no response within 10s"),
			},
			typ: TypeCommandStatus,
			want: `{"command_id":"c1","correlation_id":"c1","esp_id":"E","gpio":5,"command":"ON","value":1,
				"status":"timeout","issued_by":"user:op","error":"no response within 10s","timestamp":0}`,
			subject: "c1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.payload.EventType() != tt.typ {
				t.Fatalf("type %s, want %s", tt.payload.EventType(), tt.typ)
			}
			got, err := json.Marshal(tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			if err := json.Unmarshal(got, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.want), &b); err != nil {
				t.Fatal(err)
			}
			if ja, jb := mustJSON(t, a), mustJSON(t, b); ja != jb {
				t.Fatalf("json\n got %s\nwant %s", ja, jb)
			}

			if d, ok := tt.payload.(interface{ Device() string }); !ok || d.Device() != "E" {
				t.Fatalf("device scoped: %v", ok)
			}
			st, ok := tt.payload.(interface{ Subject() string })
			if (tt.subject != "") != ok || (ok && st.Subject() != tt.subject) {
				t.Fatalf("subject: %v", ok)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
