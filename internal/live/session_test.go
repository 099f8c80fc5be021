package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kaiserhub/kaiser/internal/event"
)

// harness serves a feed over HTTP the way the API does after its checks:
// the user, client id and token id come from the query.
type harness struct {
	t    *testing.T
	feed *Feed
	bus  *event.Bus
	srv  *httptest.Server
}

// Distinct statuses for the refusals, so tests can tell them apart.
var refusalStatus = map[error]int{
	ErrStopping:           http.StatusGone,
	ErrTooManyConnections: http.StatusServiceUnavailable,
	ErrUserLimit:          http.StatusConflict,
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	bus := event.NewBus()
	f := New(cfg, bus, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		user, _ := strconv.ParseInt(q.Get("user"), 10, 64)
		err := f.Accept(w, r, user, q.Get("client"), q.Get("jti"))
		for refusal, status := range refusalStatus {
			if errors.Is(err, refusal) {
				http.Error(w, err.Error(), status)
			}
		}
	}))
	t.Cleanup(func() {
		f.Close()
		srv.Close()
	})
	return &harness{
		t:    t,
		feed: f,
		bus:  bus,
		srv:  srv,
	}
}

func (h *harness) url(user int64, clientID, tokenID string) string {
	q := url.Values{"user": {strconv.FormatInt(user, 10)}, "client": {clientID}, "jti": {tokenID}}
	return "ws" + strings.TrimPrefix(h.srv.URL, "http") + "/?" + q.Encode()
}

func (h *harness) dial(user int64, clientID, tokenID string) *client {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, h.url(user, clientID, tokenID), nil)
	if err != nil {
		h.t.Fatalf("dial user %d client %s: %v", user, clientID, err)
	}
	h.t.Cleanup(func() { _ = c.CloseNow() })
	return &client{t: h.t, c: c}
}

// refused dials and returns the HTTP status of the refused handshake.
func (h *harness) refused(user int64, clientID string) int {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, h.url(user, clientID, ""), nil)
	if err == nil {
		_ = c.CloseNow()
		h.t.Fatalf("user %d client %s was accepted", user, clientID)
	}
	if resp == nil {
		h.t.Fatalf("user %d client %s: no HTTP answer: %v", user, clientID, err)
	}
	return resp.StatusCode
}

func (h *harness) publish(p event.Payload) {
	h.bus.Publish(event.Event{Data: p})
}

// queued decodes the messages waiting in a connection's queue.
func (h *harness) queued(user int64, clientID string) []received {
	h.t.Helper()
	h.feed.mu.Lock()
	c := h.feed.conns[connKey{user: user, clientID: clientID}]
	h.feed.mu.Unlock()
	if c == nil {
		h.t.Fatalf("no connection of user %d client %s", user, clientID)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]received, 0, len(c.queue))
	for _, m := range c.queue {
		out = append(out, decode(h.t, m.bytes()))
	}
	return out
}

type received struct {
	Type      string         `json:"type"`
	Timestamp int64          `json:"timestamp"`
	Data      map[string]any `json:"data"`
}

func decode(t *testing.T, b []byte) received {
	t.Helper()
	var m received
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return m
}

type client struct {
	t *testing.T
	c *websocket.Conn
}

func (c *client) next() received {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := c.c.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return decode(c.t, b)
}

func (c *client) send(msg string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// closeCode reads until the connection ends and returns the close code the
// feed sent (-1 when it ended without one). It does not fail the test, so it
// may run in a goroutine.
func (c *client) closeCode() websocket.StatusCode {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if _, _, err := c.c.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

func (c *client) wantClosed(code websocket.StatusCode) {
	c.t.Helper()
	if got := c.closeCode(); got != code {
		c.t.Fatalf("close code %d, want %d", got, code)
	}
}

func systemEvent(name string) event.SystemEvent {
	return event.SystemEvent{Event: name, Message: name}
}

func reading(espID string, gpio int, sensorType string, value float64) event.SensorData {
	return event.SensorData{
		EspID:      espID,
		GPIO:       gpio,
		SensorType: sensorType,
		Value:      value,
		RawValue:   value,
	}
}

// emergencyStop stands in for the emergency payload of the actuator work.
type emergencyStop struct {
	Reason string `json:"reason"`
}

func (emergencyStop) EventType() event.Type { return event.TypeEmergency }

func (c *client) wantSystemEvent(name string) {
	c.t.Helper()
	if m := c.next(); m.Type != "system_event" || m.Data["event"] != name {
		c.t.Fatalf("got %+v, want system_event %s", m, name)
	}
}

// A rate far below one message per test run: the first message takes the
// bucket's only token, everything after it waits in the queue.
const trickle = 0.001

func TestEmergencyJumpsTheQueueAndStateMessagesCoalesce(t *testing.T) {
	h := start(t, Config{Rate: trickle})
	c := h.dial(1, "tab", "")
	h.publish(systemEvent("first"))
	c.wantSystemEvent("first")

	h.publish(reading("E1", 34, "ph", 6.1))
	h.publish(systemEvent("queued"))
	h.publish(reading("E1", 34, "ph", 6.2))
	h.publish(emergencyStop{Reason: "test"})

	if m := c.next(); m.Type != "emergency" || m.Data["reason"] != "test" {
		t.Fatalf("after the bucket ran dry got %+v, want the emergency", m)
	}
	// The tap offers on the publishing goroutine, in publish order: everything before the emergency is queued.
	q := h.queued(1, "tab")
	if len(q) != 2 || q[0].Type != "sensor_data" || q[0].Data["value"] != 6.2 || q[1].Data["event"] != "queued" {
		t.Fatalf("queue %+v, want the newer reading in the older one's place, then the system event", q)
	}
	if n := h.feed.Stats().MessagesCoalesced; n != 1 {
		t.Fatalf("coalesced %d, want 1", n)
	}
}

func TestQueueOverflowClosesSlowClient(t *testing.T) {
	h := start(t, Config{Rate: trickle, QueueMax: 3})
	c := h.dial(1, "tab", "")
	h.publish(systemEvent("first"))
	c.wantSystemEvent("first")

	for i := range 4 {
		h.publish(systemEvent(fmt.Sprint("backlog ", i)))
	}

	c.wantClosed(4002)
	st := h.feed.Stats()
	if st.SlowClientDisconnects != 1 || st.ActiveConnections != 0 {
		t.Fatalf("stats %+v, want one slow disconnect and no connection left", st)
	}
}

func TestNotificationOnlyToOwner(t *testing.T) {
	h := start(t, Config{})
	other := h.dial(1, "tab", "")
	owner := h.dial(2, "tab", "")

	h.publish(event.Notification{UserID: 2, ID: "a1-2", Title: "Sensor stale"})
	h.publish(systemEvent("marker"))

	if m := owner.next(); m.Type != "notification" || m.Data["id"] != "a1-2" {
		t.Fatalf("owner got %+v", m)
	}
	owner.wantSystemEvent("marker")
	// The marker came after the notification: had the other user been sent it, it would be first.
	other.wantSystemEvent("marker")
}

// wantAck reads the next message as a subscription_ack and returns its
// filter set as JSON (keys sorted).
func (c *client) wantAck() string {
	c.t.Helper()
	m := c.next()
	if m.Type != "subscription_ack" {
		c.t.Fatalf("got %+v, want subscription_ack", m)
	}
	b, _ := json.Marshal(m.Data["filters"])
	return string(b)
}

func TestFiltersSelectWhatIsQueued(t *testing.T) {
	h := start(t, Config{})
	c := h.dial(1, "tab", "")

	c.send(`{"action":"subscribe","filters":{"esp_ids":["E1"],"sensor_types":["PH"]}}`)
	if got, want := c.wantAck(), `[{"esp_ids":["E1"],"sensor_types":["PH"],"types":[]}]`; got != want {
		t.Fatalf("ack filters %s, want %s", got, want)
	}

	h.publish(reading("E2", 34, "ph", 1))
	h.publish(reading("E1", 35, "ec", 2))
	h.publish(reading("E1", 34, "ph", 3))
	h.publish(systemEvent("no device, no sensor"))
	if m := c.next(); m.Data["esp_id"] != "E1" || m.Data["sensor_type"] != "ph" {
		t.Fatalf("got %+v, want the E1 ph reading", m)
	}
	c.wantSystemEvent("no device, no sensor")

	c.send(`{"action":"unsubscribe"}`)
	if got := c.wantAck(); got != "[]" {
		t.Fatalf("ack after unsubscribe: %s", got)
	}
	h.publish(reading("E2", 34, "ph", 4))
	if m := c.next(); m.Data["esp_id"] != "E2" {
		t.Fatalf("after unsubscribe got %+v, want the E2 reading", m)
	}
}

// A second subscribe adds a filter (the reference replaced the set and its
// own dashboard, which subscribes twice, went silent: docs/api.md §17.2).
func TestSecondSubscribeAddsAFilter(t *testing.T) {
	h := start(t, Config{})
	c := h.dial(1, "tab", "")

	c.send(`{"action":"subscribe","filters":{"types":["sensor_data"],"esp_ids":["E1"]}}`)
	c.wantAck()
	c.send(`{"action":"subscribe","filters":{"types":["system_event"]}}`)
	want := `[{"esp_ids":["E1"],"sensor_types":[],"types":["sensor_data"]},` +
		`{"esp_ids":[],"sensor_types":[],"types":["system_event"]}]`
	if got := c.wantAck(); got != want {
		t.Fatalf("ack after the second subscribe: %s, want %s", got, want)
	}
	c.send(`{"action":"subscribe","filters":{"esp_ids":["E1"],"types":["sensor_data"]}}`)
	if got := c.wantAck(); got != want {
		t.Fatalf("an identical filter was added again: %s", got)
	}

	h.publish(reading("E2", 34, "ph", 1)) // passes neither filter
	h.publish(reading("E1", 34, "ph", 2)) // the first
	h.publish(systemEvent("second"))      // the second
	if m := c.next(); m.Type != "sensor_data" || m.Data["esp_id"] != "E1" {
		t.Fatalf("got %+v, want the E1 reading", m)
	}
	c.wantSystemEvent("second")
}

func TestUnsubscribeRemovesAFilterOrValues(t *testing.T) {
	h := start(t, Config{})
	c := h.dial(1, "tab", "")
	c.send(`{"action":"subscribe","filters":{"esp_ids":["E1","E2"]}}`)
	c.wantAck()
	c.send(`{"action":"subscribe","filters":{"types":["system_event"]}}`)
	c.wantAck()

	// Equal to the second filter: that one goes, the first stays whole.
	c.send(`{"action":"unsubscribe","filters":{"types":["system_event"]}}`)
	if got, want := c.wantAck(), `[{"esp_ids":["E1","E2"],"sensor_types":[],"types":[]}]`; got != want {
		t.Fatalf("after removing the equal filter: %s, want %s", got, want)
	}
	// Equal to none: the value is removed from every filter.
	c.send(`{"action":"unsubscribe","filters":{"esp_ids":["E2"]}}`)
	if got, want := c.wantAck(), `[{"esp_ids":["E1"],"sensor_types":[],"types":[]}]`; got != want {
		t.Fatalf("after removing a value: %s, want %s", got, want)
	}
	h.publish(reading("E2", 34, "ph", 1))
	h.publish(reading("E1", 34, "ph", 2))
	if m := c.next(); m.Data["esp_id"] != "E1" {
		t.Fatalf("got %+v, want only E1 readings", m)
	}

	// Its last esp_id removed, the filter is dropped rather than widened.
	c.send(`{"action":"subscribe","filters":{"types":["esp_health"]}}`)
	c.wantAck()
	c.send(`{"action":"unsubscribe","filters":{"esp_ids":["E1"],"types":["nothing"]}}`)
	if got, want := c.wantAck(), `[{"esp_ids":[],"sensor_types":[],"types":["esp_health"]}]`; got != want {
		t.Fatalf("after emptying the esp_ids: %s, want %s", got, want)
	}
	h.publish(reading("E1", 34, "ph", 3))
	h.publish(event.EspHealth{EspID: "E9", Status: "online"})
	if m := c.next(); m.Type != "esp_health" {
		t.Fatalf("got %+v, want the esp_health event: the emptied filter must not pass readings", m)
	}
}

func TestFilterSetLimit(t *testing.T) {
	h := start(t, Config{})
	c := h.dial(1, "tab", "")
	for i := range maxFilters {
		c.send(fmt.Sprintf(`{"action":"subscribe","filters":{"esp_ids":["E%d"]}}`, i))
		c.wantAck()
	}
	c.send(`{"action":"subscribe","filters":{"esp_ids":["one too many"]}}`)
	if m := c.next(); m.Type != "error" || m.Data["code"] != "INVALID_MESSAGE" {
		t.Fatalf("filter %d: got %+v, want INVALID_MESSAGE", maxFilters+1, m)
	}
	c.send(`{"action":"unsubscribe","filters":{"esp_ids":["E0"]}}`)
	if got := c.wantAck(); strings.Count(got, "esp_ids") != maxFilters-1 {
		t.Fatalf("after removing one: %s", got)
	}
}

// Emergency messages reach every connection, whatever its filters say
// (docs/api.md §17.3); other events still obey them.
func TestEmergencyBypassesFilters(t *testing.T) {
	h := start(t, Config{})
	c := h.dial(1, "tab", "")
	c.send(`{"action":"subscribe","filters":{"types":["sensor_data"],"esp_ids":["E1"]}}`)
	c.wantAck()

	h.publish(systemEvent("filtered out"))
	h.publish(event.Emergency{Action: "stop", Scope: "global", Reason: "pump burst"})
	h.publish(reading("E1", 34, "ph", 1))
	if m := c.next(); m.Type != "emergency" || m.Data["reason"] != "pump burst" {
		t.Fatalf("got %+v, want the emergency", m)
	}
	if m := c.next(); m.Type != "sensor_data" {
		t.Fatalf("got %+v, want the reading (the system event is filtered out)", m)
	}
}

func TestControlMessages(t *testing.T) {
	h := start(t, Config{})
	c := h.dial(1, "tab", "")
	c.send(`{"action":"subscribe","filters":{"types":["sensor_data"]}}`)
	c.next()

	tests := []struct {
		name     string
		send     string
		wantType string
		wantCode string
	}{
		{"ping despite a type filter", `{"action":"ping"}`, "pong", ""},
		{"unknown action", `{"action":"dance"}`, "error", "UNKNOWN_ACTION"},
		{"invalid JSON", `{"action":`, "error", "INVALID_MESSAGE"},
		{"filters of the wrong shape", `{"action":"subscribe","filters":{"types":"x"}}`, "error", "INVALID_MESSAGE"},
		{"too large", `{"action":"ping","pad":"` + strings.Repeat("x", 4096) + `"}`, "error", "MESSAGE_TOO_LARGE"},
	}
	// One connection answers them in turn, so the steps run in order, not as subtests.
	for _, tt := range tests {
		c.send(tt.send)
		m := c.next()
		if m.Type != tt.wantType || tt.wantCode != "" && m.Data["code"] != tt.wantCode {
			t.Fatalf("%s: got %+v, want %s %s", tt.name, m, tt.wantType, tt.wantCode)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageBinary, []byte{1}); err != nil {
		t.Fatal(err)
	}
	c.wantClosed(websocket.StatusUnsupportedData)
}

func TestClientFloodIsClosed(t *testing.T) {
	h := start(t, Config{FloodPerSec: 1, FloodDuration: time.Nanosecond})
	c := h.dial(1, "tab", "")
	// Two messages within one second exceed the limit; ten cross at most one
	// second boundary, which resets the count once.
	for range 10 {
		c.send(`{"action":"ping"}`)
	}
	c.wantClosed(websocket.StatusPolicyViolation)
}

func TestRevokeClosesTheTokensSessions(t *testing.T) {
	h := start(t, Config{})
	first := h.dial(1, "a", "tok-1")
	second := h.dial(1, "b", "tok-2")
	otherUser := h.dial(2, "a", "tok-1") // the same token id of another user is not hit

	h.feed.Revoke(1, "tok-1")
	first.wantClosed(4001)
	h.publish(systemEvent("after logout"))
	second.wantSystemEvent("after logout")
	otherUser.wantSystemEvent("after logout")

	h.feed.Revoke(1, "") // password change: every session of the user
	second.wantClosed(4001)
	h.publish(systemEvent("after password change"))
	otherUser.wantSystemEvent("after password change")
}

func TestNewerConnectionReplacesOlder(t *testing.T) {
	h := start(t, Config{})
	older := h.dial(1, "tab", "t1")
	newer := h.dial(1, "tab", "t2")

	older.wantClosed(4000)
	h.publish(systemEvent("marker"))
	newer.wantSystemEvent("marker")
	if n := h.feed.Stats().ActiveConnections; n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestConnectionLimits(t *testing.T) {
	h := start(t, Config{MaxTotal: 2, MaxPerUser: 1})
	replaced := h.dial(1, "a", "")

	if got := h.refused(1, "b"); got != refusalStatus[ErrUserLimit] {
		t.Fatalf("second connection of a user: status %d", got)
	}
	open := []*client{h.dial(1, "a", "")} // a replacement is not an additional connection
	replaced.wantClosed(4000)
	open = append(open, h.dial(2, "a", ""))
	if got := h.refused(3, "a"); got != refusalStatus[ErrTooManyConnections] {
		t.Fatalf("third connection in total: status %d", got)
	}

	closed := make(chan websocket.StatusCode, len(open))
	for _, c := range open {
		go func() { closed <- c.closeCode() }()
	}
	h.feed.Close()
	for range open {
		<-closed
	}
	if got := h.refused(4, "a"); got != refusalStatus[ErrStopping] {
		t.Fatalf("after Close: status %d", got)
	}
}

func TestCloseEndsEverySessionGoingAway(t *testing.T) {
	h := start(t, Config{})
	clients := []*client{h.dial(1, "a", ""), h.dial(2, "a", "")}
	codes := make(chan websocket.StatusCode, len(clients))
	for _, c := range clients {
		go func() { codes <- c.closeCode() }()
	}

	h.feed.Close()

	for range clients {
		if code := <-codes; code != websocket.StatusGoingAway {
			t.Fatalf("close code %d, want 1001", code)
		}
	}
	if !errors.Is(h.feed.Accept(nil, nil, 1, "late", ""), ErrStopping) {
		t.Fatal("a closed feed accepts connections")
	}
}

// A client that stops reading cannot hold the feed: its close handshake is
// cut short after 1 s (the library's own limit is 5 s per step).
func TestStalledClientDoesNotHoldClose(t *testing.T) {
	h := start(t, Config{})
	h.dial(1, "stalled", "") // never reads, so it never answers the close frame

	began := time.Now()
	h.feed.Close()

	if took := time.Since(began); took > 4*time.Second {
		t.Fatalf("Close took %s with a stalled client", took)
	}
}

// The feed is a tap: events arrive on every publisher's goroutine at once.
// Every connection gets every event, and each publisher's events in the
// order it published them.
func TestConcurrentPublishersReachEveryConnectionInTheirOrder(t *testing.T) {
	h := start(t, Config{Rate: -1})
	clients := []*client{h.dial(1, "a", ""), h.dial(2, "b", "")}

	const publishers, each = 4, 50
	done := make(chan struct{})
	for p := range publishers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				// A pin per event: readings of one sensor would coalesce.
				h.publish(reading(fmt.Sprintf("D%d", p), i, "ph", float64(i)))
			}
		}()
	}
	for range publishers {
		<-done
	}

	for _, c := range clients {
		next := map[string]int{}
		for range publishers * each {
			m := c.next()
			dev, gpio := m.Data["esp_id"].(string), int(m.Data["gpio"].(float64))
			if gpio != next[dev] {
				t.Fatalf("%s: pin %d after %d", dev, gpio, next[dev]-1)
			}
			next[dev]++
		}
		for p := range publishers {
			if n := next[fmt.Sprintf("D%d", p)]; n != each {
				t.Fatalf("D%d: %d events, want %d", p, n, each)
			}
		}
	}
}
