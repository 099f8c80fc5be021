package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Rollup granularities, in milliseconds, and their tables.
var rollupTables = []struct {
	table string
	width int64
}{{"rollup_1m", 60_000}, {"rollup_1h", 3_600_000}, {"rollup_1d", 86_400_000}}

type rollKey struct {
	table  int
	series int64
	bucket int64
}

type agg struct {
	n, nP          int64
	sumRaw, sumP   float64
	minRaw, maxRaw float64
	minP, maxP     float64
	lastP          float64
	lastTS         int64
}

func (a *agg) add(r store.Reading) {
	if a.n == 0 || r.Raw < a.minRaw {
		a.minRaw = r.Raw
	}
	if a.n == 0 || r.Raw > a.maxRaw {
		a.maxRaw = r.Raw
	}
	a.n++
	a.sumRaw += r.Raw
	if r.Processed != nil {
		p := *r.Processed
		if a.nP == 0 || p < a.minP {
			a.minP = p
		}
		if a.nP == 0 || p > a.maxP {
			a.maxP = p
		}
		a.nP++
		a.sumP += p
		if r.TS >= a.lastTS {
			a.lastP, a.lastTS = p, r.TS
		}
	}
}

// SinkMetrics are the reading sink's instruments.
type SinkMetrics struct {
	Committed prometheus.Counter
	Latency   prometheus.Histogram
}

// NewSinkMetrics registers the sink metrics.
func NewSinkMetrics(reg prometheus.Registerer) *SinkMetrics {
	m := &SinkMetrics{
		Committed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "god_kaiser_sensor_readings_total",
			Help: "Sensor readings stored.",
		}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kaiser_reading_durable_seconds",
			Help:    "Time from receipt of a reading to its committed row.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	reg.MustRegister(m.Committed, m.Latency)
	return m
}

// ReadingSink batches readings into multi-row inserts and keeps the
// rollups up to date in the same transactions. One goroutine owns the
// batch and the rollup accumulators; producers only send on a bounded
// channel (backpressure with the caller's deadline).
type ReadingSink struct {
	store     *Store
	ch        chan queuedReading
	mu        sync.RWMutex // guards closed against Add/Close
	closed    bool
	done      chan struct{}
	rolls     map[rollKey]*agg
	lastRoll  time.Time
	metrics   *SinkMetrics
	committed atomic.Int64
	flushReq  chan chan struct{}
	onCommit  atomic.Pointer[func([]store.Reading, time.Time)]
	maxBatch  int
	wait      time.Duration
	// onRetry, when set (tests), is called before each wait for a retry.
	onRetry func(tries int)
	// meta maps the repeated text of a reading to its reading_meta id,
	// for the ids known to be committed; only the sink goroutine uses it.
	meta map[metaKey]int64
}

// metaKey is what a reading_meta row holds: the text columns that repeat
// with every reading of a series.
type metaKey struct {
	unit, quality, mode, timeSource, source, zone, subzone string
}

func metaOf(r store.Reading) metaKey {
	return metaKey{r.Unit, r.Quality, r.Mode, r.TimeSource, r.Source, r.ZoneID, r.SubzoneID}
}

// NewReadingSink starts the sink; capacity bounds the queue.
func (s *Store) NewReadingSink(capacity int, m *SinkMetrics) *ReadingSink {
	if capacity <= 0 {
		capacity = 65536
	}
	k := &ReadingSink{
		store:    s,
		ch:       make(chan queuedReading, capacity),
		done:     make(chan struct{}),
		rolls:    map[rollKey]*agg{},
		lastRoll: time.Now(),
		metrics:  m,
		maxBatch: 32768,
		// A reading nobody waits for (QoS 0) may wait 25 ms for company:
		// at 1,000 readings/s that is some 40 commits a second instead of
		// 150, each with its fixed cost. A waited-for one commits at once.
		wait:     25 * time.Millisecond,
		flushReq: make(chan chan struct{}),
		meta:     map[metaKey]int64{},
	}
	go k.run()
	return k
}

// ErrSinkClosed is returned by Add after Close.
var ErrSinkClosed = errors.New("reading sink closed")

// queuedReading is a reading on its way to the database, with the work
// that waits for its commit (store.Commits), if any.
type queuedReading struct {
	r       store.Reading
	tracked func(error)
}

// Add queues a reading; it waits for space until ctx ends. When ctx
// carries store.Commits, the outcome of the transaction that stores the
// reading is reported there (the PUBACK of a QoS 1 reading waits for it,
// docs/protocol.md M3); Add itself never waits for a commit.
func (k *ReadingSink) Add(ctx context.Context, r store.Reading) error {
	q := queuedReading{r: r, tracked: track(ctx)}
	err := k.send(ctx, q)
	if err != nil && q.tracked != nil {
		q.tracked(err)
	}
	return err
}

func (k *ReadingSink) send(ctx context.Context, q queuedReading) error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return ErrSinkClosed
	}
	select {
	case k.ch <- q:
		return nil
	default:
	}
	select {
	case k.ch <- q:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reading queue full: %w", ctx.Err())
	}
}

// Flush waits until every reading added before the call, and the rollups
// they change, are committed (or failed and logged).
func (k *ReadingSink) Flush(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case k.flushReq <- done:
	case <-k.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reading flush: %w", ctx.Err())
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reading flush: %w", ctx.Err())
	}
}

// OnCommit installs an instrumentation hook called with every committed
// batch (benchmarks measure publish → durable latency with it).
func (k *ReadingSink) OnCommit(f func([]store.Reading, time.Time)) { k.onCommit.Store(&f) }

// Depth is the number of queued readings.
func (k *ReadingSink) Depth() int { return len(k.ch) }

// Committed is the number of readings committed so far.
func (k *ReadingSink) Committed() int64 { return k.committed.Load() }

// Close stores everything queued (rollups included) and stops the sink.
func (k *ReadingSink) Close(ctx context.Context) error {
	k.mu.Lock()
	if !k.closed {
		k.closed = true
		close(k.ch)
	}
	k.mu.Unlock()
	select {
	case <-k.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reading sink did not drain: %w", ctx.Err())
	}
}

func (k *ReadingSink) run() {
	defer close(k.done)
	// The batch grows with the load it meets (up to maxBatch): a small
	// fleet never pays for the largest batch's 5 MiB.
	batch := make([]queuedReading, 0, 256)
	for {
		select {
		case done := <-k.flushReq:
			// Everything added before the request is already queued: take
			// that many and no more, so that a producer that never pauses
			// cannot keep the flush from returning.
			k.drain(batch, len(k.ch))
			close(done)
		case q, ok := <-k.ch:
			if !ok {
				k.flush(nil, true)
				return
			}
			batch = k.fill(append(batch[:0], q))
			k.flush(batch, false)
		}
	}
}

// fill adds to batch what is queued, waiting up to k.wait for more so that
// a burst lands in one transaction. Once the batch holds a reading whose
// commit a publisher waits for, it takes only what is already queued: that
// wait is the publisher's (a QoS 1 device waits for its PUBACK before it
// sends the next message), and readings arriving meanwhile share the next
// transaction anyway.
func (k *ReadingSink) fill(batch []queuedReading) []queuedReading {
	waited := batch[0].tracked != nil
	var timer <-chan time.Time
	if !waited {
		t := time.NewTimer(k.wait)
		defer t.Stop()
		timer = t.C
	}
	for len(batch) < k.maxBatch {
		if waited {
			select {
			case q, ok := <-k.ch:
				if !ok {
					return batch
				}
				batch = append(batch, q)
				continue
			default:
				return batch
			}
		}
		select {
		case q, ok := <-k.ch:
			if !ok {
				return batch
			}
			batch = append(batch, q)
			waited = q.tracked != nil
		case <-timer:
			return batch
		}
	}
	return batch
}

// drain commits the next n queued readings (fewer if the queue closes) and
// every pending rollup.
func (k *ReadingSink) drain(batch []queuedReading, n int) {
	for {
		batch = batch[:0]
		for len(batch) < k.maxBatch && n > 0 {
			q, ok := <-k.ch
			if !ok {
				n = 0
				break
			}
			batch = append(batch, q)
			n--
		}
		if n == 0 {
			k.flush(batch, true)
			return
		}
		k.flush(batch, false)
	}
}

func (k *ReadingSink) flush(batch []queuedReading, final bool) {
	for _, q := range batch {
		r := q.r
		if !r.Usable() {
			continue
		}
		for i, rt := range rollupTables {
			key := rollKey{i, r.SeriesID, r.TS - r.TS%rt.width}
			a := k.rolls[key]
			if a == nil {
				a = &agg{}
				k.rolls[key] = a
			}
			a.add(r)
		}
	}
	var rolls map[rollKey]*agg
	if final || time.Since(k.lastRoll) >= rollupEvery || len(k.rolls) > rollupMaxBuckets {
		rolls, k.rolls, k.lastRoll = k.rolls, map[rollKey]*agg{}, time.Now()
	}
	if len(batch) == 0 && len(rolls) == 0 {
		return
	}
	rows := make([]store.Reading, len(batch))
	for i, q := range batch {
		rows[i] = q.r
	}
	chunks := rollupChunks(rolls, rollupChunk)
	first := []rollEntry(nil)
	if len(chunks) > 0 {
		first, chunks = chunks[0], chunks[1:]
	}
	perRow, err := k.commitBatch(batch, rows, first)
	if err != nil {
		// Kept out of the store only when the writer is gone, or while
		// the store cannot commit as the hub stops.
		k.report(batch, fmt.Errorf("store readings: %w", err))
		return
	}
	if perRow != nil { // stored one by one: some rows were refused
		stored := rows[:0:0]
		for i, q := range batch {
			if perRow[i] == nil {
				stored = append(stored, rows[i])
			}
			if q.tracked != nil {
				q.tracked(perRow[i])
			}
		}
		k.recordCommit(stored)
		return
	}
	k.recordCommit(rows)
	// The readings are durable now; the remaining rollup chunks are
	// repairable from them (RepairRollups), so no one waits for those.
	k.report(batch, nil)
	k.storeRollups(chunks)
}

// Retry of a batch whose transaction failed: the store said it cannot
// commit (disk full, I/O error, lock not obtained), so the sink waits and
// tries again, from retryFirst doubling to retryMax, for as long as the
// hub runs. Meanwhile its queue fills and ingest waits, then counts drops
// at the device queues, where they are visible; a reading the sink took
// is not thrown away (docs/decisions/0021-footprint.md). Once the sink is
// closing, closingTries bounds the wait.
var (
	retryFirst = 100 * time.Millisecond
	retryMax   = 5 * time.Second
)

const closingTries = 3

// commitBatch stores rows and the first rollup chunk in one transaction,
// retrying while the store cannot commit. A refusal that is not about
// the store (one bad row) is retried row by row, so that only the
// refused rows are lost, each logged: perRow then holds each row's outcome.
func (k *ReadingSink) commitBatch(
	batch []queuedReading, rows []store.Reading, first []rollEntry,
) (perRow []error, err error) {
	commit := k.store.writer.Do
	if waitedFor(batch) {
		commit = k.store.writer.DoPrompt // a publisher waits for its PUBACK
	}
	wait := retryFirst
	for tries := 1; ; tries++ {
		var added map[metaKey]int64
		err := commit(context.Background(), func(_ context.Context, tx *Tx) error {
			var err error
			if added, err = k.insertReadings(tx, rows); err != nil {
				return err
			}
			return upsertRollups(tx, first)
		})
		if err == nil {
			maps.Copy(k.meta, added)
			return nil, nil
		}
		if errors.Is(err, ErrClosed) {
			k.store.log.Error("storing readings failed: the store is closed", "rows", len(rows))
			return nil, err
		}
		if !storageFault(err) {
			return k.commitOneByOne(rows, err), nil
		}
		if k.isClosing() && tries >= closingTries {
			k.store.log.Error("storing readings failed; the hub stops without them", "rows", len(rows),
				"tries", tries, "error", err)
			return nil, err
		}
		k.store.log.Warn("storing readings failed; retrying", "rows", len(rows), "tries", tries,
			"retry_in", wait, "error", err)
		if k.onRetry != nil {
			k.onRetry(tries)
		}
		time.Sleep(wait)
		wait = min(2*wait, retryMax)
	}
}

func (k *ReadingSink) isClosing() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.closed
}

// commitOneByOne stores each reading in its own transaction after the
// batch was refused for a reason of its own (cause), and returns each
// row's outcome. The batch's rollup chunk is left to the repair job, which
// recomputes buckets from the stored rows.
func (k *ReadingSink) commitOneByOne(rows []store.Reading, cause error) []error {
	k.store.log.Warn("a reading batch was refused; storing its readings one by one", "rows", len(rows),
		"error", cause)
	out := make([]error, len(rows))
	for i := range rows {
		var added map[metaKey]int64
		out[i] = k.store.writer.Do(context.Background(), func(_ context.Context, tx *Tx) error {
			var err error
			added, err = k.insertReadings(tx, rows[i:i+1])
			return err
		})
		if out[i] != nil {
			k.store.log.Error("reading refused by the store", "series", rows[i].SeriesID, "ts", rows[i].TS,
				"error", out[i])
			continue
		}
		maps.Copy(k.meta, added)
	}
	return out
}

// waitedFor reports whether someone waits for a reading of batch.
func waitedFor(batch []queuedReading) bool {
	for _, q := range batch {
		if q.tracked != nil {
			return true
		}
	}
	return false
}

// report tells the waiting work the outcome of its readings' transaction.
func (k *ReadingSink) report(batch []queuedReading, err error) {
	for _, q := range batch {
		if q.tracked != nil {
			q.tracked(err)
		}
	}
}

// recordCommit counts committed readings and tells the instrumentation.
func (k *ReadingSink) recordCommit(rows []store.Reading) {
	k.committed.Add(int64(len(rows)))
	if f := k.onCommit.Load(); f != nil {
		(*f)(rows, time.Now())
	}
	if k.metrics != nil {
		now := time.Now().UnixMilli()
		k.metrics.Committed.Add(float64(len(rows)))
		for i := 0; i < len(rows); i += 64 {
			k.metrics.Latency.Observe(float64(now-rows[i].ReceivedAt) / 1000)
		}
	}
}

const readingCols = 7

var insertChunk = 64

func readingInsert(n int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", readingCols), ",") + ")"
	return `
		INSERT OR IGNORE INTO readings (series_id, ts, raw, processed, device_value, meta, received)
		VALUES ` + strings.TrimSuffix(strings.Repeat(row+",", n), ",")
}

var (
	insertMany = readingInsert(insertChunk)
	insertOne  = readingInsert(1)
)

func appendReading(args []any, r store.Reading, meta int64) []any {
	return append(args, r.SeriesID, r.TS, r.Raw, r.Processed, r.DeviceValue, meta, r.ReceivedAt-r.TS)
}

// metaID returns the reading_meta id of key, creating the row inside tx;
// ids not yet committed are collected in added.
func (k *ReadingSink) metaID(tx *Tx, key metaKey, added map[metaKey]int64) (int64, error) {
	if id, ok := k.meta[key]; ok {
		return id, nil
	}
	if id, ok := added[key]; ok {
		return id, nil
	}
	args := []any{key.unit, key.quality, key.mode, key.timeSource, key.source, key.zone, key.subzone}
	if _, err := tx.Exec(`
		INSERT OR IGNORE INTO reading_meta (unit, quality, mode, time_source, source, zone_id, subzone_id)
		VALUES (?,?,?,?,?,?,?)`, args...); err != nil {
		return 0, fmt.Errorf("insert reading meta: %w", err)
	}
	var id int64
	if err := tx.QueryRow(`
		SELECT id FROM reading_meta
		WHERE unit = ? AND quality = ? AND mode = ? AND time_source = ? AND source = ? AND zone_id = ?
		  AND subzone_id = ?`, args...).Scan(&id); err != nil {
		return 0, fmt.Errorf("read reading meta: %w", err)
	}
	added[key] = id
	return id, nil
}

// insertReadings writes rows with multi-row statements: far fewer
// statement executions than one insert per row in a pure-Go SQLite. A
// device-timed row whose (series, time) key is stored already is a
// duplicate and is ignored (docs/domain.md §2.2); a hub-timed one never is:
// it moves to the next free millisecond (rows[i].TS is updated). It
// returns the reading_meta ids it created, which count once tx commits.
func (k *ReadingSink) insertReadings(tx *Tx, rows []store.Reading) (map[metaKey]int64, error) {
	added := map[metaKey]int64{}
	metas := make([]int64, len(rows))
	for i, r := range rows {
		id, err := k.metaID(tx, metaOf(r), added)
		if err != nil {
			return nil, err
		}
		metas[i] = id
	}
	args := make([]any, 0, insertChunk*readingCols)
	i := 0
	for ; i+insertChunk <= len(rows); i += insertChunk {
		args = args[:0]
		for j, r := range rows[i : i+insertChunk] {
			args = appendReading(args, r, metas[i+j])
		}
		res, err := tx.Exec(insertMany, args...)
		if err != nil {
			return nil, fmt.Errorf("insert readings: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n < int64(insertChunk) {
			if err := keepHubTimed(tx, rows[i:i+insertChunk], metas[i:i+insertChunk]); err != nil {
				return nil, err
			}
		}
	}
	for ; i < len(rows); i++ {
		res, err := tx.Exec(insertOne, appendReading(args[:0], rows[i], metas[i])...)
		if err != nil {
			return nil, fmt.Errorf("insert reading: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			if err := keepHubTimed(tx, rows[i:i+1], metas[i:i+1]); err != nil {
				return nil, err
			}
		}
	}
	return added, nil
}

// maxKeyMoves bounds the search for a free millisecond next to the taken
// one: after a clock step back a few tries find one. A series that outruns
// the clock (more hub-timed readings than milliseconds) would need ever
// more; its row then goes right after the series' last stored time, which
// is always free, so that a batch never fails for a key and nothing is lost.
const maxKeyMoves = 16

// keepHubTimed stores the hub-timed rows of a statement that ignored some
// of its rows (metas[i] is rows[i]'s reading_meta id): a hub-timed row
// ignored for its key (the hub's clock stepped back onto times the series
// already holds) is inserted at the next free millisecond instead.
// Hub-timed readings are never deduplicated (docs/protocol.md §5.6).
func keepHubTimed(tx *Tx, rows []store.Reading, metas []int64) error {
	for i := range rows {
		r := &rows[i]
		if r.TimeSource != "hub" {
			continue
		}
		// The row stored under the key is this one when it was received at
		// the same millisecond with the same value and meta (hub-timed
		// included): had it been another, nothing would tell them apart.
		var ours bool
		err := tx.QueryRow(`
			SELECT received = ? AND raw = ? AND meta = ?
			FROM readings WHERE series_id = ? AND ts = ?`,
			r.ReceivedAt-r.TS, r.Raw, metas[i], r.SeriesID, r.TS).Scan(&ours)
		if err != nil {
			return fmt.Errorf("check reading key: %w", err)
		}
		if ours {
			continue
		}
		for moves := 0; ; moves++ {
			switch {
			case moves == maxKeyMoves:
				if err := tx.QueryRow(`SELECT max(ts) FROM readings WHERE series_id = ?`, r.SeriesID).Scan(&r.TS); err != nil {
					return fmt.Errorf("last reading time of series %d: %w", r.SeriesID, err)
				}
			case moves > maxKeyMoves:
				return fmt.Errorf("series %d: time %d after its last reading is taken", r.SeriesID, r.TS)
			}
			r.TS++
			res, err := tx.Exec(insertOne, appendReading(nil, *r, metas[i])...)
			if err != nil {
				return fmt.Errorf("insert reading: %w", err)
			}
			if n, err := res.RowsAffected(); err == nil && n == 1 {
				break
			}
		}
	}
	return nil
}

func nullable(v float64, present bool) any {
	if !present {
		return nil
	}
	return v
}

// rollupEvery is how long the sink aggregates rollup buckets in memory
// before it merges them into the rollup tables. A series reporting every
// second updates its minute, hour and day buckets with every reading; merged
// every second that is three upserts per series per second, every 10 s a
// tenth of that, for rollups at most 10 s behind the raw readings (which are
// committed at once; Flush and Close merge everything, and the repair job
// recomputes buckets a crash left short).
const rollupEvery = 10 * time.Second

// rollupMaxBuckets merges early when this many buckets are pending: 20,000
// series reporting each second fit a 10 s window (three buckets each), and
// the map stays near 8 MiB.
const rollupMaxBuckets = 65536

// rollupChunk bounds the bucket upserts of one transaction (a few ms each):
// a commit that must not wait (Writer.DoUrgent) then waits for at most one
// chunk, not for a whole second's rollups.
var rollupChunk = 1000

type rollEntry struct {
	key rollKey
	agg *agg
}

func rollupChunks(rolls map[rollKey]*agg, size int) [][]rollEntry {
	var chunks [][]rollEntry
	cur := make([]rollEntry, 0, min(size, len(rolls)))
	for key, a := range rolls {
		if len(cur) == size {
			chunks = append(chunks, cur)
			cur = make([]rollEntry, 0, min(size, len(rolls)))
		}
		cur = append(cur, rollEntry{key, a})
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	return chunks
}

// storeRollups commits the remaining rollup chunks one transaction each,
// waiting for every commit, so that Flush still returns only once they are
// durable. Each chunk is its own normal request (not all queued at once) so
// that an urgent commit overtakes the rest. A crash between chunks leaves
// some buckets short of readings that are stored: RepairRollups, which
// recomputes recent buckets from the raw readings, restores them.
func (k *ReadingSink) storeRollups(chunks [][]rollEntry) {
	for _, c := range chunks {
		err := k.store.writer.Do(context.Background(), func(_ context.Context, tx *Tx) error {
			return upsertRollups(tx, c)
		})
		if err != nil {
			k.store.log.Error("storing rollups failed; the repair job recomputes them", "buckets", len(c), "error", err)
		}
	}
}

func upsertRollups(tx *Tx, rolls []rollEntry) error {
	for _, e := range rolls {
		key, a := e.key, e.agg
		t := rollupTables[key.table].table
		_, err := tx.Exec(`
			INSERT INTO `+t+` (
				series_id, bucket, n, sum_raw, min_raw, max_raw,
				n_p, sum_p, min_p, max_p, last_p, last_ts
			)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
			ON CONFLICT(series_id, bucket) DO UPDATE SET
				n = n + excluded.n,
				sum_raw = sum_raw + excluded.sum_raw,
				min_raw = min(COALESCE(min_raw, excluded.min_raw), COALESCE(excluded.min_raw, min_raw)),
				max_raw = max(COALESCE(max_raw, excluded.max_raw), COALESCE(excluded.max_raw, max_raw)),
				n_p = n_p + excluded.n_p,
				sum_p = sum_p + excluded.sum_p,
				min_p = min(COALESCE(min_p, excluded.min_p), COALESCE(excluded.min_p, min_p)),
				max_p = max(COALESCE(max_p, excluded.max_p), COALESCE(excluded.max_p, max_p)),
				last_p = CASE
					WHEN excluded.last_ts >= last_ts AND excluded.n_p > 0 THEN excluded.last_p
					ELSE last_p
				END,
				last_ts = max(last_ts, excluded.last_ts)`,
			key.series, key.bucket, a.n, a.sumRaw, nullable(a.minRaw, a.n > 0), nullable(a.maxRaw, a.n > 0),
			a.nP, a.sumP, nullable(a.minP, a.nP > 0), nullable(a.maxP, a.nP > 0), nullable(a.lastP, a.nP > 0), a.lastTS)
		if err != nil {
			return fmt.Errorf("upsert %s: %w", t, err)
		}
	}
	return nil
}

// RepairRollups recomputes the 1-minute rollups of [from, to) from raw
// readings, the hour rollups touching that span from the minute rollups,
// and the day rollups touching it from the hour rollups (idempotent;
// docs/domain.md §9 catch-up job). Each minute, hour and day is its own
// transaction, and each reads a bounded set: a minute's raw rows, an
// hour's 60 minute rows or a day's 24 hour rows per series, never the
// whole day's minutes, so the writer is held about equally long at any
// time of day (docs/decisions/0021-footprint.md).
func (s *Store) RepairRollups(ctx context.Context, from, to time.Time) error {
	f, t := from.UnixMilli()-from.UnixMilli()%60_000, to.UnixMilli()-to.UnixMilli()%60_000
	for m := f; m < t; m += 60_000 {
		if err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
			return repairMinutes(tx, m, m+60_000)
		}); err != nil {
			return err
		}
	}
	if f >= t {
		return nil
	}
	// Hours from minutes, then days from hours.
	for i, rt := range rollupTables[1:] {
		finer := rollupTables[i].table
		for b := f - f%rt.width; b < t; b += rt.width {
			if err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
				return repairBucket(tx, rt.table, finer, rt.width, b)
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// repairMinutes rebuilds the minute rollups of [f, t) from raw readings.
func repairMinutes(tx *Tx, f, t int64) error {
	if _, err := tx.Exec(`DELETE FROM rollup_1m WHERE bucket >= ? AND bucket < ?`, f, t); err != nil {
		return err
	}
	if _, err := tx.Exec(`
		INSERT INTO rollup_1m (
			series_id, bucket, n, sum_raw, min_raw, max_raw,
			n_p, sum_p, min_p, max_p, last_p, last_ts
		)
		SELECT
			series_id, ts - ts % 60000,
			COUNT(*), SUM(raw), MIN(raw), MAX(raw),
			COUNT(processed), COALESCE(SUM(processed), 0), MIN(processed), MAX(processed),
			(
				SELECT r2.processed FROM readings r2
				WHERE r2.series_id = r.series_id
				  AND r2.ts >= r.ts - r.ts % 60000
				  AND r2.ts < r.ts - r.ts % 60000 + 60000
				  AND r2.meta NOT IN (SELECT id FROM reading_meta WHERE quality = 'error')
				  AND r2.processed IS NOT NULL
				ORDER BY r2.ts DESC
				LIMIT 1
			),
			COALESCE(MAX(CASE WHEN processed IS NOT NULL THEN ts END), 0)
		FROM readings r
		WHERE ts >= ? AND ts < ? AND meta NOT IN (SELECT id FROM reading_meta WHERE quality = 'error')
		GROUP BY series_id, ts - ts % 60000`,
		f, t); err != nil {
		return fmt.Errorf("rebuild minute rollups: %w", err)
	}
	return nil
}

// repairBucket rebuilds the rows of table for the bucket [b, b+width) from
// the finer rollup table.
func repairBucket(tx *Tx, table, finer string, width, b int64) error {
	if _, err := tx.Exec(`DELETE FROM `+table+` WHERE bucket = ?`, b); err != nil {
		return err
	}
	if _, err := tx.Exec(`
		INSERT INTO `+table+` (
			series_id, bucket, n, sum_raw, min_raw, max_raw,
			n_p, sum_p, min_p, max_p, last_p, last_ts
		)
		SELECT
			series_id, ?,
			SUM(n), SUM(sum_raw), MIN(min_raw), MAX(max_raw),
			SUM(n_p), SUM(sum_p), MIN(min_p), MAX(max_p),
			(
				SELECT f2.last_p FROM `+finer+` f2
				WHERE f2.series_id = f.series_id
				  AND f2.bucket >= ? AND f2.bucket < ?
				  AND f2.n_p > 0
				ORDER BY f2.last_ts DESC
				LIMIT 1
			),
			MAX(last_ts)
		FROM `+finer+` f
		WHERE bucket >= ? AND bucket < ?
		GROUP BY series_id`,
		b, b, b+width, b, b+width); err != nil {
		return fmt.Errorf("rebuild %s: %w", table, err)
	}
	return nil
}

// EnsureSeries returns the id of a series, creating it.
func (s *Store) EnsureSeries(ctx context.Context, k store.SeriesKey) (int64, error) {
	var id int64
	err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		if _, err := tx.Exec(`
			INSERT OR IGNORE INTO sensor_series (esp_id, gpio, sensor_type, address)
			VALUES (?,?,?,?)`,
			k.EspID, k.GPIO, k.SensorType, k.Address); err != nil {
			return err
		}
		return tx.QueryRow(`
			SELECT id FROM sensor_series
			WHERE esp_id = ? AND gpio = ? AND sensor_type = ? AND address = ?`,
			k.EspID, k.GPIO, k.SensorType, k.Address).Scan(&id)
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

// LoadSeries returns every series.
func (s *Store) LoadSeries(ctx context.Context) (map[store.SeriesKey]int64, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, esp_id, gpio, sensor_type, address FROM sensor_series`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[store.SeriesKey]int64{}
	for rows.Next() {
		var k store.SeriesKey
		var id int64
		if err := rows.Scan(&id, &k.EspID, &k.GPIO, &k.SensorType, &k.Address); err != nil {
			return nil, err
		}
		out[k] = id
	}
	return out, rows.Err()
}

const readingSelect = `
	SELECT
		r.series_id, r.ts, r.raw, r.processed, m.unit, m.quality, m.mode, r.device_value, m.time_source,
		r.ts + r.received, m.source, m.zone_id, m.subzone_id,
		s.esp_id, s.gpio, s.sensor_type, s.address
	FROM readings r
	JOIN reading_meta m ON m.id = r.meta
	JOIN sensor_series s ON s.id = r.series_id`

func scanReadings(rows *sql.Rows) ([]store.RawRow, error) {
	defer rows.Close()
	var out []store.RawRow
	for rows.Next() {
		var x store.RawRow
		var p, dv sql.NullFloat64
		if err := rows.Scan(
			&x.SeriesID, &x.TS, &x.Raw, &p, &x.Unit, &x.Quality, &x.Mode, &dv, &x.TimeSource,
			&x.ReceivedAt, &x.Source, &x.ZoneID, &x.SubzoneID,
			&x.Key.EspID, &x.Key.GPIO, &x.Key.SensorType, &x.Key.Address,
		); err != nil {
			return nil, err
		}
		if p.Valid {
			v := p.Float64
			x.Processed = &v
		}
		if dv.Valid {
			v := dv.Float64
			x.DeviceValue = &v
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

// RawQuery selects raw readings.
type RawQuery = store.RawQuery

// QueryReadings returns raw rows of the given series, newest first unless Asc.
func (s *Store) QueryReadings(ctx context.Context, q RawQuery) ([]store.RawRow, error) {
	var conds []string
	var args []any
	if len(q.Series) > 0 {
		conds = append(conds, "r.series_id IN ("+strings.TrimSuffix(strings.Repeat("?,", len(q.Series)), ",")+")")
		for _, id := range q.Series {
			args = append(args, id)
		}
	}
	if q.Start != 0 || q.End != 0 {
		conds = append(conds, "r.ts >= ? AND r.ts <= ?")
		args = append(args, q.Start, q.End)
	}
	if q.Before != 0 {
		conds = append(conds, "r.ts < ?")
		args = append(args, q.Before)
	}
	if q.Quality != "" {
		conds = append(conds, "m.quality = ?")
		args = append(args, q.Quality)
	}
	if q.Source != "" {
		conds = append(conds, "m.source = ?")
		args = append(args, q.Source)
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	order := " ORDER BY r.ts DESC"
	if q.Asc {
		order = " ORDER BY r.ts ASC"
	}
	rows, err := s.read.QueryContext(ctx, readingSelect+where+order+" LIMIT ?", append(args, q.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("query readings: %w", err)
	}
	return scanReadings(rows)
}

// Buckets aggregates a series into buckets of width ms aligned to align
// (ms), reading the rollup table of granularity source ("raw", "1m", "1h", "1d").
func (s *Store) Buckets(
	ctx context.Context, series int64, source string, start, end, width, align int64,
) ([]store.Bucket, error) {
	var q string
	switch source {
	case "raw":
		q = `
			SELECT
				(ts - ?) / ? AS b,
				COUNT(*), SUM(raw), MIN(raw), MAX(raw),
				COUNT(processed), COALESCE(SUM(processed),0), MIN(processed), MAX(processed)
			FROM readings
			WHERE series_id = ? AND ts >= ? AND ts < ?
			  AND meta NOT IN (SELECT id FROM reading_meta WHERE quality = 'error')
			GROUP BY b
			ORDER BY b`
	case "1m", "1h", "1d":
		q = `
			SELECT
				(bucket - ?) / ? AS b,
				SUM(n), SUM(sum_raw), MIN(min_raw), MAX(max_raw),
				SUM(n_p), SUM(sum_p), MIN(min_p), MAX(max_p)
			FROM rollup_` + source + `
			WHERE series_id = ? AND bucket >= ? AND bucket < ?
			GROUP BY b
			ORDER BY b`
	default:
		return nil, fmt.Errorf("unknown bucket source %q", source)
	}
	rows, err := s.read.QueryContext(ctx, q, align, width, series, start, end)
	if err != nil {
		return nil, fmt.Errorf("query buckets: %w", err)
	}
	defer rows.Close()
	var out []store.Bucket
	for rows.Next() {
		var b store.Bucket
		var idx int64
		var minR, maxR, minP, maxP sql.NullFloat64
		if err := rows.Scan(&idx, &b.N, &b.SumRaw, &minR, &maxR, &b.NP, &b.SumP, &minP, &maxP); err != nil {
			return nil, err
		}
		b.Start = align + idx*width
		b.MinRaw, b.MaxRaw, b.MinP, b.MaxP = fptr(minR), fptr(maxR), fptr(minP), fptr(maxP)
		out = append(out, b)
	}
	return out, rows.Err()
}

func fptr(v sql.NullFloat64) *float64 {
	if !v.Valid {
		return nil
	}
	f := v.Float64
	return &f
}

// LatestReadings returns the newest reading of every series.
func (s *Store) LatestReadings(ctx context.Context) ([]store.RawRow, error) {
	rows, err := s.read.QueryContext(ctx, readingSelect+`
		WHERE r.ts = (SELECT MAX(ts) FROM readings WHERE series_id = s.id)`)
	if err != nil {
		return nil, err
	}
	return scanReadings(rows)
}

// CountReadings counts rows of a series older than before (0 = all series / no bound).
func (s *Store) CountReadings(ctx context.Context, series int64, before int64) (int64, error) {
	q, args := `SELECT COUNT(*) FROM readings WHERE 1=1`, []any{}
	if series != 0 {
		q += ` AND series_id = ?`
		args = append(args, series)
	}
	if before != 0 {
		q += ` AND ts < ?`
		args = append(args, before)
	}
	var n int64
	err := s.read.QueryRowContext(ctx, q, args...).Scan(&n)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// DeleteReadingsBatch deletes up to limit oldest rows of a series older than before.
func (s *Store) DeleteReadingsBatch(ctx context.Context, series int64, before int64, limit int) (int64, error) {
	var n int64
	err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		res, err := tx.Exec(`
			DELETE FROM readings
			WHERE series_id = ? AND ts IN (
				SELECT ts FROM readings
				WHERE series_id = ? AND ts < ?
				ORDER BY ts
				LIMIT ?
			)`,
			series, series, before, limit)
		if err == nil {
			n, _ = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// DeleteRollupsBefore deletes rollup rows of a granularity older than before.
func (s *Store) DeleteRollupsBefore(ctx context.Context, source string, before int64, limit int) (int64, error) {
	var n int64
	err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		res, err := tx.Exec(`
			DELETE FROM rollup_`+source+`
			WHERE (series_id, bucket) IN (
				SELECT series_id, bucket FROM rollup_`+source+`
				WHERE bucket < ?
				LIMIT ?
			)`,
			before, limit)
		if err == nil {
			n, _ = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// RawSamples returns up to limit raw readings of a series with from ≤ ts <
// to, oldest first: one page of a replay, read along the primary key.
func (s *Store) RawSamples(ctx context.Context, series, from, to int64, limit int) ([]store.Sample, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT r.ts, r.processed, m.quality
		FROM readings r
		JOIN reading_meta m ON m.id = r.meta
		WHERE r.series_id = ? AND r.ts >= ? AND r.ts < ?
		ORDER BY r.ts
		LIMIT ?`,
		series, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("query raw samples: %w", err)
	}
	defer rows.Close()
	var out []store.Sample
	for rows.Next() {
		var x store.Sample
		var p sql.NullFloat64
		if err := rows.Scan(&x.TS, &p, &x.Quality); err != nil {
			return nil, err
		}
		x.Value = fptr(p)
		out = append(out, x)
	}
	return out, rows.Err()
}

// MinuteSamples returns up to limit 1-minute rollups of a series with
// from ≤ bucket < to, oldest first, as averages of their processed values
// timed at the minute's last usable reading; minutes without a processed
// value are left out.
func (s *Store) MinuteSamples(ctx context.Context, series, from, to int64, limit int) ([]store.Sample, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT bucket, last_ts, sum_p / n_p
		FROM rollup_1m
		WHERE series_id = ? AND bucket >= ? AND bucket < ? AND n_p > 0
		ORDER BY bucket
		LIMIT ?`,
		series, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("query minute samples: %w", err)
	}
	defer rows.Close()
	var out []store.Sample
	for rows.Next() {
		var x store.Sample
		var avg float64
		if err := rows.Scan(&x.Bucket, &x.TS, &avg); err != nil {
			return nil, err
		}
		x.Value, x.Quality = &avg, "aggregated"
		out = append(out, x)
	}
	return out, rows.Err()
}
