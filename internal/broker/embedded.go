// Package broker is the hub's message bus: by default an embedded MQTT
// broker (mochi-mqtt) with an in-process subscription, behind a small
// interface so an external broker client can replace it.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
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
	// Known reports a registered device id (pending, approved or
	// rejected): the door's limits delay such a CONNECT, never refuse it
	// (docs/protocol.md M5). Nil: no id is known.
	Known func(espID string) bool
	// Fleet is the number of registered devices; the client limit in force
	// is at least twice it. Nil: 0.
	Fleet func() int
	// Limits bound what network clients can make the broker hold.
	Limits Limits
	// TLSAddr, when set, opens a second listener that speaks MQTT over TLS,
	// serving the certificate of TLS (docs/decisions/0019-tls.md). The door's limits belong to the
	// broker, not to a listener: both listeners share them.
	TLSAddr string
	TLS     *tls.Config
	// Auth is who may connect and what they may do; "" is AuthOff
	// (docs/decisions/0018-device-credentials.md).
	Auth AuthMode
	// Credentials checks device passwords; required in AuthDevices mode.
	Credentials Credentials
}

// Embedded is the in-process MQTT broker.
type Embedded struct {
	cfg      Config
	limits   Limits
	server   *mqtt.Server
	log      *slog.Logger
	listener *doorListener
	addr     atomic.Value // string: the bound address
	stopping atomic.Bool
	serving  atomic.Bool
	subID    atomic.Int32
	closeMu  sync.Mutex
	closed   bool

	// tlsListener is the MQTT-over-TLS listener (nil: none); tls.go.
	tlsListener *doorListener
	tlsAddr     atomic.Value // string

	// sessions are the network clients attached right now. mochi's own
	// client list can lose a client whose id took over a session that was
	// ending at that moment (the old session deletes the id on its way
	// out), and its Close then waits for that client forever; shutdown
	// disconnects every session tracked here instead.
	sessions sessionSet

	// attached maps each network connection to a channel closed when
	// mochi has finished with it, its session's cleanup included; a
	// reconnecting client id waits for it (predecessor.go).
	attached sync.Map // net.Conn → chan struct{}
	// turns lets the connections of one client id start one at a time.
	turns idTurns

	// The door (docs/decisions/0012-mqtt-door.md): connect rate, retained
	// store bound, and the clock and wait the connect rate uses (tests
	// replace them).
	connects       *bucket
	retained       *retainedBudget
	own            ownRetained // the hub's own retained messages, renewed on expiry
	connectTimeout time.Duration
	now            func() time.Time
	wait           func(d time.Duration, stop <-chan struct{})
	stop           chan struct{} // closed when shutdown begins: delayed CONNECTs end
	stopOnce       sync.Once
	// stopCtx ends with stop: waits for a QoS 1 message's settlement end.
	stopCtx    context.Context
	stopCancel context.CancelFunc

	// settledSubs are the subscriptions that settle QoS ≥1 messages before
	// their PUBACK (docs/protocol.md M3).
	settledMu   sync.RWMutex
	settledSubs []*settledSub
	settling    atomic.Int64

	// audience answers HasSubscribers.
	audience audience

	published  *prometheus.CounterVec
	failures   *prometheus.CounterVec
	restored   prometheus.Counter
	refused    *prometheus.CounterVec
	delayed    prometheus.Counter
	notStored  prometheus.Counter
	suppressed prometheus.Counter
}

// NewEmbedded creates the broker with the hub's hook; nothing listens yet.
func NewEmbedded(cfg Config) (*Embedded, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("mqtt limits: %w", err)
	}
	if cfg.Auth == "" {
		cfg.Auth = AuthOff
	}
	if _, err := ParseAuthMode(string(cfg.Auth)); err != nil {
		return nil, err
	}
	if cfg.Auth == AuthDevices && cfg.Credentials == nil {
		return nil, errors.New("mqtt auth devices: no credential store")
	}
	limits := cfg.Limits.withDefaults()
	e := &Embedded{
		cfg:            cfg,
		limits:         limits,
		connects:       newBucket(limits.ConnectRate, limits.ConnectDelay),
		retained:       newRetainedBudget(limits.RetainedMessages, limits.RetainedBytes),
		connectTimeout: connectTimeout,
		now:            time.Now,
		wait:           waitUnlessStopped,
		stop:           make(chan struct{}),
	}
	e.stopCtx, e.stopCancel = context.WithCancel(context.Background())
	e.registerMetrics()
	rate := newLineRate(func() time.Time { return e.now() })
	rate.suppressed = e.suppressed.Inc
	e.log = newBoundedLogger(cfg.Logger, rate)
	e.addr.Store("")
	e.tlsAddr.Store("")

	caps := mqtt.NewDefaultServerCapabilities()
	// Bound what offline sessions and slow clients may hold (docs/architecture.md:
	// mochi pitfalls). Devices use clean sessions; these limits protect
	// against other clients.
	caps.MaximumSessionExpiryInterval = 3600
	caps.MaximumMessageExpiryInterval = 3600
	// Each connection's outbound queue is allocated whole at connect:
	// 256 pointers (2 KiB) per client; a device gets a few messages at a
	// time, a subscriber falling 256 behind loses QoS 0 deliveries
	// (counted by mochi) rather than the hub's memory growing
	// (docs/decisions/0021-footprint.md).
	caps.MaximumClientWritesPending = 256
	caps.MaximumInflight = uint16(limits.Inflight)
	caps.ReceiveMaximum = uint16(limits.Inflight)
	// mochi allocates a packet's declared length before reading it: the
	// limit is checked on the fixed header, before the allocation.
	caps.MaximumPacketSize = uint32(limits.MaxPacket)
	e.server = mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		Logger:       e.log.With("component", "mqtt"),
		// $SYS topics are not used; keep the interval long.
		SysTopicResendInterval: 3600,
	})
	if err := e.server.AddHook(&hook{e: e}, nil); err != nil {
		return nil, fmt.Errorf("broker hook: %w", err)
	}
	if cfg.Registerer != nil {
		e.registerGauges(cfg.Registerer)
	}
	return e, nil
}

func (e *Embedded) registerMetrics() {
	e.published, e.failures = publishCounters()
	e.restored = prometheus.NewCounter(prometheus.CounterOpts{Name: "kaiser_broker_subscriptions_restored_total",
		Help: "Device subscription sets restored by the embedded broker on reconnect (docs/protocol.md M4)."})
	e.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaiser_broker_refused_total",
		Help: "Connections, publishes and wills the embedded broker refused, by reason."}, []string{"reason"})
	e.delayed = prometheus.NewCounter(prometheus.CounterOpts{Name: "kaiser_broker_connects_delayed_total",
		Help: "CONNACKs delayed by the connect rate (docs/protocol.md M5)."})
	e.notStored = prometheus.NewCounter(prometheus.CounterOpts{Name: "kaiser_broker_retained_not_stored_total",
		Help: "Retained messages delivered live but not stored: the retained store was full."})
	e.suppressed = prometheus.NewCounter(prometheus.CounterOpts{Name: "kaiser_broker_log_lines_suppressed_total",
		Help: "Broker log lines not written: the same message more than 5 times a second."})
}

func (e *Embedded) registerGauges(reg prometheus.Registerer) {
	srv := e.server
	reg.MustRegister(e.published, e.failures, e.restored, e.refused, e.delayed, e.notStored, e.suppressed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kaiser_broker_clients",
			Help: "MQTT clients connected to the embedded broker."}, func() float64 { return float64(e.Clients()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kaiser_broker_retained_messages",
			Help: "Retained messages held by the embedded broker."}, func() float64 {
			return float64(atomic.LoadInt64(&srv.Info.Retained))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kaiser_broker_retained_bytes",
			Help: "Topic and payload bytes of the retained messages held by the embedded broker."}, func() float64 {
			_, n := e.retained.held()
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kaiser_broker_settling",
			Help: "QoS 1 PUBLISHes waiting to be committed or dropped before their PUBACK."}, func() float64 {
			return float64(e.Settling())
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

// beginStop ends delayed CONNECTs and waits for settlements.
func (e *Embedded) beginStop() {
	close(e.stop)
	e.stopCancel()
}

// Subscribe registers the in-process subscription for filters. Retained
// messages handed over inside this call are marked as replays. mochi calls
// it after it has acknowledged a QoS 1 PUBLISH; SubscribeSettled is for a
// subscriber that must answer before.
func (e *Embedded) Subscribe(filters []string, deliver Deliver) error {
	return e.subscribe(filters, func(topic string, payload []byte, _ byte, retain, replay bool) {
		deliver(topic, payload, retain, replay)
	})
}

// subscribe registers deliver for filters. Only the fields go on, not
// mochi's 800-byte packet: mochi already hands copies of it down a deep
// call chain in the publishing client's read goroutine, and every further
// copy there is stack that, at 1,000 connections, is resident memory
// (docs/decisions/0028-footprint-per-message.md).
func (e *Embedded) subscribe(filters []string, deliver func(topic string, payload []byte, qos byte, retain, replay bool)) error {
	for _, f := range filters {
		id := int(e.subID.Add(1))
		e.audience.changed()
		err := e.server.Subscribe(f, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			deliver(pk.TopicName, pk.Payload, pk.FixedHeader.Qos, pk.FixedHeader.Retain, e.isRetainedCopy(pk.TopicName, pk.Payload))
		})
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", f, err)
		}
	}
	return nil
}

// isRetainedCopy reports whether payload is the broker's stored retained one
// rather than a live PUBLISH: the store keeps its own copy of the payload, so
// identity of the payload's backing array tells the two apart exactly.
func (e *Embedded) isRetainedCopy(topic string, payload []byte) bool {
	if len(payload) == 0 {
		return false
	}
	stored, ok := e.server.Topics.Retained.Get(topic)
	return ok && len(stored.Payload) > 0 && &stored.Payload[0] == &payload[0]
}

// Start opens the TCP listener, and the TLS one if configured; devices
// can connect from now on.
func (e *Embedded) Start() error {
	l := newDoorListener(e, "tcp", e.cfg.Addr, nil)
	if err := e.server.AddListener(l); err != nil {
		return fmt.Errorf("mqtt listener %s: %w", e.cfg.Addr, err)
	}
	e.listener = l
	e.addr.Store(l.Address())
	if err := e.addTLSListener(); err != nil {
		return err
	}
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

// HasSubscribers reports whether a PUBLISH on topic would reach anyone:
// a network client's subscription, a shared one, or the hub's own.
func (e *Embedded) HasSubscribers(topic string) bool {
	return e.audience.has(topic, e.now(), func() bool {
		subs := e.server.Topics.Subscribers(topic)
		return len(subs.Subscriptions)+len(subs.Shared)+len(subs.InlineSubscriptions) > 0
	})
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

// sessionSet tracks attached network clients by identity, not by id, with
// what each may do in devices mode.
type sessionSet struct {
	mu     sync.RWMutex
	m      map[*mqtt.Client]grant
	pruned int // size after the last prune of closed clients
}

func (ss *sessionSet) add(cl *mqtt.Client, g grant) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[*mqtt.Client]grant{}
	}
	ss.m[cl] = g

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
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	out := make([]*mqtt.Client, 0, len(ss.m))
	for c := range ss.m {
		out = append(out, c)
	}
	return out
}

// grant is what cl may do; a client not in the set may do nothing but
// what the allowed prefixes open.
func (ss *sessionSet) grant(cl *mqtt.Client) grant {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	return ss.m[cl]
}

// actingFor lists the sessions that act for the device espID.
func (ss *sessionSet) actingFor(espID string) map[*mqtt.Client]grant {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	out := map[*mqtt.Client]grant{}
	for c, g := range ss.m {
		if g.espID == espID {
			out[c] = g
		}
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
	e.stopOnce.Do(e.beginStop)
	if e.listener == nil {
		return nil
	}
	if e.tlsListener != nil {
		e.server.Listeners.Close(e.tlsListener.ID(), e.disconnectAll)
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
	e.stopOnce.Do(e.beginStop)

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
