package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

const adminPassword = "Faults-pass1"

// reply is one HTTP answer of the hub.
type reply struct {
	status int
	body   map[string]any
	raw    string
}

// api calls the hub's REST API as the suite's admin.
func (h *hub) api(method, path, token string, body any) reply {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, "http://"+h.http+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{raw: err.Error()}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// setupAdmin creates the first admin and returns an access token.
func (h *hub) setupAdmin() string {
	h.t.Helper()
	r := h.api("POST", "/api/v1/auth/setup", "", map[string]any{
		"username": "admin",
		"email":    "admin@example.org",
		"password": adminPassword,
	})
	if r.status != http.StatusOK {
		h.t.Fatalf("setup: %d %s", r.status, r.raw)
	}
	return r.body["tokens"].(map[string]any)["access_token"].(string)
}

// login returns a fresh admin token (after a restart).
func (h *hub) login() string {
	h.t.Helper()
	r := h.api("POST", "/api/v1/auth/login", "", map[string]any{"username": "admin", "password": adminPassword})
	if r.status != http.StatusOK {
		h.t.Fatalf("login: %d %s", r.status, r.raw)
	}
	return r.body["tokens"].(map[string]any)["access_token"].(string)
}

// register pre-registers an approved device.
func (h *hub) register(token, id string) {
	h.t.Helper()
	if r := h.api("POST", "/api/v1/esp/devices", token, map[string]any{"device_id": id}); r.status != http.StatusCreated {
		h.t.Fatalf("register %s: %d %s", id, r.status, r.raw)
	}
}

// node is an MQTT client of the suite, speaking as a device would.
type node struct {
	*paho.Client
	conn    net.Conn
	session context.Context
	end     context.CancelFunc
	msgs    chan string
}

// dial connects id to the broker at addr.
func dial(t *testing.T, addr, id string, connect *paho.Connect) (*node, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	n := &node{conn: conn, msgs: make(chan string, 256)}
	n.session, n.end = context.WithCancel(context.Background())
	n.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				select {
				case n.msgs <- pr.Packet.Topic:
				default:
				}
				return true, nil
			}},
		OnServerDisconnect: func(*paho.Disconnect) { n.end() },
		OnClientError:      func(error) { n.end() },
	})
	if connect == nil {
		connect = &paho.Connect{}
	}
	connect.ClientID = id
	connect.KeepAlive = 60
	connect.CleanStart = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := n.Connect(ctx, connect)
	if err == nil && ca.ReasonCode != 0 {
		err = fmt.Errorf("connack reason 0x%x", ca.ReasonCode)
	}
	if err != nil {
		conn.Close()
		n.end()
		return nil, err
	}
	t.Cleanup(n.close)
	return n, nil
}

func mustDial(t *testing.T, addr, id string) *node {
	t.Helper()
	n, err := dial(t, addr, id, nil)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return n
}

func (n *node) close() {
	n.conn.Close()
	n.end()
}

// publish sends at QoS 1 and reports whether the broker acknowledged it
// with success.
func (n *node) publish(topic string, payload []byte, retain bool) error {
	ctx, cancel := context.WithTimeout(n.session, 10*time.Second)
	defer cancel()
	pr, err := n.Publish(ctx, &paho.Publish{
		Topic:   topic,
		QoS:     1,
		Retain:  retain,
		Payload: payload,
	})
	if err != nil {
		return err
	}
	if pr != nil && pr.ReasonCode >= 0x80 {
		return fmt.Errorf("puback reason 0x%x", pr.ReasonCode)
	}
	return nil
}

// readingTopic and reading are a pH reading of gpio 34 of id at device
// time ts (unix seconds): distinct ts are distinct stored rows.
func readingTopic(id string) string { return "kaiser/god/esp/" + id + "/sensor/34/data" }

func reading(id string, ts int64) []byte {
	return fmt.Appendf(nil, `{"esp_id":"%s","gpio":34,"sensor_type":"ph","raw":1,"value":6.5,`+
		`"unit":"pH","quality":"good","ts":%d,"raw_mode":true}`, id, ts)
}
