package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/api/healthapi"
	"github.com/kaiserhub/kaiser/internal/lease"
	"github.com/kaiserhub/kaiser/internal/observe"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
)

// Role is a hub's part among the replicas of one site
// (docs/decisions/0029-replicas.md).
type Role string

const (
	// RoleSolo is a hub alone: SQLite, or PostgreSQL with the embedded
	// broker. It contends for no lease: all work is its own.
	RoleSolo Role = "solo"
	// RolePrimary holds the jobs lease: it handles every device topic but
	// the shared ones, runs the jobs, the actuators, the emergency stop,
	// the rules and sequences, and serves the API.
	RolePrimary Role = "primary"
	// RoleStandby ingests sensor data and diagnostics from the shared
	// subscription, forwards every other API request to the primary, and
	// becomes primary when it gains the lease.
	RoleStandby Role = "standby"
)

// ErrLeaseLost ends a primary whose term ended while it ran: it stops at
// once, without the ordered shutdown, so that nothing it would still do
// overlaps the next primary's work; its supervisor starts it again, as a
// standby.
var ErrLeaseLost = errors.New("the jobs lease was lost")

// replicated reports whether cfg makes this hub one replica among others:
// PostgreSQL and an external broker, which every replica shares. On the
// embedded broker only this hub's own devices could reach it.
func (c Config) replicated() bool {
	return c.databaseKind() == DatabasePostgres && c.MQTTBroker.URL != ""
}

// role is the part cfg gives the hub; solo unless set by runReplicas.
func (c Config) role() Role {
	if c.Role == "" {
		return RoleSolo
	}
	return c.Role
}

// replicaLink is what the replicas of a site share besides the store: the
// leases, on a small pool of their own so that renewals never wait behind
// the store's writers.
type replicaLink struct {
	pool   *pgxpool.Pool
	leases *lease.Manager
	holder string
	url    string // this replica's API, as the others reach it

	mu      sync.Mutex
	primary *healthapi.ReplicaPeer
	checked time.Time
}

// openReplicaLink connects the leases' pool and prepares the Manager of
// the jobs lease, noting this replica's API URL in its row.
func openReplicaLink(ctx context.Context, cfg Config) (*replicaLink, error) {
	pc, err := postgres.PoolConfig(cfg.Database, cfg.DatabasePassword, "kaiser-leases")
	if err != nil {
		return nil, err
	}
	pc.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("leases pool: %w", err)
	}
	l := &replicaLink{pool: pool, holder: lease.NewHolderID()}
	if l.url, err = replicaURL(cfg); err != nil {
		pool.Close()
		return nil, err
	}
	lc := lease.Config{
		Holder: l.holder,
		Names:  []string{lease.Jobs},
		Note:   l.url,
		Logger: cfg.logs.Logger.With("component", "lease"),
	}
	if ttl := cfg.LeaseTTL; ttl > 0 {
		// The defaults' proportions (10 s, renewed every 3 s, retried
		// every second) for --lease-ttl.
		lc.TTL, lc.RenewEvery, lc.RetryEvery, lc.Margin = ttl, ttl*3/10, ttl/10, ttl/10
	}
	l.leases, err = lease.New(pool, lc)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return l, nil
}

// replicaURL is --replica-url, or the HTTP address with this host's name
// where it listens on every interface.
func replicaURL(cfg Config) (string, error) {
	if cfg.ReplicaURL != "" {
		u, err := url.Parse(cfg.ReplicaURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("--replica-url %q: want http://host:port", cfg.ReplicaURL)
		}
		return u.String(), nil
	}
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return "", fmt.Errorf("http address %q: %w", cfg.HTTPAddr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("no --replica-url and no host name: %w", err)
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// primaryPeer is the current holder of the jobs lease, read from the
// leases table at most once a second.
func (l *replicaLink) primaryPeer(ctx context.Context) *healthapi.ReplicaPeer {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.checked) < time.Second {
		return l.primary
	}
	h, ok, err := lease.Current(ctx, l.pool, lease.Jobs)
	if err != nil {
		return l.primary // the last known one; the next call asks again
	}
	l.checked = time.Now()
	l.primary = nil
	if ok {
		l.primary = &healthapi.ReplicaPeer{Holder: h.Holder, URL: h.Note}
	}
	return l.primary
}

// ReplicaStatus answers GET /api/v1/health/replica.
func (h *Hub) ReplicaStatus(ctx context.Context) healthapi.ReplicaStatus {
	st := healthapi.ReplicaStatus{Role: string(h.cfg.role())}
	if l := h.cfg.link; l != nil {
		st.Holder = l.holder
		st.Primary = l.primaryPeer(ctx)
	}
	return st
}

// runReplicas runs one replica of a site until ctx ends: a standby until
// it gains the jobs lease, then the primary for as long as its term lasts.
// A standby's hub stops before the primary's starts, so the two never
// share the HTTP listener or the broker session.
func runReplicas(ctx context.Context, cfg Config) error {
	logs, err := observe.NewLogs(cfg.DataDir, cfg.LogLevel, cfg.Console)
	if err != nil {
		return err
	}
	defer logs.Close()
	cfg.logs = logs

	link, err := openReplicaLink(ctx, cfg)
	if err != nil {
		return err
	}
	defer link.pool.Close()
	cfg.link = link

	// The leases outlive ctx by the shutdown: they are released only once
	// the work under them has stopped (docs/architecture.md §8).
	lctx, stopLeases := context.WithCancel(context.WithoutCancel(ctx))
	leasesDone := make(chan struct{})
	go func() {
		defer close(leasesDone)
		_ = link.leases.Run(lctx)
	}()
	defer func() {
		stopLeases()
		<-leasesDone
	}()

	term, err := standBy(ctx, cfg)
	if err != nil || term == nil {
		return err
	}
	return lead(ctx, cfg, term)
}

// standBy runs the standby hub until this replica gains the jobs lease
// (its term) or ctx ends (nil).
func standBy(ctx context.Context, cfg Config) (*lease.Term, error) {
	cfg.Role = RoleStandby
	h, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	h.Log.Info("standing by: ingesting sensor data, forwarding the API to the primary", "holder", cfg.link.holder)

	var term *lease.Term
	gained := make(chan struct{})
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		if t, err := cfg.link.leases.Await(actx, lease.Jobs); err == nil {
			term = t
			close(gained)
		}
	}()
	cause, err := h.serve(ctx, gained)
	stopErr := h.Stop(context.Background())
	if cause != stoppedUntil {
		return nil, errors.Join(err, stopErr)
	}
	// The lease is ours: a stop that did not go cleanly (a drain past its
	// deadline) must not leave the site without a primary.
	if stopErr != nil {
		h.Log.Warn("the standby did not stop cleanly; becoming the primary all the same", "error", stopErr)
	}
	h.Log.Info("jobs lease gained: the standby stopped, the primary starts", "epoch", term.Epoch)
	return term, nil
}

// lead runs the primary hub for the term t, until ctx ends or t is lost.
// A lost term stops it at once, without the ordered shutdown, so that
// nothing it would still do overlaps the next primary's work.
func lead(ctx context.Context, cfg Config, t *lease.Term) error {
	cfg.Role, cfg.term = RolePrimary, t
	// Start ends early when the term does: it loads state and may publish.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-t.Lost():
			cancel()
		case <-sctx.Done():
		}
	}()
	h, err := Start(sctx, cfg)
	if err != nil {
		if termOver(t) {
			return fmt.Errorf("%w while starting the primary: %w", ErrLeaseLost, err)
		}
		return err
	}
	cause, err := h.serve(ctx, t.Lost())
	if cause == stoppedUntil {
		h.failSafe(t)
		h.Log.Error("jobs lease lost: stopping at once so that no singleton work runs twice; "+
			"restart this replica and it stands by", "epoch", t.Epoch)
		_ = h.Bus.Close()
		return ErrLeaseLost
	}
	h.failSafeOnStop()
	return errors.Join(err, h.Stop(context.Background()))
}

// termOver reports whether t has ended.
func termOver(t *lease.Term) bool {
	select {
	case <-t.Lost():
		return true
	default:
		return false
	}
}

// termBus is a primary's message bus: it publishes nothing once the term
// is over, so no command, auto-off or announcement leaves a replica that
// is no longer the primary, also while it starts or stops.
type termBus struct {
	MessageBus
	term *lease.Term
}

func (b termBus) Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	if termOver(b.term) {
		return ErrLeaseLost
	}
	return b.MessageBus.Publish(ctx, topic, payload, qos, retain)
}

// failSafe switches off every output the primary may have left running
// when its term ended because it could not renew the lease
// (docs/decisions/0031-lease-fail-safe.md): no replica is primary while
// the database is out of reach, so nothing else would bound them. It
// publishes only during the term's grace, before any other replica can
// hold the lease, and closes the broker connection when the grace ends,
// so that a write stuck on it cannot leave later.
func (h *Hub) failSafe(t *lease.Term) {
	until, ok := t.Grace()
	if !ok || h.Actuators == nil || h.External == nil {
		return
	}
	cut := time.AfterFunc(time.Until(until), func() { _ = h.External.Close() })
	defer cut.Stop()
	h.switchOff(until, graceBus{bus: h.External, until: until}, "jobs lease not renewed")
}

// failSafeOnStop is failSafe for a primary stopped (SIGTERM) while it
// cannot renew its lease: no replica would be primary after it either. It
// publishes within its term, which still lasts.
func (h *Hub) failSafeOnStop() {
	l := h.cfg.link
	if l == nil || h.Actuators == nil {
		return
	}
	if deadline, ok := l.leases.Unrenewed(lease.Jobs); ok {
		h.switchOff(deadline, h.Bus, "stopping while the jobs lease cannot be renewed")
	}
}

// switchOff sends the actuators' fail-safe OFFs through pub until the
// deadline, and logs what it did.
func (h *Hub) switchOff(deadline time.Time, pub actuator.Publisher, why string) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	res := h.Actuators.FailSafe(ctx, pub)
	if res.Failed > 0 {
		h.Log.Error(why+": fail-safe OFFs not all sent",
			"sent", res.Sent, "failed", res.Failed, "first_error", res.Err)
		return
	}
	h.Log.Error(why+": fail-safe OFF sent to every output that may run", "sent", res.Sent)
}

// errGraceOver refuses a fail-safe publish after the term's grace.
var errGraceOver = errors.New("the lease's grace is over: another replica may be primary")

// graceBus publishes only until the grace of a term ends.
type graceBus struct {
	bus   actuator.Publisher
	until time.Time
}

func (b graceBus) Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	if !time.Now().Before(b.until) {
		return errGraceOver
	}
	return b.bus.Publish(ctx, topic, payload, qos, retain)
}

// httpFailure is a listener's error worth reporting: not the one of a
// closed server.
func httpFailure(h *Hub, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	h.Log.Error("http server failed", "error", err)
	return fmt.Errorf("http server: %w", err)
}
