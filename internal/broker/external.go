package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// Defaults of ExternalConfig.
const (
	DefaultPublishTimeout = 5 * time.Second
	DefaultConnectWait    = 10 * time.Second
	DefaultReceiveMaximum = 256
	// ackInterval is how often the client writes the PUBACKs that became
	// due, in order (paho's manual acknowledgement): it bounds how long a
	// committed delivery holds a slot of the broker's in-flight window, so
	// with DefaultReceiveMaximum it caps QoS 1 deliveries near 256 per
	// (commit time + interval), some 4,000/s. paho's ticker wakes the
	// process at this interval even when nothing is due; at 5 ms that was
	// most of an idle hub's CPU (docs/decisions/0023-external-broker.md).
	// Baseline firmware publishes QoS 0, which is not acknowledged at all.
	ackInterval = 50 * time.Millisecond
	// keepAlive is the hub's MQTT keepalive (docs/protocol.md M1).
	keepAlive = 60
	// subscribeTimeout bounds one SUBSCRIBE or UNSUBSCRIBE round trip.
	subscribeTimeout = 10 * time.Second
)

// Message is one MQTT message the hub sends, e.g. its will.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// ExternalConfig configures the hub's client of an external MQTT broker.
type ExternalConfig struct {
	// URL is mqtt://host[:port] (port 1883) or mqtts://host[:port] (port
	// 8883); see ParseBrokerURL.
	URL      string
	Username string
	// Password comes from a file or the environment, never the command line.
	Password string
	// CAFile holds the PEM certificates that sign the broker's certificate
	// (none: the system's roots); CertFile and KeyFile are the hub's client
	// certificate. All three need mqtts://.
	CAFile, CertFile, KeyFile string

	// Set by the hub.
	ClientID string
	// Will is registered with every CONNECT (the hub's server/status).
	Will *Message
	// OnConnect runs after every (re)connect, once the subscriptions are
	// in place, with a context that ends with the connection.
	OnConnect func(ctx context.Context)
	// OnConnectionLost runs when an established connection is lost; it
	// must not block.
	OnConnectionLost func()
	Logger           *slog.Logger
	Registerer       prometheus.Registerer

	// Bounds; zero values take the defaults.
	// PublishTimeout bounds a QoS 1 publish's wait for its PUBACK.
	PublishTimeout time.Duration
	// AckDeadline bounds how long a QoS 1 delivery waits to be committed
	// before the hub acknowledges it anyway, counted (DefaultAckDeadline).
	AckDeadline time.Duration
	// ConnectWait is how long Start waits for the first connection.
	ConnectWait time.Duration
	// ReceiveMaximum is the hub's MQTT 5 Receive Maximum: QoS 1 deliveries
	// the broker may have outstanding (not yet acknowledged) towards it.
	ReceiveMaximum uint16
	// Backoff is the wait before reconnect attempt n ≥ 1 (default 1–60 s,
	// exponential, docs/protocol.md M1).
	Backoff func(attempt int) time.Duration
}

// Handover hands a live QoS 1 delivery to the pipeline in arrival order and
// returns the wait for its outcome: "" once committed, or the counted drop
// reason; an error when the outcome is not known before ctx ends or the
// message was not stored (ingest.SubmitAwaited).
type Handover func(topic string, payload []byte, retain bool) (wait func(ctx context.Context) (dropReason string, err error))

// ParseBrokerURL checks an external broker's URL: scheme mqtt or mqtts, a
// host, an optional port (1883 / 8883 by default), nothing else. A user or
// password in the URL is refused: the password would sit on the command
// line.
func ParseBrokerURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("broker URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "mqtt", "mqtts":
	default:
		return nil, fmt.Errorf("broker URL %q: scheme must be mqtt:// or mqtts://", raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("broker URL %q: give the user with --mqtt-username and the password "+
			"with --mqtt-password-file or KAISER_MQTT_PASSWORD, not in the URL", u.Redacted())
	}
	if u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("broker URL %q: want %s://host[:port]", raw, u.Scheme)
	}
	port := u.Port()
	if port == "" {
		port = "1883"
		if u.Scheme == "mqtts" {
			port = "8883"
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("broker URL %q: port %q is not 1-65535", raw, port)
	}
	return &url.URL{Scheme: u.Scheme, Host: net.JoinHostPort(u.Hostname(), port)}, nil
}

// External is the hub's client of an external MQTT broker (MQTT 5, paho's
// autopaho; docs/decisions/0023-external-broker.md). It reconnects with
// backoff and subscribes again on every connect: readings and diagnostics
// through the shared subscription `$share/kaiser/...`, every other device
// topic without it, so that they arrive in order. A delivery with the
// RETAIN flag is a replay from the broker's retained store (the hub never
// subscribes with Retain-As-Published, docs/protocol.md §5.6). A live QoS 1
// delivery is acknowledged to the broker only once committed or dropped
// with a counted reason (M3).
type External struct {
	cfg  ExternalConfig
	url  *url.URL
	tls  *tls.Config
	log  *slog.Logger
	cm   *autopaho.ConnectionManager
	life context.Context
	end  context.CancelFunc

	mu        sync.Mutex
	link      *link // the current connection, nil while down
	shared    []string
	ordered   []string
	orderedOn bool
	firstUp   chan struct{} // closed at the first subscribed connection
	upOnce    sync.Once

	deliver  Deliver
	handover Handover

	// recvMu is held (read) by a delivery while it is handed over;
	// StopAccepting takes it to wait for the one in progress.
	recvMu   sync.RWMutex
	gated    atomic.Bool // deliveries are no longer taken (shutdown)
	stopping atomic.Bool
	closed   atomic.Bool
	closeMu  sync.Mutex

	acks      chan pendingAck
	settling  atomic.Int64
	ackerDone chan struct{}

	published  *prometheus.CounterVec
	failures   *prometheus.CounterVec
	reconnects prometheus.Counter
	connFails  prometheus.Counter
	unsettled  *prometheus.CounterVec
}

// link is one connection to the broker.
type link struct {
	ctx    context.Context // ends when the connection is lost
	cancel context.CancelFunc
	ready  atomic.Bool // subscribed
}

// pendingAck is a QoS 1 delivery whose PUBACK waits for its outcome.
type pendingAck struct {
	cli  *paho.Client
	pub  *paho.Publish
	wait func(ctx context.Context) (string, error)
	link *link
}

// NewExternal prepares the client; nothing connects before Start.
func NewExternal(cfg ExternalConfig) (*External, error) {
	u, err := ParseBrokerURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ClientID == "" {
		return nil, errors.New("external broker: no client id")
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.AckDeadline <= 0 {
		cfg.AckDeadline = DefaultAckDeadline
	}
	if cfg.ConnectWait <= 0 {
		cfg.ConnectWait = DefaultConnectWait
	}
	if cfg.ReceiveMaximum == 0 {
		cfg.ReceiveMaximum = DefaultReceiveMaximum
	}
	if cfg.Backoff == nil {
		cfg.Backoff = autopaho.NewExponentialBackoff(time.Second, 60*time.Second, 2*time.Second, 2)
	}
	x := &External{
		cfg:       cfg,
		url:       u,
		log:       cfg.Logger.With("component", "mqtt", "broker", u.Host),
		firstUp:   make(chan struct{}),
		orderedOn: true,
		acks:      make(chan pendingAck, int(cfg.ReceiveMaximum)),
		ackerDone: make(chan struct{}),
	}
	if x.tls, err = clientTLS(u, cfg); err != nil {
		return nil, err
	}
	x.life, x.end = context.WithCancel(context.Background())
	x.registerMetrics(cfg.Registerer)
	return x, nil
}

// clientTLS is the TLS configuration of an mqtts:// broker: its CA (or the
// system's roots) and the hub's client certificate.
func clientTLS(u *url.URL, cfg ExternalConfig) (*tls.Config, error) {
	if u.Scheme != "mqtts" {
		if cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" {
			return nil, fmt.Errorf("broker URL %s: a CA or client certificate needs mqtts://", u)
		}
		return nil, nil
	}
	c := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker CA: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker CA %s: no PEM certificate in it", cfg.CAFile)
		}
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("broker client certificate: give both the certificate and its key")
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// publishCounters are the hub's publish counters by publishKind, the same
// for either broker.
func publishCounters() (published, failures *prometheus.CounterVec) {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "god_kaiser_mqtt_messages_published_total",
			Help: "Messages the hub published, by kind."}, []string{"kind"}),
		prometheus.NewCounterVec(prometheus.CounterOpts{Name: "god_kaiser_mqtt_publish_failures_total",
			Help: "Hub publishes that failed, by kind."}, []string{"kind"})
}

func (x *External) registerMetrics(reg prometheus.Registerer) {
	x.published, x.failures = publishCounters()
	x.reconnects = prometheus.NewCounter(prometheus.CounterOpts{Name: "kaiser_broker_connections_lost_total",
		Help: "Connections to the external broker that were lost (each is followed by reconnect attempts)."})
	x.connFails = prometheus.NewCounter(prometheus.CounterOpts{Name: "kaiser_broker_connect_failures_total",
		Help: "Connection attempts to the external broker that failed."})
	x.unsettled = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaiser_broker_acks_unsettled_total",
		Help: "QoS 1 deliveries acknowledged to the external broker without a known commit, by reason."},
		[]string{"reason"})
	if reg == nil {
		return
	}
	reg.MustRegister(x.published, x.failures, x.reconnects, x.connFails, x.unsettled,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kaiser_broker_settling",
			Help: "QoS 1 deliveries waiting to be committed or dropped before their PUBACK."}, func() float64 {
			return float64(x.Settling())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "god_kaiser_mqtt_connected",
			Help: "1 while the hub is connected to its broker and subscribed."}, func() float64 {
			if x.Connected() {
				return 1
			}
			return 0
		}))
}

// Subscribe registers the hub's subscription, made on every connect:
// shared through `$share/kaiser/`, ordered without it (while held, see
// Ordered). Live QoS 1 deliveries go to handover and are acknowledged once
// settled; QoS 0 deliveries, replays and empty payloads go to deliver. Call
// it before Start.
func (x *External) Subscribe(shared, ordered []string, deliver Deliver, handover Handover) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.shared = append([]string(nil), shared...)
	x.ordered = append([]string(nil), ordered...)
	x.deliver, x.handover = deliver, handover
}

// Ordered subscribes (on) or unsubscribes (off) the ordered set, now and on
// every reconnect. One hub holds it always; with several replicas only the
// holder of the device-events lease will (issue 13, item 3).
func (x *External) Ordered(ctx context.Context, on bool) error {
	x.mu.Lock()
	x.orderedOn = on
	l, filters := x.link, x.ordered
	x.mu.Unlock()
	if l == nil || !l.ready.Load() || len(filters) == 0 {
		return nil // the next connect applies it
	}
	if on {
		return x.subscribe(ctx, filters)
	}
	return x.unsubscribe(ctx, filters)
}

// Start begins connecting and waits up to ConnectWait for the first
// connection and its subscriptions. A broker that cannot be reached yet is
// not an error: the hub starts not ready and keeps trying.
func (x *External) Start() error {
	if x.deliver == nil {
		return errors.New("external broker: Subscribe before Start")
	}
	cfg := autopaho.ClientConfig{
		ServerUrls:       []*url.URL{x.url},
		TlsCfg:           x.tls,
		KeepAlive:        keepAlive,
		ReconnectBackoff: x.cfg.Backoff,
		ConnectTimeout:   10 * time.Second,
		ConnectUsername:  x.cfg.Username,
		ConnectPassword:  []byte(x.cfg.Password),
		// Clean session on every connect (docs/protocol.md M1): nothing is
		// queued for the hub while it is away.
		CleanStartOnInitialConnection: true,
		ConnectPacketBuilder: func(c *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			c.CleanStart = true
			rm := x.cfg.ReceiveMaximum
			c.Properties = &paho.ConnectProperties{ReceiveMaximum: &rm}
			return c, nil
		},
		OnConnectionUp:   x.connectionUp,
		OnConnectionDown: x.connectionDown,
		OnConnectError: func(err error) {
			x.connFails.Inc()
			x.log.Warn("mqtt connect to the external broker failed; retrying", "url", x.url.String(), "error", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   x.cfg.ClientID,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){x.receive},
			EnableManualAcknowledgment: true,
			SendAcksInterval:           ackInterval,
			OnClientError: func(err error) {
				x.log.Warn("mqtt connection to the external broker failed", "error", err)
			},
			OnServerDisconnect: func(d *paho.Disconnect) {
				x.log.Warn("external broker closed the connection", "reason_code", d.ReasonCode)
			},
		},
	}
	if w := x.cfg.Will; w != nil {
		cfg.WillMessage = &paho.WillMessage{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain}
		cfg.WillProperties = &paho.WillProperties{}
	}
	cm, err := autopaho.NewConnection(x.life, cfg)
	if err != nil {
		return fmt.Errorf("external broker %s: %w", x.url, err)
	}
	x.mu.Lock()
	x.cm = cm
	x.mu.Unlock()
	go x.acker()

	t := time.NewTimer(x.cfg.ConnectWait)
	defer t.Stop()
	select {
	case <-x.firstUp:
	case <-t.C:
		x.log.Warn("external broker not reached yet; the hub is not ready until it is, and keeps trying",
			"url", x.url.String(), "waited", x.cfg.ConnectWait)
	}
	return nil
}

// connectionUp starts the subscriptions of a new connection; autopaho's
// callback must not block.
func (x *External) connectionUp(cm *autopaho.ConnectionManager, _ *paho.Connack) {
	l := &link{}
	l.ctx, l.cancel = context.WithCancel(x.life)
	x.mu.Lock()
	x.cm = cm // the first connection can come up before NewConnection has returned
	x.mu.Unlock()
	x.swapLink(l)
	go x.setUp(cm, l)
}

// swapLink makes l the current connection (nil: none) and ends the waits
// of the one before.
func (x *External) swapLink(l *link) {
	x.mu.Lock()
	old := x.link
	x.link = l
	x.mu.Unlock()
	if old != nil {
		old.cancel()
	}
}

// setUp subscribes on a new connection, retrying while it lasts, then
// marks it ready and runs OnConnect.
func (x *External) setUp(cm *autopaho.ConnectionManager, l *link) {
	for attempt := 1; ; attempt++ {
		x.mu.Lock()
		filters := x.sharedFilters()
		if x.orderedOn {
			filters = append(filters, x.ordered...)
		}
		x.mu.Unlock()
		err := x.subscribeWith(l.ctx, cm, filters)
		if err == nil {
			break
		}
		if l.ctx.Err() != nil {
			return
		}
		x.log.Error("subscribing on the external broker failed; retrying", "error", err)
		select {
		case <-time.After(x.cfg.Backoff(attempt)):
		case <-l.ctx.Done():
			return
		}
	}
	l.ready.Store(true)
	x.upOnce.Do(func() { close(x.firstUp) })
	x.log.Info("connected to the external broker and subscribed", "url", x.url.String(), "client_id", x.cfg.ClientID)
	if x.cfg.OnConnect != nil {
		x.cfg.OnConnect(l.ctx)
	}
}

// connectionDown ends the lost connection's waits; false stops reconnecting
// once the hub closes.
func (x *External) connectionDown() bool {
	x.swapLink(nil)
	if x.closed.Load() {
		return false
	}
	x.reconnects.Inc()
	if x.cfg.OnConnectionLost != nil {
		x.cfg.OnConnectionLost()
	}
	x.log.Warn("connection to the external broker lost; reconnecting (baseline devices that reconnect "+
		"meanwhile stay deaf until they reboot, docs/protocol.md B4)", "url", x.url.String())
	return true
}

func (x *External) sharedFilters() []string {
	out := make([]string, 0, len(x.shared))
	for _, f := range x.shared {
		out = append(out, contract.SharedFilter(f))
	}
	return out
}

func (x *External) subscribe(ctx context.Context, filters []string) error {
	x.mu.Lock()
	cm := x.cm
	x.mu.Unlock()
	return x.subscribeWith(ctx, cm, filters)
}

// subscribeWith subscribes filters at QoS 1, retained messages sent
// (replays) and never Retain-As-Published (docs/protocol.md §5.6).
func (x *External) subscribeWith(ctx context.Context, cm *autopaho.ConnectionManager, filters []string) error {
	if len(filters) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	sub := &paho.Subscribe{}
	for _, f := range filters {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{
			Topic:             f,
			QoS:               1,
			RetainHandling:    0,
			RetainAsPublished: false,
		})
	}
	sa, err := cm.Subscribe(ctx, sub)
	if sa != nil {
		var refused []string
		for i, code := range sa.Reasons {
			if code >= 0x80 && i < len(filters) {
				refused = append(refused, fmt.Sprintf("%s (reason 0x%02x)", filters[i], code))
			}
		}
		if len(refused) > 0 {
			return fmt.Errorf("broker refused %s", strings.Join(refused, ", "))
		}
	}
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return nil
}

func (x *External) unsubscribe(ctx context.Context, filters []string) error {
	x.mu.Lock()
	cm := x.cm
	x.mu.Unlock()
	if cm == nil || len(filters) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	if _, err := cm.Unsubscribe(ctx, &paho.Unsubscribe{Topics: filters}); err != nil {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	return nil
}

// receive takes one delivery on paho's delivery goroutine; it only hands
// over (bounded by the pipeline's wait for queue space) and never waits for
// a commit: acknowledgements wait in the acker.
func (x *External) receive(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	x.recvMu.RLock()
	defer x.recvMu.RUnlock()
	if x.gated.Load() {
		// Shutdown: the pipeline takes nothing more. The broker already
		// acknowledged the device; nothing else would hear this message.
		x.log.Debug("mqtt delivery after shutdown began: not taken", "topic", p.Topic)
		x.ack(pr.Client, p)
		return true, nil
	}
	// MQTT 5 without Retain-As-Published: the broker sets RETAIN only on a
	// message from its retained store, i.e. a replay (docs/protocol.md §5.6).
	replay := p.Retain
	if p.QoS == 0 || replay || len(p.Payload) == 0 || x.handover == nil {
		x.deliver(p.Topic, p.Payload, p.Retain, replay)
		x.ack(pr.Client, p)
		return true, nil
	}
	wait := x.handover(p.Topic, p.Payload, p.Retain)
	x.mu.Lock()
	l := x.link
	x.mu.Unlock()
	if l == nil {
		x.ack(pr.Client, p) // the connection is already gone: no PUBACK can be written
		return true, nil
	}
	x.settling.Add(1)
	a := pendingAck{cli: pr.Client, pub: p, wait: wait, link: l}
	select {
	case x.acks <- a:
	default:
		// More outstanding than the Receive Maximum granted: the broker is
		// over its quota. Settle this one here (bounded) rather than queue.
		x.settle(a)
		x.settling.Add(-1)
	}
	return true, nil
}

func (x *External) ack(cli *paho.Client, p *paho.Publish) {
	if p.QoS > 0 && cli != nil {
		_ = cli.Ack(p)
	}
}

// acker acknowledges settled QoS 1 deliveries in their arrival order (the
// order MQTT requires of PUBACKs), each once its outcome is known.
func (x *External) acker() {
	defer close(x.ackerDone)
	for {
		select {
		case <-x.life.Done():
			return
		case a := <-x.acks:
			x.settle(a)
			x.settling.Add(-1)
		}
	}
}

// settle waits (bounded by AckDeadline) for a delivery's outcome, then
// acknowledges it. A delivery not known to be committed in time, or whose
// write failed, is acknowledged all the same, counted and logged: the
// session is clean (docs/protocol.md M1), so the broker would never send it
// again, and a withheld PUBACK would only hold back every later one.
func (x *External) settle(a pendingAck) {
	ctx, cancel := context.WithTimeout(a.link.ctx, x.cfg.AckDeadline)
	_, err := a.wait(ctx)
	late := ctx.Err() != nil
	cancel()
	if a.link.ctx.Err() != nil {
		return // its connection is gone; the PUBACK cannot be written
	}
	if err != nil {
		reason := "not_stored"
		if late {
			reason = "deadline"
		}
		x.unsettled.WithLabelValues(reason).Inc()
		x.log.Warn("mqtt delivery acknowledged to the broker without a known commit",
			"topic", a.pub.Topic, "reason", reason, "error", err.Error())
	}
	x.ack(a.cli, a.pub)
}

// Settling is the number of QoS 1 deliveries waiting for their outcome
// before their PUBACK.
func (x *External) Settling() int { return int(x.settling.Load()) }

// Publish publishes a hub message. A QoS 1 publish returns once the broker's
// PUBACK arrived (docs/protocol.md K10 "sent"), bounded by PublishTimeout
// and ended at once when the connection is lost; nothing is queued while
// the broker is unreachable (ErrUnavailable).
func (x *External) Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	kind := publishKind(topic)
	x.mu.Lock()
	l, cm := x.link, x.cm
	x.mu.Unlock()
	if l == nil || cm == nil || x.closed.Load() {
		x.failures.WithLabelValues(kind).Inc()
		return ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, x.cfg.PublishTimeout)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	resp, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: payload})
	if err == nil && resp != nil && resp.ReasonCode >= 0x80 {
		err = fmt.Errorf("puback reason 0x%02x", resp.ReasonCode)
	}
	if err != nil {
		x.failures.WithLabelValues(kind).Inc()
		if errors.Is(err, autopaho.ConnectionDownError) || l.ctx.Err() != nil {
			return fmt.Errorf("publish %s: %w: %w", topic, ErrUnavailable, err)
		}
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	x.published.WithLabelValues(kind).Inc()
	return nil
}

// Connected reports whether the hub is connected to the broker and subscribed.
func (x *External) Connected() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.link != nil && x.link.ready.Load() && !x.closed.Load()
}

// Addr is the broker's host:port.
func (x *External) Addr() string { return x.url.Host }

// Endpoint is the broker's host and port (docs/api.md §13, /health/detailed).
func (x *External) Endpoint() (string, int) {
	port, _ := strconv.Atoi(x.url.Port())
	return x.url.Hostname(), port
}

// TLS reports whether the connection is mqtts://.
func (x *External) TLS() bool { return x.tls != nil }

// Stopping reports whether shutdown has begun.
func (x *External) Stopping() bool { return x.stopping.Load() }

// StopAccepting unsubscribes (bounded by ctx), so that the broker sends the
// hub nothing more, and then waits for the delivery being handed over.
// Afterwards no message reaches the pipeline; acknowledgements of what was
// handed over continue until Close.
func (x *External) StopAccepting(ctx context.Context) error {
	x.stopping.Store(true)
	x.mu.Lock()
	l := x.link
	filters := x.sharedFilters()
	if x.orderedOn {
		filters = append(filters, x.ordered...)
	}
	x.mu.Unlock()
	var err error
	if l != nil && l.ready.Load() {
		uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = x.unsubscribe(uctx, filters)
		cancel()
	}
	x.recvMu.Lock()
	x.gated.Store(true)
	x.recvMu.Unlock()
	if err != nil && l != nil && l.ctx.Err() == nil {
		return fmt.Errorf("external broker: %w", err)
	}
	return nil
}

// Close disconnects cleanly (a DISCONNECT, so the broker does not publish
// the will) and stops the client.
func (x *External) Close() error {
	x.closeMu.Lock()
	defer x.closeMu.Unlock()
	if x.closed.Swap(true) {
		return nil
	}
	x.stopping.Store(true)
	x.gated.Store(true)
	x.mu.Lock()
	cm := x.cm
	x.mu.Unlock()
	var err error
	if cm != nil {
		ctx, cancel := context.WithTimeout(context.Background(), closeWait)
		if derr := cm.Disconnect(ctx); derr != nil {
			err = fmt.Errorf("external broker disconnect: %w", derr)
		}
		cancel()
	}
	x.end()
	if cm != nil {
		select {
		case <-x.ackerDone:
		case <-time.After(closeWait):
		}
	}
	return err
}
