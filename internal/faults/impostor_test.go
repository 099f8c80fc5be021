package faults

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// credentials issues MQTT credentials for a registered device.
func (h *hub) credentials(token, id string) (username, password string) {
	h.t.Helper()
	r := h.api("POST", "/api/v1/esp/devices/"+id+"/mqtt-credentials", token, nil)
	if r.status != http.StatusCreated {
		h.t.Fatalf("credentials for %s: %d %s", id, r.status, r.raw)
	}
	username, _ = r.body["username"].(string)
	password, _ = r.body["password"].(string)
	if username != id || password == "" {
		h.t.Fatalf("credentials for %s: %s", id, r.raw)
	}
	return username, password
}

func login(user, password string) *paho.Connect {
	return &paho.Connect{
		UsernameFlag: true,
		Username:     user,
		PasswordFlag: true,
		Password:     []byte(password),
	}
}

func heartbeat(uptime int) []byte {
	return []byte(`{"ts":1767600930,"uptime":` + strconv.Itoa(uptime) + `,"heap_free":187432,"wifi_rssi":-61,` +
		`"sensor_count":0,"actuator_count":0}`)
}

// status is a device's status as the API reports it.
func (h *hub) status(token, id string) string {
	h.t.Helper()
	r := h.api("GET", "/api/v1/esp/devices/"+id, token, nil)
	if r.status != http.StatusOK {
		h.t.Fatalf("device %s: %d %s", id, r.status, r.raw)
	}
	s, _ := r.body["status"].(string)
	if s == "" {
		if d, ok := r.body["data"].(map[string]any); ok {
			s, _ = d["status"].(string)
		}
	}
	return s
}

// Promise: with --mqtt-auth devices, a device's id is its own. A client
// using it without the device's password (none, a wrong one, or another
// device's) is refused at CONNECT, and the real node keeps its session:
// its will does not fire and it stays online. Device B may neither read
// A's commands nor publish as A.
func TestImpostorsAndCrossDeviceAccessAreRefused(t *testing.T) {
	h := startHub(t, t.TempDir(), "--mqtt-auth", "devices")
	token := h.setupAdmin()
	const a, b = "ESP_A0A0A0", "ESP_B0B0B0"
	h.register(token, a)
	h.register(token, b)
	userA, passA := h.credentials(token, a)
	userB, passB := h.credentials(token, b)

	will := &paho.WillMessage{Topic: "kaiser/god/esp/" + a + "/system/will", QoS: 1,
		Payload: []byte(`{"status":"offline","reason":"unexpected_disconnect"}`)}
	connA := login(userA, passA)
	connA.WillMessage = will
	nodeA, err := dial(t, h.mqtt, a, connA)
	if err != nil {
		t.Fatalf("the real node with its credentials: %v", err)
	}
	if err := nodeA.publish("kaiser/god/esp/"+a+"/system/heartbeat", heartbeat(61), false); err != nil {
		t.Fatal(err)
	}
	awaitStatus(t, h, token, a, "online")

	for name, connect := range map[string]*paho.Connect{
		"no password":            nil,
		"a wrong password":       login(userA, "not-the-password"),
		"B's password":           login(userB, passB),
		"A's password as user B": login(userB, passA),
	} {
		if imp, err := dial(t, h.mqtt, a, connect); err == nil {
			imp.close()
			t.Errorf("an impostor with %s connected as %s", name, a)
		}
	}
	if nodeA.session.Err() != nil {
		t.Fatal("an impostor's attempt ended the real node's session")
	}
	if err := nodeA.publish("kaiser/god/esp/"+a+"/system/heartbeat", heartbeat(62), false); err != nil {
		t.Fatalf("the real node after the impostors: %v", err)
	}
	if s := h.status(token, a); s != "online" {
		t.Fatalf("the real node is %s after the impostors", s)
	}

	nodeB, err := dial(t, h.mqtt, b, login(userB, passB))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, filter := range []string{
		"kaiser/god/esp/" + a + "/actuator/+/command",
		"kaiser/god/esp/" + a + "/config",
		"kaiser/god/esp/+/actuator/+/command",
		"#",
	} {
		sa, err := nodeB.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
		if err == nil && (len(sa.Reasons) != 1 || sa.Reasons[0] < 0x80) {
			t.Errorf("B subscribed to %s: %+v", filter, sa.Reasons)
		}
	}
	if err := nodeB.publish("kaiser/god/esp/"+a+"/system/heartbeat", heartbeat(1), false); err == nil {
		t.Error("B published a heartbeat as A")
	}
	if nodeA.session.Err() != nil {
		t.Fatal("B's attempts ended A's session")
	}
}

// awaitStatus waits until the API reports the device's status.
func awaitStatus(t *testing.T, h *hub, token, id, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.status(token, id) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become %s (it is %s)", id, want, h.status(token, id))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
