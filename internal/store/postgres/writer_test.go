package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kaiserhub/kaiser/internal/lease"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// The writers measure what SQLite's measure: committed batches and their
// time, and failed operations.
func TestWriterMetrics(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m := store.NewWriterMetrics(reg, "main")
	s, err := postgres.Open(ctx, pgtest.DSN(t), postgres.Options{
		Metrics:        m,
		ControlMetrics: store.NewWriterMetrics(reg, "control"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)

	u := store.User{Username: "ana", Email: "ana@example.org", Role: "viewer", IsActive: true,
		PasswordHash: "x", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if _, err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, u); err == nil {
		t.Fatal("a second user with the same name was stored")
	}

	if n := testutil.CollectAndCount(m.BatchSize); n != 1 {
		t.Fatalf("batch histogram: %d series", n)
	}
	body, err := testutil.GatherAndLint(reg)
	if err != nil || len(body) > 0 {
		t.Fatalf("metrics lint: %v %v", body, err)
	}
	if got := testutil.ToFloat64(m.Errors); got != 1 {
		t.Fatalf("write errors %v, want 1 (the duplicate)", got)
	}
	if got := histogramCount(t, reg, "kaiser_store_batch_ops", "main"); got < 1 {
		t.Fatalf("committed batches of the main writer: %d", got)
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name, db string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "db" && l.GetValue() == db {
					return mm.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// A primary's writes are fenced with its lease term: they commit while the
// term is the lease's, and none commits once another replica has taken
// the lease over.
func TestFencedWritesStopAtTakeover(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	term := &lease.Term{Name: lease.Jobs, Holder: "replica-a", Epoch: 1}
	s, err := postgres.Open(ctx, dsn, postgres.Options{
		Fence: func(ctx context.Context, tx pgx.Tx) error { return lease.Fence(ctx, tx, term) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, `INSERT INTO leases (name, holder, epoch, acquired_at, expires_at)
		VALUES ('jobs', 'replica-a', 1, now(), now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}

	user := func(name string) store.User {
		return store.User{Username: name, Email: name + "@example.org", Role: "viewer", IsActive: true,
			PasswordHash: "x", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	}
	if _, err := s.CreateUser(ctx, user("in-term")); err != nil {
		t.Fatalf("write within the term: %v", err)
	}
	if _, err := db.Exec(ctx, `UPDATE leases SET holder = 'replica-b', epoch = 2`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, user("after-takeover")); !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("write after the takeover: %v, want lease.ErrFenced", err)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM users WHERE username = 'after-takeover'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("fenced user stored: %d %v", n, err)
	}
}

// A close that runs out of time while the database does not answer (a
// lock that never ends) aborts the writers' transactions: Close returns
// soon after its deadline with the drain error, rather than after a
// transaction timeout per queued write.
func TestCloseAbortsWritesTheDatabaseHoldsUp(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE users IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	written := make(chan error, 3)
	for i := range 3 {
		go func() {
			u := store.User{Username: fmt.Sprintf("held-%d", i), Email: fmt.Sprintf("held-%d@example.org", i),
				Role: "viewer", IsActive: true, PasswordHash: "x", CreatedAt: time.Now(), UpdatedAt: time.Now()}
			_, err := s.CreateUser(ctx, u)
			written <- err
		}()
	}
	awaitLockWaiter(t, db)

	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- s.Close(cctx) }()
	select {
	case err := <-closed:
		if err == nil {
			t.Fatal("Close reported a clean drain of writes the database held up")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close still waits 30 s after its deadline for the held-up writes")
	}
	for range 3 {
		if err := <-written; err == nil {
			t.Fatal("a write the database held up reported success")
		}
	}
}

// awaitLockWaiter waits until a session of the database waits for a lock.
func awaitLockWaiter(t *testing.T, db *pgx.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		if err := db.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`).
			Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no write waits for the lock")
}
