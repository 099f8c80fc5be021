package hub

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/kaiserhub/kaiser/internal/api/healthapi"
	"github.com/kaiserhub/kaiser/internal/broker"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/sim"
)

const credID = "ESP_C0FFEE"

// issueCredentials asks the route for id's credentials as tok.
func issueCredentials(t *testing.T, c apiClient, tok, id string) (string, reply) {
	t.Helper()
	r := c.do("POST", "/api/v1/esp/devices/"+id+"/mqtt-credentials", tok, nil)
	pw, _ := r.body["password"].(string)
	return pw, r
}

// auditDetails returns the details of the audit entries of one type, oldest first.
func auditDetails(t *testing.T, h *Hub, c apiClient, tok, eventType string) []map[string]any {
	t.Helper()
	if err := h.Store.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := c.do("GET", "/api/v1/audit?event_type="+eventType, tok, nil)
	if r.status != 200 {
		t.Fatalf("audit: %d %s", r.status, r.raw)
	}
	var out []map[string]any
	for _, e := range r.body["data"].([]any) {
		out = append(out, e.(map[string]any)["details"].(map[string]any))
	}
	slices.Reverse(out)
	return out
}

// POST /esp/devices/{esp_id}/mqtt-credentials issues for pending and
// approved devices, shows the password once (not cached, not audited) and
// rotates; unknown ids are 404, rejected and deleted devices 409. In off
// mode credentials are not enforced: a credentialed id still connects
// anonymously, and the health and auth status say the mode is off.
func TestMQTTCredentialsRoute(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	admin, operator, viewer := setupUsers(t, c)
	ctx := context.Background()
	for _, id := range []string{credID, "ESP_PEND01", "ESP_REJD01", "ESP_DELD01"} {
		if _, err := h.Devices.Register(ctx, device.Registration{DeviceID: id}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"ESP_PEND01", "ESP_REJD01"} {
		if _, err := h.Devices.SetPending(ctx, id, "test", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Devices.Reject(ctx, "ESP_REJD01", "test", "not ours"); err != nil {
		t.Fatal(err)
	}
	if err := h.Devices.Delete(ctx, "ESP_DELD01", "test"); err != nil {
		t.Fatal(err)
	}

	if _, r := issueCredentials(t, c, viewer, credID); r.status != 403 {
		t.Fatalf("viewer: %d", r.status)
	}
	first, r := issueCredentials(t, c, operator, credID)
	if r.status != 201 || r.body["success"] != true || r.body["device_id"] != credID || r.body["username"] != credID ||
		len(first) != 26 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("issue: %d %v %s", r.status, r.header, r.raw)
	}
	second, r := issueCredentials(t, c, operator, credID)
	if r.status != 201 || second == first {
		t.Fatalf("rotation: %d %s", r.status, r.raw)
	}
	if _, r := issueCredentials(t, c, operator, "ESP_PEND01"); r.status != 201 {
		t.Fatalf("pending device: %d %s", r.status, r.raw)
	}
	for id, want := range map[string]string{
		"ESP_NOPE01": "404 ESP_NOT_FOUND",
		"ESP_REJD01": "409 INVALID_STATE",
		"ESP_DELD01": "409 INVALID_STATE",
		"bad.id":     "422 VALIDATION_ERROR",
	} {
		if _, r := issueCredentials(t, c, operator, id); fmt.Sprint(r.status, " ", errCode(r)) != want {
			t.Errorf("%s: %d %s, want %s", id, r.status, errCode(r), want)
		}
	}

	issued := auditDetails(t, h, c, admin, "device_credentials_issued")
	if len(issued) != 3 || issued[0]["rotated"] != false || issued[1]["rotated"] != true ||
		issued[0]["esp_id"] != credID || issued[0]["actor"] != "operator" {
		t.Fatalf("audit details %v", issued)
	}
	if all := c.do("GET", "/api/v1/audit", admin, nil); strings.Contains(all.raw, first) || strings.Contains(all.raw, second) {
		t.Fatal("a password is in the audit log")
	}

	// Off mode: the credentials are stored, not enforced.
	w, err := sim.DialWire(h.MQTTAddr(), sim.WireOptions{ClientID: credID})
	if err != nil {
		t.Fatalf("off mode refused an anonymous device with credentials: %v", err)
	}
	w.Kill()
	if r := c.do("GET", "/api/v1/auth/status", "", nil); r.body["mqtt_auth_enabled"] != false {
		t.Fatalf("auth status %s", r.raw)
	}
	hd := c.do("GET", "/api/v1/health/detailed", viewer, nil)
	if hd.body["mqtt"].(map[string]any)["auth_mode"] != "off" ||
		!slices.Contains(hd.body["warnings"].([]any), any(healthapi.MQTTAuthOffWarning)) {
		t.Fatalf("health in off mode: %s", hd.raw)
	}
}

// credNode is a firmware-like MQTT 3.1.1 connection that hears its heartbeat acks.
type credNode struct {
	*sim.Wire
	acks chan string
}

const ackTopic = "kaiser/god/esp/" + credID + "/system/heartbeat/ack"

func dialNode(addr, user, pass string) (*credNode, error) {
	n := &credNode{acks: make(chan string, 16)}
	w, err := sim.DialWire(addr, sim.WireOptions{
		ClientID:    credID,
		Username:    user,
		Password:    pass,
		WillTopic:   "kaiser/god/esp/" + credID + "/system/will",
		WillPayload: []byte(`{"status":"offline","reason":"unexpected_disconnect","timestamp":0}`),
		WillQoS:     1,
		WillRetain:  true,
		OnMessage: func(topic string, payload []byte) {
			if topic == ackTopic {
				n.acks <- string(payload)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	n.Wire = w
	if err := w.Subscribe(ackTopic); err != nil {
		w.Kill()
		return nil, err
	}
	return n, nil
}

// beat publishes a heartbeat and waits for its ack.
func (n *credNode) beat(t *testing.T, uptime int) string {
	t.Helper()
	if err := n.Publish("kaiser/god/esp/"+credID+"/system/heartbeat", []byte(heartbeat(uptime)), false); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-n.acks:
		return a
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat ack")
	}
	return ""
}

func (n *credNode) awaitGone(t *testing.T, why string) {
	t.Helper()
	select {
	case <-n.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("the node stayed connected: %s", why)
	}
}

// dialAuth connects an MQTT 5 client with a username and password.
func dialAuth(t *testing.T, addr, id, pass string) (*paho.Client, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cl := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: id, KeepAlive: 60, CleanStart: true}
	if pass != "" {
		cp.UsernameFlag, cp.Username, cp.PasswordFlag, cp.Password = true, id, true, []byte(pass)
	}
	_, err = cl.Connect(ctx, cp)
	return cl, err
}

// devicesHub starts a hub with --mqtt-auth devices and subscribes to its events.
func devicesHub(t *testing.T) (*Hub, apiClient, *event.Subscription) {
	t.Helper()
	h, c := apiHub(t, Config{MQTTAuth: broker.AuthDevices})
	events := h.Events.Subscribe(1024)
	t.Cleanup(func() { h.Events.Unsubscribe(events) })
	return h, c, events
}

// With --mqtt-auth devices a node registers without credentials, is
// approved, gets credentials and must use them from then on: the
// uncredentialed session is disconnected, an impostor is refused while the
// node stays undisturbed, another device cannot read its commands, a
// rotation disconnects the node and its old password stops working, and
// deleting the device removes its credentials.
func TestDevicesModeEndToEnd(t *testing.T) {
	h, c, events := devicesHub(t)
	defer stopHub(t, h)
	_, operator, viewer := setupUsers(t, c)

	if r := c.do("GET", "/api/v1/auth/status", "", nil); r.body["mqtt_auth_enabled"] != true {
		t.Fatalf("auth status %s", r.raw)
	}
	hd := c.do("GET", "/api/v1/health/detailed", viewer, nil)
	if hd.body["mqtt"].(map[string]any)["auth_mode"] != "devices" ||
		slices.Contains(hd.body["warnings"].([]any), any(healthapi.MQTTAuthOffWarning)) {
		t.Fatalf("health in devices mode: %s", hd.raw)
	}

	// Register without credentials, then approval.
	n, err := dialNode(h.MQTTAddr(), "", "")
	if err != nil {
		t.Fatalf("uncredentialed registration refused: %v", err)
	}
	if a := n.beat(t, 60); !strings.Contains(a, `"status":"pending_approval"`) {
		t.Fatalf("ack %s", a)
	}
	if r := c.do("POST", "/api/v1/esp/devices/"+credID+"/approve", operator, nil); r.status != 200 {
		t.Fatalf("approve: %d %s", r.status, r.raw)
	}
	pw, r := issueCredentials(t, c, operator, credID)
	if r.status != 201 {
		t.Fatalf("issue: %d %s", r.status, r.raw)
	}
	n.awaitGone(t, "its session had no credentials")
	if _, err := dialNode(h.MQTTAddr(), "", ""); err == nil {
		t.Fatal("the credentialed id connected anonymously")
	}

	n, err = dialNode(h.MQTTAddr(), credID, pw)
	if err != nil {
		t.Fatalf("with its credentials: %v", err)
	}
	if a := n.beat(t, 120); !strings.Contains(a, `"status":"online"`) {
		t.Fatalf("ack %s", a)
	}
	awaitEvent(t, events, 5*time.Second, statusIs(credID, device.StatusOnline, "heartbeat"))

	// The impostor is refused and the node keeps its session.
	if _, err := dialAuth(t, h.MQTTAddr(), credID, ""); err == nil {
		t.Fatal("impostor without a password admitted")
	}
	if _, err := dialAuth(t, h.MQTTAddr(), credID, "AAAAAAAAAAAAAAAAAAAAAAAAAA"); err == nil {
		t.Fatal("impostor with a wrong password admitted")
	}
	n.beat(t, 180) // still connected: its will has not fired

	// Another device reads none of its commands.
	if _, err := h.Devices.Register(context.Background(), device.Registration{DeviceID: "ESP_B0B0B0"}, "test"); err != nil {
		t.Fatal(err)
	}
	pwB, _ := issueCredentials(t, c, operator, "ESP_B0B0B0")
	b, err := dialAuth(t, h.MQTTAddr(), "ESP_B0B0B0", pwB)
	if err != nil {
		t.Fatalf("device B: %v", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "kaiser/god/esp/" + credID + "/actuator/+/command", QoS: 1},
	}}); err == nil {
		t.Fatal("device B subscribed to the node's commands")
	}

	// Rotation: the connected node is disconnected; only the new password works.
	rotated, r := issueCredentials(t, c, operator, credID)
	if r.status != 201 {
		t.Fatalf("rotate: %d %s", r.status, r.raw)
	}
	n.awaitGone(t, "its password was rotated")
	if _, err := dialNode(h.MQTTAddr(), credID, pw); err == nil {
		t.Fatal("the old password still works")
	}
	n, err = dialNode(h.MQTTAddr(), credID, rotated)
	if err != nil {
		t.Fatalf("the new password: %v", err)
	}
	n.beat(t, 240)

	// Deleting the device removes its credentials and their session.
	if r := c.do("DELETE", "/api/v1/esp/devices/"+credID, operator, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	n.awaitGone(t, "its device was deleted")
	if h.Credentials.Has(credID) {
		t.Fatal("a deleted device kept its credentials")
	}
	n, err = dialNode(h.MQTTAddr(), "", "")
	if err != nil {
		t.Fatalf("a deleted id may register again: %v", err)
	}
	defer n.Kill()
	if a := n.beat(t, 300); !strings.Contains(a, `"status":"pending_approval"`) {
		t.Fatalf("ack after the deletion %s", a)
	}
}

// In devices mode a mock device connects with credentials the hub issues
// it, and its readings flow.
func TestMockDeviceGetsCredentialsInDevicesMode(t *testing.T) {
	h, c, events := devicesHub(t)
	defer stopHub(t, h)
	admin, _, _ := setupUsers(t, c)
	r := c.do("POST", "/api/v1/debug/mock-esp", admin, map[string]any{
		"esp_id":                     "MOCK_C3ED0001",
		"auto_heartbeat":             true,
		"heartbeat_interval_seconds": 5,
		"sensors": []any{map[string]any{
			"gpio": 34, "sensor_type": "ph", "raw_value": 2048, "interval_seconds": 1,
		}},
	})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	awaitEvent(t, events, 5*time.Second, func(e event.Event) bool {
		d, ok := sensorData(e)
		return ok && d.EspID == "MOCK_C3ED0001"
	})
	if !h.Credentials.Has("MOCK_C3ED0001") {
		t.Fatal("the mock has no credentials")
	}
}
