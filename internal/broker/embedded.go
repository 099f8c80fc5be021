// Package broker is the hub's message bus: by default an embedded MQTT
// broker (mochi-mqtt) with an in-process subscription, behind a small
// interface so an external broker client can replace it.
package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// Deliver receives one inbound message. It must only decode and enqueue.
// replay marks a delivery from the retained store (docs/protocol.md §5.6).
type Deliver func(topic string, payload []byte, retain, replay bool)

// DeviceRoots tells the broker the recorded kaiser root of a known,
// approved device, so it can restore the firmware's subscriptions (docs/protocol.md M4).
type DeviceRoots func(espID string) (kaiserID string, ok bool)

// Config configures the embedded broker.
type Config struct {
	Addr   string // TCP listen address, e.g. ":1883"
	Logger *slog.Logger
	// Registerer receives the broker metrics; nil disables them.
	Registerer prometheus.Registerer
	// Roots enables subscription restoring (M4) when set.
	Roots DeviceRoots
}

// Embedded is the in-process MQTT broker.
type Embedded struct {
	cfg      Config
	server   *mqtt.Server
	log      *slog.Logger
	listener *listeners.TCP
	addr     atomic.Value // string: the bound address
	stopping atomic.Bool
	serving  atomic.Bool
	subID    atomic.Int32
	closeMu  sync.Mutex
	closed   bool

	// sessions are the network clients attached right now. mochi's own
	// client list can lose a client whose id took over a session that was
	// ending at that moment (the old session deletes the id on its way
	// out), and its Close then waits for that client forever; shutdown
	// disconnects every session tracked here instead.
	sessions sessionSet

	published *prometheus.CounterVec
	failures  *prometheus.CounterVec
	restored  prometheus.Counter
}

// NewEmbedded creates the broker with the hub's hook; nothing listens yet.
func NewEmbedded(cfg Config) (*Embedded, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	caps := mqtt.NewDefaultServerCapabilities()
	// Bound what offline sessions and slow clients may hold (docs/architecture.md:
	// mochi pitfalls). Devices use clean sessions; these limits protect
	// against other clients.
	caps.MaximumSessionExpiryInterval = 3600
	caps.MaximumMessageExpiryInterval = 3600
	caps.MaximumClientWritesPending = 1024
	caps.MaximumInflight = 1024
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		Logger:       cfg.Logger.With("component", "mqtt"),
		// $SYS topics are not used; keep the interval long.
		SysTopicResendInterval: 3600,
	})
	e := &Embedded{cfg: cfg, server: srv, log: cfg.Logger}
	e.addr.Store("")
	if err := srv.AddHook(&hook{e: e}, nil); err != nil {
		return nil, fmt.Errorf("broker hook: %w", err)
	}
	e.published = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "god_kaiser_mqtt_messages_published_total",
		Help: "Messages the hub published, by kind."}, []string{"kind"})
	e.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "god_kaiser_mqtt_publish_failures_total",
		Help: "Hub publishes that failed, by kind."}, []string{"kind"})
	e.restored = prometheus.NewCounter(prometheus.CounterOpts{Name: "kaiser_broker_subscriptions_restored_total",
		Help: "Device subscription sets restored by the embedded broker on reconnect (docs/protocol.md M4)."})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(e.published, e.failures, e.restored,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kaiser_broker_clients",
				Help: "MQTT clients connected to the embedded broker."}, func() float64 { return float64(e.Clients()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kaiser_broker_retained_messages",
				Help: "Retained messages held by the embedded broker."}, func() float64 {
				return float64(atomic.LoadInt64(&srv.Info.Retained))
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kaiser_broker_messages_dropped",
				Help: "Messages the embedded broker dropped for slow clients."}, func() float64 {
				return float64(atomic.LoadInt64(&srv.Info.MessagesDropped))
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "god_kaiser_mqtt_connected",
				Help: "1 while the hub's broker is serving."}, func() float64 {
				if e.Connected() {
					return 1
				}
				return 0
			}))
	}
	return e, nil
}

// Subscribe registers the in-process subscription for filters. Retained
// messages handed over inside this call are marked as replays.
func (e *Embedded) Subscribe(filters []string, deliver Deliver) error {
	for _, f := range filters {
		id := int(e.subID.Add(1))
		err := e.server.Subscribe(f, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			deliver(pk.TopicName, pk.Payload, pk.FixedHeader.Retain, e.isRetainedCopy(pk))
		})
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", f, err)
		}
	}
	return nil
}

// isRetainedCopy reports whether pk is the broker's stored retained packet
// rather than a live PUBLISH: the store keeps its own copy of the payload, so
// identity of the payload's backing array tells the two apart exactly.
func (e *Embedded) isRetainedCopy(pk packets.Packet) bool {
	if len(pk.Payload) == 0 {
		return false
	}
	stored, ok := e.server.Topics.Retained.Get(pk.TopicName)
	return ok && len(stored.Payload) > 0 && &stored.Payload[0] == &pk.Payload[0]
}

// Start opens the TCP listener; devices can connect from now on.
func (e *Embedded) Start() error {
	l := listeners.NewTCP(listeners.Config{ID: "tcp", Address: e.cfg.Addr})
	if err := e.server.AddListener(l); err != nil {
		return fmt.Errorf("mqtt listener %s: %w", e.cfg.Addr, err)
	}
	e.listener = l
	e.addr.Store(l.Address())
	if err := e.server.Serve(); err != nil {
		return fmt.Errorf("mqtt serve: %w", err)
	}
	e.serving.Store(true)
	return nil
}

// Addr is the bound listener address (useful with ":0").
func (e *Embedded) Addr() string { return e.addr.Load().(string) }

// Publish publishes a hub message. The embedded broker delivers inline, so a
// nil error means the broker accepted it (docs/protocol.md K10 "sent").
func (e *Embedded) Publish(_ context.Context, topic string, payload []byte, qos byte, retain bool) error {
	kind := publishKind(topic)
	if e.isClosed() {
		e.failures.WithLabelValues(kind).Inc()
		return ErrUnavailable
	}
	if err := e.server.Publish(topic, payload, retain, qos); err != nil {
		e.failures.WithLabelValues(kind).Inc()
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	e.published.WithLabelValues(kind).Inc()
	return nil
}

// ErrUnavailable is returned when the broker is not serving.
var ErrUnavailable = errors.New("mqtt broker unavailable")

// Connected reports whether the broker is serving.
func (e *Embedded) Connected() bool { return e.serving.Load() && !e.isClosed() }

// Clients is the number of connected network clients.
func (e *Embedded) Clients() int {
	n := 0
	for _, cl := range e.server.Clients.GetAll() {
		if !cl.Net.Inline && !cl.Closed() {
			n++
		}
	}
	return n
}

// closeWait bounds how long Close waits for attached clients to leave.
const closeWait = 3 * time.Second

// sessionSet tracks attached network clients by identity, not by id.
type sessionSet struct {
	mu     sync.Mutex
	m      map[*mqtt.Client]struct{}
	pruned int // size after the last prune of closed clients
}

func (ss *sessionSet) add(cl *mqtt.Client) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[*mqtt.Client]struct{}{}
	}
	ss.m[cl] = struct{}{}

	// A session that failed after it was established may never report its
	// disconnect; prune closed ones whenever the set has doubled.
	if len(ss.m) > 2*max(ss.pruned, 64) {
		for c := range ss.m {
			if c.Closed() {
				delete(ss.m, c)
			}
		}
		ss.pruned = len(ss.m)
	}
}

func (ss *sessionSet) remove(cl *mqtt.Client) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, cl)
}

func (ss *sessionSet) all() []*mqtt.Client {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]*mqtt.Client, 0, len(ss.m))
	for c := range ss.m {
		out = append(out, c)
	}
	return out
}

// disconnectAll disconnects every network client, whether or not mochi's
// client list still knows it. It never calls mochi's GetByListener: that
// takes the list's read lock twice, and deadlocks when a connecting or
// leaving client waits for the write lock in between.
func (e *Embedded) disconnectAll(string) {
	for _, cl := range e.server.Clients.GetAll() {
		if !cl.Net.Inline && !cl.Closed() {
			_ = e.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
	for _, cl := range e.sessions.all() {
		if !cl.Closed() {
			_ = e.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// StopAccepting closes the listener and disconnects every client, then waits
// until each client's read loop has ended. After it returns no PUBLISH can
// arrive; every PUBLISH read before has been delivered to the subscription.
// Wills fired by this disconnect are not device facts; Stopping tells
// handlers to ignore them.
func (e *Embedded) StopAccepting(ctx context.Context) error {
	e.stopping.Store(true)
	if e.listener == nil {
		return nil
	}
	e.server.Listeners.Close(e.listener.ID(), e.disconnectAll)
	done := make(chan struct{})
	go func() { e.server.Listeners.ClientsWg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt clients did not disconnect: %w", ctx.Err())
	}
}

// Stopping reports whether shutdown has begun.
func (e *Embedded) Stopping() bool { return e.stopping.Load() }

func (e *Embedded) isClosed() bool {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	return e.closed
}

// Close stops the broker.
func (e *Embedded) Close() error {
	e.closeMu.Lock()
	if e.closed {
		e.closeMu.Unlock()
		return nil
	}
	e.closed = true
	e.closeMu.Unlock()
	e.serving.Store(false)

	e.disconnectAll("all")
	// mochi's Close lists clients with GetByListener (see disconnectAll):
	// let the disconnected clients leave first, so no one is waiting for
	// the list's write lock when it does.
	left := make(chan struct{})
	go func() {
		e.server.Listeners.ClientsWg.Wait()
		close(left)
	}()
	select {
	case <-left:
	case <-time.After(closeWait):
	}

	done := make(chan struct{})
	go func() {
		_ = e.server.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(closeWait):
		// The stuck client's goroutine ends when its connection does; the
		// hub's shutdown does not wait for it.
		return fmt.Errorf("mqtt broker close: clients still attached after %s", closeWait)
	}
}

// publishKind maps a hub topic to a bounded metric label.
func publishKind(topic string) string {
	switch {
	case strings.HasPrefix(topic, "kaiser/broadcast/"):
		return "emergency"
	case strings.HasSuffix(topic, "/server/status"):
		return "server_status"
	case strings.HasSuffix(topic, "/system/heartbeat/ack"):
		return "heartbeat_ack"
	case strings.HasSuffix(topic, "/config"):
		return "config"
	case strings.HasSuffix(topic, "/command"):
		return "command"
	case strings.Contains(topic, "/zone/") || strings.Contains(topic, "/subzone/"):
		return "zone"
	case strings.HasSuffix(topic, "/processed"):
		return "sensor_processed"
	case strings.HasSuffix(topic, "/actuator/emergency"):
		return "emergency"
	}
	return "other"
}

// hook enforces device identity on writes and restores device subscriptions.
type hook struct {
	mqtt.HookBase
	e *Embedded
}

func (h *hook) ID() string { return "kaiser" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnectAuthenticate,
		mqtt.OnACLCheck,
		mqtt.OnSessionEstablish,
		mqtt.OnSessionEstablished,
		mqtt.OnDisconnect,
	}, []byte{b})
}

// OnSessionEstablish tracks the network client for shutdown.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if !cl.Net.Inline {
		h.e.sessions.add(cl)
	}
}

// OnDisconnect forgets the client.
func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.e.sessions.remove(cl)
}

// OnConnectAuthenticate admits anonymous clients (the firmware's default) but
// refuses a will the client could not publish itself, so nobody can plant a
// forged LWT for another device.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if h.e.stopping.Load() {
		return false
	}
	if pk.Connect.WillFlag && !mayWrite(cl.ID, pk.Connect.WillTopic) {
		h.e.log.Warn("mqtt connect refused: will topic not writable by client",
			"client_id", cl.ID,
			"will_topic", pk.Connect.WillTopic)
		return false
	}
	return true
}

// OnACLCheck: reads are open in anonymous mode; writes are checked.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !write || cl.Net.Inline {
		return true
	}
	if mayWrite(cl.ID, topic) {
		return true
	}
	h.e.log.Warn("mqtt publish refused", "client_id", cl.ID, "topic", topic)
	return false
}

// mayWrite is the write rule: under `kaiser/`, a client may publish only
// device→hub topics of the device whose id equals its client id; hub→device
// topics and everything else there belong to the hub.
func mayWrite(clientID, topic string) bool {
	if !strings.HasPrefix(topic, "kaiser/") {
		return true
	}
	if contract.IsHubToDevice(topic) {
		return false
	}
	parts := strings.SplitN(topic, "/", 5)
	return len(parts) == 5 && parts[2] == "esp" && parts[3] == clientID && parts[4] != ""
}

// OnSessionEstablished restores a known device's firmware subscriptions on
// its recorded root, so a baseline device that reconnects without
// subscribing (Q3) still hears the hub (docs/protocol.md M4).
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if h.e.cfg.Roots == nil || cl.Net.Inline {
		return
	}
	root, ok := h.e.cfg.Roots(cl.ID)
	if !ok {
		return
	}
	for _, f := range contract.DeviceSubscriptions(root, cl.ID) {
		sub := packets.Subscription{Filter: f, Qos: 0}
		cl.State.Subscriptions.Add(f, sub)
		h.e.server.Topics.Subscribe(cl.ID, sub)
	}
	h.e.restored.Inc()
}
