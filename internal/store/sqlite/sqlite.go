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

	"github.com/kaiserhub/kaiser/internal/store"
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
	Metrics   *store.WriterMetrics
	// ControlMetrics instruments the control database's writer.
	ControlMetrics *store.WriterMetrics
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
	// pageSize is the size of one WAL frame's page.
	pageSize int
}

// dbConfig is what differs between the main and the control database.
type dbConfig struct {
	file       string
	migrations string // glob in the embedded migrations
	// Page caches, per connection: each lives outside the Go heap and
	// fills up to its bound with whatever pages the connection touched,
	// so the bounds are what the process's resident size adds up to.
	writerCacheKiB int
	readerCacheKiB int
	readConns      int
	prioConns      int // the reserved read connections (database.prio)
	metrics        *store.WriterMetrics
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
		// A few thousand rows of state and a history tail.
		writerCacheKiB: 2048,
		readerCacheKiB: 1024,
		readConns:      2,
		prioConns:      1, // the readiness probe
		metrics:        opt.ControlMetrics,
		immediate:      true,
	})
	if err != nil {
		return nil, err
	}
	main, err := openDatabase(ctx, dir, opt, dbConfig{
		file:       "kaiser.db",
		migrations: "migrations/*.sql",
		// The writer's cache holds the tail pages of the readings and
		// rollup tables: four pages per series, 16 MiB for 1,000 series at
		// 4 KiB pages; a larger fleet reads the rest from the OS's file
		// cache. Readers serve history pages and the API's lists: they
		// stream rows and need no large cache of their own
		// (docs/decisions/0021-footprint.md).
		writerCacheKiB: 16384,
		readerCacheKiB: 2048,
		readConns:      4,
		prioConns:      2, // the readiness probe and the account lookups
		metrics:        opt.Metrics,
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
	dsn := func(cacheKiB int, extra ...string) string {
		q := url.Values{}
		// Checkpoints run in their own goroutine (checkpointer), not inside
		// the writer's commits, so commits never wait for them. A WAL
		// that a burst grew is cut back to journal_size_limit when it
		// restarts after a complete checkpoint.
		for _, p := range append([]string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(10000)",
			"foreign_keys(on)", fmt.Sprintf("cache_size(-%d)", cacheKiB), "wal_autocheckpoint(0)",
			fmt.Sprintf("journal_size_limit(%d)", walSizeLimit)}, extra...) {
			q.Add("_pragma", p)
		}
		return "file:" + path + "?" + q.Encode()
	}
	write, err := sql.Open("sqlite", dsn(cfg.writerCacheKiB))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	read, err := sql.Open("sqlite", dsn(cfg.readerCacheKiB, "query_only(on)"))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	read.SetMaxOpenConns(cfg.readConns)
	prio, err := sql.Open("sqlite", dsn(cfg.readerCacheKiB, "query_only(on)"))
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
	// The checkpointer copies WAL frames into the file; it reads no
	// tables, so its cache stays small. Its busy timeout is 0: a
	// TRUNCATE that would wait for a reader gives up at once instead
	// (and then works as a PASSIVE one), so it never holds the write
	// lock while the writer waits behind it.
	d.ckpt, err = sql.Open("sqlite", dsn(256, "busy_timeout(0)"))
	if err != nil {
		d.closeDBs()
		return nil, err
	}
	d.ckpt.SetMaxOpenConns(1)
	if err := d.ckpt.QueryRowContext(ctx, "PRAGMA page_size").Scan(&d.pageSize); err != nil {
		d.closeDBs()
		return nil, fmt.Errorf("read page size: %w", err)
	}
	d.stopCk, d.ckDone = make(chan struct{}), make(chan struct{})
	go d.checkpointer()
	return d, nil
}

// walSizeLimit is the size the WAL file is cut back to when it restarts
// (PRAGMA journal_size_limit): a burst may grow it, the next restart
// after a complete checkpoint shrinks it.
const walSizeLimit = 8 << 20

// idleTruncate is how long the writer must have committed nothing before
// the checkpointer empties the WAL file altogether.
const idleTruncate = 10 * time.Second

// checkpointer copies WAL pages into the database file every second with a
// PASSIVE checkpoint, which never blocks the writer or readers. When the
// WAL holds more than walSizeLimit of frames, it asks the writer to finish
// the job between two transactions (Writer.RestartWAL), after which the
// WAL starts over from its beginning, cut back to walSizeLimit: the file
// stays bounded under steady load, and nothing ever waits for a lock the
// checkpointer holds. When the writer has been idle for idleTruncate, a
// TRUNCATE checkpoint, which does not wait for readers (busy timeout 0),
// empties the file.
func (d *database) checkpointer() {
	defer close(d.ckDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	truncated := false
	for {
		select {
		case <-d.stopCk:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		mode := "PASSIVE"
		idle := time.Since(d.writer.LastCommit()) >= idleTruncate
		if idle && !truncated {
			mode = "TRUNCATE"
		}
		var busy, logFrames, done int
		err := d.ckpt.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &logFrames, &done)
		cancel()
		switch {
		case err != nil && storageFault(err) && isBusy(err):
			// A TRUNCATE that met the writer or a reader: next second.
		case err != nil:
			d.log.Warn("wal checkpoint failed", "db", d.path, "mode", mode, "error", err)
		default:
			truncated = idle && busy == 0
			if logFrames*d.pageSize > walSizeLimit {
				d.writer.RestartWAL()
			}
		}
	}
}

// isBusy reports SQLITE_BUSY or SQLITE_LOCKED.
func isBusy(err error) bool {
	var coded interface{ Code() int }
	if !errors.As(err, &coded) {
		return false
	}
	c := coded.Code() & 0xff
	return c == sqliteBusy || c == sqliteLocked
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
