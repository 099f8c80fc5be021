package hub

import (
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
)

// A mock device runs inside the hub over the real broker: created approved,
// online at its first heartbeat, readings flow, an override is published at
// once, stopping takes it offline (its last will), deleting removes it.
func TestMockDeviceLifecycle(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	admin, operator, _ := setupUsers(t, c)
	events := h.Events.Subscribe(1024)
	defer h.Events.Unsubscribe(events)
	body := map[string]any{
		"esp_id":                     "MOCK_7F3A91C2",
		"auto_heartbeat":             true,
		"heartbeat_interval_seconds": 5,
		"sensors": []any{map[string]any{
			"gpio":             34,
			"sensor_type":      "ph",
			"raw_value":        2048,
			"interval_seconds": 1,
		}},
	}
	if r := c.do("POST", "/api/v1/debug/mock-esp", operator, body); r.status != 403 {
		t.Fatalf("operator: %d", r.status)
	}
	r := c.do("POST", "/api/v1/debug/mock-esp", admin, body)
	if r.status != 201 || r.body["hardware_type"] != "MOCK_ESP32" {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	awaitEvent(t, events, 5*time.Second, statusIs("MOCK_7F3A91C2", device.StatusOnline, "heartbeat"))
	awaitEvent(t, events, 5*time.Second, func(e eventT) bool {
		d, ok := sensorData(e)
		return ok && d.EspID == "MOCK_7F3A91C2" && d.RawValue == 2048.0
	})
	if r := c.do("POST", "/api/v1/debug/mock-esp/MOCK_7F3A91C2/sensors/34/value", admin, map[string]any{
		"raw_value": 1000,
	}); r.status != 200 {
		t.Fatalf("override: %s", r.raw)
	}
	awaitEvent(t, events, 5*time.Second, func(e eventT) bool {
		d, ok := sensorData(e)
		return ok && d.EspID == "MOCK_7F3A91C2" && d.RawValue == 1000.0
	})
	if r := c.do(
		"POST", "/api/v1/debug/mock-esp/MOCK_7F3A91C2/heartbeat", admin, nil,
	); r.status != 200 || r.body["message_published"] != true {
		t.Fatalf("heartbeat: %s", r.raw)
	}
	// More sensors, batch overrides, an actuator, the message log.
	if r := c.do("POST", "/api/v1/debug/mock-esp/MOCK_7F3A91C2/sensors", admin, map[string]any{
		"gpio":             35,
		"sensor_type":      "ec",
		"raw_value":        1500,
		"interval_seconds": 1,
	}); r.status != 200 {
		t.Fatalf("add sensor: %s", r.raw)
	}
	if r := c.do("POST", "/api/v1/debug/mock-esp/MOCK_7F3A91C2/sensors/batch", admin, map[string]any{
		"values": map[string]any{"34": 1111, "35": 2222},
	}); r.status != 200 {
		t.Fatalf("batch: %s", r.raw)
	}
	awaitEvent(t, events, 5*time.Second, func(e eventT) bool {
		d, ok := sensorData(e)
		return ok && d.GPIO == 35 && d.RawValue == 2222.0
	})
	if r := c.do("POST", "/api/v1/debug/mock-esp/MOCK_7F3A91C2/actuators", admin, map[string]any{
		"gpio":          5,
		"actuator_type": "pump",
		"state":         true,
	}); r.status != 200 {
		t.Fatalf("actuator: %s", r.raw)
	}
	if r := c.do("POST", "/api/v1/debug/mock-esp/MOCK_7F3A91C2/emergency-stop", admin, nil); r.status != 200 {
		t.Fatalf("emergency: %s", r.raw)
	}
	r = c.do("GET", "/api/v1/debug/mock-esp/MOCK_7F3A91C2/messages?limit=500", admin, nil)
	seen := map[string]bool{}
	for _, m := range r.body["messages"].([]any) {
		seen[m.(map[string]any)["topic"].(string)] = true
	}
	for _, topic := range []string{
		"kaiser/god/esp/MOCK_7F3A91C2/actuator/5/status",
		"kaiser/god/esp/MOCK_7F3A91C2/actuator/5/alert",
		"kaiser/god/esp/MOCK_7F3A91C2/sensor/35/data",
		"kaiser/god/esp/MOCK_7F3A91C2/system/heartbeat",
	} {
		if !seen[topic] {
			t.Fatalf("message log lacks %s: %s", topic, r.raw)
		}
	}
	if r := c.do("POST", "/api/v1/debug/mock-esp/MOCK_7F3A91C2/simulation/stop", admin, nil); r.status != 200 {
		t.Fatalf("stop: %s", r.raw)
	}
	awaitEvent(t, events, 5*time.Second, statusIs("MOCK_7F3A91C2", device.StatusOffline, "lwt"))
	if r := c.do("GET", "/api/v1/debug/mock-esp", admin, nil); r.body["total"] != 1.0 {
		t.Fatalf("list: %s", r.raw)
	}
	if r := c.do("DELETE", "/api/v1/debug/mock-esp/MOCK_7F3A91C2", admin, nil); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	if r := c.do("GET", "/api/v1/debug/mock-esp/MOCK_7F3A91C2", admin, nil); r.status != 404 {
		t.Fatalf("after delete: %d", r.status)
	}
}
