package hub

import (
	"slices"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
)

// A mock device over the real broker shows what clients render
// (docs/api.md §6.2, §16.1): created in a zone it keeps, with a device-processed sensor
// whose fractional value arrives unchanged, and a pump configured through the
// REST route. The mock's command route runs the hub's command path, so the
// mock's status makes the pump confirmed on in the device object; esp_health
// over the WebSocket counts the configured sensor and actuator; under a
// global emergency stop the mock's command is refused like any device's.
func TestDeviceObjectOfAMockEndToEnd(t *testing.T) {
	const id = "MOCK_D0B1EC"
	const base = "/api/v1/debug/mock-esp/" + id
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	admin, operator, viewer := setupUsers(t, c)
	events := h.Events.Subscribe(4096)
	defer h.Events.Unsubscribe(events)
	ws := dialWS(t, h, viewer, "dashboard")

	r := c.do("POST", "/api/v1/debug/mock-esp", admin, map[string]any{
		"esp_id":                     id,
		"zone_id":                    "greenhouse_1",
		"zone_name":                  "Greenhouse 1",
		"auto_heartbeat":             true,
		"heartbeat_interval_seconds": 60,
		"sensors": []any{map[string]any{
			"gpio":        34,
			"sensor_type": "ph",
			"raw_value":   6.25,
			"raw_mode":    false,
			"unit":        "pH",
		}},
	})
	if r.status != 201 || r.body["zone_id"] != "greenhouse_1" {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	// Online, and its first reading arrives with the fractional value unchanged.
	awaitEach(t, events, statusIs(id, device.StatusOnline, "heartbeat"), func(e eventT) bool {
		d, ok := sensorData(e)
		return ok && d.EspID == id && d.ProcessedValue != nil && *d.ProcessedValue == 6.25
	})

	// The pump is configured; the config push reaches the mock, whose status confirms it off.
	pump := map[string]any{"actuator_type": "pump", "name": "Main pump"}
	if r := c.do("POST", "/api/v1/actuators/"+id+"/5", operator, pump); r.status != 200 {
		t.Fatalf("configure: %d %s", r.status, r.raw)
	}
	awaitEvent(t, events, 5*time.Second, actuatorIs(id, 5, "off"))

	// The mock's command goes through the hub's path; the mock's status confirms it.
	r = c.do("POST", base+"/actuators/5/command", admin, map[string]any{"command": "ON"})
	if r.status != 200 || r.body["success"] != true || r.body["command"] != "ON" {
		t.Fatalf("mock command: %d %s", r.status, r.raw)
	}
	awaitEvent(t, events, 5*time.Second, actuatorIs(id, 5, "on"))

	obj := c.do("GET", "/api/v1/esp/devices/"+id, viewer, nil).body
	if obj["zone_id"] != "greenhouse_1" || obj["sensor_count"] != 1.0 || obj["actuator_count"] != 1.0 {
		t.Fatalf("device object: %v", obj)
	}
	for _, k := range []string{"wifi_rssi", "heap_free", "uptime"} {
		if _, ok := obj[k].(float64); !ok {
			t.Errorf("%s = %v, want the last heartbeat's number", k, obj[k])
		}
	}
	sensor := only(t, obj, "sensors")
	if raw, ok := sensor["raw_value"].(float64); !ok || raw != 6 || sensor["processed_value"] != 6.25 ||
		sensor["unit"] != "pH" || sensor["last_read"] == nil {
		t.Fatalf("sensor: %v", sensor)
	}
	act := only(t, obj, "actuators")
	if act["gpio"] != 5.0 || act["actuator_type"] != "pump" || act["state"] != true || act["confirmed_state"] != "on" ||
		act["stale"] != false || act["pwm_value"] != 1.0 || act["emergency_stopped"] != false {
		t.Fatalf("actuator: %v", act)
	}
	hist := c.do("GET", "/api/v1/actuators/"+id+"/5/history?limit=10", viewer, nil)
	if !issuedBy(hist, "simulator:"+id) {
		t.Fatalf("history: %s", hist.raw)
	}

	// The mock lists its real actuator and still believes its zone.
	mock := c.do("GET", base, admin, nil).body
	if a := only(t, mock, "actuators"); a["gpio"] != 5.0 || a["state"] != true || a["actuator_type"] != "pump" {
		t.Fatalf("mock actuators: %v", mock["actuators"])
	}
	if d, _ := h.Devices.Get(id); d.Metadata["reported_zone_id"] != "greenhouse_1" {
		t.Fatalf("the node reports zone %v", d.Metadata["reported_zone_id"])
	}

	// esp_health has integer counts from the first heartbeat on, and counts
	// the pump once it is configured.
	if r := c.do("POST", base+"/heartbeat", admin, nil); r.status != 200 {
		t.Fatalf("heartbeat: %d %s", r.status, r.raw)
	}
	ws.await(t, func(m map[string]any) bool {
		if !wsEvent("esp_health", id, "online")(m) {
			return false
		}
		d := m["data"].(map[string]any)
		sensors, ok1 := d["sensor_count"].(float64)
		actuators, ok2 := d["actuator_count"].(float64)
		if !ok1 || !ok2 || sensors != 1 {
			t.Fatalf("esp_health counts: %v", d)
		}
		return actuators == 1
	})

	// Latched: the mock's command is refused by the hub's latch check.
	if r := c.do("POST", "/api/v1/actuators/emergency_stop", operator, map[string]any{"reason": "test"}); r.status != 200 {
		t.Fatalf("emergency stop: %d %s", r.status, r.raw)
	}
	r = c.do("POST", base+"/actuators/5/command", admin, map[string]any{"command": "ON"})
	if r.status != 409 || errCode(r) != "EMERGENCY_STOP_ACTIVE" {
		t.Fatalf("latched mock command: %d %s", r.status, r.raw)
	}
	awaitEvent(t, events, 5*time.Second, actuatorIs(id, 5, "off"))
	act = only(t, c.do("GET", "/api/v1/esp/devices/"+id, viewer, nil).body, "actuators")
	if act["emergency_stopped"] != true || act["state"] != false {
		t.Fatalf("latched actuator: %v", act)
	}
}

// awaitEach waits until every pred has matched an event, in any order.
func awaitEach(t *testing.T, sub *event.Subscription, preds ...func(eventT) bool) {
	t.Helper()
	left := slices.Clone(preds)
	awaitEvent(t, sub, 5*time.Second, func(e eventT) bool {
		left = slices.DeleteFunc(left, func(p func(eventT) bool) bool { return p(e) })
		return len(left) == 0
	})
}

func actuatorIs(espID string, gpio int, state string) func(eventT) bool {
	return func(e eventT) bool {
		d, ok := e.Data.(event.ActuatorStatus)
		return ok && d.EspID == espID && d.GPIO == gpio && d.State == state
	}
}

// only is the single element of a list field of body.
func only(t *testing.T, body map[string]any, field string) map[string]any {
	t.Helper()
	list, _ := body[field].([]any)
	if len(list) != 1 {
		t.Fatalf("%s: %v, want one", field, body[field])
	}
	return list[0].(map[string]any)
}

func issuedBy(hist reply, who string) bool {
	entries, _ := hist.body["entries"].([]any)
	for _, e := range entries {
		if e.(map[string]any)["issued_by"] == who {
			return true
		}
	}
	return false
}
