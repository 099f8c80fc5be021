// Package live is the WebSocket live feed (docs/api.md §17): it streams the event
// bus to the connections the HTTP layer has authenticated. Each connection
// has its own bounded queue and writer, so producers never wait; state
// messages are coalesced, a token bucket limits the rate, the client's
// filters apply before queueing, and connections are closed on replacement,
// revocation, slowness and shutdown with the codes of docs/api.md §17.6.
package live

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/event"
)

// Config tunes the live feed (docs/api.md §17.4); zero values take defaults.
type Config struct {
	Rate          float64       // messages per second per connection (default 10; <0 disables)
	QueueMax      int           // queued messages per connection before 4002 (default 1000)
	WriteTimeout  time.Duration // one frame write (default 5 s)
	PingInterval  time.Duration // default 30 s
	PongTimeout   time.Duration // default 60 s
	MaxTotal      int           // connections in total (default 100)
	MaxPerUser    int           // connections per user (default 20)
	FloodPerSec   int           // client messages per second tolerated (default 20)
	FloodDuration time.Duration // sustained this long → 1008 (default 5 s)
}

func (c *Config) defaults() {
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
	if c.FloodPerSec <= 0 {
		c.FloodPerSec = 20
	}
	if c.FloodDuration <= 0 {
		c.FloodDuration = 5 * time.Second
	}
}

// Close codes (docs/api.md §17.6).
const (
	closeReplaced    websocket.StatusCode = 4000
	closeRevoked     websocket.StatusCode = 4001
	closeSlow        websocket.StatusCode = 4002
	closeNoPong      websocket.StatusCode = 4003
	closeGoingAway                        = websocket.StatusGoingAway
	closeUnsupported                      = websocket.StatusUnsupportedData
	closeFlood                            = websocket.StatusPolicyViolation
)

// Refusals of Accept. Nothing has been written when one is returned: the
// caller answers the handshake in its own error shape.
var (
	ErrStopping           = errors.New("live feed is stopping")
	ErrTooManyConnections = errors.New("WebSocket connection limit reached")
	ErrUserLimit          = errors.New("too many WebSocket connections for this user")
)

// stateful is the payload of a state message (docs/api.md §17.4): a newer one of
// the same type and subject replaces a queued one.
type stateful interface {
	Subject() string
}

// addressed is a payload for one user only (notifications, docs/api.md §17.3).
type addressed interface {
	Recipient() int64
}

type outMsg struct {
	typ   event.Type
	key   string // coalescing key of a state message, "" otherwise
	data  []byte // a control message's frame
	frame *lazyFrame
}

// bytes is the message's frame.
func (m *outMsg) bytes() []byte {
	if m.frame != nil {
		return m.frame.bytes()
	}
	return m.data
}

// lazyFrame is an event's frame, encoded once by the first writer that
// sends it and shared by every connection. The publisher only queues it
// (docs/decisions/0032-fewer-hand-offs.md), and an event that no
// connection's filters take is never encoded.
type lazyFrame struct {
	once sync.Once
	e    event.Event
	b    []byte
}

func (f *lazyFrame) bytes() []byte {
	f.once.Do(func() {
		var data any = f.e.Data
		if f.e.Data == nil {
			data = struct{}{}
		}
		f.b = envelope(string(f.e.Type()), f.e.Time, data)
		f.e = event.Event{}
	})
	return f.b
}

type connKey struct {
	user     int64
	clientID string
}

// Feed fans events out to WebSocket connections.
type Feed struct {
	cfg    Config
	events *event.Bus
	// tap hands events to the connections on the publisher's goroutine
	// while any connection is open (docs/decisions/0032-fewer-hand-offs.md).
	tap *event.Subscription

	mu    sync.Mutex
	conns map[connKey]*conn
	// open is a copy of conns' values for deliver, which runs on every
	// publisher's goroutine: replaced under mu on every change, read
	// without a lock.
	open   atomic.Pointer[[]*conn]
	closed bool
	wg     sync.WaitGroup
	stop   chan struct{}

	sent, coalesced, slow atomic.Int64
}

// New returns a feed of events; with reg it registers the
// god_kaiser_ws_* metrics of docs/api.md §13.
func New(cfg Config, events *event.Bus, reg prometheus.Registerer) *Feed {
	cfg.defaults()
	f := &Feed{
		cfg:    cfg,
		events: events,
		conns:  map[connKey]*conn{},
		stop:   make(chan struct{}),
	}
	if reg != nil {
		f.register(reg)
	}
	return f
}

func (f *Feed) register(reg prometheus.Registerer) {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "god_kaiser_ws_connections", Help: "Open WebSocket connections."},
			func() float64 { return float64(f.Stats().ActiveConnections) }),
		counter("god_kaiser_ws_messages_sent_total", "WebSocket messages sent.", &f.sent),
		counter("god_kaiser_ws_messages_coalesced_total", "State messages replaced in a queue by a newer one.", &f.coalesced),
		counter("god_kaiser_ws_slow_client_disconnects_total", "Connections closed as slow consumers.", &f.slow),
	)
}

// Config is the configuration the feed runs with, defaults applied.
func (f *Feed) Config() Config { return f.cfg }

// Stats are the feed's figures for GET /health/detailed (docs/api.md §13).
type Stats struct {
	ActiveConnections     int
	MessagesSent          int64
	MessagesCoalesced     int64
	SlowClientDisconnects int64
}

// Stats reports the open connections and the counters since start.
func (f *Feed) Stats() Stats {
	f.mu.Lock()
	n := len(f.conns)
	f.mu.Unlock()
	return Stats{
		ActiveConnections:     n,
		MessagesSent:          f.sent.Load(),
		MessagesCoalesced:     f.coalesced.Load(),
		SlowClientDisconnects: f.slow.Load(),
	}
}

// frame is the docs/api.md §17.2 envelope; the field order keeps the bytes the
// map-based encoding produced (keys sorted).
type frame struct {
	Data      any    `json:"data"`
	Timestamp int64  `json:"timestamp"`
	Type      string `json:"type"`
}

func envelope(typ string, at time.Time, data any) []byte {
	b, _ := json.Marshal(frame{Data: data, Timestamp: at.Unix(), Type: typ})
	return b
}

// Accept upgrades an authenticated request of userID to a live connection
// keyed by (userID, clientID); tokenID is the access token's id, which a
// logout revokes. A newer connection with the same key replaces the older
// one (4000). It returns ErrStopping, ErrTooManyConnections or ErrUserLimit
// with nothing written; any other error comes from the upgrade, which has
// answered the request itself.
func (f *Feed) Accept(w http.ResponseWriter, r *http.Request, userID int64, clientID, tokenID string) error {
	c, old, err := f.admit(connKey{user: userID, clientID: clientID}, tokenID)
	if err != nil {
		return err
	}
	if old != nil {
		defer old.shut(closeReplaced, "replaced by a newer connection")
	}

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		c.shut(websocket.StatusInternalError, "")
		c.stopRead()
		return err
	}
	ws.SetReadLimit(64 << 10)

	f.mu.Lock()
	c.ws = ws
	select {
	case <-c.done:
		// Replaced, revoked or closed during the upgrade: shut had no socket to close.
		code, reason := c.closeCode, c.closeReason
		f.mu.Unlock()
		c.writeClose(code, reason)
		return nil
	default:
	}
	f.wg.Add(3)
	f.mu.Unlock()
	go c.writer()
	go c.reader()
	go c.pinger()
	return nil
}

// admit checks the limits and registers the connection before the upgrade:
// the client may act as soon as it sees the 101, and events from then on
// must already reach its queue. It returns the connection it replaces.
func (f *Feed) admit(key connKey, tokenID string) (c, old *conn, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil, ErrStopping
	}

	old = f.conns[key]
	perUser := 0
	for k := range f.conns {
		if k.user == key.user {
			perUser++
		}
	}
	if old == nil && len(f.conns) >= f.cfg.MaxTotal {
		return nil, nil, ErrTooManyConnections
	}
	if old == nil && perUser >= f.cfg.MaxPerUser {
		return nil, nil, ErrUserLimit
	}

	c = &conn{
		feed:   f,
		key:    key,
		jti:    tokenID,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		tokens: float64(max(f.cfg.Rate, 1)),
		last:   time.Now(),
	}
	c.readCtx, c.stopRead = context.WithCancel(context.Background())
	f.conns[key] = c
	f.connsChanged()
	f.attach()
	return c, old, nil
}

// connsChanged renews the copy deliver reads. f.mu is held.
func (f *Feed) connsChanged() {
	open := make([]*conn, 0, len(f.conns))
	for _, c := range f.conns {
		open = append(open, c)
	}
	f.open.Store(&open)
}

// attach taps the event stream when the first connection opens; with no
// connection the feed costs the producers nothing. f.mu is held.
func (f *Feed) attach() {
	if f.tap != nil || f.events == nil {
		return
	}
	// Remote events too: a replica's clients see what other replicas
	// ingested (docs/decisions/0029-replicas.md).
	f.tap = f.events.TapWithRemote(f.deliver)
}

// detach unsubscribes when the last connection closes. f.mu is held.
func (f *Feed) detach() {
	if f.tap == nil || len(f.conns) > 0 {
		return
	}
	f.events.Unsubscribe(f.tap)
	f.tap = nil
}

// deliver offers e to every entitled connection. It runs on the
// publisher's goroutine and never blocks: offering only queues, and the
// connections' writers encode and send.
func (f *Feed) deliver(e event.Event) {
	var conns []*conn
	if p := f.open.Load(); p != nil {
		conns = *p
	}
	if len(conns) == 0 {
		return
	}

	msg := &outMsg{typ: e.Type(), frame: &lazyFrame{e: e}}
	if st, ok := e.Data.(stateful); ok {
		msg.key = string(e.Type()) + ":" + st.Subject()
	}

	to, owned := e.Data.(addressed)
	for _, c := range conns {
		// Notifications go only to the owning user's connections (docs/api.md §17.3).
		if owned && c.key.user != to.Recipient() {
			continue
		}
		c.offer(msg, e.Data)
	}
}

// Revoke closes the connections of a user (all, or those opened with the
// token tokenID) with 4001.
func (f *Feed) Revoke(userID int64, tokenID string) {
	f.mu.Lock()
	var victims []*conn
	for k, c := range f.conns {
		if k.user == userID && (tokenID == "" || c.jti == tokenID) {
			victims = append(victims, c)
		}
	}
	f.mu.Unlock()

	for _, c := range victims {
		c.shut(closeRevoked, "authorisation withdrawn")
	}
}

// Close ends every connection with 1001 and refuses new ones; it returns
// when the feed's goroutines have ended.
func (f *Feed) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	var all []*conn
	for _, c := range f.conns {
		all = append(all, c)
	}
	if f.tap != nil {
		f.events.Unsubscribe(f.tap)
		f.tap = nil
	}
	f.mu.Unlock()

	close(f.stop)
	for _, c := range all {
		c.shut(closeGoingAway, "hub shutting down")
	}
	f.wg.Wait()
}
