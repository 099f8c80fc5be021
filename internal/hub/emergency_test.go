package hub

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/emergency"
)

// awaitMessage waits for a message on a topic ending in suffix and returns
// its JSON payload.
func awaitMessage(t *testing.T, dev *client, suffix string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-dev.msgs:
			if !strings.HasSuffix(m.topic, suffix) {
				continue
			}
			var p map[string]any
			if err := json.Unmarshal([]byte(m.payload), &p); err != nil {
				t.Fatalf("%s: %v", m.topic, err)
			}
			return p
		case <-deadline:
			t.Fatalf("no message on …%s within %s", suffix, timeout)
		}
	}
}

func latchedDevices(r reply) []string {
	var ids []string
	devs, _ := r.body["devices"].([]any)
	for _, d := range devs {
		ids = append(ids, d.(map[string]any)["esp_id"].(string))
	}
	return ids
}

// A global stop over the real broker: the broadcast reaches the device,
// the latch is reported, a clear inside the 6 s guard is refused, and after
// a hub restart the latch is still in force and the device is re-safed with
// its device stop when it heartbeats again.
func TestEmergencyStopSurvivesRestart(t *testing.T) {
	const id = "ESP_E1E2E3"
	dir := t.TempDir()
	h, c := apiHub(t, Config{DataDir: dir})
	_, op, viewer := setupUsers(t, c)
	dev := onlineDevice(t, h, c, op, id)
	dev.subscribe(t, contract.BroadcastEmergencyTopic, "kaiser/god/esp/"+id+"/actuator/emergency")

	if r := c.do("POST", "/api/v1/actuators/emergency_stop", viewer, map[string]any{"reason": "flood"}); r.status != 403 {
		t.Fatalf("viewer stop: HTTP %d", r.status)
	}
	r := c.do("POST", "/api/v1/actuators/emergency_stop", op, map[string]any{"gpio": 5, "reason": "flood"})
	if r.status != 422 {
		t.Fatalf("gpio without esp_id: HTTP %d", r.status)
	}
	r = c.do("POST", "/api/v1/actuators/emergency_stop", op, map[string]any{"reason": "flood in bed 3"})
	if r.status != 200 || r.body["scope"] != "global" || r.body["latch_persisted"] != true ||
		r.body["devices_stopped"] != 1.0 {
		t.Fatalf("stop: HTTP %d %s", r.status, r.raw)
	}
	incident := r.body["incident_correlation_id"].(string)

	b := awaitMessage(t, dev, "kaiser/broadcast/emergency", 5*time.Second)
	if b["command"] != "emergency_stop" || b["reason"] != "operator_stop" || b["auth_token"] == "" {
		t.Fatalf("broadcast %v", b)
	}
	if ts, ok := b["timestamp"].(string); !ok || !strings.HasSuffix(ts, "Z") {
		t.Fatalf("broadcast timestamp %v", b["timestamp"])
	}

	st := c.do("GET", "/api/v1/actuators/emergency", viewer, nil)
	g, _ := st.body["global"].(map[string]any)
	if st.status != 200 || st.body["active"] != true || g["incident_correlation_id"] != incident ||
		fmt.Sprint(latchedDevices(st)) != "["+id+"]" {
		t.Fatalf("status: %s", st.raw)
	}

	cl := c.do("POST", "/api/v1/actuators/clear_emergency", op, map[string]any{"reason": "dry"})
	details, _ := cl.body["details"].([]any)
	if cl.status != 200 || cl.body["success"] != false || cl.body["still_active"] != true || len(details) != 1 ||
		details[0].(map[string]any)["outcome"] != emergency.OutcomeGuard {
		t.Fatalf("clear inside the guard: %s", cl.raw)
	}
	stopHub(t, h)

	h, c = apiHub(t, Config{DataDir: dir})
	defer stopHub(t, h)
	op = login(t, c, "operator", "Pass-word1")
	st = c.do("GET", "/api/v1/actuators/emergency", op, nil)
	g, _ = st.body["global"].(map[string]any)
	if st.body["active"] != true || g["incident_correlation_id"] != incident ||
		fmt.Sprint(latchedDevices(st)) != "["+id+"]" {
		t.Fatalf("status after restart: %s", st.raw)
	}
	if !h.Emergency.Latched(id) {
		t.Fatal("latch not enforced after restart")
	}

	dev = mustDial(t, h.MQTTAddr(), id)
	dev.subscribe(t, "kaiser/god/esp/"+id+"/actuator/emergency")
	if err := dev.publish("kaiser/god/esp/"+id+"/system/heartbeat", heartbeat(181), false); err != nil {
		t.Fatal(err)
	}
	stop := awaitMessage(t, dev, "/actuator/emergency", 5*time.Second)
	if stop["command"] != "emergency_stop" || stop["auth_token"] != id {
		t.Fatalf("re-safing after the restart: %v", stop)
	}
}

// A device stop on newer firmware: the device got its token when it came
// online, the device stop carries it, and a clear after the guard, answered
// by the device, unlatches it; its rules stay paused.
func TestDeviceStopAndClearWithTheDevicesAnswer(t *testing.T) {
	const id = "ESP_F1F2F3"
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	_, op, _ := setupUsers(t, c)
	root := "kaiser/god/esp/" + id + "/"

	dev := mustDial(t, h.MQTTAddr(), id)
	dev.subscribe(t, root+"system/command", root+"actuator/emergency")
	beat := func(uptime int) {
		t.Helper()
		hb := fmt.Sprintf(`{"ts":1767600930,"uptime":%d,"heap_free":187432,"wifi_rssi":-61,"seq":%d}`, uptime, uptime)
		if err := dev.publish(root+"system/heartbeat", hb, false); err != nil {
			t.Fatal(err)
		}
	}
	beat(61)
	waitDevice(t, h, id, "pending_approval")
	if r := c.do("POST", "/api/v1/esp/devices/"+id+"/approve", op, nil); r.status != 200 {
		t.Fatalf("approve: %s", r.raw)
	}
	beat(121)

	var token string
	for range 2 {
		cmd := awaitMessage(t, dev, "/system/command", 5*time.Second)
		if cmd["command"] != "set_emergency_token" {
			t.Fatalf("system command %v", cmd)
		}
		if cmd["token_type"] == "esp" {
			token, _ = cmd["token"].(string)
		}
		answer := `{"command":"set_emergency_token","success":true,"seq":1}`
		if err := dev.publish(root+"system/command/response", answer, false); err != nil {
			t.Fatal(err)
		}
	}
	if len(token) != 16 {
		t.Fatalf("device token %q", token)
	}

	r := c.do("POST", "/api/v1/actuators/emergency_stop", op, map[string]any{"esp_id": id, "reason": "leak"})
	if r.status != 200 || r.body["scope"] != "device" {
		t.Fatalf("stop: %s", r.raw)
	}
	stopped := time.Now()
	if m := awaitMessage(t, dev, "/actuator/emergency", 5*time.Second); m["command"] != "emergency_stop" ||
		m["auth_token"] != token {
		t.Fatalf("device stop %v", m)
	}
	r = c.do("POST", "/api/v1/actuators/clear-emergency", op, map[string]any{"esp_id": id, "reason": "fixed"})
	if r.status != 200 || r.body["details"].([]any)[0].(map[string]any)["outcome"] != emergency.OutcomeGuard {
		t.Fatalf("clear inside the guard: %s", r.raw)
	}

	// The guard is the behaviour under test: wait it out.
	time.Sleep(time.Until(stopped.Add(emergency.ClearGuard)))
	replies := make(chan reply, 1)
	go func() {
		replies <- c.do("POST", "/api/v1/actuators/clear_emergency", op, map[string]any{"esp_id": id, "reason": "fixed"})
	}()
	m := awaitMessage(t, dev, "/actuator/emergency", 5*time.Second)
	if m["command"] != "clear_emergency" || m["auth_token"] != token {
		t.Fatalf("clear message %v", m)
	}
	cleared := `{"status":"emergency_cleared","timestamp":3725114}`
	if err := dev.publish(root+"actuator/emergency/response", cleared, false); err != nil {
		t.Fatal(err)
	}
	cl := <-replies
	d := cl.body["details"].([]any)[0].(map[string]any)
	if cl.status != 200 || cl.body["success"] != true || cl.body["still_active"] != false ||
		cl.body["devices_cleared"] != 1.0 || d["outcome"] != emergency.OutcomeCleared {
		t.Fatalf("clear: %s", cl.raw)
	}

	st := c.do("GET", "/api/v1/actuators/emergency", op, nil)
	if st.body["active"] != false || fmt.Sprint(st.body["rules_paused"]) != "["+id+"]" {
		t.Fatalf("status after the clear: %s", st.raw)
	}
	a := c.do("GET", "/api/v1/audit?event_type=emergency_stop,emergency_cleared", op, nil)
	if a.status != 200 || a.body["total"] != 3.0 {
		t.Fatalf("audit: %s", a.raw)
	}
}
