package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// ErrClosed is returned by writes after the writer has stopped.
var ErrClosed = errors.New("store writer closed")

// Op is one unit of work run inside a group-commit transaction. It must not
// block on anything but the database.
type Op func(ctx context.Context, tx *Tx) error

// Tx is the writer's open transaction; statements are prepared once per
// connection and reused across batches.
type Tx struct {
	ctx   context.Context
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
}

// Exec runs a cached prepared statement.
func (t *Tx) Exec(query string, args ...any) (sql.Result, error) {
	st, ok := t.stmts[query]
	if !ok {
		var err error
		st, err = t.conn.PrepareContext(t.ctx, query)
		if err != nil {
			return nil, fmt.Errorf("prepare: %w", err)
		}
		t.stmts[query] = st
	}
	return st.ExecContext(t.ctx, args...)
}

// QueryRow runs a query inside the write transaction (read-your-writes).
func (t *Tx) QueryRow(query string, args ...any) *sql.Row {
	return t.conn.QueryRowContext(t.ctx, query, args...)
}

type request struct {
	op   Op
	done chan error // nil for fire-and-forget
	// barrier marks a Flush: it writes nothing, so its commit says
	// nothing about whether the database can commit.
	barrier bool
	// prompt: someone outside waits for this commit (DoPrompt, or a
	// write tracked by store.Commits), so the batch holding it does not
	// wait to fill.
	prompt bool
	// tracked reports the outcome to the work that queued it
	// (store.Commits on the caller's context); nil when untracked.
	tracked func(error)
}

// Writer is the single goroutine that owns every SQLite write. Callers queue
// operations; the writer commits whatever is queued as one transaction.
//
// Urgent operations (DoUrgent) have a lane of their own that the writer
// empties before it looks at the normal one: a commit that gates a publish
// (an actuator ON, an emergency latch) waits for the transaction already
// running, never for the backlog of bulk work queued ahead of it.
type Writer struct {
	conn      *sql.Conn
	stmts     map[string]*sql.Stmt
	queue     chan request
	urgent    chan request
	mu        sync.RWMutex // guards closed against concurrent Submit/Close
	closed    bool
	stopped   chan struct{}
	batchRows int
	batchWait time.Duration
	metrics   *store.WriterMetrics
	log       *slog.Logger
	// fault is the storage error of the last transaction that carried
	// writes, while it failed; nil once one commits again.
	fault atomic.Pointer[error]
	// lastCommit is when a transaction last ended (unix nanos): the
	// checkpointer empties the WAL only while the writer is idle.
	lastCommit atomic.Int64
	// restartWAL asks for a checkpoint between transactions (RestartWAL).
	restartWAL atomic.Bool
}

func newWriter(ctx context.Context, db *sql.DB, opt Options) (*Writer, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("writer connection: %w", err)
	}
	if opt.BatchRows <= 0 {
		opt.BatchRows = 2000
	}
	if opt.QueueSize <= 0 {
		opt.QueueSize = 16384
	}
	if opt.BatchWait < 0 {
		opt.BatchWait = 0
	} else if opt.BatchWait == 0 {
		opt.BatchWait = time.Millisecond
	}
	w := &Writer{
		conn:      conn,
		stmts:     map[string]*sql.Stmt{},
		queue:     make(chan request, opt.QueueSize),
		urgent:    make(chan request, opt.QueueSize),
		stopped:   make(chan struct{}),
		batchRows: opt.BatchRows,
		batchWait: opt.BatchWait,
		metrics:   opt.Metrics,
		log:       opt.Logger,
	}
	if w.metrics != nil {
		w.metrics.SetQueueDepth(func() float64 { return float64(w.Depth()) })
	}
	w.lastCommit.Store(time.Now().UnixNano())
	go w.run()
	return w, nil
}

// LastCommit is when the writer last ended a transaction (or started).
func (w *Writer) LastCommit() time.Time { return time.Unix(0, w.lastCommit.Load()) }

// Depth is the number of operations waiting for the writer, both lanes.
func (w *Writer) Depth() int { return len(w.queue) + len(w.urgent) }

// Submit queues op without waiting for its commit. When the queue is full it
// waits for space until ctx ends (backpressure with a deadline). When ctx
// carries store.Commits, the commit's outcome is reported there.
func (w *Writer) Submit(ctx context.Context, op Op) error {
	t := track(ctx)
	return w.enqueue(ctx, w.queue, request{op: op, tracked: t, prompt: t != nil})
}

// track registers a write with the work ctx belongs to, if any.
func track(ctx context.Context) func(error) {
	if c := store.CommitsFrom(ctx); c != nil {
		return c.Track()
	}
	return nil
}

// Do queues op and waits for its transaction to commit. When ctx ends
// first, Do returns its error while op may still run later (its write is
// queued work others may share): a caller reads what op wrote into its
// variables only once Do returned nil.
func (w *Writer) Do(ctx context.Context, op Op) error {
	return w.do(ctx, w.queue, op)
}

// DoPrompt is Do for a commit that a client waits on (a QoS 1 PUBACK,
// docs/decisions/0015-durable-ack.md): the batch holding it commits with
// what is already queued instead of waiting BatchWait for more. Unlike
// DoUrgent it keeps its place in the normal lane.
func (w *Writer) DoPrompt(ctx context.Context, op Op) error {
	done := make(chan error, 1)
	if err := w.enqueue(ctx, w.queue, request{op: op, done: done, prompt: true, tracked: track(ctx)}); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for commit: %w", ctx.Err())
	}
}

// DoUrgent is Do for a commit that something time-critical waits on: op is
// taken before every normal operation still queued. It may therefore commit
// before operations submitted earlier, so it is only for writes whose rows
// are not also written through the normal lane, or whose upserts are
// version-guarded so that order does not matter.
func (w *Writer) DoUrgent(ctx context.Context, op Op) error {
	return w.do(ctx, w.urgent, op)
}

func (w *Writer) do(ctx context.Context, lane chan request, op Op) error {
	done := make(chan error, 1)
	t := track(ctx)
	if err := w.enqueue(ctx, lane, request{op: op, done: done, tracked: t, prompt: t != nil}); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for commit: %w", ctx.Err())
	}
}

// Flush waits until every normal operation queued before it is committed
// (urgent ones queued before it are taken first anyway).
func (w *Writer) Flush(ctx context.Context) error {
	done := make(chan error, 1)
	r := request{op: func(context.Context, *Tx) error { return nil }, done: done, barrier: true, tracked: track(ctx)}
	if err := w.enqueue(ctx, w.queue, r); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for commit: %w", ctx.Err())
	}
}

// Fault is the storage error of the last transaction that carried writes,
// while the database cannot commit (disk full, I/O error, read-only or
// corrupt file, lock not obtained); nil while it commits. Readiness
// reports it (docs/api.md §13); it clears with the next transaction that
// commits writes.
func (w *Writer) Fault() error {
	if p := w.fault.Load(); p != nil {
		return *p
	}
	return nil
}

// note records what one commit round says about the database: a storage
// error in any of its transactions sets the fault, even when other
// operations of the round fitted (a full disk still takes a small row); a
// round whose writes all committed clears it.
func (w *Writer) note(batch []request, fault error) {
	if fault != nil {
		if old := w.fault.Swap(&fault); old == nil {
			w.log.Error("store cannot commit", "error", fault)
		}
		return
	}
	for _, r := range batch {
		if !r.barrier {
			if old := w.fault.Swap(nil); old != nil {
				w.log.Info("store commits again", "after", (*old).Error())
			}
			return
		}
	}
}

// SQLite's primary result codes that mean the database file cannot take a
// commit at all, whatever the operation (https://sqlite.org/rescode.html).
const (
	sqlitePerm     = 3
	sqliteBusy     = 5
	sqliteLocked   = 6
	sqliteNoMem    = 7
	sqliteReadOnly = 8
	sqliteIOErr    = 10
	sqliteCorrupt  = 11
	sqliteFull     = 13
	sqliteCantOpen = 14
	sqliteProtocol = 15
	sqliteNoLFS    = 22
	sqliteNotADB   = 26
)

// storageFault reports whether err says the database cannot commit (as
// opposed to one operation being refused, like a constraint).
func storageFault(err error) bool {
	var coded interface{ Code() int }
	if !errors.As(err, &coded) {
		return false
	}
	switch coded.Code() & 0xff {
	case sqlitePerm, sqliteBusy, sqliteNoMem, sqliteReadOnly, sqliteIOErr, sqliteCorrupt,
		sqliteFull, sqliteCantOpen, sqliteProtocol, sqliteNoLFS, sqliteNotADB:
		return true
	}
	return false
}

func (w *Writer) enqueue(ctx context.Context, lane chan request, r request) error {
	err := w.send(ctx, lane, r)
	if err != nil && r.tracked != nil {
		r.tracked(err) // never queued: the work's write did not happen
	}
	return err
}

func (w *Writer) send(ctx context.Context, lane chan request, r request) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case lane <- r:
		return nil
	default:
	}
	select {
	case lane <- r:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("store writer queue full: %w", ctx.Err())
	}
}

// Close commits everything queued and stops the writer.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
		close(w.urgent)
	}
	w.mu.Unlock()
	select {
	case <-w.stopped:
	case <-ctx.Done():
		return fmt.Errorf("store writer did not drain: %w", ctx.Err())
	}
	for _, st := range w.stmts {
		st.Close()
	}
	return w.conn.Close()
}

func (w *Writer) run() {
	defer close(w.stopped)
	l := &lanes{urgent: w.urgent, normal: w.queue}
	batch := make([]request, 0, w.batchRows)
	for {
		r, isUrgent, ok := l.take(nil, false)
		if !ok {
			return
		}
		batch = append(batch[:0], r)
		batch = w.fill(l, batch, isUrgent)
		w.commit(batch)
		if w.restartWAL.CompareAndSwap(true, false) {
			w.checkpoint()
		}
	}
}

// RestartWAL asks the writer to checkpoint between two of its
// transactions. The checkpointer's own PASSIVE checkpoints run beside the
// writer's commits, so under steady load they never catch up with the last
// frame and the WAL never starts over; run by the writer, between commits,
// nothing is written meanwhile, the checkpoint reaches the end (unless a
// reader still needs old frames) and the next transaction restarts the WAL
// from its beginning, cut back to journal_size_limit. Most frames are
// already copied by then, so this costs the writer a few milliseconds.
func (w *Writer) RestartWAL() { w.restartWAL.Store(true) }

func (w *Writer) checkpoint() {
	var busy, logFrames, done int
	err := w.conn.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done)
	if err != nil && !isBusy(err) {
		w.log.Warn("wal checkpoint in the writer failed", "error", err)
	}
}

// lanes is the writer goroutine's view of its two queues; a lane becomes nil
// once it is closed and drained.
type lanes struct {
	urgent chan request
	normal chan request
}

func (l *lanes) open() bool { return l.urgent != nil || l.normal != nil }

// poll takes a queued request without waiting, urgent first.
func (l *lanes) poll(urgentOnly bool) (request, bool) {
	for l.urgent != nil {
		select {
		case r, ok := <-l.urgent:
			if !ok {
				l.urgent = nil
				continue
			}
			return r, true
		default:
		}
		break
	}
	if urgentOnly {
		return request{}, false
	}
	for l.normal != nil {
		select {
		case r, ok := <-l.normal:
			if !ok {
				l.normal = nil
				continue
			}
			return r, true
		default:
		}
		break
	}
	return request{}, false
}

// take returns the next request, urgent first, waiting until one arrives,
// wait fires (nil: never) or both lanes are closed and drained.
func (l *lanes) take(wait <-chan time.Time, urgentOnly bool) (r request, isUrgent, ok bool) {
	for l.open() {
		if r, ok := l.poll(true); ok {
			return r, true, true
		}
		if !l.open() { // poll found the urgent lane closed
			break
		}
		normal := l.normal
		if urgentOnly {
			normal = nil
		}
		select {
		case r, ok := <-l.urgent:
			if !ok {
				l.urgent = nil
				continue
			}
			return r, true, true
		case r, ok := <-normal:
			if !ok {
				l.normal = nil
				continue
			}
			return r, false, true
		case <-wait:
			return request{}, false, false
		}
	}
	return request{}, false, false
}

// fill takes what is already queued, then waits briefly for more so that a
// burst lands in one transaction. A batch begun by an urgent request takes
// only urgent ones: bulk work queued meanwhile must not lengthen the
// transaction a publish is waiting for.
func (w *Writer) fill(l *lanes, batch []request, urgentOnly bool) []request {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	prompt := batch[0].prompt
	for len(batch) < w.batchRows {
		if r, ok := l.poll(urgentOnly); ok {
			batch = append(batch, r)
			prompt = prompt || r.prompt
			continue
		}
		if !l.open() || prompt {
			return batch
		}
		if timer == nil {
			timer = time.NewTimer(w.batchWait)
		}
		r, _, ok := l.take(timer.C, urgentOnly)
		if !ok {
			return batch
		}
		batch = append(batch, r)
		prompt = r.prompt
	}
	return batch
}

func (w *Writer) commit(batch []request) {
	start := time.Now()
	ctx := context.Background()
	err := w.runTx(ctx, batch)
	if err != nil {
		// One bad operation must not sink the others: retry each alone.
		w.log.Warn("group commit failed, retrying operations one by one", "ops", len(batch), "error", err)
		var fault error
		var wrote []request
		errs := make([]error, len(batch))
		for i := range batch {
			errs[i] = w.runTx(ctx, batch[i:i+1])
			if errs[i] == nil {
				wrote = append(wrote, batch[i])
			} else if storageFault(errs[i]) {
				fault = errs[i]
				errs[i] = fmt.Errorf("%w: %w", store.ErrUnavailable, errs[i])
			}
		}
		// The fault is known before anyone waiting hears the outcome.
		w.note(wrote, fault)
		for i := range batch {
			w.finish(batch[i], errs[i])
		}
	} else {
		w.note(batch, nil)
		for i := range batch {
			w.finish(batch[i], nil)
		}
	}
	w.lastCommit.Store(time.Now().UnixNano())
	if w.metrics != nil {
		w.metrics.BatchSize.Observe(float64(len(batch)))
		w.metrics.CommitTime.Observe(time.Since(start).Seconds())
	}
}

func (w *Writer) finish(r request, err error) {
	if err != nil {
		if w.metrics != nil {
			w.metrics.Errors.Inc()
		}
		if r.done == nil {
			w.log.Error("store write failed", "error", err)
		}
	}
	if r.tracked != nil {
		r.tracked(err)
	}
	if r.done != nil {
		r.done <- err
	}
}

func (w *Writer) runTx(ctx context.Context, batch []request) error {
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	tx := &Tx{ctx: ctx, conn: w.conn, stmts: w.stmts}
	for _, r := range batch {
		if err := r.op(ctx, tx); err != nil {
			_, _ = w.conn.ExecContext(ctx, "ROLLBACK")
			return err
		}
	}
	if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		_, _ = w.conn.ExecContext(ctx, "ROLLBACK")
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
