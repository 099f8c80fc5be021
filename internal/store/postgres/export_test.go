package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// WatchChangesIdle is WatchChanges probing its connection after idle
// without a notice, instead of after 30 s.
func (s *Store) WatchChangesIdle(ctx context.Context, fn func(Change), idle time.Duration) error {
	tm := defaultWatchTiming
	tm.idle = idle
	return s.watchChanges(ctx, fn, tm)
}

// WatchApp is the listener connection's application name.
const WatchApp = watchApp

// Pool is the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }
