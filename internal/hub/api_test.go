package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kaiserhub/kaiser/internal/api"
)

type apiClient struct {
	t    *testing.T
	base string
}

type reply struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
}

func (c apiClient) do(method, path, token string, body any) reply {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, raw: string(raw), header: resp.Header}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func errCode(r reply) string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func apiHub(t *testing.T, cfg Config) (*Hub, apiClient) {
	t.Helper()
	cfg.BcryptCost = 4
	if cfg.LoginLimit == 0 {
		cfg.LoginLimit = 10000
	}
	h := startHub(t, cfg)
	return h, apiClient{t: t, base: "http://" + h.HTTPAddr()}
}

const adminPW = "Admin-pass1"

// setupUsers creates admin, operator and viewer and returns their access tokens.
func setupUsers(t *testing.T, c apiClient) (admin, operator, viewer string) {
	t.Helper()
	r := c.do("POST", "/api/v1/auth/setup", "", map[string]any{
		"username": "admin",
		"email":    "admin@example.org",
		"password": adminPW,
	})
	if r.status != 200 {
		t.Fatalf("setup: %d %s", r.status, r.raw)
	}
	admin = r.body["tokens"].(map[string]any)["access_token"].(string)
	for _, role := range []string{"operator", "viewer"} {
		r := c.do("POST", "/api/v1/users", admin, map[string]any{
			"username": role,
			"email":    role + "@example.org",
			"password": "Pass-word1",
			"role":     role,
		})
		if r.status != 201 {
			t.Fatalf("create %s: %d %s", role, r.status, r.raw)
		}
	}
	return admin, login(t, c, "operator", "Pass-word1"), login(t, c, "viewer", "Pass-word1")
}

func login(t *testing.T, c apiClient, user, pw string) string {
	t.Helper()
	r := c.do("POST", "/api/v1/auth/login", "", map[string]any{"username": user, "password": pw})
	if r.status != 200 {
		t.Fatalf("login %s: %d %s", user, r.status, r.raw)
	}
	return r.body["tokens"].(map[string]any)["access_token"].(string)
}

func fillPath(p string) string {
	return strings.NewReplacer("{esp_id}", "ESP_NOPE01", "{user_id}", "999999", "{client_id}", "c1").Replace(p)
}

// Every mutating route: no token → 401, viewer → 403 unless the route is for
// viewers, operator → 403 exactly on admin routes (docs/api.md §2.4).
func TestPermissionTable(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	_, operator, viewer := setupUsers(t, c)
	checked := 0
	for _, rt := range h.API.Routes() {
		if rt.Method == "GET" || rt.MinRole == "public" || rt.MinRole == "device" {
			continue
		}
		path := fillPath(rt.Path)
		if r := c.do(rt.Method, path, "", map[string]any{}); r.status != 401 || r.header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("%s %s without token: %d", rt.Method, rt.Path, r.status)
		}
		vtok := viewer
		if strings.HasSuffix(rt.Path, "/auth/logout") {
			vtok = login(t, c, "viewer", "Pass-word1")
		}
		r := c.do(rt.Method, path, vtok, map[string]any{})
		if wantForbidden := rt.MinRole != "viewer"; (r.status == 403) != wantForbidden || r.status == 401 {
			t.Errorf("%s %s (min %s) as viewer: %d %s", rt.Method, rt.Path, rt.MinRole, r.status, r.raw)
		}
		tok := operator
		if strings.HasSuffix(rt.Path, "/auth/logout") {
			tok = login(t, c, "operator", "Pass-word1") // logging out must not revoke the shared token
		}
		r = c.do(rt.Method, path, tok, map[string]any{})
		if wantForbidden := rt.MinRole == "admin"; (r.status == 403) != wantForbidden || r.status == 401 {
			t.Errorf("%s %s (min %s) as operator: %d %s", rt.Method, rt.Path, rt.MinRole, r.status, r.raw)
		}
		checked++
	}
	if checked < 15 {
		t.Fatalf("only %d mutating routes checked", checked)
	}
}

func TestValidationAndNotFound(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	admin, operator, _ := setupUsers(t, c)
	r := c.do("POST", "/api/v1/users", admin, `{"username": "x"`)
	if r.status != 422 || !strings.Contains(r.raw, "json_invalid") {
		t.Fatalf("invalid JSON: %d %s", r.status, r.raw)
	}
	r = c.do("POST", "/api/v1/users", admin, map[string]any{
		"username": 5,
		"email":    "a@b.org",
		"password": "short",
		"role":     "god",
	})
	if r.status != 422 {
		t.Fatalf("wrong types: %d %s", r.status, r.raw)
	}
	fields := map[string]bool{}
	for _, e := range r.body["detail"].([]any) {
		loc := e.(map[string]any)["loc"].([]any)
		fields[loc[1].(string)] = true
	}
	for _, f := range []string{"username", "password", "role"} {
		if !fields[f] {
			t.Errorf("field %s not named in %s", f, r.raw)
		}
	}
	r = c.do("GET", "/api/v1/esp/devices?page_size=500", operator, nil)
	if r.status != 422 || !strings.Contains(r.raw, `"page_size"`) || !strings.Contains(r.raw, "less_than_equal") {
		t.Fatalf("out of range: %d %s", r.status, r.raw)
	}
	r = c.do("POST", "/api/v1/esp/devices/ESP_NOPE01/reject", operator, map[string]any{"reason": strings.Repeat("x", 501)})
	if r.status != 422 || !strings.Contains(r.raw, `"reason"`) {
		t.Fatalf("too long: %d %s", r.status, r.raw)
	}
	r = c.do("GET", "/api/v1/esp/devices/bad%20id", operator, nil)
	if r.status != 422 {
		t.Fatalf("bad esp_id: %d %s", r.status, r.raw)
	}
	for _, p := range []string{"/api/v1/esp/devices/ESP_NOPE01", "/api/v1/esp/devices/ESP_NOPE01/health"} {
		if r := c.do("GET", p, operator, nil); r.status != 404 || errCode(r) != "ESP_NOT_FOUND" {
			t.Errorf("%s: %d %s", p, r.status, r.raw)
		}
	}
	if r := c.do("GET", "/api/v1/users/424242", admin, nil); r.status != 404 || errCode(r) != "USER_NOT_FOUND" {
		t.Errorf("unknown user: %d %s", r.status, r.raw)
	}
	if r := c.do("GET", "/api/v1/nope", admin, nil); r.status != 404 || errCode(r) != "NOT_FOUND" {
		t.Errorf("unknown route: %d", r.status)
	}
	if r := c.do("DELETE", "/api/v1/health/live", "", nil); r.status != 405 || r.header.Get("Allow") == "" {
		t.Errorf("wrong method: %d %v", r.status, r.header)
	}
	// No stack traces, no default credentials.
	if r := c.do("POST", "/api/v1/auth/login", "", map[string]any{
		"username": "admin",
		"password": "admin",
	}); r.status != 401 || errCode(r) != "INVALID_CREDENTIALS" {
		t.Errorf("default credential: %d %s", r.status, r.raw)
	}
	if r := c.do("POST", "/api/v1/auth/setup", "", map[string]any{
		"username": "second",
		"email":    "s@example.org",
		"password": adminPW,
	}); r.status != 403 || errCode(r) != "SETUP_ALREADY_COMPLETED" {
		t.Errorf("second setup: %d %s", r.status, r.raw)
	}
}

func TestLoginRateLimitRefreshRotationLogoutAll(t *testing.T) {
	h, c := apiHub(t, Config{LoginLimit: 10})
	defer stopHub(t, h)
	r := c.do("POST", "/api/v1/auth/setup", "", map[string]any{
		"username": "admin",
		"email":    "admin@example.org",
		"password": adminPW,
	})
	if r.status != 200 {
		t.Fatalf("setup %d", r.status)
	}
	tokens := r.body["tokens"].(map[string]any)
	access, refresh := tokens["access_token"].(string), tokens["refresh_token"].(string)

	// Rotation: the old refresh token is revoked.
	r = c.do("POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": refresh})
	if r.status != 200 {
		t.Fatalf("refresh: %d %s", r.status, r.raw)
	}
	if r2 := c.do("POST", "/api/v1/auth/refresh", "", map[string]any{
		"refresh_token": refresh,
	}); r2.status != 401 || errCode(r2) != "TOKEN_REVOKED" {
		t.Fatalf("reused refresh token: %d %s", r2.status, r2.raw)
	}
	if r2 := c.do("GET", "/api/v1/auth/me", refresh, nil); r2.status != 401 {
		t.Fatalf("refresh token as bearer: %d", r2.status)
	}
	newAccess := r.body["tokens"].(map[string]any)["access_token"].(string)

	// Logout with all_devices invalidates every existing access token.
	if r := c.do("POST", "/api/v1/auth/logout", newAccess, map[string]any{
		"all_devices": true,
	}); r.status != 200 || r.body["tokens_invalidated"].(float64) < 2 {
		t.Fatalf("logout all: %d %s", r.status, r.raw)
	}
	if r := c.do("GET", "/api/v1/auth/me", access, nil); r.status != 401 || errCode(r) != "TOKEN_REVOKED" {
		t.Fatalf("old access token after logout-all: %d %s", r.status, r.raw)
	}

	// Setup counted once against the shared login budget; 9 more failures
	// reach the limit and the 11th request of the minute gets 429.
	for i := 0; i < 9; i++ {
		if r := c.do("POST", "/api/v1/auth/login", "", map[string]any{
			"username": "admin",
			"password": "Wrong-pass1",
		}); r.status != 401 {
			t.Fatalf("failed login %d: %d", i, r.status)
		}
	}
	r = c.do("POST", "/api/v1/auth/login", "", map[string]any{"username": "admin", "password": "Wrong-pass1"})
	if r.status != 429 || errCode(r) != "RATE_LIMITED" || r.header.Get("Retry-After") == "" {
		t.Fatalf("11th login: %d %s %v", r.status, r.raw, r.header)
	}
}

func TestRefusesShortJWTSecret(t *testing.T) {
	_, err := Start(context.Background(), Config{
		DataDir:   t.TempDir(),
		HTTPAddr:  "127.0.0.1:0",
		MQTTAddr:  "127.0.0.1:0",
		JWTSecret: "too-short",
	})
	if err == nil || !strings.Contains(err.Error(), "32") {
		t.Fatalf("short secret accepted: %v", err)
	}
}

type wsClient struct {
	c    *websocket.Conn
	msgs chan map[string]any
}

func dialWS(t *testing.T, h *Hub, token, clientID string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+h.HTTPAddr()+"/api/v1/ws/realtime/"+clientID+"?token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &wsClient{c: conn, msgs: make(chan map[string]any, 1024)}
	go func() {
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				close(w.msgs)
				return
			}
			var m map[string]any
			_ = json.Unmarshal(data, &m)
			w.msgs <- m
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return w
}

func (w *wsClient) await(t *testing.T, pred func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-w.msgs:
			if !ok {
				t.Fatal("websocket closed")
			}
			if pred(m) {
				return m
			}
		case <-deadline:
			t.Fatal("websocket message not received")
		}
	}
}

func wsEvent(typ, espID, status string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		d, _ := m["data"].(map[string]any)
		return m["type"] == typ && d["esp_id"] == espID && (status == "" || d["status"] == status)
	}
}

// The acceptance walk of issue 3: status → setup → login → heartbeat makes a
// pending device → list pending → approve → the next ack says online → the
// device is online in the list, and a WebSocket client sees it all.
func TestDeviceApprovalFlowWithWebSocket(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	if r := c.do("GET", "/api/v1/auth/status", "", nil); r.body["setup_required"] != true {
		t.Fatalf("status: %s", r.raw)
	}
	c.do("POST", "/api/v1/auth/setup", "", map[string]any{
		"username": "admin",
		"email":    "admin@example.org",
		"password": adminPW,
	})
	tok := login(t, c, "admin@EXAMPLE.org", adminPW) // email matched case-insensitively
	ws := dialWS(t, h, tok, "dashboard")

	dev := mustDial(t, h.MQTTAddr(), "ESP_A1B2C3")
	dev.subscribe(t, "kaiser/+/esp/ESP_A1B2C3/system/heartbeat/ack")
	hb := "kaiser/god/esp/ESP_A1B2C3/system/heartbeat"
	if err := dev.publish(hb, heartbeat(61), false); err != nil {
		t.Fatal(err)
	}
	if m := dev.next(t, 5*time.Second); !strings.Contains(m.payload, `"status":"pending_approval"`) {
		t.Fatalf("ack: %s", m.payload)
	}
	ws.await(t, wsEvent("device_status", "ESP_A1B2C3", "pending_approval"))
	r := c.do("GET", "/api/v1/esp/devices/pending", tok, nil)
	if r.body["count"] != 1.0 {
		t.Fatalf("pending: %s", r.raw)
	}
	if r := c.do("GET", "/api/v1/esp/devices", tok, nil); len(r.body["data"].([]any)) != 0 {
		t.Fatalf("pending must be hidden from the default list: %s", r.raw)
	}
	if r := c.do(
		"POST", "/api/v1/esp/devices/ESP_A1B2C3/approve/", tok, nil,
	); r.status != 200 || r.body["status"] != "approved" {
		t.Fatalf("approve: %d %s", r.status, r.raw)
	}
	ws.await(t, wsEvent("device_status", "ESP_A1B2C3", "approved"))
	if err := dev.publish(hb, heartbeat(121), false); err != nil {
		t.Fatal(err)
	}
	if m := dev.next(t, 5*time.Second); !strings.Contains(m.payload, `"status":"online"`) {
		t.Fatalf("ack after approval: %s", m.payload)
	}
	ws.await(t, wsEvent("device_status", "ESP_A1B2C3", "online"))
	ws.await(t, wsEvent("esp_health", "ESP_A1B2C3", "online"))
	r = c.do("GET", "/api/v1/esp/devices", tok, nil)
	data := r.body["data"].([]any)
	if len(data) != 1 || data[0].(map[string]any)["status"] != "online" {
		t.Fatalf("list: %s", r.raw)
	}
	r = c.do("GET", "/api/v1/esp/devices/ESP_A1B2C3/health", tok, nil)
	counters := r.body["counters"].(map[string]any)
	if r.body["metrics"] == nil || counters["received"].(float64) != 2 || r.body["uptime_formatted"] != "0d 0h 2m" {
		t.Fatalf("health: %s", r.raw)
	}
	if r := c.do("GET", "/api/v1/health/detailed", tok, nil); r.status != 200 ||
		r.body["mqtt"].(map[string]any)["messages_received"].(float64) < 2 {
		t.Fatalf("detailed: %s", r.raw)
	}
	// Audit trail of the walk.
	r = c.do("GET", "/api/v1/audit?event_type=device_approved,device_discovered,login_success", tok, nil)
	if r.body["total"].(float64) != 3 {
		t.Fatalf("audit: %s", r.raw)
	}
	// Logout closes the session's WebSocket with 4001.
	c.do("POST", "/api/v1/auth/logout", tok, nil)
	for range ws.msgs {
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _, err := ws.c.Read(ctx)
	if websocket.CloseStatus(err) != 4001 && websocket.CloseStatus(err) != -1 {
		t.Fatalf("close after logout: %v", err)
	}
}

// A client that never reads is cut loose; other clients keep receiving.
func TestSlowWebSocketClientIsDisconnected(t *testing.T) {
	h, c := apiHub(t, Config{WS: api.WSConfig{Rate: -1, QueueMax: 200}})
	defer stopHub(t, h)
	admin, _, _ := setupUsers(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stalled, _, err := websocket.Dial(ctx, "ws://"+h.HTTPAddr()+"/api/v1/ws/realtime/stalled?token="+admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.CloseNow()
	healthy := dialWS(t, h, admin, "healthy")
	// Batches the healthy client drains; the stalled one's socket buffers fill,
	// then its queue overflows.
	for i := 0; i < 4000 && h.API.WSStats()["slow_client_disconnects"].(int64) == 0; i += 50 {
		for j := i; j < i+50; j++ {
			h.Events.Publish(eventFor(j))
		}
		last := float64(i + 49)
		healthy.await(t, func(m map[string]any) bool {
			d, _ := m["data"].(map[string]any)
			return m["type"] == "system_event" && d["seq"] == last
		})
	}
	if n := h.API.WSStats()["slow_client_disconnects"].(int64); n != 1 {
		t.Fatalf("stalled client not disconnected (disconnects %d)", n)
	}
	// The healthy client is still served after the cut.
	h.Events.Publish(eventFor(99999))
	healthy.await(t, func(m map[string]any) bool {
		d, _ := m["data"].(map[string]any)
		return d["seq"] == 99999.0
	})
}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	r := c.do("GET", "/api/v1/openapi.json", "", nil)
	paths := r.body["paths"].(map[string]any)
	seen := map[string]bool{}
	for _, rt := range h.API.Routes() {
		key := rt.Path
		item, ok := paths[key].(map[string]any)
		if !ok || item[strings.ToLower(rt.Method)] == nil {
			t.Errorf("route %s %s missing from the OpenAPI document", rt.Method, rt.Path)
		}
		seen[fmt.Sprintf("%s %s", strings.ToLower(rt.Method), key)] = true
	}
	for p, item := range paths {
		for m := range item.(map[string]any) {
			if !seen[m+" "+p] {
				t.Errorf("documented %s %s is not a registered route", m, p)
			}
		}
	}
	if len(seen) < 40 {
		t.Fatalf("only %d routes", len(seen))
	}
}
