package event

import (
	"encoding/json"
	"testing"
)

// The emergency and actuator_alert data objects carry every key of
// docs/api.md §17.5, null where the stop has no device or gpio.
func TestEmergencyPayloadJSON(t *testing.T) {
	tests := []struct {
		name    string
		payload Payload
		typ     Type
		want    string
	}{
		{
			name: "global stop",
			payload: Emergency{
				Action:                "stop",
				Scope:                 "global",
				Reason:                "flood",
				IssuedBy:              "emergency:operator",
				IncidentCorrelationID: "inc-1",
				DevicesAffected:       2,
				ActuatorsAffected:     3,
				Success:               true,
				StillActive:           true,
				Timestamp:             1767600930,
			},
			typ: TypeEmergency,
			want: `{"action":"stop","scope":"global","esp_id":null,"gpio":null,"reason":"flood",` +
				`"issued_by":"emergency:operator","incident_correlation_id":"inc-1","devices_affected":2,` +
				`"actuators_affected":3,"success":true,"still_active":true,"timestamp":1767600930}`,
		},
		{
			name: "device clear",
			payload: Emergency{
				Action: "clear",
				Scope:  "device",
				EspID:  ptr("ESP_A1B2C3"),
				GPIO:   ptr(5),
			},
			typ: TypeEmergency,
			want: `{"action":"clear","scope":"device","esp_id":"ESP_A1B2C3","gpio":5,"reason":"","issued_by":"",` +
				`"incident_correlation_id":"","devices_affected":0,"actuators_affected":0,"success":false,` +
				`"still_active":false,"timestamp":0}`,
		},
		{
			name: "actuator alert",
			payload: ActuatorAlert{
				EspID:     "ESP_A1B2C3",
				GPIO:      5,
				AlertType: "emergency_stop",
				Severity:  "critical",
				Message:   "emergency stop: flood",
				Timestamp: 1767600930,
			},
			typ: TypeActuatorAlert,
			want: `{"esp_id":"ESP_A1B2C3","gpio":5,"alert_type":"emergency_stop","severity":"critical",` +
				`"message":"emergency stop: flood","zone_id":"","timestamp":1767600930}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("JSON\n got %s\nwant %s", b, tt.want)
			}
			if tt.payload.EventType() != tt.typ {
				t.Errorf("type %q, want %q", tt.payload.EventType(), tt.typ)
			}
		})
	}
}

// An emergency passes every device filter of the live feed, because it has
// no device; an actuator alert names its device.
func TestEmergencyReachesEveryDeviceFilter(t *testing.T) {
	if _, scoped := any(Emergency{EspID: ptr("ESP_A1B2C3")}).(interface{ Device() string }); scoped {
		t.Error("Emergency has a Device method: clients filtering other devices would miss a stop")
	}
	if d := (ActuatorAlert{EspID: "ESP_A1B2C3"}).Device(); d != "ESP_A1B2C3" {
		t.Errorf("actuator alert device %q", d)
	}
}
