package contract

import (
	"strings"
	"testing"
	"time"
)

func TestParseTopic(t *testing.T) {
	cases := []struct {
		topic  string
		kind   Kind
		kaiser string
		esp    string
		gpio   int
		reason string
	}{
		{"kaiser/god/esp/ESP_A1B2C3/system/heartbeat", KindHeartbeat, "god", "ESP_A1B2C3", -1, ""},
		{"kaiser//esp/ESP_A1B2C3/system/heartbeat", KindHeartbeat, "", "ESP_A1B2C3", -1, ""},
		{"kaiser/god/esp/ESP_A1B2C3/sensor/34/data", KindSensorData, "god", "ESP_A1B2C3", 34, ""},
		{"kaiser/god/esp/ESP_A1B2C3/actuator/5/status", KindActuatorStatus, "god", "ESP_A1B2C3", 5, ""},
		{"kaiser/god/esp/ESP_A1B2C3/actuator/5/response", KindActuatorResponse, "god", "ESP_A1B2C3", 5, ""},
		{"kaiser/god/esp/ESP_A1B2C3/actuator/255/alert", KindActuatorAlert, "god", "ESP_A1B2C3", 255, ""},
		{"kaiser/god/esp/ESP_A1B2C3/actuator/emergency/response", KindEmergencyResponse, "god", "ESP_A1B2C3", -1, ""},
		{"kaiser/god/esp/ESP_A1B2C3/actuator/emergency/error", KindEmergencyError, "god", "ESP_A1B2C3", -1, ""},
		{"kaiser/god/esp/ESP_A1B2C3/config_response", KindConfigResponse, "god", "ESP_A1B2C3", -1, ""},
		{"kaiser/god/esp/ESP_A1B2C3/zone/ack", KindZoneAck, "god", "ESP_A1B2C3", -1, ""},
		{"kaiser/god/esp/ESP_A1B2C3/subzone/ack", KindSubzoneAck, "god", "ESP_A1B2C3", -1, ""},
		{"kaiser/god/esp/ESP_A1B2C3/system/will", KindWill, "god", "ESP_A1B2C3", -1, ""},
		{"kaiser/god/esp/ESP_A1B2C3/system/diagnostics", KindDiagnostics, "god", "ESP_A1B2C3", -1, ""},
		{"kaiser/god/esp/ESP_A1B2C3/system/command/response", KindSystemCommandResponse, "god", "ESP_A1B2C3", -1, ""},
		{"kaiser/god/esp/ESP_A1B2C3/system/error", KindNewer, "god", "ESP_A1B2C3", -1, ""},
		{"kaiser/god/esp/MOCK_7F3A91C2/system/heartbeat", KindHeartbeat, "god", "MOCK_7F3A91C2", -1, ""},
		{"kaiser/god/esp/ESP_WOKWI001/system/heartbeat", KindHeartbeat, "god", "ESP_WOKWI001", -1, ""},
		{"kaiser/" + strings.Repeat("k", 63) + "/esp/E/system/heartbeat", KindHeartbeat, strings.Repeat("k", 63), "E", -1, ""},
		{"kaiser/" + strings.Repeat("k", 64) + "/esp/E/system/heartbeat", "", "", "", -1, ReasonUnknownTopic},
		{"kaiser/god/esp/ESP_A1B2C3/sensor/3a/data", "", "", "", -1, ReasonUnknownTopic},
		{"kaiser/god/esp/ESP_A1B2C3/sensor/256/data", "", "", "", -1, ReasonUnknownTopic},
		{"kaiser/god/esp/ESP_A1B2C3/sensor//data", "", "", "", -1, ReasonUnknownTopic},
		{"kaiser/god/esp/ESP_A1B2C3/config", "", "", "", -1, ReasonUnknownTopic},
		{"kaiser/god/esp/ESP_A1B2C3/system/heartbeat/ack", "", "", "", -1, ReasonUnknownTopic},
		{"kaiser/god/esp/ESP_A1B2C3/actuator/5/command", "", "", "", -1, ReasonUnknownTopic},
		{"kaiser/god/discovery/esp32_nodes", "", "", "", -1, ReasonUnknownTopic},
		{"kaiser/god/esp/ESP A1/system/heartbeat", "", "", "", -1, ReasonBadEspID},
		{"kaiser/god/esp/" + strings.Repeat("A", 32) + "/system/heartbeat", "", "", "", -1, ReasonBadEspID},
		{"other/topic", "", "", "", -1, ReasonUnknownTopic},
	}
	for _, c := range cases {
		got, err := ParseTopic(c.topic)
		if c.reason != "" {
			de, ok := err.(*DecodeError)
			if !ok || de.Reason != c.reason {
				t.Errorf("%s: err %v, want reason %s", c.topic, err, c.reason)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.topic, err)
			continue
		}
		if got.Kind != c.kind || got.KaiserID != c.kaiser || got.EspID != c.esp || got.GPIO != c.gpio {
			t.Errorf("%s: got %+v", c.topic, got)
		}
	}
}

func TestIsHubToDevice(t *testing.T) {
	hub := []string{
		"kaiser/god/esp/E/actuator/5/command", "kaiser/god/esp/E/config", "kaiser//esp/E/config",
		"kaiser/god/esp/E/system/command", "kaiser/god/esp/E/zone/assign", "kaiser/god/esp/E/subzone/assign",
		"kaiser/god/esp/E/subzone/remove", "kaiser/god/esp/E/subzone/safe", "kaiser/god/esp/E/actuator/emergency",
		"kaiser/god/esp/E/system/heartbeat/ack", "kaiser/broadcast/emergency", "kaiser/god/server/status",
		"kaiser/god/esp/E/sensor/34/processed",
	}
	for _, tp := range hub {
		if !IsHubToDevice(tp) {
			t.Errorf("%s should be hub-only", tp)
		}
	}
	device := []string{
		"kaiser/god/esp/E/system/heartbeat",
		"kaiser/god/esp/E/sensor/34/data",
		"kaiser/god/esp/E/actuator/emergency/response",
	}
	for _, tp := range device {
		if IsHubToDevice(tp) {
			t.Errorf("%s should be device-writable", tp)
		}
	}
}

// The device ACL of devices mode reads a device's own hub→device topics
// through IsHubToDeviceSuffix: each suffix of docs/protocol.md §2.2, the firmware's
// `actuator/+/command` filter, nothing of the device's own publications
// and no `#`.
func TestIsHubToDeviceSuffix(t *testing.T) {
	for _, s := range []string{"config", "system/command", "zone/assign", "subzone/assign", "subzone/remove",
		"subzone/safe", "actuator/emergency", "system/heartbeat/ack", "actuator/5/command", "actuator/+/command",
		"sensor/34/processed", "sensor/+/processed"} {
		if !IsHubToDeviceSuffix(s) {
			t.Errorf("%s should be a hub→device suffix", s)
		}
	}
	for _, s := range []string{"system/heartbeat", "sensor/34/data", "actuator/5/status", "actuator/+/status",
		"actuator/#", "#", "+", "actuator/abc/command", "actuator/256/command", "actuator/5/command/x",
		"actuator/emergency/response", "config/x", ""} {
		if IsHubToDeviceSuffix(s) {
			t.Errorf("%s should not be a hub→device suffix", s)
		}
	}
}

// Every device→hub example payload of docs/protocol.md §3.1 decodes.
var contractExamples = map[string]string{
	"kaiser/god/esp/ESP_A1B2C3/sensor/34/data":              `{"esp_id":"ESP_A1B2C3","zone_id":"greenhouse_1","subzone_id":"bed_north","gpio":34,"sensor_type":"ph","raw":2150,"value":6.19,"unit":"pH","quality":"fair","ts":1767600930,"raw_mode":true}`,
	"kaiser/god/esp/ESP_A1B2C3/system/heartbeat":            `{"esp_id":"ESP_A1B2C3","zone_id":"greenhouse_1","master_zone_id":"greenhouse","zone_assigned":true,"ts":1767600930,"uptime":3600,"heap_free":187432,"wifi_rssi":-61,"sensor_count":2,"actuator_count":1}`,
	"kaiser/god/esp/ESP_A1B2C3/actuator/5/status":           `{"esp_id":"ESP_A1B2C3","zone_id":"greenhouse_1","subzone_id":"bed_north","ts":1767600931,"gpio":5,"type":"pump","state":true,"pwm":255,"runtime_ms":42000,"emergency":"normal"}`,
	"kaiser/god/esp/ESP_A1B2C3/actuator/5/response":         `{"esp_id":"ESP_A1B2C3","zone_id":"greenhouse_1","ts":1767600931,"gpio":5,"command":"ON","value":1.000,"duration":300,"success":true,"message":"Command executed"}`,
	"kaiser/god/esp/ESP_A1B2C3/actuator/5/alert":            `{"esp_id":"ESP_A1B2C3","zone_id":"greenhouse_1","ts":1767604532,"gpio":5,"alert_type":"runtime_protection","message":"Actuator exceeded max runtime - emergency stopped"}`,
	"kaiser/god/esp/ESP_A1B2C3/config_response":             `{"status":"error","type":"actuator","count":0,"message":"Actuator config missing required field 'actuator_name'","error_code":"MISSING_FIELD","failed_item":{"gpio":5,"actuator_type":"pump","active":true}}`,
	"kaiser/god/esp/ESP_A1B2C3/zone/ack":                    `{"esp_id":"ESP_A1B2C3","status":"zone_assigned","zone_id":"greenhouse_1","master_zone_id":"greenhouse","ts":1767600940}`,
	"kaiser/god/esp/ESP_A1B2C3/subzone/ack":                 `{"esp_id":"ESP_A1B2C3","status":"subzone_assigned","subzone_id":"bed_north","timestamp":3712}`,
	"kaiser/god/esp/ESP_A1B2C3/system/will":                 `{"status":"offline","reason":"unexpected_disconnect","timestamp":1767597330}`,
	"kaiser/god/esp/ESP_A1B2C3/system/diagnostics":          `{"ts":3660,"esp_id":"ESP_A1B2C3","heap_free":187432,"heap_min_free":152008,"heap_fragmentation":18,"uptime_seconds":3660,"error_count":2,"wifi_connected":true,"wifi_rssi":-61,"mqtt_connected":true,"sensor_count":2,"actuator_count":1,"system_state":"ZONE_CONFIGURED"}`,
	"kaiser/god/esp/ESP_A1B2C3/actuator/emergency/response": `{"status":"emergency_cleared","timestamp":3725114}`,
	"kaiser/god/esp/ESP_A1B2C3/actuator/emergency/error":    `{"error":"clear_failed","message":"Safety verification failed"}`,
	"kaiser/god/esp/ESP_A1B2C3/system/command/response":     `{"status":"factory_reset_initiated","esp_id":"ESP_A1B2C3"}`,
}

func TestContractExamplesDecode(t *testing.T) {
	for topic, payload := range contractExamples {
		tp, err := ParseTopic(topic)
		if err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		if err := Validate(tp, []byte(payload)); err != nil {
			t.Errorf("%s: %v", topic, err)
		}
	}
}

func TestDecodedValues(t *testing.T) {
	tp, _ := ParseTopic("kaiser/god/esp/ESP_A1B2C3/system/heartbeat")
	h, err := DecodeHeartbeat(tp, []byte(contractExamples["kaiser/god/esp/ESP_A1B2C3/system/heartbeat"]))
	if err != nil || h.Uptime != 3600 || h.HeapFree != 187432 || h.RSSI != -61 || *h.SensorCount != 2 ||
		h.ZoneID != "greenhouse_1" || h.Seq != nil {
		t.Fatalf("heartbeat: %+v %v", h, err)
	}
	// Aliases: free_heap, active_sensors; integral float accepted as integer.
	h, err = DecodeHeartbeat(tp, []byte(`{"ts":0,"uptime":61.0,"free_heap":1000,"wifi_rssi":-70,"active_sensors":3,"seq":7}`))
	if err != nil || h.HeapFree != 1000 || *h.SensorCount != 3 || h.Uptime != 61 || *h.Seq != 7 {
		t.Fatalf("heartbeat aliases: %+v %v", h, err)
	}
	// First-named key wins when both are present.
	h, _ = DecodeHeartbeat(tp, []byte(`{"ts":0,"uptime":1,"heap_free":5,"free_heap":9,"wifi_rssi":-1}`))
	if h.HeapFree != 5 {
		t.Fatalf("first key must win, got %d", h.HeapFree)
	}

	st, _ := ParseTopic("kaiser/god/esp/ESP_A1B2C3/sensor/34/data")
	s, err := DecodeSensorData(st, []byte(contractExamples["kaiser/god/esp/ESP_A1B2C3/sensor/34/data"]))
	if err != nil || s.Raw != 2150 || s.SensorType != "ph" || s.TS != 1767600930 || !s.RawMode || *s.Value != 6.19 {
		t.Fatalf("sensor: %+v %v", s, err)
	}
	dt, _ := ParseTopic("kaiser/god/esp/ESP_A1B2C3/sensor/4/data")
	s, err = DecodeSensorData(dt, []byte(`{"sensor_type":"DS18B20","raw_value":4294967096,"timestamp":0}`))
	if err != nil || s.Raw != -200 || s.SensorType != "ds18b20" {
		t.Fatalf("ds18b20 negative: %+v %v", s, err)
	}

	at, _ := ParseTopic("kaiser/god/esp/ESP_A1B2C3/actuator/5/status")
	a, err := DecodeActuatorStatus(at, []byte(`{"ts":1,"actuator_type":"relay","state":"on","value":0.5}`))
	if err != nil || a.State != "on" || a.ValueFraction == nil || *a.ValueFraction != 0.5 || a.Emergency != "normal" {
		t.Fatalf("status mock form: %+v %v", a, err)
	}
	a, err = DecodeActuatorStatus(at, []byte(`{"ts":1,"type":"pump","state":false,"pwm":0}`))
	if err != nil || a.State != "off" || *a.PWM != 0 {
		t.Fatalf("status: %+v %v", a, err)
	}

	ct, _ := ParseTopic("kaiser/god/esp/ESP_A1B2C3/config_response")
	c, err := DecodeConfigResponse(ct, []byte(`{"status":"failed","config_type":"sensor","error_code":"X"}`))
	if err != nil || c.Status != "error" || c.Type != "sensor" {
		t.Fatalf("config alias: %+v %v", c, err)
	}
}

func TestDecodeDropReasons(t *testing.T) {
	hb, _ := ParseTopic("kaiser/god/esp/ESP_A1B2C3/system/heartbeat")
	sd, _ := ParseTopic("kaiser/god/esp/ESP_A1B2C3/sensor/34/data")
	cases := []struct {
		t       Topic
		payload string
		reason  string
	}{
		{hb, `{"ts":1,"uptime":1,"heap_free":1,"wifi_rssi":nan}`, ReasonBadJSON},
		{hb, `[1,2]`, ReasonBadJSON},
		{hb, `{"ts":1} x`, ReasonBadJSON},
		{hb, `{"ts":1,"uptime":1,"heap_free":1}`, ReasonMissingField},
		{hb, `{"ts":1,"uptime":"1","heap_free":1,"wifi_rssi":-1}`, ReasonWrongType},
		{hb, `{"ts":1,"uptime":1.5,"heap_free":1,"wifi_rssi":-1}`, ReasonWrongType},
		{hb, `{"esp_id":"ESP_OTHER1","ts":1,"uptime":1,"heap_free":1,"wifi_rssi":-1}`, ReasonIDMismatch},
		{sd, `{"gpio":35,"sensor_type":"ph","raw":1,"ts":1}`, ReasonIDMismatch},
		{sd, `{"sensor_type":"ph","raw":1}`, ReasonMissingField},
		{sd, `{"sensor_type":"ph","raw":-5000000000,"ts":1}`, ReasonWrongType},
		{sd, `{"sensor_type":"","raw":1,"ts":1}`, ReasonMissingField},
		{sd, `{"sensor_type":"ph","raw":1,"ts":1,"raw_mode":"true"}`, ReasonWrongType},
	}
	for _, c := range cases {
		err := Validate(c.t, []byte(c.payload))
		de, ok := err.(*DecodeError)
		if !ok || de.Reason != c.reason {
			t.Errorf("%s: got %v, want %s", c.payload, err, c.reason)
		}
	}
}

// Every hub→device example of docs/protocol.md §3.2 is reproduced byte for byte.
func TestEncodeExamples(t *testing.T) {
	now := time.Unix(1767600930, 0)
	cases := []struct {
		v    any
		want string
	}{
		{NewActuatorCommand("ON", 1, 300, now, "cmd-7f3a91c2-0042"),
			`{"command":"ON","value":1.0,"duration":300,"timestamp":1767600930,"correlation_id":"cmd-7f3a91c2-0042"}`},
		{NewHeartbeatAck("online", false, time.Unix(1767600931, 0), nil),
			`{"status":"online","config_available":false,"server_time":1767600931,"handover_epoch":1,"ack_type":"heartbeat","contract_version":2}`},
		{SystemCommand{
			Command:       "factory_reset",
			Confirm:       true,
			Timestamp:     1767600930,
			CorrelationID: "sys-7f3a91c2-0003",
		},
			`{"command":"factory_reset","confirm":true,"timestamp":1767600930,"correlation_id":"sys-7f3a91c2-0003"}`},
		{ZoneAssign{
			ZoneID:        "greenhouse_1",
			MasterZoneID:  "greenhouse",
			ZoneName:      "Greenhouse 1",
			KaiserID:      "god",
			Timestamp:     1767600930,
			CorrelationID: "zone-7f3a91c2-0002",
		},
			`{"zone_id":"greenhouse_1","master_zone_id":"greenhouse","zone_name":"Greenhouse 1","kaiser_id":"god","timestamp":1767600930,"correlation_id":"zone-7f3a91c2-0002"}`},
		{SubzoneAssign{
			SubzoneID:     "bed_north",
			SubzoneName:   "Bed north",
			ParentZoneID:  "greenhouse_1",
			AssignedGPIOs: []int{34, 5},
			Timestamp:     1767600930,
			CorrelationID: "sz-7f3a91c2-0004",
		},
			`{"subzone_id":"bed_north","subzone_name":"Bed north","parent_zone_id":"greenhouse_1","assigned_gpios":[34,5],"safe_mode_active":false,"timestamp":1767600930,"correlation_id":"sz-7f3a91c2-0004"}`},
		{SubzoneRemove{
			SubzoneID:     "bed_north",
			Reason:        "operator",
			Timestamp:     1767600930,
			CorrelationID: "sz-7f3a91c2-0005",
		},
			`{"subzone_id":"bed_north","reason":"operator","timestamp":1767600930,"correlation_id":"sz-7f3a91c2-0005"}`},
		{DeviceEmergency{Command: "clear_emergency", AuthToken: "ESP_A1B2C3", CorrelationID: "em-7f3a91c2-0009"},
			`{"command":"clear_emergency","auth_token":"ESP_A1B2C3","correlation_id":"em-7f3a91c2-0009"}`},
		{NewBroadcastEmergency("operator_stop", "hub", time.Date(2026, 1, 5, 8, 15, 30, 0, time.UTC)),
			`{"command":"emergency_stop","reason":"operator_stop","issued_by":"hub","timestamp":"2026-01-05T08:15:30Z"}`},
		{Processed{
			ProcessedValue: Decimal{V: 6.19, Places: 2},
			Unit:           "pH",
			Quality:        "fair",
			Timestamp:      1767600931,
		},
			`{"processed_value":6.19,"unit":"pH","quality":"fair","timestamp":1767600931}`},
		{ServerStatus{Status: "online", Timestamp: 1767600900}, `{"status":"online","timestamp":1767600900}`},
		{ServerStatus{Status: "offline", Reason: "graceful_shutdown"}, `{"status":"offline","reason":"graceful_shutdown"}`},
	}
	for _, c := range cases {
		b, err := Marshal(c.v)
		if err != nil || string(b) != c.want {
			t.Errorf("got  %s (%v)\nwant %s", b, err, c.want)
		}
	}
	cfg := Config{
		Sensors: []SensorConfigItem{{
			GPIO:       34,
			SensorType: "ph",
			SensorName: "pH bed north",
			SubzoneID:  "bed_north",
			Active:     true,
			RawMode:    true,
		}},
		Actuators: []ActuatorConfigItem{{
			GPIO:         5,
			ActuatorType: "pump",
			ActuatorName: "Irrigation pump",
			SubzoneID:    "bed_north",
			Active:       true,
			AuxGPIO:      255,
			Critical:     true,
		}},
		Timestamp:     1767600930,
		CorrelationID: "cfg-7f3a91c2-0007",
	}
	b, _ := MarshalConfig(cfg)
	want := `{"sensors":[{"gpio":34,"sensor_type":"ph","sensor_name":"pH bed north","subzone_id":"bed_north","active":true,"raw_mode":true}],"actuators":[{"gpio":5,"actuator_type":"pump","actuator_name":"Irrigation pump","subzone_id":"bed_north","active":true,"aux_gpio":255,"critical":true,"inverted_logic":false,"default_state":false,"default_pwm":0}],"timestamp":1767600930,"correlation_id":"cfg-7f3a91c2-0007"}`
	if string(b) != want {
		t.Errorf("config:\n got %s\nwant %s", b, want)
	}
	empty, _ := MarshalConfig(Config{})
	if !strings.HasPrefix(string(empty), `{"sensors":[],"actuators":[]`) {
		t.Errorf("empty config must carry both arrays: %s", empty)
	}
	// J5: no HTML escaping of <, > and & and raw UTF-8.
	b, _ = Marshal(ZoneAssign{ZoneName: "A&B <°C>"})
	if !strings.Contains(string(b), `"A&B <°C>"`) {
		t.Errorf("html escaped: %s", b)
	}
	// Command values: never more than 3 decimals, integral values keep ".0".
	b, _ = Marshal(NewActuatorCommand("PWM", 0.123456, 10, now, "c"))
	if !strings.Contains(string(b), `"value":0.123,`) {
		t.Errorf("pwm value: %s", b)
	}
}

func TestNormaliseTime(t *testing.T) {
	rx := time.Unix(1767600999, 0)
	cases := []struct {
		in   int64
		want int64
		src  TimeSource
	}{
		{1767600930, 1767600930, SourceDevice},
		{1767600930123, 1767600930, SourceDevice},
		{0, rx.Unix(), SourceHub},
		{3600, rx.Unix(), SourceHub},
		{2600000000, rx.Unix(), SourceHub},
		// More than 30 s ahead of the receive time: the hub's time, flagged.
		{rx.Unix() + 30, rx.Unix() + 30, SourceDevice},
		{rx.Unix() + 31, rx.Unix(), SourceHub},
		{(rx.Unix() + 3600) * 1000, rx.Unix(), SourceHub},
	}
	for _, c := range cases {
		got, src := NormaliseTime(c.in, rx)
		if got.Unix() != c.want || src != c.src {
			t.Errorf("%d: got %v %s", c.in, got.Unix(), src)
		}
	}
}

func TestSanitizeAndFit(t *testing.T) {
	if got := SanitizeText("a\"b\\c\nd"); got != "abcd" {
		t.Fatalf("sanitize: %q", got)
	}
	payload := make([]byte, 1000)
	if !FitsPacket(strings.Repeat("t", 17), payload, 1024) || FitsPacket(strings.Repeat("t", 18), payload, 1024) {
		t.Fatal("packet budget is topic+payload+7")
	}
	b := NewBroadcastEmergency(strings.Repeat("x", 40), strings.Repeat("y", 40), time.Now())
	if len(b.Reason) != 24 || len(b.IssuedBy) != 16 {
		t.Fatalf("broadcast limits: %+v", b)
	}
}

func TestDeviceSubscriptions(t *testing.T) {
	subs := DeviceSubscriptions("", "ESP_A1B2C3")
	if len(subs) != 8 || subs[0] != "kaiser//esp/ESP_A1B2C3/system/command" ||
		subs[5] != "kaiser/god/esp/ESP_A1B2C3/zone/assign" {
		t.Fatalf("subs: %v", subs)
	}
	for _, f := range HubSubscriptions {
		hubOwn := []string{
			"kaiser/god/esp/E/config",
			"kaiser/god/esp/E/actuator/5/command",
			"kaiser/god/esp/E/system/heartbeat/ack",
		}
		for _, own := range hubOwn {
			if topicMatches(f, own) {
				t.Errorf("hub filter %s matches its own publication %s", f, own)
			}
		}
	}
}

// topicMatches is a minimal MQTT filter matcher for the test above.
func topicMatches(filter, topic string) bool {
	f, tp := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(tp) || (l != "+" && l != tp[i]) {
			return false
		}
	}
	return len(f) == len(tp)
}
