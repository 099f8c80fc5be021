// Package lease lets several hub replicas on one PostgreSQL database own
// singleton work exactly once. A lease is a row of the leases table
// (internal/store/postgres/migrations/0002_leases.sql): its holder, an
// epoch that goes up whenever the holder changes, and an expiry on the
// database's clock. A Manager takes and renews its leases by compare-and-set
// and ends its own term before the row can expire, measured on the local
// monotonic clock, so two replicas never both believe they hold a lease;
// Fence makes a write commit only for the current term, so a replica that
// paused past its term cannot commit singleton effects after a takeover.
// See docs/decisions/0027-leases.md; the hub's replicas use one lease, Jobs
// (docs/decisions/0029-replicas.md).
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Jobs is the lease of the hub's primary replica: the singleton jobs
// (liveness, retention, rollup repair, command timeouts, duration
// auto-offs, the runtime watchdog, rule timers, sequence continuations)
// and the device topics handled in arrival order, which must have one
// holder (docs/decisions/0029-replicas.md).
const Jobs = "jobs"

// DB is what a Manager needs of the database: a *pgxpool.Pool. Give the
// Manager a pool of its own (two connections are plenty) so that renewals
// never wait behind the store's writers and readers.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Config tunes a Manager; zero durations take the defaults, chosen so that
// another replica takes over within 15 s of a holder's SIGKILL (at most
// TTL + RetryEvery after its last renewal).
type Config struct {
	// Holder names this replica in the leases table; it must be unique
	// per process (NewHolderID).
	Holder string
	// Names are the leases to contend for.
	Names []string
	// Note is what the other replicas read of this one in the rows of the
	// leases it holds (Current); the hub puts its API's URL there.
	Note string
	// TTL is how long a taken or renewed lease lasts on the database's
	// clock (default 10 s).
	TTL time.Duration
	// RenewEvery is the period of a holder's renewals (default 3 s).
	RenewEvery time.Duration
	// RetryEvery is how soon a replica tries again to take a lease held by
	// another, or after a failed call (default 1 s); it bounds the
	// takeover after a clean release.
	RetryEvery time.Duration
	// Margin is how long before the row's expiry a holder that could not
	// renew ends its term (default 1 s): its work stops before another
	// replica can take the lease.
	Margin time.Duration
	// CallTimeout bounds each database call (default 2 s).
	CallTimeout time.Duration
	Logger      *slog.Logger
}

func (c *Config) defaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.TTL, 10*time.Second)
	def(&c.RenewEvery, 3*time.Second)
	def(&c.RetryEvery, time.Second)
	def(&c.Margin, time.Second)
	def(&c.CallTimeout, 2*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Holder == "" {
		return errors.New("lease: no holder id")
	}
	if len(c.Names) == 0 {
		return errors.New("lease: no lease names")
	}
	if c.Margin >= c.TTL || c.RenewEvery >= c.TTL-c.Margin {
		return fmt.Errorf("lease: renewing every %v cannot keep a %v lease with a %v margin", c.RenewEvery, c.TTL, c.Margin)
	}
	return nil
}

// NewHolderID is a holder id unique to this process: host, pid and a
// random suffix, so a restarted replica never mistakes its predecessor's
// lease for its own.
func NewHolderID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "hub"
	}
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Term is one tenure of a lease by this replica, from its gain to its loss.
type Term struct {
	Name   string
	Holder string
	// Epoch is the lease's epoch in this term; it is greater than that of
	// every earlier term of the lease, whoever held it.
	Epoch int64
	lost  chan struct{}
	// grace is set, before lost is closed, when the term ended because it
	// could not be renewed in time: the row expires half a margin later at
	// the earliest (endUnrenewed).
	grace time.Time
}

// Lost is closed when the term ends: the lease was taken over, could not
// be renewed in time, or the Manager stopped.
func (t *Term) Lost() <-chan struct{} { return t.lost }

// Grace tells, once the term is over, whether it ended because it could
// not be renewed in time (the database unreachable, not another holder),
// and until when no other replica can hold the lease: half a Margin past
// the term's end, on the local monotonic clock, which leaves the other
// half before the row can expire. Until then the last holder is still the
// only one; docs/decisions/0031-lease-fail-safe.md has what a primary does
// with it. ok is false while the term lasts and when it ended otherwise:
// taken over, or the Manager stopped.
func (t *Term) Grace() (until time.Time, ok bool) {
	select {
	case <-t.lost:
	default:
		return time.Time{}, false
	}
	return t.grace, !t.grace.IsZero()
}

// Manager takes and renews the leases of one replica.
type Manager struct {
	db      DB
	cfg     Config
	log     *slog.Logger
	running atomic.Bool

	mu     sync.Mutex
	leases map[string]*state
}

// state is one lease as this replica sees it; guarded by Manager.mu.
type state struct {
	name     string
	term     *Term       // nil while not held
	deadline time.Time   // the term ends here unless renewed (monotonic)
	expiry   *time.Timer // fires at deadline
	gained   chan struct{}
	failing  bool // the last call failed (logged once per outage)
}

// New returns a Manager of the leases cfg names, on db.
func New(db DB, cfg Config) (*Manager, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m := &Manager{db: db, cfg: cfg, log: cfg.Logger.With("holder", cfg.Holder), leases: map[string]*state{}}
	for _, n := range cfg.Names {
		if n == "" || m.leases[n] != nil {
			return nil, fmt.Errorf("lease: empty or repeated lease name %q", n)
		}
		m.leases[n] = &state{name: n, gained: make(chan struct{})}
	}
	return m, nil
}

// Holder is this replica's holder id.
func (m *Manager) Holder() string { return m.cfg.Holder }

// Run contends for the leases until ctx ends; then it ends every term and
// releases the leases it holds, so another replica takes them within
// RetryEvery. End ctx only once the work under the leases has stopped
// (docs/architecture.md §8): what runs on after the release is fenced
// but not stopped. A replica that dies instead leaves its leases to
// expire (TTL).
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("lease: manager already running")
	}
	var wg sync.WaitGroup
	for _, st := range m.leases {
		wg.Go(func() { m.contend(ctx, st) })
	}
	wg.Wait()
	return nil
}

// Held returns the current term of the lease, if this replica holds it.
func (m *Manager) Held(name string) (*Term, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.leases[name]
	if st == nil {
		return nil, false
	}
	return m.current(st)
}

// Unrenewed reports whether this replica holds the lease while its last
// call for it failed (the database out of reach), and when the term ends
// unless a renewal succeeds before then.
func (m *Manager) Unrenewed(name string) (deadline time.Time, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.leases[name]
	if st == nil || !st.failing {
		return time.Time{}, false
	}
	if _, held := m.current(st); !held {
		return time.Time{}, false
	}
	return st.deadline, true
}

// current is the lease's term if it lasts; m.mu is held.
func (m *Manager) current(st *state) (*Term, bool) {
	if st.term == nil {
		return nil, false
	}
	if !time.Now().Before(st.deadline) {
		// The expiry timer is late; the term is over all the same.
		m.endUnrenewed(st)
		return nil, false
	}
	return st.term, true
}

// Await waits until this replica holds the lease and returns its term.
func (m *Manager) Await(ctx context.Context, name string) (*Term, error) {
	for {
		m.mu.Lock()
		st := m.leases[name]
		if st == nil {
			m.mu.Unlock()
			return nil, fmt.Errorf("lease: %q is not one of this manager's leases", name)
		}
		t, ok := m.current(st)
		gained := st.gained
		m.mu.Unlock()
		if ok {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-gained:
		}
	}
}

func (m *Manager) contend(ctx context.Context, st *state) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			m.stop(ctx, st)
			return
		case <-timer.C:
		}
		timer.Reset(m.step(ctx, st))
	}
}

// step takes or renews the lease once and returns when to try next.
func (m *Manager) step(ctx context.Context, st *state) time.Duration {
	m.mu.Lock()
	t, _ := m.current(st)
	deadline := st.deadline
	m.mu.Unlock()
	// The term's length counts from before the call: the row's expiry is
	// set later, on the database's clock, so the term ends first.
	start := time.Now()
	if t == nil {
		epoch, err := m.acquire(ctx, st.name)
		switch {
		case errors.Is(err, errTaken):
			m.recovered(st)
			return m.cfg.RetryEvery
		case err != nil:
			m.failed(ctx, st, "take", err)
			return m.cfg.RetryEvery
		}
		m.recovered(st)
		m.gain(st, epoch, start)
		return m.cfg.RenewEvery
	}
	ok, err := m.renew(ctx, t, deadline)
	switch {
	case err != nil:
		m.failed(ctx, st, "renew", err)
		return m.cfg.RetryEvery
	case !ok:
		m.recovered(st)
		m.lose(st, t, "taken over")
		return m.cfg.RetryEvery
	}
	m.recovered(st)
	m.extend(st, t, start)
	return m.cfg.RenewEvery
}

var errTaken = errors.New("lease held by another replica")

// Holding is a lease's current term as the leases table shows it to any
// replica.
type Holding struct {
	Holder string
	Epoch  int64
	Note   string
}

// Current reads who holds the lease now: ok is false while nobody does
// (never taken, released, or expired on the database's clock).
func Current(ctx context.Context, db DB, name string) (h Holding, ok bool, err error) {
	err = db.QueryRow(ctx, `
		SELECT holder, epoch, note FROM leases
		WHERE name = $1 AND expires_at > clock_timestamp()`, name).Scan(&h.Holder, &h.Epoch, &h.Note)
	if errors.Is(err, pgx.ErrNoRows) {
		return Holding{}, false, nil
	}
	if err != nil {
		return Holding{}, false, fmt.Errorf("read lease %s: %w", name, err)
	}
	return h, true, nil
}

// acquire takes the lease if it is free, expired, or this replica's from
// a term it already ended; the epoch goes up in each case.
func (m *Manager) acquire(ctx context.Context, name string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	var epoch int64
	err := m.db.QueryRow(ctx, `
		INSERT INTO leases AS l (name, holder, epoch, acquired_at, expires_at, note)
		VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp() + $3::bigint * interval '1 millisecond', $4)
		ON CONFLICT (name) DO UPDATE
		SET holder = EXCLUDED.holder, epoch = l.epoch + 1,
		    acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at, note = EXCLUDED.note
		WHERE l.expires_at <= clock_timestamp() OR l.holder = EXCLUDED.holder
		RETURNING epoch`,
		name, m.cfg.Holder, m.cfg.TTL.Milliseconds(), m.cfg.Note).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, errTaken
	}
	if err != nil {
		return 0, fmt.Errorf("take lease %s: %w", name, err)
	}
	return epoch, nil
}

// renew extends the term's row; false when the row is no longer the
// term's. It gives up at the term's deadline, when the term is over anyway.
func (m *Manager) renew(ctx context.Context, t *Term, deadline time.Time) (bool, error) {
	if d := time.Now().Add(m.cfg.CallTimeout); d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// Only expires_at changes: no key column, so a fenced transaction's
	// FOR KEY SHARE lock does not hold the renewal up.
	tag, err := m.db.Exec(ctx, `
		UPDATE leases SET expires_at = clock_timestamp() + $4::bigint * interval '1 millisecond'
		WHERE name = $1 AND holder = $2 AND epoch = $3`,
		t.Name, t.Holder, t.Epoch, m.cfg.TTL.Milliseconds())
	if err != nil {
		return false, fmt.Errorf("renew lease %s: %w", t.Name, err)
	}
	return tag.RowsAffected() == 1, nil
}

// stop ends the term of a stopping manager and releases its row: any row
// of this holder, since a take whose answer the stop cut off may have
// committed.
func (m *Manager) stop(ctx context.Context, st *state) {
	m.mu.Lock()
	if st.term != nil {
		m.end(st, "manager stopped")
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.CallTimeout)
	defer cancel()
	// Expired now, so that the next contender takes it at its next try. A
	// fenced transaction still open keeps the takeover waiting until it ends.
	tag, err := m.db.Exec(ctx, `UPDATE leases SET expires_at = clock_timestamp()
		WHERE name = $1 AND holder = $2 AND expires_at > clock_timestamp()`, st.name, m.cfg.Holder)
	if err != nil {
		m.log.Warn("lease release failed; it expires instead", "lease", st.name, "err", err)
		return
	}
	if tag.RowsAffected() > 0 {
		m.log.Info("lease released", "lease", st.name)
	}
}

func (m *Manager) gain(st *state, epoch int64, start time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &Term{Name: st.name, Holder: m.cfg.Holder, Epoch: epoch, lost: make(chan struct{})}
	st.term = t
	st.deadline = start.Add(m.cfg.TTL - m.cfg.Margin)
	st.expiry = time.AfterFunc(time.Until(st.deadline), func() { m.expire(st, t) })
	close(st.gained)
	st.gained = make(chan struct{})
	m.log.Info("lease gained", "lease", st.name, "epoch", epoch)
}

func (m *Manager) extend(st *state, t *Term, start time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st.term != t {
		return // ended while the renewal was under way; the next step takes a new term
	}
	if d := start.Add(m.cfg.TTL - m.cfg.Margin); d.After(st.deadline) {
		st.deadline = d
		st.expiry.Reset(time.Until(d))
	}
}

func (m *Manager) expire(st *state, t *Term) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st.term == t && !time.Now().Before(st.deadline) {
		m.endUnrenewed(st)
	}
}

// endUnrenewed ends a term whose deadline passed without a renewal; m.mu
// is held. The deadline is the last renewal's start + TTL - Margin, and
// that renewal set the row's expiry later, on the database's clock, to at
// least start + TTL. The grace takes half the margin: the other half still
// covers a difference in the two clocks' rates.
func (m *Manager) endUnrenewed(st *state) {
	st.term.grace = st.deadline.Add(m.cfg.Margin / 2)
	m.end(st, "not renewed in time")
}

func (m *Manager) lose(st *state, t *Term, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st.term == t {
		m.end(st, reason)
	}
}

// end ends the current term; m.mu is held.
func (m *Manager) end(st *state, reason string) {
	t := st.term
	st.term = nil
	st.expiry.Stop()
	close(t.lost)
	m.log.Warn("lease lost", "lease", st.name, "epoch", t.Epoch, "reason", reason)
}

func (m *Manager) failed(ctx context.Context, st *state, op string, err error) {
	if ctx.Err() != nil {
		return // stopping: the call was cut off, not failed
	}
	m.mu.Lock()
	first := !st.failing
	st.failing = true
	m.mu.Unlock()
	if first {
		m.log.Warn("lease call failed; retrying", "lease", st.name, "op", op, "err", err)
	}
}

func (m *Manager) recovered(st *state) {
	m.mu.Lock()
	was := st.failing
	st.failing = false
	m.mu.Unlock()
	if was {
		m.log.Info("lease calls work again", "lease", st.name)
	}
}
