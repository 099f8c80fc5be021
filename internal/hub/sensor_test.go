package hub

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// onlineDevice registers, approves and brings ESP_A1B2C3 online; it returns
// the device client subscribed to its config and processed topics.
func onlineDevice(t *testing.T, h *Hub, c apiClient, tok, id string) *client {
	t.Helper()
	dev := mustDial(t, h.MQTTAddr(), id)
	dev.subscribe(t, "kaiser/god/esp/"+id+"/config", "kaiser/god/esp/"+id+"/sensor/+/processed")
	hb := "kaiser/god/esp/" + id + "/system/heartbeat"
	if err := dev.publish(hb, heartbeat(61), false); err != nil {
		t.Fatal(err)
	}
	waitDevice(t, h, id, "pending_approval")
	if r := c.do("POST", "/api/v1/esp/devices/"+id+"/approve", tok, nil); r.status != 200 {
		t.Fatalf("approve: %s", r.raw)
	}
	if err := dev.publish(hb, heartbeat(121), false); err != nil {
		t.Fatal(err)
	}
	waitDevice(t, h, id, "online")
	return dev
}

func waitDevice(t *testing.T, h *Hub, id, status string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if d, err := h.Devices.Get(id); err == nil && d.Status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never %s", id, status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// answerConfig waits for a config message and answers like the baseline
// firmware: one reply per section, the empty actuator section an error.
func answerConfig(t *testing.T, dev *client, id string, sensorStatus string) map[string]any {
	t.Helper()
	var cfg map[string]any
	for cfg == nil {
		m := dev.next(t, 5*time.Second)
		if strings.HasSuffix(m.topic, "/config") {
			_ = json.Unmarshal([]byte(m.payload), &cfg)
		}
	}
	topic := "kaiser/god/esp/" + id + "/config_response"
	n := len(cfg["sensors"].([]any))
	if sensorStatus == "success" {
		_ = dev.publish(topic, fmt.Sprintf(`{"status":"success","type":"sensor","count":%d,`+
			`"message":"Configured %d sensor(s) successfully"}`, n, n), true)
	} else {
		_ = dev.publish(topic, `{"status":"error","type":"sensor","count":0,`+
			`"message":"Sensor config missing required field 'sensor_name'",`+
			`"error_code":"MISSING_FIELD","failed_item":{"gpio":34}}`, true)
	}
	_ = dev.publish(topic, `{"status":"error","type":"actuator","count":0,`+
		`"message":"Actuator config array is empty","error_code":"MISSING_FIELD"}`, true)
	return cfg
}

func waitConfigStatus(t *testing.T, c apiClient, tok, path, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	for {
		r := c.do("GET", path, tok, nil)
		if r.body["config_status"] == want {
			return r.body
		}
		if time.Now().After(deadline) {
			t.Fatalf("config_status never %s: %s", want, r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sensorMsg(raw int, ts int64) string {
	return fmt.Sprintf(`{"esp_id":"ESP_A1B2C3","zone_id":"","subzone_id":"","gpio":34,"sensor_type":"ph",`+
		`"raw":%d,"value":0.00,"unit":"","quality":"fair","ts":%d,"raw_mode":true}`, raw, ts)
}

func TestSensorPipelineEndToEnd(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	admin, _, _ := setupUsers(t, c)
	ws := dialWS(t, h, admin, "dash")
	dev := onlineDevice(t, h, c, admin, "ESP_A1B2C3")

	// Sensor config → config push → device answers → applied.
	r := c.do("POST", "/api/v1/sensors/ESP_A1B2C3/34", admin, map[string]any{
		"sensor_type":   "ph",
		"name":          "pH bed north",
		"threshold_min": 5.0,
		"threshold_max": 8.0,
	})
	if r.status != 200 || r.body["config_sent"] != true || r.body["processing_mode"] != "pi_enhanced" {
		t.Fatalf("upsert: %d %s", r.status, r.raw)
	}
	cfg := answerConfig(t, dev, "ESP_A1B2C3", "success")
	item := cfg["sensors"].([]any)[0].(map[string]any)
	if item["gpio"] != 34.0 ||
		item["sensor_type"] != "ph" ||
		item["sensor_name"] != "pH bed north" ||
		len(cfg["actuators"].([]any)) != 0 {
		t.Fatalf("config message: %v", cfg)
	}
	waitConfigStatus(t, c, admin, "/api/v1/sensors/ESP_A1B2C3/34", "applied")
	ws.await(t, func(m map[string]any) bool {
		d, _ := m["data"].(map[string]any)
		return m["type"] == "config_response" && d["status"] == "success" && d["config_type"] == "sensor"
	})

	// PH1: raw 2048 → 6.47 fair; stored, echoed, on the WebSocket.
	ts := time.Now().Unix()
	if err := dev.publish("kaiser/god/esp/ESP_A1B2C3/sensor/34/data", sensorMsg(2048, ts), true); err != nil {
		t.Fatal(err)
	}
	var echo message
	for echo.topic == "" {
		if m := dev.next(t, 5*time.Second); strings.HasSuffix(m.topic, "/processed") {
			echo = m
		}
	}
	if echo.topic != "kaiser/god/esp/ESP_A1B2C3/sensor/34/processed" ||
		!strings.Contains(echo.payload, `"processed_value":6.47,"unit":"pH","quality":"fair"`) {
		t.Fatalf("echo: %+v", echo)
	}
	ws.await(t, func(m map[string]any) bool {
		d, _ := m["data"].(map[string]any)
		return m["type"] == "sensor_data" && d["processed_value"] == 6.47 && d["raw_value"] == 2048.0
	})
	// The same message again, retained: stored once.
	if err := dev.publish("kaiser/god/esp/ESP_A1B2C3/sensor/34/data", sensorMsg(2048, ts), true); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, h, "ESP_A1B2C3", "duplicate", 1)
	flushReadings(t, h)
	r = c.do("GET", "/api/v1/sensors/data?esp_id=ESP_A1B2C3&gpio=34", admin, nil)
	rows := r.body["readings"].([]any)
	if len(rows) != 1 ||
		rows[0].(map[string]any)["processed_value"] != 6.47 ||
		rows[0].(map[string]any)["processing_mode"] != "pi_enhanced" {
		t.Fatalf("history: %s", r.raw)
	}

	// The firmware's HTTP call: compact reply, exact length, CRLF CRLF.
	resp := rawHTTP(t, h.HTTPAddr(), `{"esp_id":"ESP_A1B2C3","gpio":34,"sensor_type":"ph",`+
		`"raw_value":2048,"timestamp":183422,"metadata":{}}`)
	if !strings.Contains(resp, "\r\n\r\n"+
		`{"success":true,"processed_value":6.47,"unit":"pH","quality":"fair","timestamp":`) ||
		!strings.HasSuffix(resp, "}\r\n\r\n") {
		t.Fatalf("process reply: %q", resp)
	}
	// Unknown device: raw fallback, still 200.
	if resp := rawHTTP(t, h.HTTPAddr(), `{"esp_id":"ESP_UNKNWN","gpio":34,"sensor_type":"ph",`+
		`"raw_value":4294967295,"timestamp":1,"metadata":{}}`,
	); !strings.Contains(resp, `"processed_value":999999999,"unit":"raw","quality":"fair"`) {
		t.Fatalf("fallback: %q", resp)
	}

	// Critical breach: one alert however many readings.
	for i := 1; i <= 3; i++ {
		_ = dev.publish("kaiser/god/esp/ESP_A1B2C3/sensor/34/data", sensorMsg(0, ts+int64(i)), false) // 12.25 pH > 8
	}
	ws.await(t, func(m map[string]any) bool {
		d, _ := m["data"].(map[string]any)
		return m["type"] == "notification" && d["severity"] == "critical"
	})
	waitIngestIdle(t, h)
	r = c.do("GET", "/api/v1/notifications?source=sensor_threshold", admin, nil)
	list := r.body["data"].([]any)
	if len(list) != 1 {
		t.Fatalf("alerts: %s", r.raw)
	}
	n := list[0].(map[string]any)
	if n["status"] != "active" || n["occurrence_count"] != 3.0 || n["correlation_id"] != "threshold_ESP_A1B2C3_34_ph" {
		t.Fatalf("alert: %v", n)
	}
	id := n["id"].(string)
	if r := c.do("PATCH", "/api/v1/notifications/"+id+"/acknowledge", admin, nil); r.body["status"] != "acknowledged" {
		t.Fatalf("ack: %s", r.raw)
	}
	if r := c.do("PATCH", "/api/v1/notifications/"+id+"/resolve", admin, nil); r.body["status"] != "resolved" {
		t.Fatalf("resolve: %s", r.raw)
	}
	// A breach right after a manual resolve does not re-open within the dedup window.
	_ = dev.publish("kaiser/god/esp/ESP_A1B2C3/sensor/34/data", sensorMsg(0, ts+10), false)
	waitIngestIdle(t, h)
	if r := c.do("GET", "/api/v1/notifications?source=sensor_threshold", admin, nil); len(r.body["data"].([]any)) != 1 {
		t.Fatalf("re-opened within the dedup window: %s", r.raw)
	}

	// A config the device refuses → failed with the firmware's code.
	c.do("POST", "/api/v1/sensors/ESP_A1B2C3/35", admin, map[string]any{"sensor_type": "ec"})
	answerConfig(t, dev, "ESP_A1B2C3", "error")
	body := waitConfigStatus(t, c, admin, "/api/v1/sensors/ESP_A1B2C3/35", "failed")
	if body["config_error_code"] != "MISSING_FIELD" {
		t.Fatalf("failed push: %v", body)
	}
}

func waitCounter(t *testing.T, h *Hub, id, reason string, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Ingest.DeviceCounters(id).Dropped[reason] < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s never counted %d × %s: %+v", id, n, reason, h.Ingest.DeviceCounters(id))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitIngestIdle waits until every message received so far is handled.
func waitIngestIdle(t *testing.T, h *Hub) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Ingest.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("ingest did not drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func flushReadings(t *testing.T, h *Hub) {
	t.Helper()
	waitIngestIdle(t, h)
	if err := h.Readings.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// rawHTTP sends the firmware's exact request and returns the raw response.
func rawHTTP(t *testing.T, addr, body string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/sensors/process HTTP/1.1\r\n"+
		"Host: %s\r\n"+
		"Content-Type: application/json\r\n"+
		"Content-Length: %d\r\n"+
		"Connection: close\r\n"+
		"\r\n"+
		"%s", addr, len(body), body)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(bufio.NewReader(conn))
	resp := string(b)
	head, payload, _ := strings.Cut(resp, "\r\n\r\n")
	var cl int
	for _, l := range strings.Split(head, "\r\n") {
		if v, ok := strings.CutPrefix(l, "Content-Length: "); ok {
			fmt.Sscan(v, &cl)
		}
	}
	if cl != len(payload) || strings.Contains(head, "chunked") {
		t.Fatalf("Content-Length %d for a %d-byte body: %q", cl, len(payload), resp)
	}
	return resp
}
