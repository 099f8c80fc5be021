package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kaiserhub/kaiser/internal/store"
)

// ErrClosed is returned by writes after the store has closed.
var ErrClosed = errors.New("store writer closed")

// op is one unit of work inside a group-commit transaction.
type op func(ctx context.Context, tx pgx.Tx) error

type request struct {
	op      op
	done    chan error // nil for fire-and-forget
	barrier bool       // a Flush: writes nothing
	tracked func(error)
}

// writer keeps the store's write order: queued writes (a heartbeat, a
// device snapshot, a rule's history row) commit in the order they were
// queued, as with SQLite's single writer, because several domains queue a
// row and later change or delete it without waiting in between. Whatever
// is queued while a transaction commits goes into the next one (group
// commit). Writes that gate a publish take the urgent lane, emptied first.
//
// PostgreSQL itself would take concurrent writers; the order is the
// reason for the single goroutine, not the database.
type writer struct {
	name     string
	pool     *pgxpool.Pool
	queue    chan request
	urgent   chan request
	mu       sync.RWMutex // guards closed against concurrent enqueue/close
	closed   bool
	stopped  chan struct{}
	maxBatch int
	timeout  time.Duration
	log      *slog.Logger
	fault    atomic.Pointer[error]
	metrics  *store.WriterMetrics // nil: none
	// fence runs first in every transaction (Options.Fence); nil: none.
	fence func(ctx context.Context, tx pgx.Tx) error
	// base is the parent of every transaction's context; abort ends it
	// when a close runs out of time, so that a database that does not
	// answer cannot hold the close (and the pool's) up for a timeout per
	// queued batch.
	base  context.Context
	abort context.CancelFunc
}

func newWriter(
	name string, pool *pgxpool.Pool, queue, maxBatch int, timeout time.Duration, m *store.WriterMetrics, log *slog.Logger,
) *writer {
	w := &writer{
		name:     name,
		pool:     pool,
		queue:    make(chan request, queue),
		urgent:   make(chan request, queue),
		stopped:  make(chan struct{}),
		maxBatch: maxBatch,
		timeout:  timeout,
		log:      log,
		metrics:  m,
	}
	w.base, w.abort = context.WithCancel(context.Background())
	if m != nil {
		m.SetQueueDepth(func() float64 { return float64(len(w.queue) + len(w.urgent)) })
	}
	go w.run()
	return w
}

func track(ctx context.Context) func(error) {
	if c := store.CommitsFrom(ctx); c != nil {
		return c.Track()
	}
	return nil
}

// submit queues o without waiting for its commit; a store.Commits on ctx
// hears the outcome.
func (w *writer) submit(ctx context.Context, o op) error {
	return w.enqueue(ctx, w.queue, request{op: o, tracked: track(ctx)})
}

// do queues o and waits for its commit; as with the SQLite Writer.Do, a
// caller reads what o wrote only once do returned nil (o may still run
// after its caller's context ended).
func (w *writer) do(ctx context.Context, o op) error { return w.wait(ctx, w.queue, o, false) }

// doUrgent is do through the urgent lane: o commits before normal writes
// still queued, so it is only for rows the normal lane does not also
// write, or whose upserts are version-guarded.
func (w *writer) doUrgent(ctx context.Context, o op) error { return w.wait(ctx, w.urgent, o, false) }

// flush waits until every write queued before it has committed.
func (w *writer) flush(ctx context.Context) error {
	return w.wait(ctx, w.queue, func(context.Context, pgx.Tx) error { return nil }, true)
}

func (w *writer) wait(ctx context.Context, lane chan request, o op, barrier bool) error {
	done := make(chan error, 1)
	if err := w.enqueue(ctx, lane, request{op: o, done: done, barrier: barrier, tracked: track(ctx)}); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for commit: %w", ctx.Err())
	}
}

func (w *writer) enqueue(ctx context.Context, lane chan request, r request) error {
	err := w.send(ctx, lane, r)
	if err != nil && r.tracked != nil {
		r.tracked(err)
	}
	return err
}

func (w *writer) send(ctx context.Context, lane chan request, r request) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case lane <- r:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("store writer queue full: %w", ctx.Err())
	}
}

func (w *writer) depth() int { return len(w.queue) + len(w.urgent) }

// abortWait bounds the wait for a writer whose transactions were aborted:
// long enough for the driver to cancel a query, short enough for a stop.
const abortWait = 5 * time.Second

// close commits what is queued and stops the writer. When ctx ends first
// it aborts the transaction under way and fails the rest of the queue, so
// that nothing still uses the pool once it returns.
func (w *writer) close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
		close(w.urgent)
	}
	w.mu.Unlock()
	select {
	case <-w.stopped:
		return nil
	case <-ctx.Done():
	}

	w.abort()
	err := fmt.Errorf("%s writer did not drain: %w", w.name, ctx.Err())
	select {
	case <-w.stopped:
	case <-time.After(abortWait):
		err = fmt.Errorf("%w; its aborted transaction is still open", err)
	}
	return err
}

func (w *writer) run() {
	defer close(w.stopped)
	defer w.abort()
	urgent, normal := w.urgent, w.queue
	for urgent != nil || normal != nil {
		var first request
		var ok bool
		select {
		case first, ok = <-urgent:
			if !ok {
				urgent = nil
				continue
			}
		default:
			select {
			case first, ok = <-urgent:
				if !ok {
					urgent = nil
					continue
				}
			case first, ok = <-normal:
				if !ok {
					normal = nil
					continue
				}
			}
		}
		batch := []request{first}
		// Take what is queued already, urgent first; never wait for more.
		for len(batch) < w.maxBatch {
			r, more := poll(&urgent)
			if !more {
				r, more = poll(&normal)
			}
			if !more {
				break
			}
			batch = append(batch, r)
		}
		w.commit(batch)
	}
}

// poll takes a queued request without waiting; a closed, drained lane
// becomes nil.
func poll(lane *chan request) (request, bool) {
	if *lane == nil {
		return request{}, false
	}
	select {
	case r, ok := <-*lane:
		if !ok {
			*lane = nil
			return request{}, false
		}
		return r, true
	default:
		return request{}, false
	}
}

func (w *writer) commit(batch []request) {
	start := time.Now()
	err := w.runTx(batch)
	if err == nil {
		w.note(batch, nil)
		w.observe(len(batch), start, 0)
		for _, r := range batch {
			finish(r, nil, w.log)
		}
		return
	}
	// One refused operation must not sink the others: retry each alone.
	if len(batch) > 1 {
		w.log.Warn("group commit failed, retrying operations one by one", "writer", w.name, "ops", len(batch),
			"error", err)
	}
	errs := make([]error, len(batch))
	var fault error
	var wrote []request
	for i := range batch {
		if len(batch) == 1 {
			errs[i] = err
		} else {
			errs[i] = w.runTx(batch[i : i+1])
		}
		switch {
		case errs[i] == nil:
			wrote = append(wrote, batch[i])
		case storageFault(errs[i]):
			fault = errs[i]
			errs[i] = fmt.Errorf("%w: %w", store.ErrUnavailable, errs[i])
		}
	}
	w.note(wrote, fault)
	failed := 0
	for i, r := range batch {
		if errs[i] != nil {
			failed++
		}
		finish(r, errs[i], w.log)
	}
	w.observe(len(wrote), start, failed)
}

// observe records a round: the operations committed, its time, and the
// failed ones.
func (w *writer) observe(committed int, start time.Time, failed int) {
	if w.metrics == nil {
		return
	}
	if committed > 0 {
		w.metrics.BatchSize.Observe(float64(committed))
		w.metrics.CommitTime.Observe(time.Since(start).Seconds())
	}
	w.metrics.Errors.Add(float64(failed))
}

func finish(r request, err error, log *slog.Logger) {
	if err != nil && r.done == nil && r.tracked == nil {
		log.Error("store write failed", "error", err)
	}
	if r.tracked != nil {
		r.tracked(err)
	}
	if r.done != nil {
		r.done <- err
	}
}

func (w *writer) runTx(batch []request) error {
	ctx, cancel := context.WithTimeout(w.base, w.timeout)
	defer cancel()
	tx, err := w.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if w.fence != nil {
		if err := w.fence(ctx, tx); err != nil {
			return err
		}
	}
	for _, r := range batch {
		if err := r.op(ctx, tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// note records whether the database commits: a storage fault in a round
// sets the fault; a round whose writes committed clears it.
func (w *writer) note(batch []request, fault error) {
	if fault != nil {
		if old := w.fault.Swap(&fault); old == nil {
			w.log.Error("store cannot commit", "writer", w.name, "error", fault)
		}
		return
	}
	for _, r := range batch {
		if !r.barrier {
			if old := w.fault.Swap(nil); old != nil {
				w.log.Info("store commits again", "writer", w.name, "after", (*old).Error())
			}
			return
		}
	}
}

func (w *writer) faultErr() error {
	if p := w.fault.Load(); p != nil {
		return *p
	}
	return nil
}

// storageFault reports whether err says the database cannot commit at all
// (no connection, disk full, read-only standby, shutting down), as opposed
// to one statement being refused (a constraint, bad data).
func storageFault(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"),  // insufficient resources (disk full, out of memory)
			strings.HasPrefix(pgErr.Code, "58"),  // system error (I/O)
			strings.HasPrefix(pgErr.Code, "57P"), // operator intervention (shutdown)
			strings.HasPrefix(pgErr.Code, "XX"),  // internal error, corruption
			pgErr.Code == "25006":                // read-only transaction (a standby)
			return true
		}
		return false
	}
	// No answer from the server at all: connecting, or the connection died.
	var connErr *pgconn.ConnectError
	return errors.As(err, &connErr) || pgconn.SafeToRetry(err) || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "conn closed")
}

// isUnique reports a unique-constraint violation.
func isUnique(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
