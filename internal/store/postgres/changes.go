package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// changesChannel is the channel of migration 0004's triggers.
const changesChannel = "kaiser_changes"

// ChangeKind says what a change notice is about.
type ChangeKind string

const (
	// ChangeDevice: the device's record was inserted, deleted, or changed
	// in a field that admission or conversion reads.
	ChangeDevice ChangeKind = "device"
	// ChangeSensors: one of the device's sensor configs was added, changed
	// or removed, or one of its series was opened.
	ChangeSensors ChangeKind = "sensors"
	// ChangeAll: notices may have been missed (the listener has just
	// connected or reconnected); everything may have changed.
	ChangeAll ChangeKind = "all"
)

// Change is one committed change another replica made (migration 0004).
type Change struct {
	Kind  ChangeKind
	EspID string // "" for ChangeAll
}

// watchTiming bounds the listener's calls and its reconnects.
type watchTiming struct {
	connect time.Duration // connecting and LISTEN
	call    time.Duration // the liveness probe
	// idle is how long the listener waits for a notice before it probes
	// the connection: a connection whose peer vanished without a reset
	// would otherwise wait for ever.
	idle       time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
}

var defaultWatchTiming = watchTiming{
	connect:    10 * time.Second,
	call:       5 * time.Second,
	idle:       30 * time.Second,
	minBackoff: 250 * time.Millisecond,
	maxBackoff: 10 * time.Second,
}

// watchApp is the listener connection's application name, so that it
// shows apart from the pool's in pg_stat_activity.
const watchApp = "kaiser-changes"

// WatchChanges listens for the change notices of migration 0004 on a
// connection of its own and calls fn for each, in commit order, on the
// calling goroutine; fn should be quick, since notices wait while it runs.
// After every (re)connect it first calls fn with ChangeAll: notices sent
// while no connection listened are lost. A failed connection is replaced
// after a backoff that doubles up to a bound. It returns nil once ctx ends.
func (s *Store) WatchChanges(ctx context.Context, fn func(Change)) error {
	return s.watchChanges(ctx, fn, defaultWatchTiming)
}

func (s *Store) watchChanges(ctx context.Context, fn func(Change), tm watchTiming) error {
	cfg := s.pool.Config().ConnConfig
	cfg.RuntimeParams["application_name"] = watchApp
	backoff := tm.minBackoff
	for {
		listened, err := s.listen(ctx, cfg, fn, tm)
		if ctx.Err() != nil {
			return nil
		}
		if listened {
			backoff = tm.minBackoff
		}
		s.log.Warn("change listener has no connection; retrying", "db", "postgres",
			"retry_in", backoff, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, tm.maxBackoff)
	}
}

// listen runs one connection: it connects, listens, reports ChangeAll and
// then every notice until the connection fails or ctx ends. listened
// tells whether it got as far as listening.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig, fn func(Change), tm watchTiming) (listened bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, tm.connect)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tm.call)
		defer cancel()
		conn.Close(ctx)
	}()
	if _, err := conn.Exec(cctx, "LISTEN "+changesChannel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	fn(Change{Kind: ChangeAll})

	for {
		wctx, cancel := context.WithTimeout(ctx, tm.idle)
		n, err := conn.WaitForNotification(wctx)
		idle := errors.Is(wctx.Err(), context.DeadlineExceeded)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, ctx.Err()
		case err == nil:
			fn(parseChange(n.Payload))
		case idle && !conn.IsClosed():
			// A timed-out wait leaves the connection usable; a round trip
			// tells whether it still reaches the server.
			pctx, cancel := context.WithTimeout(ctx, tm.call)
			_, err := conn.Exec(pctx, "SELECT 1")
			cancel()
			if err != nil {
				return true, fmt.Errorf("probe: %w", err)
			}
		default:
			return true, fmt.Errorf("wait for notice: %w", err)
		}
	}
}

// parseChange reads a notice's payload; one it does not know (a trigger
// newer than this replica) counts as ChangeAll, so that nothing is missed.
func parseChange(payload string) Change {
	kind, id, ok := strings.Cut(payload, ":")
	if ok && id != "" {
		switch k := ChangeKind(kind); k {
		case ChangeDevice, ChangeSensors:
			return Change{Kind: k, EspID: id}
		}
	}
	return Change{Kind: ChangeAll}
}
