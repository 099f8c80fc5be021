// Package sqlite implements the hub's store on SQLite through a pure-Go
// driver: WAL mode, versioned migrations applied at open, one writer
// goroutine with group commit, and a separate pool for concurrent reads.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
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

//go:embed migrations/*.sql
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
	Logger    *slog.Logger
}

// Store is an open SQLite database.
type Store struct {
	path   string
	write  *sql.DB
	read   *sql.DB
	ckpt   *sql.DB
	writer *Writer
	log    *slog.Logger
	stopCk chan struct{}
	ckDone chan struct{}
}

// Open opens (creating if needed) the database file in dir, applies pending
// migrations and starts the writer.
func Open(ctx context.Context, dir string, opt Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	path := filepath.Join(dir, "kaiser.db")
	dsn := func(extra string) string {
		q := url.Values{}
		// A 64 MiB page cache holds the tail pages of thousands of series.
		// Checkpoints run in their own goroutine (checkpointer), not inside
		// the writer's commits, so commits never wait for them.
		for _, p := range []string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(10000)", "foreign_keys(on)",
			"cache_size(-65536)", "wal_autocheckpoint(0)"} {
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
	read.SetMaxOpenConns(4)
	s := &Store{
		path:  path,
		write: write,
		read:  read,
		log:   opt.Logger,
	}
	if err := s.migrate(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	w, err := newWriter(ctx, write, opt)
	if err != nil {
		s.closeDBs()
		return nil, err
	}
	s.writer = w
	s.ckpt, err = sql.Open("sqlite", dsn(""))
	if err != nil {
		s.closeDBs()
		return nil, err
	}
	s.ckpt.SetMaxOpenConns(1)
	s.stopCk, s.ckDone = make(chan struct{}), make(chan struct{})
	go s.checkpointer()
	return s, nil
}

// checkpointer copies WAL pages into the database file every second with a
// PASSIVE checkpoint, which never blocks the writer or readers. When the WAL
// has grown past 64 MiB anyway (readers pinned old pages), a RESTART
// checkpoint, which waits for readers, brings it back.
func (s *Store) checkpointer() {
	defer close(s.ckDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stopCk:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var busy, logFrames, done int
		err := s.ckpt.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done)
		if err == nil && logFrames > 16384 {
			err = s.ckpt.QueryRowContext(ctx, "PRAGMA wal_checkpoint(RESTART)").Scan(&busy, &logFrames, &done)
		}
		cancel()
		if err != nil {
			s.log.Warn("wal checkpoint failed", "error", err)
		}
	}
}

func (s *Store) closeDBs() {
	if s.stopCk != nil {
		close(s.stopCk)
		<-s.ckDone
		s.stopCk = nil
	}
	if s.ckpt != nil {
		s.ckpt.Close()
	}
	s.read.Close()
	s.write.Close()
}

// Close stops the writer after committing everything queued, then closes the database.
func (s *Store) Close(ctx context.Context) error {
	err := s.writer.Close(ctx)
	s.closeDBs()
	return err
}

// Writer gives access to the group-commit writer for domain-specific batch operations.
func (s *Store) Writer() *Writer { return s.writer }

// ReadDB is the pool for concurrent reads.
func (s *Store) ReadDB() *sql.DB { return s.read }

// Ping checks the database with a real round trip.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Flush waits until every operation queued before the call is committed.
func (s *Store) Flush(ctx context.Context) error { return s.writer.Flush(ctx) }

// Path is the database file.
func (s *Store) Path() string { return s.path }

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.write.ExecContext(ctx, `
		CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY,
			applied_at INTEGER NOT NULL
		)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var current int
	err := s.write.QueryRowContext(ctx, `SELECT COALESCE(MAX(version),0) FROM schema_migrations`).Scan(&current)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
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
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := s.write.BeginTx(ctx, nil)
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
		s.log.Info("applied migration", "version", v, "name", base)
	}
	return nil
}

// SchemaVersion reports the highest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(version),0) FROM schema_migrations`).Scan(&v)
	return v, err
}
