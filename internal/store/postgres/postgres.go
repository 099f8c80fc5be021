// Package postgres implements the hub's store on PostgreSQL through pgx:
// versioned migrations applied at open, the same records and write
// semantics as the SQLite store (internal/store/sqlite), readings through
// COPY into daily partitions, and retention that drops whole partitions
// (docs/decisions/0025-postgres-store.md). It is the store for larger sites
// and for several hub replicas on one database (docs/architecture.md §7).
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kaiserhub/kaiser/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key under which migrations run, so
// that replicas starting together apply each migration once.
const migrationLock = 0x6b616973 // "kais"

// Options tunes the store; zero values take defaults.
type Options struct {
	// MaxConns bounds the pool (default 8): two writers, the reading
	// sink, and reads.
	MaxConns int32
	// QueueSize bounds each writer's queue (default 16384).
	QueueSize int
	// StatementTimeout is the server-side limit of one statement
	// (default 60 s): a query stuck on a lock or a dead plan ends.
	StatementTimeout time.Duration
	// Password, when set, replaces the DSN's: the hub reads it from a
	// file so that it need not be on the command line.
	Password string
	Logger   *slog.Logger
	// Metrics and ControlMetrics are the main and the control writer's
	// instruments, the same as SQLite's (nil: none).
	Metrics        *store.WriterMetrics
	ControlMetrics *store.WriterMetrics
	// Fence, when set, runs first in every transaction of both writers; an
	// error rolls the transaction back. A primary replica fences its writes
	// with its lease term (lease.Fence), so that nothing it queued commits
	// once another replica has taken over (docs/decisions/0029-replicas.md).
	Fence func(ctx context.Context, tx pgx.Tx) error
}

// Store is the hub's PostgreSQL database. Like the SQLite store it has a
// main and a control writer, so that a commit that gates a publish (an
// actuator ON and its auto-off deadline, a latch) never queues behind bulk
// writes; readings go through the reading sink's COPY, beside both.
type Store struct {
	pool    *pgxpool.Pool
	main    *writer
	control *writer
	log     *slog.Logger

	// days are the readings partitions known to exist (day start, unix ms).
	daysMu sync.Mutex
	days   map[int64]bool
}

// PoolConfig is the configuration of a pool on the database named by dsn
// (a postgres:// URL or a key=value string): password, when set, replaces
// the DSN's, and the connections show as application name in
// pg_stat_activity. The store's pool and the pools of the replicas' leases
// and relay (docs/decisions/0029-replicas.md) all start from it.
func PoolConfig(dsn, password, name string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres dsn: %w", err)
	}
	if password != "" {
		cfg.ConnConfig.Password = password
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = name
	// A connection found dead is replaced rather than handed out.
	cfg.HealthCheckPeriod = 15 * time.Second
	return cfg, nil
}

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string), applies pending migrations and starts the writers.
func Open(ctx context.Context, dsn string, opt Options) (*Store, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.MaxConns <= 0 {
		opt.MaxConns = 8
	}
	if opt.QueueSize <= 0 {
		opt.QueueSize = 16384
	}
	if opt.StatementTimeout <= 0 {
		opt.StatementTimeout = time.Minute
	}
	cfg, err := PoolConfig(dsn, opt.Password, "kaiser")
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = opt.MaxConns
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(opt.StatementTimeout.Milliseconds(), 10)
	// A transaction left open by a client that died (power cut, network
	// gone) ends within seconds, not when TCP gives up hours later: its
	// locks would hold up everyone, a replicas' takeover too, which waits
	// for the fenced transactions of the old term. The store's own
	// transactions are never idle that long.
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "5000"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres connect: %w", err)
	}
	if err := migrate(ctx, pool, opt.Logger); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, log: opt.Logger, days: map[int64]bool{}}
	timeout := opt.StatementTimeout + 10*time.Second
	s.main = newWriter("main", pool, opt.QueueSize, 2000, timeout, opt.Metrics, opt.Logger)
	s.control = newWriter("control", pool, opt.QueueSize, 2000, timeout, opt.ControlMetrics, opt.Logger)
	s.main.fence, s.control.fence = opt.Fence, opt.Fence
	return s, nil
}

// migrate applies the embedded migrations newer than the stored version,
// each in its own transaction under an advisory lock.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, applied_at bigint NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	for _, name := range names {
		base := path.Base(name)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: bad version prefix", base)
		}
		if v <= current {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
				v, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
		log.Info("applied migration", "db", "postgres", "version", v, "name", base)
	}
	return nil
}

// SchemaVersion reports the highest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// Close commits everything queued, then closes the pool.
func (s *Store) Close(ctx context.Context) error {
	err := errors.Join(s.main.close(ctx), s.control.close(ctx))
	s.pool.Close()
	return err
}

// Flush waits until every write queued before the call has committed.
func (s *Store) Flush(ctx context.Context) error {
	return errors.Join(s.main.flush(ctx), s.control.flush(ctx))
}

// Ping checks the database with a round trip.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `SELECT 1`)
	return err
}

// PoolStat is the connection pool's figures (/health/detailed).
func (s *Store) PoolStat() *pgxpool.Stat { return s.pool.Stat() }

// WriterDepths are the operations waiting for the main and the control writer.
func (s *Store) WriterDepths() (main, control int) { return s.main.depth(), s.control.depth() }

// CommitFault reports why the database cannot commit, nil while it does.
func (s *Store) CommitFault() error {
	var errs []error
	for _, w := range []*writer{s.main, s.control} {
		if err := w.faultErr(); err != nil {
			errs = append(errs, fmt.Errorf("%s writer: %w", w.name, err))
		}
	}
	return errors.Join(errs...)
}

// ms is a nullable time as unix milliseconds.
func ms(t *time.Time) *int64 {
	if t == nil || t.IsZero() {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

func fromMS(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := time.UnixMilli(*v).UTC()
	return &t
}

func at(v int64) time.Time { return time.UnixMilli(v).UTC() }

// collect scans every row with scan.
func collect[T any](rows pgx.Rows, err error, scan func(pgx.Rows) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
