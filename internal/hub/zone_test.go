package hub

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// awaitTopic returns the next message the device gets on a topic ending in
// /suffix, skipping others (the config push after approval).
func awaitTopic(t *testing.T, dev *client, suffix string) (string, map[string]any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m := dev.next(t, time.Until(deadline))
		if strings.HasSuffix(m.topic, "/"+suffix) {
			var p map[string]any
			if err := json.Unmarshal([]byte(m.payload), &p); err != nil {
				t.Fatalf("%s: %v", m.topic, err)
			}
			return m.topic, p
		}
	}
	t.Fatalf("no %s message", suffix)
	return "", nil
}

// Issue 9 acceptance: zone assignment → zone/assign on the wire → the
// device's ack → zone_assignment on the WebSocket; then a subzone the same
// way. The device is a plain MQTT client answering like the baseline
// firmware (docs/protocol.md §3.1.7, §3.1.8) under kaiser id god.
func TestZoneAssignmentEndToEnd(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	_, operator, viewer := setupUsers(t, c)
	const id = "ESP_A1B2C3"
	dev := onlineDevice(t, h, c, operator, id)
	dev.subscribe(t, "kaiser/god/esp/"+id+"/zone/assign", "kaiser/god/esp/"+id+"/subzone/assign")
	ws := dialWS(t, h, viewer, "zones")

	r := c.do("POST", "/api/v1/zone/devices/"+id+"/assign", operator, map[string]any{
		"zone_id":        "Greenhouse_1",
		"master_zone_id": "greenhouse",
		"zone_name":      "Greenhouse 1",
	})
	if r.status != 200 || r.body["mqtt_sent"] != true || r.body["ack_received"] != false ||
		r.body["reboot_required"] != false {
		t.Fatalf("assign: %d %s", r.status, r.raw)
	}

	topic, p := awaitTopic(t, dev, "zone/assign")
	if topic != "kaiser/god/esp/"+id+"/zone/assign" || p["zone_id"] != "greenhouse_1" ||
		p["master_zone_id"] != "greenhouse" || p["zone_name"] != "Greenhouse 1" || p["kaiser_id"] != "god" ||
		p["correlation_id"] != r.body["correlation_id"] {
		t.Fatalf("on the wire: %s %v", topic, p)
	}
	if v := c.do("GET", "/api/v1/zone/devices/"+id, viewer, nil); v.body["pending_zone_assignment"] == nil {
		t.Fatalf("not pending before the ack: %s", v.raw)
	}

	ack := `{"esp_id":"` + id + `","status":"zone_assigned","zone_id":"greenhouse_1","master_zone_id":"greenhouse","ts":1767600940}`
	if err := dev.publish("kaiser/god/esp/"+id+"/zone/ack", ack, true); err != nil {
		t.Fatal(err)
	}
	ev := ws.await(t, wsEvent("zone_assignment", id, "zone_assigned"))
	if d := ev["data"].(map[string]any); d["zone_id"] != "greenhouse_1" || d["master_zone_id"] != "greenhouse" {
		t.Fatalf("event %v", ev)
	}

	v := c.do("GET", "/api/v1/zone/devices/"+id, viewer, nil)
	if v.body["pending_zone_assignment"] != nil || v.body["zone_confirmed_at"] == nil || v.body["zone_id"] != "greenhouse_1" {
		t.Fatalf("after the ack: %s", v.raw)
	}
	if d := c.do("GET", "/api/v1/esp/devices/"+id, viewer, nil); d.body["zone_id"] != "greenhouse_1" ||
		d.body["master_zone_id"] != "greenhouse" || d.body["zone_name"] != "Greenhouse 1" {
		t.Fatalf("the device object does not show its zone: %s", d.raw)
	}
	if z := c.do("GET", "/api/v1/zones/greenhouse_1", viewer, nil); z.status != 200 || z.body["device_count"] != 1.0 {
		t.Fatalf("zone created on the fly: %d %s", z.status, z.raw)
	}

	r = c.do("POST", "/api/v1/subzone/devices/"+id+"/subzones/assign", operator, map[string]any{
		"subzone_id":     "bed_north",
		"subzone_name":   "Bed north",
		"assigned_gpios": []int{34, 5},
	})
	if r.status != 200 || r.body["mqtt_sent"] != true {
		t.Fatalf("subzone assign: %d %s", r.status, r.raw)
	}
	_, p = awaitTopic(t, dev, "subzone/assign")
	if p["subzone_id"] != "bed_north" || p["parent_zone_id"] != "greenhouse_1" || p["safe_mode_active"] != false {
		t.Fatalf("subzone on the wire: %v", p)
	}
	sack := `{"esp_id":"` + id + `","status":"subzone_assigned","subzone_id":"bed_north","timestamp":3712}`
	if err := dev.publish("kaiser/god/esp/"+id+"/subzone/ack", sack, true); err != nil {
		t.Fatal(err)
	}
	ws.await(t, wsEvent("subzone_assignment", id, "subzone_assigned"))
	if s := c.do("GET", "/api/v1/subzone/devices/"+id+"/subzones/bed_north", viewer, nil); s.body["status"] != "active" {
		t.Fatalf("subzone after the ack: %s", s.raw)
	}

	// The baseline has no subzone safe mode: refused, nothing published.
	r = c.do("POST", "/api/v1/subzone/devices/"+id+"/subzones/bed_north/safe-mode", operator, nil)
	if r.status != 409 || errCode(r) != "NOT_SUPPORTED_BY_FIRMWARE" {
		t.Fatalf("safe mode on the baseline: %d %s", r.status, r.raw)
	}
}

// docs/protocol.md A3, A4: a device that publishes under an empty kaiser id
// hears zone/assign on kaiser/god; the assignment moves its root, and the
// hub reports that it needs a reboot instead of hiding it.
func TestZoneAssignmentToADeviceWithoutKaiserID(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	_, operator, viewer := setupUsers(t, c)
	const id = "ESP_D0D0D0"
	dev := mustDial(t, h.MQTTAddr(), id)
	dev.subscribe(t, "kaiser/god/esp/"+id+"/zone/assign")
	hb := "kaiser//esp/" + id + "/system/heartbeat"
	if err := dev.publish(hb, heartbeat(61), false); err != nil {
		t.Fatal(err)
	}
	waitDevice(t, h, id, "pending_approval")
	if r := c.do("POST", "/api/v1/esp/devices/"+id+"/approve", operator, nil); r.status != 200 {
		t.Fatalf("approve: %s", r.raw)
	}
	if err := dev.publish(hb, heartbeat(121), false); err != nil {
		t.Fatal(err)
	}
	waitDevice(t, h, id, "online")

	r := c.do("POST", "/api/v1/zone/devices/"+id+"/assign", operator, map[string]any{"zone_id": "tent"})
	if r.status != 200 || r.body["reboot_required"] != true || r.body["mqtt_topic"] != "kaiser/god/esp/"+id+"/zone/assign" {
		t.Fatalf("assign: %d %s", r.status, r.raw)
	}
	_, p := awaitTopic(t, dev, "zone/assign")
	if p["kaiser_id"] != "god" || p["zone_id"] != "tent" {
		t.Fatalf("on the wire: %v", p)
	}
	if d := c.do("GET", "/api/v1/esp/devices/"+id, viewer, nil); d.body["reboot_required"] != true {
		t.Fatalf("device object hides the deafness: %s", d.raw)
	}

	// The firmware acks on its new root; the record follows it (A4).
	if err := dev.publish("kaiser/god/esp/"+id+"/zone/ack", `{"status":"zone_assigned","zone_id":"tent","ts":0}`, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v := c.do("GET", "/api/v1/zone/devices/"+id, viewer, nil)
		if v.body["kaiser_id"] == "god" && v.body["pending_zone_assignment"] == nil {
			if v.body["reboot_required"] != true {
				t.Fatalf("reboot_required cleared without a reboot: %s", v.raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ack not applied: %s", v.raw)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A subzone cannot reach it until it reboots.
	r = c.do("POST", "/api/v1/subzone/devices/"+id+"/subzones/assign", operator,
		map[string]any{"subzone_id": "north", "assigned_gpios": []int{4}})
	if r.status != 409 || errCode(r) != "DEVICE_UNREACHABLE" {
		t.Fatalf("subzone for a deaf device: %d %s", r.status, r.raw)
	}
}

// An approval that names a zone performs the assignment (docs/api.md §6.3):
// the zone is created on the fly, stored on the device, and sent once the
// device is online after its approval.
func TestApprovalWithZoneAssigns(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	_, operator, viewer := setupUsers(t, c)
	const id = "ESP_C0FFEE"
	dev := mustDial(t, h.MQTTAddr(), id)
	dev.subscribe(t, "kaiser/god/esp/"+id+"/zone/assign")
	hb := "kaiser/god/esp/" + id + "/system/heartbeat"
	if err := dev.publish(hb, heartbeat(61), false); err != nil {
		t.Fatal(err)
	}
	waitDevice(t, h, id, "pending_approval")

	r := c.do("POST", "/api/v1/esp/devices/"+id+"/approve", operator, map[string]any{
		"zone_id":   "Bench_A",
		"zone_name": "Bench A",
	})
	if r.status != 200 || r.body["status"] != "approved" {
		t.Fatalf("approve: %d %s", r.status, r.raw)
	}
	if d := c.do("GET", "/api/v1/esp/devices/"+id, viewer, nil); d.body["zone_id"] != "bench_a" || d.body["zone_name"] != "Bench A" {
		t.Fatalf("the approval's zone is not on the device: %s", d.raw)
	}
	if z := c.do("GET", "/api/v1/zones/bench_a", viewer, nil); z.status != 200 {
		t.Fatalf("zone not created: %d %s", z.status, z.raw)
	}

	if err := dev.publish(hb, heartbeat(121), false); err != nil {
		t.Fatal(err)
	}
	if _, p := awaitTopic(t, dev, "zone/assign"); p["zone_id"] != "bench_a" || p["zone_name"] != "Bench A" {
		t.Fatalf("on the wire: %v", p)
	}

	// An archived zone is refused, and the answer says the approval stands.
	if r := c.do("POST", "/api/v1/zones/bench_a/archive", operator, nil); r.status != 200 {
		t.Fatalf("archive: %d %s", r.status, r.raw)
	}
	const other = "ESP_C0FFE2"
	dev2 := mustDial(t, h.MQTTAddr(), other)
	if err := dev2.publish("kaiser/god/esp/"+other+"/system/heartbeat", heartbeat(61), false); err != nil {
		t.Fatal(err)
	}
	waitDevice(t, h, other, "pending_approval")
	r = c.do("POST", "/api/v1/esp/devices/"+other+"/approve", operator, map[string]any{"zone_id": "bench_a"})
	if r.status != 409 || !strings.Contains(r.raw, `"INVALID_STATE"`) || !strings.Contains(r.raw, `"approved":true`) {
		t.Fatalf("archived zone: %d %s", r.status, r.raw)
	}
	waitDevice(t, h, other, "approved")
}
