package event

import (
	"encoding/json"
	"testing"
)

func TestZonePayloadJSON(t *testing.T) {
	code := int64(2506)
	tests := []struct {
		name    string
		payload Payload
		typ     Type
		want    string
	}{
		{
			name: "zone assigned",
			payload: ZoneAssignment{
				EspID:        "ESP_A1B2C3",
				Status:       "zone_assigned",
				ZoneID:       "greenhouse_1",
				MasterZoneID: "greenhouse",
				Timestamp:    1767600940,
			},
			typ: TypeZoneAssignment,
			want: `{"esp_id":"ESP_A1B2C3","status":"zone_assigned","zone_id":"greenhouse_1",` +
				`"master_zone_id":"greenhouse","message":"","timestamp":1767600940}`,
		},
		{
			name: "subzone error with the device's code",
			payload: SubzoneAssignment{
				EspID:     "ESP_A1B2C3",
				DeviceID:  "ESP_A1B2C3",
				SubzoneID: "bed_north",
				Status:    "error",
				ErrorCode: &code,
				Message:   "parent_zone_id mismatch",
				Timestamp: 1767600940,
			},
			typ: TypeSubzoneAssignment,
			want: `{"esp_id":"ESP_A1B2C3","device_id":"ESP_A1B2C3","subzone_id":"bed_north","status":"error",` +
				`"error_code":2506,"message":"parent_zone_id mismatch","timestamp":1767600940}`,
		},
		{
			name: "subzone removed without a code",
			payload: SubzoneAssignment{
				EspID:     "E",
				DeviceID:  "E",
				SubzoneID: "s",
				Status:    "subzone_removed",
			},
			typ: TypeSubzoneAssignment,
			want: `{"esp_id":"E","device_id":"E","subzone_id":"s","status":"subzone_removed",` +
				`"error_code":null,"message":"","timestamp":0}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.payload)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got  %s\nwant %s", b, tc.want)
			}
			if got := (Event{Data: tc.payload}).Type(); got != tc.typ {
				t.Errorf("type %q, want %q", got, tc.typ)
			}
			if d, ok := tc.payload.(interface{ Device() string }); !ok || d.Device() == "" {
				t.Error("payload names no device for the esp_ids filter")
			}
		})
	}
}
