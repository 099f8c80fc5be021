package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/event"
)

// WSConfig tunes the live feed (API §17.4); zero values take defaults.
type WSConfig struct {
	Rate          float64       // messages per second per connection (default 10; <0 disables)
	QueueMax      int           // queued messages per connection before 4002 (default 1000)
	WriteTimeout  time.Duration // one frame write (default 5 s)
	PingInterval  time.Duration // default 30 s
	PongTimeout   time.Duration // default 60 s
	MaxTotal      int           // connections in total (default 100)
	MaxPerUser    int           // connections per user (default 20)
	EventBuffer   int           // inbox of the fan-out from the event bus (default 8192)
	FloodPerSec   int           // client messages per second tolerated (default 20)
	FloodDuration time.Duration // sustained this long → 1008 (default 5 s)
}

func (c *WSConfig) defaults() {
	if c.Rate == 0 {
		c.Rate = 10
	}
	if c.QueueMax <= 0 {
		c.QueueMax = 1000
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = 60 * time.Second
	}
	if c.MaxTotal <= 0 {
		c.MaxTotal = 100
	}
	if c.MaxPerUser <= 0 {
		c.MaxPerUser = 20
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = 8192
	}
	if c.FloodPerSec <= 0 {
		c.FloodPerSec = 20
	}
	if c.FloodDuration <= 0 {
		c.FloodDuration = 5 * time.Second
	}
}

// Close codes (API §17.6).
const (
	closeReplaced    websocket.StatusCode = 4000
	closeRevoked     websocket.StatusCode = 4001
	closeSlow        websocket.StatusCode = 4002
	closeNoPong      websocket.StatusCode = 4003
	closeGoingAway                        = websocket.StatusGoingAway
	closeUnsupported                      = websocket.StatusUnsupportedData
	closeFlood                            = websocket.StatusPolicyViolation
)

// stateful is the payload of a state message (API §17.4): a newer one of
// the same type and subject replaces a queued one.
type stateful interface {
	Subject() string
}

// addressed is a payload for one user only (notifications, API §17.3).
type addressed interface {
	Recipient() int64
}

// deviceScoped and sensorScoped are payloads the esp_ids and sensor_types
// filters look at; payloads without them pass those filters.
type deviceScoped interface {
	Device() string
}

type sensorScoped interface {
	Sensor() string
}

type outMsg struct {
	typ  event.Type
	key  string
	data []byte
}

type wsKey struct {
	user     int64
	clientID string
}

// wsHub fans events out to WebSocket connections. Producers never wait:
// each connection has its own bounded queue and writer goroutine.
type wsHub struct {
	cfg     WSConfig
	log     *slog.Logger
	events  *event.Bus
	sub     *event.Subscription
	subDone chan struct{} // closed when sub is detached

	mu     sync.Mutex
	conns  map[wsKey]*wsConn
	closed bool
	wg     sync.WaitGroup
	stop   chan struct{}

	sent, coalesced, slow atomic.Int64
	gauge                 prometheus.GaugeFunc
}

func newWSHub(cfg WSConfig, events *event.Bus, reg *prometheus.Registry, log *slog.Logger) *wsHub {
	cfg.defaults()
	h := &wsHub{cfg: cfg, log: log, events: events, conns: map[wsKey]*wsConn{}, stop: make(chan struct{})}
	if reg != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "god_kaiser_ws_connections", Help: "Open WebSocket connections."},
				func() float64 { h.mu.Lock(); defer h.mu.Unlock(); return float64(len(h.conns)) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "god_kaiser_ws_messages_sent_total", Help: "WebSocket messages sent."},
				func() float64 { return float64(h.sent.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "god_kaiser_ws_messages_coalesced_total", Help: "State messages replaced in a queue by a newer one."},
				func() float64 { return float64(h.coalesced.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "god_kaiser_ws_slow_client_disconnects_total", Help: "Connections closed as slow consumers."},
				func() float64 { return float64(h.slow.Load()) }),
		)
	}
	return h
}

func (h *wsHub) stats() map[string]any {
	h.mu.Lock()
	n := len(h.conns)
	h.mu.Unlock()
	return map[string]any{"active_connections": n, "total_messages_sent": h.sent.Load(),
		"messages_coalesced": h.coalesced.Load(), "slow_client_disconnects": h.slow.Load()}
}

// frame is the API §17.2 envelope; the field order keeps the bytes the
// map-based encoding produced (keys sorted).
type frame struct {
	Data      any        `json:"data"`
	Timestamp int64      `json:"timestamp"`
	Type      event.Type `json:"type"`
}

func envelope(typ event.Type, at time.Time, data any) []byte {
	b, _ := json.Marshal(frame{Data: data, Timestamp: at.Unix(), Type: typ})
	return b
}

// attach subscribes to the event stream when the first connection opens;
// with no connection the hub costs the producers nothing. h.mu is held.
func (h *wsHub) attach() {
	if h.sub != nil || h.events == nil {
		return
	}
	h.sub = h.events.Subscribe(h.cfg.EventBuffer)
	h.subDone = make(chan struct{})
	h.wg.Add(1)
	go h.fanout(h.sub, h.subDone)
}

// detach unsubscribes when the last connection closes. h.mu is held.
func (h *wsHub) detach() {
	if h.sub == nil || len(h.conns) > 0 {
		return
	}
	h.events.Unsubscribe(h.sub)
	close(h.subDone) // its fan-out goroutine ends with it
	h.sub, h.subDone = nil, nil
}

func (h *wsHub) fanout(sub *event.Subscription, done <-chan struct{}) {
	defer h.wg.Done()
	for {
		select {
		case <-h.stop:
			return
		case <-done:
			return
		case e := <-sub.C:
			h.mu.Lock()
			idle := len(h.conns) == 0
			h.mu.Unlock()
			if idle {
				continue // nobody listens: do not pay for the encoding
			}
			var data any = e.Data
			if e.Data == nil {
				data = struct{}{}
			}
			msg := &outMsg{typ: e.Type(), data: envelope(e.Type(), e.Time, data)}
			if st, ok := e.Data.(stateful); ok {
				msg.key = string(e.Type()) + ":" + st.Subject()
			}
			h.mu.Lock()
			conns := make([]*wsConn, 0, len(h.conns))
			for _, c := range h.conns {
				conns = append(conns, c)
			}
			h.mu.Unlock()
			to, owned := e.Data.(addressed)
			for _, c := range conns {
				// Notifications go only to the owning user's connections (API §17.3).
				if owned && c.key.user != to.Recipient() {
					continue
				}
				c.offer(msg, e.Data)
			}
		}
	}
}

// revoke closes the sessions of a user (all, or those opened with jti) with 4001.
func (h *wsHub) revoke(userID int64, jti string) {
	h.mu.Lock()
	var victims []*wsConn
	for k, c := range h.conns {
		if k.user == userID && (jti == "" || c.jti == jti) {
			victims = append(victims, c)
		}
	}
	h.mu.Unlock()
	for _, c := range victims {
		c.shut(closeRevoked, "authorisation withdrawn")
	}
}

func (h *wsHub) closeAll() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	var all []*wsConn
	for _, c := range h.conns {
		all = append(all, c)
	}
	if h.sub != nil {
		h.events.Unsubscribe(h.sub)
		h.sub, h.subDone = nil, nil
	}
	h.mu.Unlock()
	close(h.stop)
	for _, c := range all {
		c.shut(closeGoingAway, "hub shutting down")
	}
	h.wg.Wait()
}

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (s *Server) wsRoutes() {
	s.handle(Route{Method: "GET", Path: "/api/v1/ws/realtime/{client_id}", MinRole: auth.RoleViewer, Tag: "websocket",
		Summary: "Live event feed (WebSocket, token in ?token=)"}, s.wsHandshake)
}

// wsHandshake checks origin, token, user and limits before the upgrade (API §17.1).
func (s *Server) wsHandshake(w http.ResponseWriter, r *http.Request) {
	h := s.ws
	if o := r.Header.Get("Origin"); o != "" && !s.originAllowed(o) && !sameOrigin(r, o) {
		WriteError(w, r, http.StatusForbidden, "ORIGIN_NOT_ALLOWED", "origin not allowed", nil)
		return
	}
	tok := r.URL.Query().Get("token")
	if tok == "" {
		tok = bearer(r)
	}
	p, ok := s.authenticate(w, r, tok)
	if !ok {
		return
	}
	clientID := r.PathValue("client_id")
	if !clientIDPattern.MatchString(clientID) {
		pathError(w, r, "client_id", "must be 1-64 characters of [A-Za-z0-9_-]")
		return
	}
	key := wsKey{p.User.ID, clientID}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		WriteError(w, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "hub is stopping", nil)
		return
	}
	old := h.conns[key]
	perUser := 0
	for k := range h.conns {
		if k.user == p.User.ID {
			perUser++
		}
	}
	if old == nil && len(h.conns) >= h.cfg.MaxTotal {
		h.mu.Unlock()
		WriteError(w, r, http.StatusServiceUnavailable, "TOO_MANY_CONNECTIONS", "WebSocket connection limit reached", nil)
		return
	}
	if old == nil && perUser >= h.cfg.MaxPerUser {
		h.mu.Unlock()
		WriteError(w, r, http.StatusConflict, "LIMIT_EXCEEDED", "too many WebSocket connections for this user", nil)
		return
	}
	// Register before the upgrade: the client may act as soon as it sees the
	// 101, and events from then on must already reach its queue.
	conn := &wsConn{hub: h, key: key, jti: p.Claims.ID, wake: make(chan struct{}, 1), done: make(chan struct{}),
		tokens: float64(max(h.cfg.Rate, 1)), last: time.Now()}
	if old != nil {
		defer old.shut(closeReplaced, "replaced by a newer connection")
	}
	h.conns[key] = conn
	h.attach()
	h.mu.Unlock()
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		conn.shut(websocket.StatusInternalError, "")
		return
	}
	c.SetReadLimit(64 << 10)
	h.mu.Lock()
	conn.c = c
	h.wg.Add(3)
	h.mu.Unlock()
	go conn.writer()
	go conn.reader()
	go conn.pinger()
}

func sameOrigin(r *http.Request, origin string) bool {
	return strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://") == r.Host
}

// filters is a connection's subscription (API §17.3).
type filters struct {
	Types       []string `json:"types"`
	EspIDs      []string `json:"esp_ids"`
	SensorTypes []string `json:"sensor_types"`
}

func (f filters) match(typ event.Type, data event.Payload) bool {
	if len(f.Types) > 0 && !contains(f.Types, string(typ)) {
		return false
	}
	if d, ok := data.(deviceScoped); ok && len(f.EspIDs) > 0 && !contains(f.EspIDs, d.Device()) {
		return false
	}
	if s, ok := data.(sensorScoped); ok && len(f.SensorTypes) > 0 {
		found := false
		for _, x := range f.SensorTypes {
			found = found || strings.EqualFold(x, s.Sensor())
		}
		if !found {
			return false
		}
	}
	return true
}

type wsConn struct {
	hub *wsHub
	c   *websocket.Conn
	key wsKey
	jti string

	mu       sync.Mutex
	filter   filters
	queue    []*outMsg
	byKey    map[string]*outMsg
	priority []*outMsg // emergency and control messages: not rate-limited
	tokens   float64
	last     time.Time
	wake     chan struct{}
	done     chan struct{}
	once     sync.Once
}

// offer hands a message over without blocking (filters apply first).
func (c *wsConn) offer(m *outMsg, data event.Payload) {
	c.mu.Lock()
	if !c.filter.match(m.typ, data) {
		c.mu.Unlock()
		return
	}
	switch {
	case m.typ == event.TypeEmergency:
		c.priority = append(c.priority, m)
	case m.key != "" && c.byKey[m.key] != nil:
		// Replace in place: it keeps its position and takes the newer content.
		*c.byKey[m.key] = *m
		c.hub.coalesced.Add(1)
	default:
		cp := *m
		c.queue = append(c.queue, &cp)
		if m.key != "" {
			if c.byKey == nil {
				c.byKey = map[string]*outMsg{}
			}
			c.byKey[m.key] = &cp
		}
	}
	over := len(c.queue) > c.hub.cfg.QueueMax
	c.mu.Unlock()
	if over {
		c.hub.slow.Add(1)
		c.shut(closeSlow, "slow consumer")
		return
	}
	c.signal()
}

func (c *wsConn) control(typ event.Type, data any) {
	c.mu.Lock()
	c.priority = append(c.priority, &outMsg{typ: typ, data: envelope(typ, time.Now(), data)})
	c.mu.Unlock()
	c.signal()
}

func (c *wsConn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// shut closes the connection once with code; the goroutines then end.
func (c *wsConn) shut(code websocket.StatusCode, reason string) {
	c.once.Do(func() {
		close(c.done)
		h := c.hub
		h.mu.Lock()
		if h.conns[c.key] == c {
			delete(h.conns, c.key)
		}
		h.detach()
		ws := c.c
		if ws != nil {
			h.wg.Add(1)
		}
		h.mu.Unlock()
		if ws != nil {
			go c.writeClose(code, reason)
		}
	})
}

// writeClose sends the close frame; a peer that does not answer within 1 s
// (a stalled client) has its connection dropped.
func (c *wsConn) writeClose(code websocket.StatusCode, reason string) {
	defer c.hub.wg.Done()
	done := make(chan struct{})
	go func() {
		_ = c.c.Close(code, reason)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		_ = c.c.CloseNow()
		<-done
	}
}

// next pops the next message allowed by the rate limit; wait > 0 says when
// a token will be available.
func (c *wsConn) next() (m *outMsg, wait time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.priority) > 0 {
		m, c.priority = c.priority[0], c.priority[1:]
		return m, 0
	}
	if len(c.queue) == 0 {
		return nil, 0
	}
	rate := c.hub.cfg.Rate
	if rate > 0 {
		now := time.Now()
		c.tokens = min(c.tokens+now.Sub(c.last).Seconds()*rate, max(rate, 1))
		c.last = now
		if c.tokens < 1 {
			return nil, time.Duration((1 - c.tokens) / rate * float64(time.Second))
		}
		c.tokens--
	}
	m, c.queue = c.queue[0], c.queue[1:]
	if m.key != "" && c.byKey[m.key] == m {
		delete(c.byKey, m.key)
	}
	return m, 0
}

func (c *wsConn) writer() {
	defer c.hub.wg.Done()
	defer c.shut(websocket.StatusNormalClosure, "")
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		m, wait := c.next()
		if m != nil {
			ctx, cancel := context.WithTimeout(context.Background(), c.hub.cfg.WriteTimeout)
			err := c.c.Write(ctx, websocket.MessageText, m.data)
			cancel()
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					c.hub.slow.Add(1)
					c.shut(closeSlow, "send timeout")
				}
				return
			}
			c.hub.sent.Add(1)
			continue
		}
		if wait <= 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-c.done:
			return
		case <-c.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

type clientMsg struct {
	Action  string          `json:"action"`
	Filters json.RawMessage `json:"filters"`
}

func (c *wsConn) reader() {
	defer c.hub.wg.Done()
	defer c.shut(websocket.StatusNormalClosure, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-c.done
		cancel()
	}()
	window := time.Now().Truncate(time.Second)
	count, floodSecs := 0, 0
	for {
		typ, data, err := c.c.Read(ctx)
		if err != nil {
			return
		}
		if now := time.Now().Truncate(time.Second); !now.Equal(window) {
			if count > c.hub.cfg.FloodPerSec && now.Sub(window) == time.Second {
				floodSecs++
			} else {
				floodSecs = 0
			}
			window, count = now, 0
		}
		count++
		if count > c.hub.cfg.FloodPerSec && time.Duration(floodSecs+1)*time.Second > c.hub.cfg.FloodDuration {
			c.shut(closeFlood, "client message flood")
			return
		}
		if typ == websocket.MessageBinary {
			c.shut(closeUnsupported, "binary frames are not supported")
			return
		}
		if len(data) > 4096 {
			c.control("error", map[string]any{"code": "MESSAGE_TOO_LARGE", "message": "client messages are limited to 4 KiB"})
			continue
		}
		var msg clientMsg
		if err := json.Unmarshal(data, &msg); err != nil {
			c.control("error", map[string]any{"code": "INVALID_MESSAGE", "message": "invalid JSON"})
			continue
		}
		c.handle(msg)
	}
}

func (c *wsConn) handle(msg clientMsg) {
	switch msg.Action {
	case "ping":
		c.control("pong", map[string]any{})
	case "subscribe", "unsubscribe":
		var f filters
		null := len(msg.Filters) == 0 || string(msg.Filters) == "null"
		if !null {
			if err := json.Unmarshal(msg.Filters, &f); err != nil || len(f.Types) > 64 || len(f.EspIDs) > 500 || len(f.SensorTypes) > 64 {
				c.control("error", map[string]any{"code": "INVALID_MESSAGE", "message": "filters must be {types, esp_ids, sensor_types} within the limits"})
				return
			}
		}
		c.mu.Lock()
		switch {
		case msg.Action == "subscribe":
			c.filter = f
		case null:
			c.filter = filters{}
		default:
			c.filter = filters{Types: remove(c.filter.Types, f.Types), EspIDs: remove(c.filter.EspIDs, f.EspIDs),
				SensorTypes: remove(c.filter.SensorTypes, f.SensorTypes)}
		}
		cur := c.filter
		c.mu.Unlock()
		c.control("subscription_ack", map[string]any{"filters": cur})
	default:
		c.control("error", map[string]any{"code": "UNKNOWN_ACTION", "message": "unknown action " + msg.Action})
	}
}

func remove(list, drop []string) []string {
	var out []string
	for _, x := range list {
		if !contains(drop, x) {
			out = append(out, x)
		}
	}
	return out
}

func (c *wsConn) pinger() {
	defer c.hub.wg.Done()
	t := time.NewTicker(c.hub.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), c.hub.cfg.PongTimeout)
			err := c.c.Ping(ctx)
			cancel()
			if err != nil {
				select {
				case <-c.done:
				default:
					c.shut(closeNoPong, "no pong")
				}
				return
			}
		}
	}
}
