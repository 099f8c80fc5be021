package hub

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/backtest"
	"github.com/kaiserhub/kaiser/internal/debugapi"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/emergency"
	"github.com/kaiserhub/kaiser/internal/lease"
	"github.com/kaiserhub/kaiser/internal/logic"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/retention"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sequence"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
	"github.com/kaiserhub/kaiser/internal/zone"
)

// Store is what the hub needs of its database: every domain package's
// store interface, which both stores implement (internal/store/storetest
// checks them against one suite), and the few calls of its lifecycle and
// health. Everything else a store can do belongs to that store and is
// reached through Hub.SQLite or Hub.Postgres.
type Store interface {
	store.Devices
	store.Users
	store.Audit
	store.DeviceCredentials
	sensor.Store
	actuator.Store
	emergency.Store
	zone.Store
	logic.Store
	sequence.Store
	notify.Store
	retention.Trimmer
	device.PushStore
	backtest.History

	// Ping is one round trip, for readiness and /health.
	Ping(ctx context.Context) error
	// Flush waits until every write queued before it has committed.
	Flush(ctx context.Context) error
	// Close commits what is queued and closes the database.
	Close(ctx context.Context) error
	// CommitFault is why the database cannot commit, nil while it can
	// (readiness, docs/api.md §13).
	CommitFault() error
	// WriterDepths are the writes waiting for the main and the control writer.
	WriterDepths() (main, control int)
}

// ReadingSink is what the hub, the soak and the benchmarks use of a
// store's reading sink.
type ReadingSink interface {
	Add(ctx context.Context, r store.Reading) error
	Flush(ctx context.Context) error
	Close(ctx context.Context) error
	Depth() int
	Committed() int64
	OnCommit(f func([]store.Reading, time.Time))
}

var (
	_ Store       = (*sqlite.Store)(nil)
	_ Store       = (*postgres.Store)(nil)
	_ ReadingSink = (*sqlite.ReadingSink)(nil)
	_ ReadingSink = (*postgres.ReadingSink)(nil)
)

// Database kinds, as /health/detailed names them.
const (
	DatabaseSQLite   = "sqlite"
	DatabasePostgres = "postgresql"
)

// IsPostgresURL reports whether a --database value names PostgreSQL.
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// databaseKind is the kind of database cfg selects.
func (c Config) databaseKind() string {
	if IsPostgresURL(c.Database) {
		return DatabasePostgres
	}
	return DatabaseSQLite
}

// openStore opens SQLite in the data directory, or PostgreSQL when
// --database names it (docs/decisions/0026-hub-on-postgres.md).
func (h *Hub) openStore(ctx context.Context) error {
	log := h.Log.With("component", "store")
	if h.cfg.databaseKind() == DatabasePostgres {
		st, err := postgres.Open(ctx, h.cfg.Database, postgres.Options{
			Password:       h.cfg.DatabasePassword,
			Logger:         log,
			Metrics:        store.NewWriterMetrics(h.Registry, "main"),
			ControlMetrics: store.NewWriterMetrics(h.Registry, "control"),
			Fence:          h.fence(),
		})
		if err != nil {
			// The DSN may hold a password: only what pgx says, never the URL.
			return fmt.Errorf("open PostgreSQL store: %w", err)
		}
		h.Postgres, h.Store = st, st
		return nil
	}
	st, err := sqlite.Open(ctx, h.cfg.DataDir, sqlite.Options{
		Metrics:        store.NewWriterMetrics(h.Registry, "main"),
		ControlMetrics: store.NewWriterMetrics(h.Registry, "control"),
		Logger:         log,
	})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	h.SQLite, h.Store = st, st
	return nil
}

// fence is a primary's: its writes commit only within its term of the
// jobs lease (docs/decisions/0029-replicas.md). A standby's writes
// (readings, series, alerts) are nobody's singleton work.
func (h *Hub) fence() func(context.Context, pgx.Tx) error {
	t := h.cfg.term
	if t == nil {
		return nil
	}
	return func(ctx context.Context, tx pgx.Tx) error { return lease.Fence(ctx, tx, t) }
}

// newReadingSink starts the store's reading sink with the same
// instruments for either store.
func (h *Hub) newReadingSink() ReadingSink {
	m := sqlite.NewSinkMetrics(h.Registry)
	if h.Postgres != nil {
		return h.Postgres.NewReadingSink(sinkCapacity, &postgres.SinkMetrics{Committed: m.Committed, Latency: m.Latency})
	}
	return h.SQLite.NewReadingSink(sinkCapacity, m)
}

// explorerDeps gives the debug routes the SQLite explorer, or tells them
// why there is none.
func (h *Hub) explorerDeps(d *debugapi.Deps) {
	if h.SQLite != nil {
		d.Explorer = h.SQLite.Explorer()
		return
	}
	d.ExplorerUnavailable = "the database explorer reads the SQLite files; this hub runs on PostgreSQL: " +
		"use psql (read-only role) to explore it"
}

// dbPool is the read pool's figures for /health/detailed.
type dbPool struct{ h *Hub }

func (p dbPool) PoolStats() (size, inUse, idle int) {
	if p.h.Postgres != nil {
		s := p.h.Postgres.PoolStat()
		return int(s.MaxConns()), int(s.AcquiredConns()), int(s.IdleConns())
	}
	s := p.h.SQLite.ReadDB().Stats()
	return s.MaxOpenConnections, s.InUse, s.Idle
}

// dbFiles are the SQLite files whose sizes /health/detailed reports; none
// with PostgreSQL, whose files are the server's.
func (h *Hub) dbFiles() []string {
	if h.SQLite == nil {
		return nil
	}
	return []string{h.SQLite.Path(), h.SQLite.ControlPath()}
}
