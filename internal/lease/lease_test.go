package lease_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kaiserhub/kaiser/internal/lease"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fast is a short lease for tests: a holder renews four times a second and
// ends an unrenewed term half a second before the row expires.
var fast = lease.Config{
	TTL:         2 * time.Second,
	RenewEvery:  250 * time.Millisecond,
	RetryEvery:  100 * time.Millisecond,
	Margin:      500 * time.Millisecond,
	CallTimeout: 500 * time.Millisecond,
}

// site is a database with the store's migrations applied, and a pool that
// stands for the replicas' store connections (never cut off).
type site struct {
	dsn  string
	pool *pgxpool.Pool
}

func newSite(t *testing.T) *site {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `CREATE TABLE effects (holder text NOT NULL, epoch bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return &site{dsn: dsn, pool: pool}
}

// replica is a Manager on a pool of its own, which a test can cut off from
// the database: its connections are terminated and no new one is allowed.
type replica struct {
	*lease.Manager
	site   *site
	app    string
	pool   *pgxpool.Pool
	cut    atomic.Bool
	cancel context.CancelFunc
	done   chan struct{}
}

var replicas atomic.Int64

// testWriter sends a replica's log to its test's output.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (s *site) start(t *testing.T, cfg lease.Config) *replica {
	t.Helper()
	r := &replica{site: s, app: fmt.Sprintf("lease-test-%d", replicas.Add(1)), done: make(chan struct{})}
	pc, err := pgxpool.ParseConfig(s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 2
	pc.ConnConfig.RuntimeParams["application_name"] = r.app
	pc.BeforeConnect = func(context.Context, *pgx.ConnConfig) error {
		if r.cut.Load() {
			return errors.New("cut off from the database")
		}
		return nil
	}
	r.pool, err = pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Holder == "" {
		cfg.Holder = r.app
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	if cfg.Names == nil {
		cfg.Names = []string{lease.Jobs}
	}
	r.Manager, err = lease.New(r.pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		r.stop()
		r.pool.Close()
	})
	return r
}

// stop stops the manager (it releases its leases if it can reach the
// database) and waits until Run returned.
func (r *replica) stop() {
	r.cancel()
	<-r.done
}

// partition cuts the replica off from the database; heal undoes it.
func (r *replica) partition(t *testing.T) {
	t.Helper()
	r.cut.Store(true)
	if _, err := r.site.pool.Exec(context.Background(),
		`SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = $1`, r.app); err != nil {
		t.Fatal(err)
	}
}

func (r *replica) heal() { r.cut.Store(false) }

// kill is a SIGKILL as the others see it: gone without releasing.
func (r *replica) kill(t *testing.T) {
	t.Helper()
	r.partition(t)
	r.stop()
}

// await waits for the replica to gain name, failing t after within.
func (r *replica) await(t *testing.T, name string, within time.Duration) *lease.Term {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	term, err := r.Await(ctx, name)
	if err != nil {
		t.Fatalf("%s did not gain %s within %v: %v", r.app, name, within, err)
	}
	return term
}

func awaitLost(t *testing.T, term *lease.Term, within time.Duration) {
	t.Helper()
	select {
	case <-term.Lost():
	case <-time.After(within):
		t.Fatalf("term %d of %s by %s not lost within %v", term.Epoch, term.Name, term.Holder, within)
	}
}

func lost(term *lease.Term) bool {
	select {
	case <-term.Lost():
		return true
	default:
		return false
	}
}

// row is the lease's row as the database has it.
func (s *site) row(t *testing.T, name string) (holder string, epoch int64) {
	t.Helper()
	if err := s.pool.QueryRow(context.Background(), `SELECT holder, epoch FROM leases WHERE name = $1`, name).
		Scan(&holder, &epoch); err != nil {
		t.Fatal(err)
	}
	return holder, epoch
}

// fencedWrite records an effect of term in one fenced transaction.
func (s *site) fencedWrite(ctx context.Context, term *lease.Term) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lease.Fence(ctx, tx, term); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO effects (holder, epoch) VALUES ($1, $2)`, term.Holder, term.Epoch)
		return err
	})
}

func (s *site) effects(t *testing.T, term *lease.Term) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM effects WHERE holder = $1 AND epoch = $2`,
		term.Holder, term.Epoch).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Of three replicas contending, exactly one holds the lease, and keeps it
// through many renewals: no instant in which two hold it.
func TestExactlyOneHolds(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	rs := []*replica{s.start(t, fast), s.start(t, fast), s.start(t, fast)}
	gained := make(chan *replica, len(rs))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, r := range rs {
		go func() {
			if _, err := r.Await(ctx, lease.Jobs); err == nil {
				gained <- r
			}
		}()
	}
	var holder *replica
	select {
	case holder = <-gained:
	case <-time.After(10 * time.Second):
		t.Fatal("no replica gained the lease")
	}
	term, _ := holder.Held(lease.Jobs)
	// Watch for two TTLs: the holder must renew all along, and no other
	// replica may gain the lease meanwhile.
	window := time.After(2 * fast.TTL)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
watch:
	for {
		select {
		case r := <-gained:
			t.Fatalf("%s gained the lease %s holds", r.app, holder.app)
		case <-term.Lost():
			t.Fatal("the holder lost its lease while renewing")
		case <-window:
			break watch
		case <-tick.C:
			n := 0
			for _, r := range rs {
				if _, ok := r.Held(lease.Jobs); ok {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d replicas hold the lease", n)
			}
		}
	}
	if h, e := s.row(t, lease.Jobs); h != holder.Holder() || e != term.Epoch {
		t.Fatalf("row: holder %s epoch %d, want %s epoch %d", h, e, holder.Holder(), term.Epoch)
	}
}

// A holder that dies without releasing leaves its lease to expire; then
// another replica takes it, with a greater epoch, and the dead one's
// fenced writes are refused.
func TestTakeoverAfterKill(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.start(t, fast)
	ta := a.await(t, lease.Jobs, 10*time.Second)
	b := s.start(t, fast)
	killed := time.Now() // before: A's last renewal came before this
	a.kill(t)
	tb := b.await(t, lease.Jobs, fast.TTL+5*time.Second)
	took := time.Since(killed)
	if tb.Epoch <= ta.Epoch {
		t.Fatalf("epoch %d after %d", tb.Epoch, ta.Epoch)
	}
	// The row lasted until a TTL after A's last renewal, at most a renewal
	// period before the kill: B cannot have taken it much sooner.
	if took < fast.TTL-fast.RenewEvery-fast.CallTimeout {
		t.Fatalf("B took over %v after the kill, before A's lease could expire", took)
	}
	if !lost(ta) {
		t.Fatal("A's term still open after the takeover")
	}
	ctx := context.Background()
	if err := s.fencedWrite(ctx, ta); !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("A's fenced write after the takeover: %v, want ErrFenced", err)
	}
	if err := s.fencedWrite(ctx, tb); err != nil {
		t.Fatalf("B's fenced write: %v", err)
	}
	if n := s.effects(t, ta); n != 0 {
		t.Fatalf("%d effects of A's term committed", n)
	}
	if n := s.effects(t, tb); n != 1 {
		t.Fatalf("%d effects of B's term, want 1", n)
	}
	if h, e := s.row(t, lease.Jobs); h != b.Holder() || e != tb.Epoch {
		t.Fatalf("row: holder %s epoch %d", h, e)
	}
}

// A holder cut off from the database ends its term before another replica
// can take the lease over; healed, it does not take it back while the
// other holds it.
func TestCutOffHolderStopsFirst(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.start(t, fast)
	ta := a.await(t, lease.Jobs, 10*time.Second)
	b := s.start(t, fast)
	a.partition(t)
	tb := b.await(t, lease.Jobs, fast.TTL+5*time.Second)
	if !lost(ta) {
		t.Fatal("B gained the lease while A's term was still open")
	}
	if _, ok := a.Held(lease.Jobs); ok {
		t.Fatal("A still holds the lease B gained")
	}
	a.heal()
	ctx, cancel := context.WithTimeout(context.Background(), 2*fast.TTL)
	defer cancel()
	if term, err := a.Await(ctx, lease.Jobs); err == nil {
		t.Fatalf("healed A took the lease back (epoch %d) while B holds it", term.Epoch)
	}
	if lost(tb) {
		t.Fatal("B lost its lease")
	}
}

// A holder cut off from the database learns, as its term ends, until when
// it is still the only holder (Term.Grace): the lease's row is still its
// own until then, and another replica gains it only after.
func TestUnrenewedTermHasGrace(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.start(t, fast)
	ta := a.await(t, lease.Jobs, 10*time.Second)
	if _, ok := ta.Grace(); ok {
		t.Fatal("a lasting term reports a grace")
	}
	b := s.start(t, fast)
	a.partition(t)
	awaitLost(t, ta, fast.TTL+5*time.Second)

	until, ok := ta.Grace()
	if !ok {
		t.Fatal("a term that could not be renewed reports no grace")
	}
	if left := time.Until(until); left > fast.Margin/2 {
		t.Fatalf("grace ends %v after the term, more than half the margin %v", left, fast.Margin/2)
	}
	// Up to the end of the grace the row is still A's term: nobody else
	// can have taken the lease. (A look that returns after the grace, on a
	// loaded machine, proves nothing either way.)
	h, e := s.row(t, lease.Jobs)
	if time.Now().Before(until) && (h != a.Holder() || e != ta.Epoch) {
		t.Fatalf("during A's grace the row is %s epoch %d, want A's epoch %d", h, e, ta.Epoch)
	}
	tb := b.await(t, lease.Jobs, fast.TTL+5*time.Second)
	if tb.Epoch <= ta.Epoch {
		t.Fatalf("epoch %d after %d", tb.Epoch, ta.Epoch)
	}
}

// A term taken over, or ended by a stop, has no grace: someone else may
// hold the lease at once.
func TestNoGraceWhenTakenOverOrStopped(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.start(t, fast)
	ta := a.await(t, lease.Jobs, 10*time.Second)
	// Another holder's row, as a takeover leaves it.
	if _, err := s.pool.Exec(context.Background(),
		`UPDATE leases SET holder = 'someone-else', epoch = epoch + 1 WHERE name = $1`, lease.Jobs); err != nil {
		t.Fatal(err)
	}
	awaitLost(t, ta, fast.TTL)
	if until, ok := ta.Grace(); ok {
		t.Fatalf("a term taken over reports a grace until %v", until)
	}

	c := newSite(t).start(t, fast)
	tc := c.await(t, lease.Jobs, 10*time.Second)
	c.stop()
	if !lost(tc) {
		t.Fatal("a stopped manager's term is still open")
	}
	if until, ok := tc.Grace(); ok {
		t.Fatalf("a stopped manager's term reports a grace until %v", until)
	}
}

// A clean stop releases the lease: the next replica takes it at its next
// try, long before the lease would have expired.
func TestReleaseHandsOver(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	slow := fast
	slow.TTL = 10 * time.Second
	a := s.start(t, slow)
	ta := a.await(t, lease.Jobs, 10*time.Second)
	b := s.start(t, slow)
	a.stop()
	if !lost(ta) {
		t.Fatal("A's term outlived its manager")
	}
	stopped := time.Now()
	tb := b.await(t, lease.Jobs, slow.TTL/2)
	if took := time.Since(stopped); took > slow.TTL/2 {
		t.Fatalf("takeover %v after the release", took)
	}
	if tb.Epoch <= ta.Epoch {
		t.Fatalf("epoch %d after %d", tb.Epoch, ta.Epoch)
	}
}

// Epochs go up with every term, whether the lease was released, taken
// after a kill, or taken back by the replica that had lost it.
func TestEpochsIncrease(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	var epochs []int64
	a := s.start(t, fast)
	epochs = append(epochs, a.await(t, lease.Jobs, 10*time.Second).Epoch)
	b := s.start(t, fast)
	a.stop() // released
	epochs = append(epochs, b.await(t, lease.Jobs, 10*time.Second).Epoch)
	c := s.start(t, fast)
	b.kill(t) // expired
	tc := c.await(t, lease.Jobs, fast.TTL+5*time.Second)
	epochs = append(epochs, tc.Epoch)
	c.partition(t) // lost alone, taken back once healed
	awaitLost(t, tc, fast.TTL+5*time.Second)
	c.heal()
	tc2 := c.await(t, lease.Jobs, 10*time.Second)
	epochs = append(epochs, tc2.Epoch)
	for i := 1; i < len(epochs); i++ {
		if epochs[i] <= epochs[i-1] {
			t.Fatalf("epochs %v do not strictly increase", epochs)
		}
	}
	// The replica's own earlier term is fenced like anyone's.
	ctx := context.Background()
	if err := s.fencedWrite(ctx, tc); !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("write of the lost term: %v, want ErrFenced", err)
	}
	if err := s.fencedWrite(ctx, tc2); err != nil {
		t.Fatalf("write of the current term: %v", err)
	}
}

// A fenced transaction open across the end of its term keeps the takeover
// waiting until it ends, so its commit precedes the next term; it does not
// keep its own holder from renewing.
func TestFenceOrdersCommitsBeforeTakeover(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	ctx := context.Background()
	a := s.start(t, fast)
	ta := a.await(t, lease.Jobs, 10*time.Second)

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := lease.Fence(ctx, tx, ta); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO effects (holder, epoch) VALUES ($1, $2)`, ta.Holder, ta.Epoch); err != nil {
		t.Fatal(err)
	}
	// Renewals go on under the open fence: the term outlives its TTL.
	select {
	case <-ta.Lost():
		t.Fatal("an open fenced transaction kept the holder from renewing")
	case <-time.After(fast.TTL + fast.RenewEvery):
	}

	b := s.start(t, fast)
	a.kill(t)
	awaitLost(t, ta, fast.TTL)
	// A's row expires within a TTL of the kill; B keeps trying, and waits
	// on the row the open transaction holds.
	wctx, cancel := context.WithTimeout(ctx, fast.TTL+time.Second)
	defer cancel()
	if term, err := b.Await(wctx, lease.Jobs); err == nil {
		t.Fatalf("B took over (epoch %d) while A's fenced transaction was open", term.Epoch)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tb := b.await(t, lease.Jobs, 10*time.Second)
	if tb.Epoch <= ta.Epoch {
		t.Fatalf("epoch %d after %d", tb.Epoch, ta.Epoch)
	}
	if n := s.effects(t, ta); n != 1 {
		t.Fatalf("A's fenced write: %d rows, want 1", n)
	}
}

func TestConfigChecked(t *testing.T) {
	for name, cfg := range map[string]lease.Config{
		"no holder":       {Names: []string{lease.Jobs}},
		"no names":        {Holder: "h"},
		"repeated name":   {Holder: "h", Names: []string{lease.Jobs, lease.Jobs}},
		"renew too rare":  {Holder: "h", Names: []string{lease.Jobs}, TTL: 3 * time.Second, RenewEvery: 2 * time.Second, Margin: time.Second},
		"margin over ttl": {Holder: "h", Names: []string{lease.Jobs}, TTL: time.Second, Margin: 2 * time.Second},
	} {
		if _, err := lease.New(nil, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	m, err := lease.New(nil, lease.Config{Holder: lease.NewHolderID(), Names: []string{lease.Jobs}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Await(context.Background(), "unknown"); err == nil {
		t.Fatal("Await of a lease the manager does not contend for")
	}
}

// Current shows every replica the holder of a lease and its note, and
// nobody once the holder has released it.
func TestCurrentShowsHolderAndNote(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	ctx := context.Background()
	if _, ok, err := lease.Current(ctx, s.pool, lease.Jobs); err != nil || ok {
		t.Fatalf("before any term: ok=%v err=%v", ok, err)
	}
	cfg := fast
	cfg.Note = "http://10.0.0.7:8000"
	a := s.start(t, cfg)
	ta := a.await(t, lease.Jobs, 10*time.Second)

	h, ok, err := lease.Current(ctx, s.pool, lease.Jobs)
	if err != nil || !ok {
		t.Fatalf("while held: ok=%v err=%v", ok, err)
	}
	if h.Holder != a.Holder() || h.Epoch != ta.Epoch || h.Note != cfg.Note {
		t.Fatalf("current %+v, want holder %s epoch %d note %s", h, a.Holder(), ta.Epoch, cfg.Note)
	}

	a.stop()
	if _, ok, err := lease.Current(ctx, s.pool, lease.Jobs); err != nil || ok {
		t.Fatalf("after the release: ok=%v err=%v", ok, err)
	}
}
