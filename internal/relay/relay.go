// Package relay carries the live events of one hub replica to the other
// replicas of its site through PostgreSQL LISTEN/NOTIFY, so that a
// WebSocket client sees every replica's events whichever replica it is
// connected to (docs/architecture.md "Beyond one machine").
//
// A Relay sends its bus's local events, batched into NOTIFY payloads, and
// publishes the batches of the other replicas on its bus as remote events
// (event.Event.Remote), which only the subscriptions made with
// event.Bus.SubscribeWithRemote or TapWithRemote receive: the watchers
// that act on events
// never act on another replica's, and a remote event is never sent on.
// Like the bus itself, the relay is best-effort: a full queue, an event
// too large for one notification and an outage of the database lose
// events, and every loss is counted.
package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/event"
)

// DefaultChannel is the notification channel unless Config.Channel names another.
const DefaultChannel = "kaiser_events"

const (
	// maxPayload is the largest NOTIFY payload: PostgreSQL's must be
	// shorter than 8000 bytes (in its default configuration).
	maxPayload = 7999
	// retryMin and retryMax bound the waits between reconnects; the wait
	// doubles with every failure in a row.
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
	// idlePing is how long the listener waits for a notification before it
	// checks with a ping that its connection still answers.
	idlePing = 30 * time.Second
)

// Config configures a Relay; zero values take the defaults.
type Config struct {
	// DSN names the database (a postgres:// URL or a key=value string).
	DSN string
	// Password, when set, replaces the DSN's.
	Password string
	// Channel is the notification channel (DefaultChannel); every replica
	// of a site uses the same.
	Channel string
	// Origin names this replica, uniquely per process (lease.NewHolderID):
	// the relay ignores its own notifications. Its connections show in
	// pg_stat_activity as kaiser-relay-listen-<origin> and
	// kaiser-relay-notify-<origin> (cut to 63 bytes).
	Origin string
	// Bus is the replica's event bus.
	Bus *event.Bus
	// Types are the local events to send (every type when empty). The
	// relay's subscription counts for event.Bus.Wants.
	Types []event.Type
	// NoSend and NoListen leave out a direction: a replica that only
	// receives (the primary, whose clients see its own events) or only
	// sends (a standby, which serves no live feed) of
	// docs/decisions/0029-replicas.md.
	NoSend   bool
	NoListen bool
	// Received, when set, sees every remote event before the bus does, on
	// the listener's goroutine: state that the bus's subscribers read (a
	// series' latest value) is up to date when they get the event.
	Received func(event.Event)
	// MaxDelay is how long an event may wait for others to share its
	// notification (default 20 ms).
	MaxDelay time.Duration
	// QueueSize is the inbox of local events waiting to be sent (default
	// 4096); when it is full the relay drops the event, never waits.
	QueueSize int
	// CallTimeout bounds each database call (default 5 s).
	CallTimeout time.Duration
	Logger      *slog.Logger
	// Registerer, when set, gets the kaiser_relay_* metrics.
	Registerer prometheus.Registerer
}

// The reasons an event is lost (kaiser_relay_events_dropped_total{reason}).
const (
	dropQueueFull  = iota // local: the relay's inbox was full
	dropOversize          // local: alone larger than one notification
	dropEncode            // local: a payload the codec does not know
	dropSendFailed        // local: the NOTIFY failed or had no connection
	dropDecode            // remote: a notification or event that did not decode
	dropMissed            // remote: numbered by their origin but never heard (an outage here or a failed send there)
	numDrops
)

var dropReasons = [numDrops]string{"queue_full", "oversize", "encode", "send_failed", "decode", "missed"}

// Relay relays events between the replicas; see the package comment.
type Relay struct {
	cfg       Config
	log       *slog.Logger
	listenCfg *pgx.ConnConfig
	notifyCfg *pgx.ConnConfig
	// header opens every notification of this replica, up to the sequence
	// number; its own notifications start with it.
	header   string
	overhead int // bytes of a notification besides its events
	running  atomic.Bool

	sent, notifications, received atomic.Int64
	dropped                       [numDrops]atomic.Int64
}

// New checks cfg and returns a relay; Run starts it.
func New(cfg Config) (*Relay, error) {
	if cfg.Bus == nil {
		return nil, errors.New("relay: no event bus")
	}
	if cfg.Origin == "" {
		return nil, errors.New("relay: no origin")
	}
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	if len(cfg.Channel) > 63 {
		return nil, fmt.Errorf("relay: channel name %q longer than 63 bytes", cfg.Channel)
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 20 * time.Millisecond
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Relay{cfg: cfg, log: cfg.Logger.With("component", "relay")}

	base, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("relay: dsn: %w", err)
	}
	if cfg.Password != "" {
		base.Password = cfg.Password
	}
	r.listenCfg, r.notifyCfg = base.Copy(), base.Copy()
	r.listenCfg.RuntimeParams["application_name"] = "kaiser-relay-listen-" + cfg.Origin
	r.notifyCfg.RuntimeParams["application_name"] = "kaiser-relay-notify-" + cfg.Origin

	origin, err := json.Marshal(cfg.Origin)
	if err != nil {
		return nil, fmt.Errorf("relay: origin: %w", err)
	}
	r.header = `{"origin":` + string(origin) + `,"seq":`
	r.overhead = len(r.header) + len("18446744073709551615") + len(`,"events":[]}`)

	if cfg.Registerer != nil {
		r.register(cfg.Registerer)
	}
	return r, nil
}

func (r *Relay) register(reg prometheus.Registerer) {
	counter := func(name, help string, v *atomic.Int64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(
		counter("kaiser_relay_events_sent_total", "Local events sent to the other replicas.", &r.sent, nil),
		counter("kaiser_relay_notifications_sent_total", "NOTIFYs sent, each a batch of events.", &r.notifications, nil),
		counter("kaiser_relay_events_received_total", "Events of other replicas published on the local bus.", &r.received, nil),
	)
	for i, reason := range dropReasons {
		reg.MustRegister(counter("kaiser_relay_events_dropped_total", "Events lost on their way between replicas, by reason.",
			&r.dropped[i], prometheus.Labels{"reason": reason}))
	}
}

// Stats are the relay's counters since New.
type Stats struct {
	// EventsSent are the local events in NOTIFYs the database accepted,
	// Notifications those NOTIFYs.
	EventsSent, Notifications int64
	// EventsReceived are the other replicas' events published on the bus.
	EventsReceived int64
	// Dropped counts lost events by reason: queue_full, oversize, encode
	// and send_failed of local events, decode and missed of remote ones
	// (a notification that does not decode counts one).
	Dropped map[string]int64
}

// Stats reports the counters.
func (r *Relay) Stats() Stats {
	s := Stats{
		EventsSent:     r.sent.Load(),
		Notifications:  r.notifications.Load(),
		EventsReceived: r.received.Load(),
		Dropped:        make(map[string]int64, numDrops),
	}
	for i, reason := range dropReasons {
		s.Dropped[reason] = r.dropped[i].Load()
	}
	return s
}

// Run relays until ctx ends; when it returns, its subscription is gone
// and its connections are closed.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("relay: already running")
	}
	var wg sync.WaitGroup
	if !r.cfg.NoSend {
		wg.Go(func() { newSender(r).run(ctx) })
	}
	if !r.cfg.NoListen {
		wg.Go(func() { newListener(r).run(ctx) })
	}
	wg.Wait()
	return nil
}

// connect opens a connection with cfg within the call timeout.
func (r *Relay) connect(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("relay: connect: %w", err)
	}
	return conn, nil
}

// close ends conn within the call timeout, also after ctx ended.
func (r *Relay) close(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.CallTimeout)
	defer cancel()
	conn.Close(ctx)
}

// retry is the wait after a failure that follows a wait of last.
func retry(last time.Duration) time.Duration {
	return min(max(2*last, retryMin), retryMax)
}
