package live

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/kaiserhub/kaiser/internal/event"
)

// The control messages of docs/api.md §17.2: never filtered, never rate-limited.
const (
	typeAck   = "subscription_ack"
	typePong  = "pong"
	typeError = "error"
)

type controlError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// subscriptionAck carries the connection's whole filter set (docs/api.md §17.2).
type subscriptionAck struct {
	Filters []filters `json:"filters"`
}

// conn is one client connection with its queue and its writer, reader and
// pinger goroutines.
type conn struct {
	feed *Feed
	ws   *websocket.Conn // nil until the upgrade is done
	key  connKey
	jti  string

	// Cancelling a read drops the socket at once, without a close frame:
	// only a close handshake that does not finish uses it.
	readCtx  context.Context
	stopRead context.CancelFunc

	// Set by shut under feed.mu for an upgrade still in progress.
	closeCode   websocket.StatusCode
	closeReason string

	mu       sync.Mutex
	filters  filterSet
	queue    []*outMsg
	byKey    map[string]*outMsg
	priority []*outMsg // emergency and control messages: not rate-limited
	tokens   float64
	last     time.Time
	wake     chan struct{}
	done     chan struct{}
	once     sync.Once
}

// offer hands a message over without blocking. Filters apply first, except
// to emergency messages, which every connection receives (docs/api.md §17.3).
func (c *conn) offer(m *outMsg, data event.Payload) {
	c.mu.Lock()
	if m.typ != event.TypeEmergency && !c.filters.match(m.typ, data) {
		c.mu.Unlock()
		return
	}
	switch {
	case m.typ == event.TypeEmergency:
		c.priority = append(c.priority, m)
	case m.key != "" && c.byKey[m.key] != nil:
		// Replace in place: it keeps its position and takes the newer content.
		*c.byKey[m.key] = *m
		c.feed.coalesced.Add(1)
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
	over := len(c.queue) > c.feed.cfg.QueueMax
	c.mu.Unlock()

	if over {
		c.feed.slow.Add(1)
		c.shut(closeSlow, "slow consumer")
		return
	}
	c.signal()
}

func (c *conn) control(typ string, data any) {
	c.mu.Lock()
	c.priority = append(c.priority, &outMsg{data: envelope(typ, time.Now(), data)})
	c.mu.Unlock()
	c.signal()
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// shut closes the connection once with code; the goroutines then end, the
// reader when the close handshake closes the socket. Without a socket yet,
// Accept sends the close frame once the upgrade is done.
func (c *conn) shut(code websocket.StatusCode, reason string) {
	c.once.Do(func() {
		f := c.feed
		f.mu.Lock()
		// Under f.mu, so that Accept sees either the socket-less shut or none.
		close(c.done)
		c.closeCode, c.closeReason = code, reason
		if f.conns[c.key] == c {
			delete(f.conns, c.key)
			f.connsChanged()
		}
		f.detach()
		ws := c.ws
		if ws != nil {
			f.wg.Add(1)
		}
		f.mu.Unlock()

		if ws != nil {
			go func() {
				defer f.wg.Done()
				c.writeClose(code, reason)
			}()
		}
	})
}

// writeClose runs the close handshake; a peer that does not answer within
// 1 s (a stalled client) has its connection dropped.
func (c *conn) writeClose(code websocket.StatusCode, reason string) {
	defer c.stopRead()
	done := make(chan struct{})
	go func() {
		_ = c.ws.Close(code, reason)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		c.stopRead() // CloseNow would wait for the handshake in progress
		<-done
	}
}

// next pops the next message allowed by the rate limit; wait > 0 says when
// a token will be available.
func (c *conn) next() (m *outMsg, wait time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.priority) > 0 {
		m, c.priority = c.priority[0], c.priority[1:]
		return m, 0
	}
	if len(c.queue) == 0 {
		return nil, 0
	}
	rate := c.feed.cfg.Rate
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

func (c *conn) writer() {
	defer c.feed.wg.Done()
	defer c.shut(websocket.StatusNormalClosure, "")
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		m, wait := c.next()
		if m != nil {
			if !c.write(m) {
				return
			}
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

// write sends one frame; a write that does not finish in time marks a slow
// consumer (4002).
func (c *conn) write(m *outMsg) bool {
	ctx, cancel := context.WithTimeout(context.Background(), c.feed.cfg.WriteTimeout)
	err := c.ws.Write(ctx, websocket.MessageText, m.bytes())
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			c.feed.slow.Add(1)
			c.shut(closeSlow, "send timeout")
		}
		return false
	}
	c.feed.sent.Add(1)
	return true
}

type clientMsg struct {
	Action  string          `json:"action"`
	Filters json.RawMessage `json:"filters"`
}

// reader handles the client's messages until the socket closes. shut does
// not cancel its read: that would drop the socket before the close frame
// is out, and the client would not learn why it was closed (docs/api.md §17.6).
func (c *conn) reader() {
	defer c.feed.wg.Done()
	defer c.shut(websocket.StatusNormalClosure, "")

	cfg := c.feed.cfg
	window := time.Now().Truncate(time.Second)
	count, floodSecs := 0, 0
	for {
		typ, data, err := c.ws.Read(c.readCtx)
		if err != nil {
			return
		}
		if now := time.Now().Truncate(time.Second); !now.Equal(window) {
			if count > cfg.FloodPerSec && now.Sub(window) == time.Second {
				floodSecs++
			} else {
				floodSecs = 0
			}
			window, count = now, 0
		}
		count++
		if count > cfg.FloodPerSec && time.Duration(floodSecs+1)*time.Second > cfg.FloodDuration {
			c.shut(closeFlood, "client message flood")
			return
		}

		if typ == websocket.MessageBinary {
			c.shut(closeUnsupported, "binary frames are not supported")
			return
		}
		if len(data) > 4096 {
			c.control(typeError, controlError{Code: "MESSAGE_TOO_LARGE", Message: "client messages are limited to 4 KiB"})
			continue
		}
		var msg clientMsg
		if err := json.Unmarshal(data, &msg); err != nil {
			c.control(typeError, controlError{Code: "INVALID_MESSAGE", Message: "invalid JSON"})
			continue
		}
		c.handle(msg)
	}
}

func (c *conn) handle(msg clientMsg) {
	switch msg.Action {
	case "ping":
		c.control(typePong, struct{}{})
	case "subscribe", "unsubscribe":
		c.subscribe(msg)
	default:
		c.control(typeError, controlError{Code: "UNKNOWN_ACTION", Message: "unknown action " + msg.Action})
	}
}

// subscribe adds a filter to the connection's set (subscribe), clears the
// set (unsubscribe without filters) or removes a filter or values from it
// (unsubscribe with filters), then acknowledges with the whole set.
func (c *conn) subscribe(msg clientMsg) {
	var f filters
	null := len(msg.Filters) == 0 || string(msg.Filters) == "null"
	if !null {
		if err := json.Unmarshal(msg.Filters, &f); err != nil {
			c.control(typeError, controlError{
				Code:    "INVALID_MESSAGE",
				Message: "filters must be {types, esp_ids, sensor_types}, each a list of strings",
			})
			return
		}
	}

	c.mu.Lock()
	var err error
	switch {
	case msg.Action == "subscribe":
		c.filters, err = c.filters.add(f)
	case null:
		c.filters = nil
	default:
		c.filters = c.filters.remove(f)
	}
	cur := c.filters.view()
	c.mu.Unlock()

	if err != nil {
		c.control(typeError, controlError{Code: "INVALID_MESSAGE", Message: err.Error()})
		return
	}
	c.control(typeAck, subscriptionAck{Filters: cur})
}

func (c *conn) pinger() {
	defer c.feed.wg.Done()
	t := time.NewTicker(c.feed.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), c.feed.cfg.PongTimeout)
			err := c.ws.Ping(ctx)
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
