// Package sqlite implements the hub's store on SQLite through a pure-Go
// driver: WAL mode, versioned migrations applied at open, one writer
// goroutine with group commit per database file, and a separate pool for
// concurrent reads. The control state has a file of its own (control.db).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql migrations/control/*.sql
var migrations embed.FS

// Options tunes the store; zero values take defaults.
type Options struct {
	// BatchRows is the number of queued operations committed in one transaction at most.
	BatchRows int
	// BatchWait is how long the writer waits to fill a batch once it has work.
	BatchWait time.Duration
	// QueueSize bounds the writer queue; Submit waits (with its context) when full.
	QueueSize int
	Metrics   *WriterMetrics
	// ControlMetrics instruments the control database's writer.
	ControlMetrics *WriterMetrics
	Logger         *slog.Logger
}

// Store is the hub's two SQLite databases: the main one (devices, sensors,
// readings, accounts, audit, zones) and the control one (actuator configs,
// states and command history, emergency latches and tokens). Each has its own
// writer goroutine and file lock, so a commit that gates a publish (an
// actuator ON and its auto-off deadline, a latch) never waits behind a
// reading or rollup transaction (docs/decisions/0013-control-database.md).
type Store struct {
	*database
	control *database
}

// database is one SQLite file: a single writer connection behind the
// group-commit Writer, a pool of read-only connections, a reserved one
// (prio), and a checkpointer.
type database struct {
	path  string
	write *sql.DB
	read  *sql.DB
	// prio is kept from the read pool for the reads that must answer while
	// history queries fill it: the readiness probe and the account lookups
	// of every authentication and login, so a saturated read pool neither
	// makes the hub look dead nor locks operators out.
	prio   *sql.DB
	ckpt   *sql.DB
	writer *Writer
	log    *slog.Logger
	stopCk chan struct{}
	ckDone chan struct{}
}

// dbConfig is what differs between the main and the control database.
type dbConfig struct {
	file       string
	migrations string // glob in the embedded migrations
	cacheKiB   int
	readConns  int
	prioConns  int // the reserved read connections (database.prio)
	metrics    *WriterMetrics
	// immediate commits as soon as work arrives instead of waiting
	// BatchWait for more: every write here gates a publish, and requests
	// that queue while a commit runs still share the next one.
	immediate bool
	// beforeMigration runs outside any transaction before the migration
	// with that version is applied (data moves that need ATTACH).
	beforeMigration map[int]func(ctx context.Context, conn *sql.DB) error
}

// Open opens (creating if needed) the database files in dir, applies pending
// migrations and starts the writers.
func Open(ctx context.Context, dir string, opt Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}

	// The control database opens first: the main database's migration 8
	// moves the control tables into it.
	control, err := openDatabase(ctx, dir, opt, dbConfig{
		file:       controlFile,
		migrations: "migrations/control/*.sql",
		// A few thousand rows of state and a history tail: 4 MiB is plenty.
		cacheKiB:  4096,
		readConns: 2,
		prioConns: 1, // the readiness probe
		metrics:   opt.ControlMetrics,
		immediate: true,
	})
	if err != nil {
		return nil, err
	}
	main, err := openDatabase(ctx, dir, opt, dbConfig{
		file:       "kaiser.db",
		migrations: "migrations/*.sql",
		// A 64 MiB page cache holds the tail pages of thousands of series.
		cacheKiB:  65536,
		readConns: 4,
		prioConns: 2, // the readiness probe and the account lookups
		metrics:   opt.Metrics,
		beforeMigration: map[int]func(context.Context, *sql.DB) error{
			moveControlVersion: func(ctx context.Context, db *sql.DB) error {
				return moveControlTables(ctx, db, control.path)
			},
		},
	})
	if err != nil {
		control.close(ctx)
		return nil, err
	}
	return &Store{database: main, control: control}, nil
}

func openDatabase(ctx context.Context, dir string, opt Options, cfg dbConfig) (*database, error) {
	path := filepath.Join(dir, cfg.file)
	dsn := func(extra string) string {
		q := url.Values{}
		// Checkpoints run in their own goroutine (checkpointer), not inside
		// the writer's commits, so commits never wait for them.
		for _, p := range []string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(10000)", "foreign_keys(on)",
			fmt.Sprintf("cache_size(-%d)", cfg.cacheKiB), "wal_autocheckpoint(0)"} {
			q.Add("_pragma", p)
		}
		if extra != "" {
			q.Add("_pragma", extra)
		}
		return "file:" + path + "?" + q.Encode()
	}
	write, err := sql.Open("sqlite", dsn(""))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	read, err := sql.Open("sqlite", dsn("query_only(on)"))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	read.SetMaxOpenConns(cfg.readConns)
	prio, err := sql.Open("sqlite", dsn("query_only(on)"))
	if err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("open %s for reserved reads: %w", path, err)
	}
	prio.SetMaxOpenConns(cfg.prioConns)
	d := &database{
		path:  path,
		write: write,
		read:  read,
		prio:  prio,
		log:   opt.Logger,
	}
	if err := d.migrate(ctx, cfg); err != nil {
		d.closeDBs()
		return nil, err
	}
	wopt := opt
	wopt.Metrics = cfg.metrics
	if cfg.immediate {
		wopt.BatchWait = -1
	}
	w, err := newWriter(ctx, write, wopt)
	if err != nil {
		d.closeDBs()
		return nil, err
	}
	d.writer = w
	d.ckpt, err = sql.Open("sqlite", dsn(""))
	if err != nil {
		d.closeDBs()
		return nil, err
	}
	d.ckpt.SetMaxOpenConns(1)
	d.stopCk, d.ckDone = make(chan struct{}), make(chan struct{})
	go d.checkpointer()
	return d, nil
}

// checkpointer copies WAL pages into the database file every second with a
// PASSIVE checkpoint, which never blocks the writer or readers. When the WAL
// has grown past 64 MiB anyway (readers pinned old pages), a RESTART
// checkpoint, which waits for readers, brings it back.
func (d *database) checkpointer() {
	defer close(d.ckDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-d.stopCk:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var busy, logFrames, done int
		err := d.ckpt.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done)
		if err == nil && logFrames > 16384 {
			err = d.ckpt.QueryRowContext(ctx, "PRAGMA wal_checkpoint(RESTART)").Scan(&busy, &logFrames, &done)
		}
		cancel()
		if err != nil {
			d.log.Warn("wal checkpoint failed", "db", d.path, "error", err)
		}
	}
}

func (d *database) closeDBs() {
	if d.stopCk != nil {
		close(d.stopCk)
		<-d.ckDone
		d.stopCk = nil
	}
	if d.ckpt != nil {
		d.ckpt.Close()
	}
	if d.read != nil {
		d.read.Close()
	}
	if d.prio != nil {
		d.prio.Close()
	}
	d.write.Close()
}

// close stops the writer after committing everything queued, then closes the files.
func (d *database) close(ctx context.Context) error {
	err := d.writer.Close(ctx)
	d.closeDBs()
	return err
}

// Close stops both writers after committing everything queued, then closes
// the databases.
func (s *Store) Close(ctx context.Context) error {
	return errors.Join(s.database.close(ctx), s.control.close(ctx))
}

// Writer gives access to the main database's group-commit writer for
// domain-specific batch operations.
func (s *Store) Writer() *Writer { return s.writer }

// ReadDB is the main database's pool for concurrent reads.
func (s *Store) ReadDB() *sql.DB { return s.read }

// Ping checks both databases with a real round trip, on their reserved
// connections: busy read pools are not a database that is down.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.prio.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return err
	}
	return s.control.prio.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Flush waits until every operation queued before the call is committed, in
// both databases.
func (s *Store) Flush(ctx context.Context) error {
	return errors.Join(s.writer.Flush(ctx), s.control.writer.Flush(ctx))
}

// WriterDepths are the operations waiting for the main and the control
// database's writers.
func (s *Store) WriterDepths() (main, control int) { return s.writer.Depth(), s.control.writer.Depth() }

// CommitFault reports why a database cannot commit, nil while both do
// (Writer.Fault): readiness is false meanwhile (docs/api.md §13).
func (s *Store) CommitFault() error {
	var errs []error
	for _, d := range []*database{s.database, s.control} {
		if err := d.writer.Fault(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(d.path), err))
		}
	}
	return errors.Join(errs...)
}

// Path is the main database file.
func (s *Store) Path() string { return s.path }

// ControlPath is the control database file.
func (s *Store) ControlPath() string { return s.control.path }

func (d *database) migrate(ctx context.Context, cfg dbConfig) error {
	if _, err := d.write.ExecContext(ctx, `
		CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY,
			applied_at INTEGER NOT NULL
		)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var current int
	err := d.write.QueryRowContext(ctx, `SELECT COALESCE(MAX(version),0) FROM schema_migrations`).Scan(&current)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	names, err := fs.Glob(migrations, cfg.migrations)
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := filepath.Base(name)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: bad version prefix", base)
		}
		if v <= current {
			continue
		}
		if before := cfg.beforeMigration[v]; before != nil {
			if err := before(ctx, d.write); err != nil {
				return fmt.Errorf("migration %s: %w", base, err)
			}
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := d.write.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", base, err)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO schema_migrations(version, applied_at)
			VALUES(?, ?)`,
			v, time.Now().UnixMilli()); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", base, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
		d.log.Info("applied migration", "db", cfg.file, "version", v, "name", base)
	}
	return nil
}

// SchemaVersion reports the highest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(version),0) FROM schema_migrations`).Scan(&v)
	return v, err
}
