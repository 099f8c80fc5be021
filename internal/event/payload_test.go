package event

import (
	"encoding/json"
	"reflect"
	"testing"
)

func ptr[T any](v T) *T { return &v }

// The `data` objects WebSocket clients received when payloads were maps:
// every key present, null where a value is unknown (docs/api.md §17.5).
func TestPayloadJSON(t *testing.T) {
	tests := []struct {
		name    string
		payload Payload
		want    string
	}{
		{
			name: "sensor_data processed",
			payload: SensorData{
				EspID:          "ESP_1A2B3C",
				GPIO:           34,
				SensorType:     "ph",
				Value:          6.19,
				RawValue:       2150,
				ProcessedValue: ptr(6.19),
				Unit:           "pH",
				Quality:        "fair",
				ProcessingMode: "pi_enhanced",
				ZoneID:         "z1",
				Timestamp:      1735817999,
			},
			want: `{"esp_id":"ESP_1A2B3C","gpio":34,"sensor_type":"ph","value":6.19,"raw_value":2150,
				"processed_value":6.19,"unit":"pH","quality":"fair","processing_mode":"pi_enhanced",
				"zone_id":"z1","subzone_id":"","timestamp":1735817999}`,
		},
		{
			name: "sensor_data raw only",
			payload: SensorData{
				EspID:      "E",
				GPIO:       4,
				SensorType: "ds18b20",
				Value:      2048,
				RawValue:   2048,
			},
			want: `{"esp_id":"E","gpio":4,"sensor_type":"ds18b20","value":2048,"raw_value":2048,
				"processed_value":null,"unit":"","quality":"","processing_mode":"","zone_id":"","subzone_id":"",
				"timestamp":0}`,
		},
		{
			name: "sensor_data of a OneWire sensor",
			payload: SensorData{
				EspID:          "E",
				GPIO:           4,
				SensorType:     "ds18b20",
				Value:          2048,
				RawValue:       2048,
				OneWireAddress: "28FF641E8016043C",
			},
			want: `{"esp_id":"E","gpio":4,"sensor_type":"ds18b20","value":2048,"raw_value":2048,
				"processed_value":null,"unit":"","quality":"","processing_mode":"","zone_id":"","subzone_id":"",
				"timestamp":0,"onewire_address":"28FF641E8016043C"}`,
		},
		{
			name: "sensor_data of an I2C sensor",
			payload: SensorData{
				EspID:      "E",
				GPIO:       21,
				SensorType: "sht31",
				Value:      21.5,
				RawValue:   21.5,
				I2CAddress: ptr(68),
			},
			want: `{"esp_id":"E","gpio":21,"sensor_type":"sht31","value":21.5,"raw_value":21.5,
				"processed_value":null,"unit":"","quality":"","processing_mode":"","zone_id":"","subzone_id":"",
				"timestamp":0,"i2c_address":68}`,
		},
		{
			name: "sensor_health stale",
			payload: SensorHealth{
				EspID:          "E",
				GPIO:           34,
				SensorType:     "ph",
				Status:         "stale",
				Reason:         ptr("timeout_exceeded"),
				LastReadingAt:  ptr("2026-01-05T08:00:00Z"),
				TimeoutSeconds: 180,
				Timestamp:      1767600000,
			},
			want: `{"esp_id":"E","gpio":34,"sensor_type":"ph","status":"stale","reason":"timeout_exceeded",
				"last_reading_at":"2026-01-05T08:00:00Z","timeout_seconds":180,"timestamp":1767600000}`,
		},
		{
			name: "sensor_health never read",
			payload: SensorHealth{
				EspID:      "E",
				GPIO:       34,
				SensorType: "ph",
				Status:     "stale",
				Reason:     ptr("no_data"),
			},
			want: `{"esp_id":"E","gpio":34,"sensor_type":"ph","status":"stale","reason":"no_data",
				"last_reading_at":null,"timeout_seconds":0,"timestamp":0}`,
		},
		{
			name: "sensor_health recovered",
			payload: SensorHealth{
				EspID:         "E",
				GPIO:          34,
				SensorType:    "ph",
				Status:        "ok",
				LastReadingAt: ptr("t"),
			},
			want: `{"esp_id":"E","gpio":34,"sensor_type":"ph","status":"ok","reason":null,
				"last_reading_at":"t","timeout_seconds":0,"timestamp":0}`,
		},
		{
			name: "esp_health heartbeat",
			payload: EspHealth{
				EspID:         "E",
				Status:        "online",
				HeapFree:      int64(187432),
				WifiRSSI:      int64(-61),
				Uptime:        int64(61),
				ActuatorCount: 2,
				Source:        "heartbeat",
				Timestamp:     1767600930,
			},
			want: `{"esp_id":"E","status":"online","heap_free":187432,"wifi_rssi":-61,"uptime":61,
				"sensor_count":0,"actuator_count":2,"source":"heartbeat","timestamp":1767600930}`,
		},
		{
			name: "esp_health offline with nothing reported",
			payload: EspHealth{
				EspID:     "E",
				Status:    "offline",
				Source:    "lwt",
				Timestamp: 5,
			},
			want: `{"esp_id":"E","status":"offline","heap_free":null,"wifi_rssi":null,"uptime":null,
				"sensor_count":0,"actuator_count":0,"source":"lwt","timestamp":5}`,
		},
		{
			name: "esp_health offline from stored metadata",
			payload: EspHealth{
				EspID:    "E",
				Status:   "offline",
				HeapFree: 187432.0,
				Uptime:   61.0,
				Source:   "heartbeat_timeout",
			},
			want: `{"esp_id":"E","status":"offline","heap_free":187432,"wifi_rssi":null,"uptime":61,
				"sensor_count":0,"actuator_count":0,"source":"heartbeat_timeout","timestamp":0}`,
		},
		{
			name: "device_status",
			payload: DeviceStatus{
				EspID:          "E",
				DeviceID:       "E",
				Status:         "online",
				PreviousStatus: "offline",
				Reason:         "heartbeat",
				LastSeen:       ptr("2026-01-05T08:15:30.5Z"),
				Timestamp:      9,
			},
			want: `{"esp_id":"E","device_id":"E","status":"online","previous_status":"offline","reason":"heartbeat",
				"last_seen":"2026-01-05T08:15:30.5Z","timestamp":9}`,
		},
		{
			name: "device_status never seen",
			payload: DeviceStatus{
				EspID:    "E",
				DeviceID: "E",
				Status:   "approved",
				Reason:   "registered",
			},
			want: `{"esp_id":"E","device_id":"E","status":"approved","previous_status":"","reason":"registered",
				"last_seen":null,"timestamp":0}`,
		},
		{
			name: "device_discovered",
			payload: DeviceDiscovered{
				Rediscovered: true,
				EspID:        "E",
				DeviceID:     "E",
				DiscoveredAt: "2026-01-05T08:15:30Z",
				HardwareType: "ESP32_WROOM",
				IPAddress:    "10.0.0.7",
				HeapFree:     187432,
				WifiRSSI:     -61,
				SensorCount:  ptr(int64(3)),
				Timestamp:    7,
			},
			want: `{"esp_id":"E","device_id":"E","discovered_at":"2026-01-05T08:15:30Z","hardware_type":"ESP32_WROOM",
				"ip_address":"10.0.0.7","zone_id":"","heap_free":187432,"wifi_rssi":-61,"sensor_count":3,
				"actuator_count":null,"timestamp":7}`,
		},
		{
			name: "device_approved",
			payload: DeviceApproved{
				DeviceID:   "E",
				ApprovedBy: "admin",
				ApprovedAt: "t",
				Status:     "approved",
			},
			want: `{"device_id":"E","approved_by":"admin","approved_at":"t","status":"approved"}`,
		},
		{
			name:    "device_rejected",
			payload: DeviceRejected{DeviceID: "E", RejectionReason: "unknown", RejectedAt: "t"},
			want:    `{"device_id":"E","rejection_reason":"unknown","rejected_at":"t","cooldown_until":null}`,
		},
		{
			name: "config_response failed",
			payload: ConfigResponse{
				EspID:            "E",
				ConfigType:       "sensor",
				Status:           "failed",
				Count:            0,
				Message:          "GPIO 34 in use",
				ErrorCode:        ptr("GPIO_CONFLICT"),
				ErrorDescription: ptr("GPIO 34 in use"),
				FailedItem:       map[string]any{"gpio": 34.0},
				CorrelationID:    "c1",
				Timestamp:        3,
			},
			want: `{"esp_id":"E","config_type":"sensor","status":"failed","count":0,"message":"GPIO 34 in use",
				"error_code":"GPIO_CONFLICT","error_description":"GPIO 34 in use","failed_item":{"gpio":34},
				"correlation_id":"c1","timestamp":3}`,
		},
		{
			name: "config_response success",
			payload: ConfigResponse{
				EspID:      "E",
				ConfigType: "actuator",
				Status:     "success",
				Count:      2,
			},
			want: `{"esp_id":"E","config_type":"actuator","status":"success","count":2,"message":"",
				"error_code":null,"error_description":null,"failed_item":null,"correlation_id":"","timestamp":0}`,
		},
		{
			name: "notification",
			payload: Notification{
				UserID:        7,
				ID:            "a1-7",
				Action:        "new",
				Severity:      "warning",
				Category:      "data_quality",
				Title:         "Sensor stale",
				Message:       "no reading",
				Source:        "sensor_threshold",
				Status:        "active",
				CorrelationID: "stale:E:34:ph",
				Timestamp:     11,
			},
			want: `{"user_id":7,"id":"a1-7","action":"new","severity":"warning","category":"data_quality",
				"title":"Sensor stale","message":"no reading","source":"sensor_threshold","status":"active",
				"is_read":false,"correlation_id":"stale:E:34:ph","metadata":null,"timestamp":11}`,
		},
		{
			name:    "system_event",
			payload: SystemEvent{Event: "startup_complete", Message: "hub started", Timestamp: 1},
			want:    `{"event":"startup_complete","message":"hub started","timestamp":1}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatalf("bad expectation: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("JSON\n got %s\nwant %s", b, tt.want)
			}
		})
	}
}

func TestSubjectsSeparateSensors(t *testing.T) {
	ph34 := SensorData{EspID: "E", GPIO: 34, SensorType: "ph"}
	ph34Health := SensorHealth{EspID: "E", GPIO: 34, SensorType: "ph"}
	tests := []struct {
		name string
		a, b interface{ Subject() string }
		same bool
	}{
		{"same sensor", ph34, ph34, true},
		{"other gpio", ph34, SensorData{EspID: "E", GPIO: 35, SensorType: "ph"}, false},
		{"other type", ph34Health, SensorHealth{EspID: "E", GPIO: 34, SensorType: "ec"}, false},
		{"other device", EspHealth{EspID: "E1"}, EspHealth{EspID: "E2"}, false},
		{"ids that concatenate alike", SensorData{EspID: "E1", GPIO: 2}, SensorData{EspID: "E", GPIO: 12}, false},
		{"two OneWire sensors on one pin", SensorData{EspID: "E", GPIO: 4, SensorType: "ds18b20", OneWireAddress: "28FF0000000000A1"},
			SensorData{EspID: "E", GPIO: 4, SensorType: "ds18b20", OneWireAddress: "28FF0000000000B2"}, false},
		{"two I2C sensors on one pin", SensorData{EspID: "E", GPIO: 21, SensorType: "sht31", I2CAddress: ptr(68)},
			SensorData{EspID: "E", GPIO: 21, SensorType: "sht31", I2CAddress: ptr(69)}, false},
		{"one I2C sensor", SensorData{EspID: "E", GPIO: 21, SensorType: "sht31", I2CAddress: ptr(68)},
			SensorData{EspID: "E", GPIO: 21, SensorType: "sht31", I2CAddress: ptr(68)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if same := tt.a.Subject() == tt.b.Subject(); same != tt.same {
				t.Fatalf("subjects %q and %q: same = %v, want %v", tt.a.Subject(), tt.b.Subject(), same, tt.same)
			}
		})
	}
}
