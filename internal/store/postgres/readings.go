package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/store"
)

var timeNow = time.Now

var readingColumns = []string{
	"series_id", "ts", "raw", "processed", "unit", "quality", "mode", "device_value", "time_source",
	"received_at", "source", "zone_id", "subzone_id",
}

func readingValues(r store.Reading) []any {
	return []any{r.SeriesID, r.TS, r.Raw, r.Processed, r.Unit, r.Quality, r.Mode, r.DeviceValue, r.TimeSource,
		r.ReceivedAt, r.Source, r.ZoneID, r.SubzoneID}
}

// SinkMetrics are the reading sink's instruments (nil fields are skipped).
type SinkMetrics struct {
	Committed prometheus.Counter
	Latency   prometheus.Observer
}

// ReadingSink batches readings into COPY transactions and keeps the
// rollups: one goroutine owns the batch and the in-memory rollup buckets,
// merged into the rollup tables every rollupEvery (and on Flush and
// Close). Producers only send on a bounded channel.
type ReadingSink struct {
	store     *Store
	ch        chan queuedReading
	mu        sync.RWMutex // guards closed against Add/Close
	closed    bool
	done      chan struct{}
	flushReq  chan chan struct{}
	rolls     store.Rollups
	lastRoll  time.Time
	metrics   *SinkMetrics
	committed atomic.Int64
	onCommit  atomic.Pointer[func([]store.Reading, time.Time)]
	maxBatch  int
	wait      time.Duration
}

type queuedReading struct {
	r       store.Reading
	tracked func(error)
}

// ErrSinkClosed is returned by Add after Close.
var ErrSinkClosed = errors.New("reading sink closed")

// rollupEvery is how long buckets aggregate in memory before they are
// merged: every update of a rollup row is a new row version in
// PostgreSQL, so merging a series' three buckets once per 10 s instead of
// with every batch keeps the tables from bloating (the same window as the
// SQLite store; the repair job recomputes what a crash loses).
const rollupEvery = 10 * time.Second

// rollupMaxBuckets merges early when this many buckets are pending.
const rollupMaxBuckets = 65536

// NewReadingSink starts the sink; capacity bounds the queue.
func (s *Store) NewReadingSink(capacity int, m *SinkMetrics) *ReadingSink {
	if capacity <= 0 {
		capacity = 65536
	}
	if m == nil {
		m = &SinkMetrics{}
	}
	k := &ReadingSink{
		store:    s,
		ch:       make(chan queuedReading, capacity),
		done:     make(chan struct{}),
		flushReq: make(chan chan struct{}),
		rolls:    store.Rollups{},
		lastRoll: time.Now(),
		metrics:  m,
		maxBatch: 20000,
		wait:     sinkLinger,
	}
	go k.run()
	return k
}

// Add queues a reading, waiting for space until ctx ends. A store.Commits
// on ctx hears the outcome of the transaction that stores it.
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

// OnCommit installs a hook called with every committed batch.
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

// sinkLinger is how long a batch of QoS 0 readings waits for more before
// its commit. Each commit costs a few round trips and a WAL flush on the
// server whatever its size, so at a fleet's steady rate (hundreds per
// second, split among replicas) the linger decides the CPU per reading; a
// QoS 1 reading, whose PUBACK waits for the commit, ends the wait at once,
// and live events never wait for it (docs/BENCHMARKS.md, replicas).
const sinkLinger = 25 * time.Millisecond

func (k *ReadingSink) run() {
	defer close(k.done)
	batch := make([]queuedReading, 0, k.maxBatch)
	for {
		select {
		case done := <-k.flushReq:
			// Take what was queued before the request and no more, so a
			// producer that never pauses cannot hold the flush.
			for n := len(k.ch); n > 0; {
				batch = batch[:0]
				for ; n > 0 && len(batch) < k.maxBatch; n-- {
					q, ok := <-k.ch
					if !ok {
						n = 0
						break
					}
					batch = append(batch, q)
				}
				k.store1(batch, false)
			}
			k.store1(nil, true)
			close(done)
		case q, ok := <-k.ch:
			if !ok {
				k.store1(nil, true)
				return
			}
			k.store1(k.fill(append(batch[:0], q)), false)
		}
	}
}

// fill takes what is queued, waiting up to k.wait for more so that a burst
// lands in one transaction; once the batch holds a reading whose commit a
// publisher waits for (a QoS 1 PUBACK), it takes only what is there.
func (k *ReadingSink) fill(batch []queuedReading) []queuedReading {
	waited := batch[0].tracked != nil
	timer := time.NewTimer(k.wait)
	defer timer.Stop()
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
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// store1 commits a batch of readings, then merges the rollups when due
// (always when final).
func (k *ReadingSink) store1(batch []queuedReading, final bool) {
	if len(batch) > 0 {
		rows := make([]store.Reading, len(batch))
		for i, q := range batch {
			rows[i] = q.r
		}
		err := k.store.insertReadings(context.Background(), rows)
		if err != nil {
			k.store.log.Error("storing readings failed", "rows", len(rows), "error", err)
			err = fmt.Errorf("store readings: %w", err)
		} else {
			for _, r := range rows {
				k.rolls.Add(r)
			}
			k.recordCommit(rows)
		}
		for _, q := range batch {
			if q.tracked != nil {
				q.tracked(err)
			}
		}
	}
	if len(k.rolls) > 0 && (final || time.Since(k.lastRoll) >= rollupEvery || len(k.rolls) > rollupMaxBuckets) {
		rolls := k.rolls
		k.rolls, k.lastRoll = store.Rollups{}, time.Now()
		if err := k.store.mergeRollups(context.Background(), rolls); err != nil {
			k.store.log.Error("storing rollups failed; the repair job recomputes them", "buckets", len(rolls),
				"error", err)
		}
	}
}

func (k *ReadingSink) recordCommit(rows []store.Reading) {
	k.committed.Add(int64(len(rows)))
	if f := k.onCommit.Load(); f != nil {
		(*f)(rows, time.Now())
	}
	if k.metrics.Committed != nil {
		k.metrics.Committed.Add(float64(len(rows)))
	}
	if k.metrics.Latency != nil {
		now := time.Now().UnixMilli()
		for i := 0; i < len(rows); i += 64 {
			k.metrics.Latency.Observe(float64(now-rows[i].ReceivedAt) / 1000)
		}
	}
}

// sinkTimeout bounds one reading transaction.
const sinkTimeout = 2 * time.Minute

// insertReadings stores rows in one transaction: COPY straight into the
// partitioned table, and when a key is stored already (a redelivered or
// replayed device-timed reading), through a staging table whose rows are
// inserted with ON CONFLICT DO NOTHING. A device-timed duplicate is
// dropped (docs/domain.md §2.2); a hub-timed row never is: it moves to the
// next free millisecond, as in the SQLite store.
func (s *Store) insertReadings(ctx context.Context, rows []store.Reading) error {
	ctx, cancel := context.WithTimeout(ctx, sinkTimeout)
	defer cancel()
	if err := s.ensurePartitions(ctx, rows); err != nil {
		return err
	}
	src := func() pgx.CopyFromSource {
		return pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) { return readingValues(rows[i]), nil })
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"readings"}, readingColumns, src())
		return err
	})
	if !isUnique(err) {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS readings_in
			(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`); err != nil {
			return fmt.Errorf("staging table: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"readings_in"}, readingColumns, src()); err != nil {
			return fmt.Errorf("copy readings: %w", err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO readings SELECT * FROM readings_in ON CONFLICT DO NOTHING`)
		if err != nil {
			return fmt.Errorf("insert readings: %w", err)
		}
		if tag.RowsAffected() == int64(len(rows)) {
			return nil
		}
		return keepHubTimed(ctx, tx, rows)
	})
}

// maxKeyMoves bounds the search for a free millisecond.
const maxKeyMoves = 1000

// keepHubTimed inserts the hub-timed rows of the staging table that found
// their key taken by another reading at the next free millisecond. The row
// under the key is this one when it was received at the same millisecond
// with the same value: had it been another, nothing would tell them apart.
func keepHubTimed(ctx context.Context, tx pgx.Tx, rows []store.Reading) error {
	type key struct {
		series, ts, received int64
		raw                  float64
	}
	byKey := map[key]store.Reading{}
	for _, r := range rows {
		if r.TimeSource == "hub" {
			byKey[key{r.SeriesID, r.TS, r.ReceivedAt, r.Raw}] = r
		}
	}
	if len(byKey) == 0 {
		return nil
	}
	lost, err := tx.Query(ctx, `SELECT i.series_id, i.ts, i.received_at, i.raw FROM readings_in i
		WHERE i.time_source = 'hub' AND NOT EXISTS (SELECT 1 FROM readings r
			WHERE r.series_id = i.series_id AND r.ts = i.ts AND r.received_at = i.received_at
			  AND r.raw = i.raw AND r.time_source = 'hub')`)
	keys, err := collect(lost, err, func(r pgx.Rows) (key, error) {
		var k key
		return k, r.Scan(&k.series, &k.ts, &k.received, &k.raw)
	})
	if err != nil {
		return fmt.Errorf("check reading keys: %w", err)
	}
	insert := `INSERT INTO readings (` + strings.Join(readingColumns, ", ") + `)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) ON CONFLICT DO NOTHING`
	for _, k := range keys {
		r := byKey[k]
		for moves := 0; ; moves++ {
			if moves == maxKeyMoves {
				return fmt.Errorf("series %d: no free reading time within %d ms of %d", r.SeriesID, maxKeyMoves, k.ts)
			}
			r.TS++
			tag, err := tx.Exec(ctx, insert, readingValues(r)...)
			if err != nil {
				return fmt.Errorf("insert reading: %w", err)
			}
			if tag.RowsAffected() == 1 {
				break
			}
		}
	}
	return nil
}

const dayMS = 86_400_000

// partitionName is the readings partition of the UTC day starting at day (unix ms).
func partitionName(day int64) string {
	return "readings_p" + time.UnixMilli(day).UTC().Format("20060102")
}

func dayOf(ts int64) int64 {
	d := ts - ts%dayMS
	if ts < 0 && ts%dayMS != 0 {
		d -= dayMS
	}
	return d
}

// partitionLock serialises partition DDL among replicas.
const partitionLock = 0x6b616973 + 1

// ensurePartitions creates the daily partitions rows need (and the next
// day's, so midnight never waits for DDL), each once per process.
func (s *Store) ensurePartitions(ctx context.Context, rows []store.Reading) error {
	var need []int64
	s.daysMu.Lock()
	for _, r := range rows {
		for _, d := range []int64{dayOf(r.TS), dayOf(r.TS + maxKeyMoves), dayOf(r.TS) + dayMS} {
			if !s.days[d] {
				s.days[d] = true // optimistic; undone on failure
				need = append(need, d)
			}
		}
	}
	s.daysMu.Unlock()
	for i, d := range need {
		if err := s.createPartition(ctx, d); err != nil {
			s.daysMu.Lock()
			for _, u := range need[i:] {
				delete(s.days, u)
			}
			s.daysMu.Unlock()
			return err
		}
	}
	return nil
}

func (s *Store) createPartition(ctx context.Context, day int64) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, partitionLock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF readings
			FOR VALUES FROM (%d) TO (%d)`, pgx.Identifier{partitionName(day)}.Sanitize(), day, day+dayMS))
		return err
	})
	if err != nil {
		return fmt.Errorf("create readings partition %s: %w", partitionName(day), err)
	}
	return nil
}

// CreateReadingPartitions creates the daily partitions of every day from
// the one holding from to the one after to (unix ms), for a bulk load
// that writes readings past the sink (kaiser migrate-store).
func (s *Store) CreateReadingPartitions(ctx context.Context, from, to int64) error {
	for d := dayOf(from); d <= dayOf(to)+dayMS; d += dayMS {
		if err := s.createPartition(ctx, d); err != nil {
			return err
		}
		s.daysMu.Lock()
		s.days[d] = true
		s.daysMu.Unlock()
	}
	return nil
}

// ReadingPartition is one daily partition of the readings.
type ReadingPartition struct {
	Name string
	Day  int64 // start, unix ms
}

// ReadingPartitions lists the readings partitions, oldest first.
func (s *Store) ReadingPartitions(ctx context.Context) ([]ReadingPartition, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'readings'::regclass ORDER BY c.relname`)
	names, err := collect(rows, err, func(r pgx.Rows) (string, error) {
		var n string
		return n, r.Scan(&n)
	})
	if err != nil {
		return nil, fmt.Errorf("list readings partitions: %w", err)
	}
	var out []ReadingPartition
	for _, n := range names {
		t, err := time.Parse("20060102", strings.TrimPrefix(n, "readings_p"))
		if err != nil {
			continue // not one of ours
		}
		out = append(out, ReadingPartition{Name: n, Day: t.UnixMilli()})
	}
	return out, nil
}

// DropReadingsBefore drops the daily partitions that end at or before
// before (unix ms): the readings every sensor's retention has expired,
// gone at the cost of a file removal, not a delete per row. It returns how
// many readings they held. Readings of newer days that a shorter
// per-sensor retention expires are left to DeleteReadingsBatch.
func (s *Store) DropReadingsBefore(ctx context.Context, before int64) (int64, error) {
	parts, err := s.ReadingPartitions(ctx)
	if err != nil {
		return 0, err
	}
	var dropped int64
	for _, p := range parts {
		if p.Day+dayMS > before {
			continue
		}
		name := pgx.Identifier{p.Name}.Sanitize()
		var n int64
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+name).Scan(&n); err != nil {
			return dropped, fmt.Errorf("count %s: %w", p.Name, err)
		}
		// Detached concurrently first, so that readers and the sink are
		// not locked out of the parent table while it goes.
		if _, err := s.pool.Exec(ctx, `ALTER TABLE readings DETACH PARTITION `+name+` CONCURRENTLY`); err != nil {
			return dropped, fmt.Errorf("detach %s: %w", p.Name, err)
		}
		if _, err := s.pool.Exec(ctx, `DROP TABLE `+name); err != nil {
			return dropped, fmt.Errorf("drop %s: %w", p.Name, err)
		}
		s.daysMu.Lock()
		delete(s.days, p.Day)
		s.daysMu.Unlock()
		dropped += n
	}
	return dropped, nil
}

// mergeRollups adds the accumulated buckets to the rollup tables, one
// statement per level.
func (s *Store) mergeRollups(ctx context.Context, rolls store.Rollups) error {
	type cols struct {
		series, bucket, n, nP, lastTS     []int64
		sumRaw, sumP                      []float64
		minRaw, maxRaw, minP, maxP, lastP []*float64
	}
	var lv [len(store.RollupWidths)]cols
	opt := func(v float64, ok bool) *float64 {
		if !ok {
			return nil
		}
		return &v
	}
	for k, a := range rolls {
		c := &lv[k.Level]
		c.series, c.bucket = append(c.series, k.Series), append(c.bucket, k.Bucket)
		c.n, c.nP, c.lastTS = append(c.n, a.N), append(c.nP, a.NP), append(c.lastTS, a.LastTS)
		c.sumRaw, c.sumP = append(c.sumRaw, a.SumRaw), append(c.sumP, a.SumP)
		c.minRaw, c.maxRaw = append(c.minRaw, opt(a.MinRaw, a.N > 0)), append(c.maxRaw, opt(a.MaxRaw, a.N > 0))
		c.minP, c.maxP = append(c.minP, opt(a.MinP, a.NP > 0)), append(c.maxP, opt(a.MaxP, a.NP > 0))
		c.lastP = append(c.lastP, opt(a.LastP, a.NP > 0))
	}
	ctx, cancel := context.WithTimeout(ctx, sinkTimeout)
	defer cancel()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for i, c := range lv {
			if len(c.series) == 0 {
				continue
			}
			// LEAST and GREATEST ignore NULLs: a bucket without processed
			// values keeps the other side's extremes.
			_, err := tx.Exec(ctx, `INSERT INTO rollup_`+store.RollupLevels[i]+` AS t (series_id, bucket, n, sum_raw,
					min_raw, max_raw, n_p, sum_p, min_p, max_p, last_p, last_ts)
				SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[], $5::float8[],
					$6::float8[], $7::bigint[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], $12::bigint[])
				ON CONFLICT (series_id, bucket) DO UPDATE SET
					n = t.n + excluded.n,
					sum_raw = t.sum_raw + excluded.sum_raw,
					min_raw = LEAST(t.min_raw, excluded.min_raw),
					max_raw = GREATEST(t.max_raw, excluded.max_raw),
					n_p = t.n_p + excluded.n_p,
					sum_p = t.sum_p + excluded.sum_p,
					min_p = LEAST(t.min_p, excluded.min_p),
					max_p = GREATEST(t.max_p, excluded.max_p),
					last_p = CASE WHEN excluded.n_p > 0 AND excluded.last_ts >= t.last_ts
						THEN excluded.last_p ELSE t.last_p END,
					last_ts = GREATEST(t.last_ts, excluded.last_ts)`,
				c.series, c.bucket, c.n, c.sumRaw, c.minRaw, c.maxRaw, c.nP, c.sumP, c.minP, c.maxP, c.lastP, c.lastTS)
			if err != nil {
				return fmt.Errorf("merge rollup_%s: %w", store.RollupLevels[i], err)
			}
		}
		return nil
	})
}

// RepairRollups recomputes the 1-minute rollups of [from, to) from the raw
// readings, and the hour and day rollups touching that span from the
// minute rollups (idempotent; docs/domain.md §9 catch-up job).
func (s *Store) RepairRollups(ctx context.Context, from, to time.Time) error {
	f, t := from.UnixMilli()-from.UnixMilli()%60_000, to.UnixMilli()-to.UnixMilli()%60_000
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM rollup_1m WHERE bucket >= $1 AND bucket < $2`, f, t); err != nil {
			return fmt.Errorf("repair minute rollups: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rollup_1m (series_id, bucket, n, sum_raw, min_raw, max_raw,
				n_p, sum_p, min_p, max_p, last_p, last_ts)
			SELECT series_id, b, count(*), sum(raw), min(raw), max(raw),
				count(processed), COALESCE(sum(processed), 0), min(processed), max(processed),
				(array_agg(processed ORDER BY ts DESC) FILTER (WHERE processed IS NOT NULL))[1],
				COALESCE(max(ts) FILTER (WHERE processed IS NOT NULL), 0)
			FROM (SELECT *, ts - ts % 60000 AS b FROM readings
				WHERE ts >= $1 AND ts < $2 AND quality <> 'error') r
			GROUP BY series_id, b`, f, t); err != nil {
			return fmt.Errorf("rebuild minute rollups: %w", err)
		}
		for i := 1; i < len(store.RollupWidths); i++ {
			w, table := store.RollupWidths[i], "rollup_"+store.RollupLevels[i]
			lo, hi := f-f%w, t-t%w+w
			if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE bucket >= $1 AND bucket < $2`, lo, hi); err != nil {
				return fmt.Errorf("repair %s: %w", table, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (series_id, bucket, n, sum_raw, min_raw, max_raw,
					n_p, sum_p, min_p, max_p, last_p, last_ts)
				SELECT series_id, bucket - bucket % $3, sum(n), sum(sum_raw), min(min_raw), max(max_raw),
					sum(n_p), sum(sum_p), min(min_p), max(max_p),
					(array_agg(last_p ORDER BY last_ts DESC) FILTER (WHERE n_p > 0))[1], max(last_ts)
				FROM rollup_1m WHERE bucket >= $1 AND bucket < $2
				GROUP BY series_id, bucket - bucket % $3`, lo, hi, w); err != nil {
				return fmt.Errorf("rebuild %s: %w", table, err)
			}
		}
		return nil
	})
}

// EnsureSeries returns the id of a series, creating it.
func (s *Store) EnsureSeries(ctx context.Context, k store.SeriesKey) (int64, error) {
	var id int64
	err := s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO sensor_series (esp_id, gpio, sensor_type, address)
			VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING`, k.EspID, k.GPIO, k.SensorType, k.Address); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT id FROM sensor_series
			WHERE esp_id = $1 AND gpio = $2 AND sensor_type = $3 AND address = $4`,
			k.EspID, k.GPIO, k.SensorType, k.Address).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("ensure series: %w", err)
	}
	return id, nil
}

// LoadSeries returns every series.
func (s *Store) LoadSeries(ctx context.Context) (map[store.SeriesKey]int64, error) {
	return s.loadSeries(ctx, `SELECT id, esp_id, gpio, sensor_type, address FROM sensor_series`)
}

// LoadSeriesOf returns one device's series (a replica learns of the series
// another one opened, migration 0004).
func (s *Store) LoadSeriesOf(ctx context.Context, espID string) (map[store.SeriesKey]int64, error) {
	out, err := s.loadSeries(ctx, `SELECT id, esp_id, gpio, sensor_type, address FROM sensor_series
		WHERE esp_id = $1`, espID)
	if err != nil {
		return nil, fmt.Errorf("load series of %s: %w", espID, err)
	}
	return out, nil
}

func (s *Store) loadSeries(ctx context.Context, q string, args ...any) (map[store.SeriesKey]int64, error) {
	rows, err := s.pool.Query(ctx, q, args...)
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

const readingSelect = `SELECT r.series_id, r.ts, r.raw, r.processed, r.unit, r.quality, r.mode, r.device_value,
	r.time_source, r.received_at, r.source, r.zone_id, r.subzone_id, s.esp_id, s.gpio, s.sensor_type, s.address`

func scanRaw(r pgx.Rows) (store.RawRow, error) {
	var x store.RawRow
	err := r.Scan(&x.SeriesID, &x.TS, &x.Raw, &x.Processed, &x.Unit, &x.Quality, &x.Mode, &x.DeviceValue,
		&x.TimeSource, &x.ReceivedAt, &x.Source, &x.ZoneID, &x.SubzoneID,
		&x.Key.EspID, &x.Key.GPIO, &x.Key.SensorType, &x.Key.Address)
	return x, err
}

// QueryReadings returns raw rows of the given series, newest first unless Asc.
func (s *Store) QueryReadings(ctx context.Context, q store.RawQuery) ([]store.RawRow, error) {
	var conds []string
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if len(q.Series) > 0 {
		conds = append(conds, "r.series_id = ANY("+arg(q.Series)+")")
	}
	if q.Start != 0 || q.End != 0 {
		conds = append(conds, "r.ts >= "+arg(q.Start)+" AND r.ts <= "+arg(q.End))
	}
	if q.Before != 0 {
		conds = append(conds, "r.ts < "+arg(q.Before))
	}
	if q.Quality != "" {
		conds = append(conds, "r.quality = "+arg(q.Quality))
	}
	if q.Source != "" {
		conds = append(conds, "r.source = "+arg(q.Source))
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	order := " ORDER BY r.ts DESC"
	if q.Asc {
		order = " ORDER BY r.ts ASC"
	}
	rows, err := s.pool.Query(ctx, readingSelect+` FROM readings r JOIN sensor_series s ON s.id = r.series_id`+
		where+order+" LIMIT "+arg(q.Limit), args...)
	out, err := collect(rows, err, scanRaw)
	if err != nil {
		return nil, fmt.Errorf("query readings: %w", err)
	}
	return out, nil
}

// Buckets aggregates a series into buckets of width ms aligned to align
// (ms), from the raw readings or a rollup table ("raw", "1m", "1h", "1d").
func (s *Store) Buckets(
	ctx context.Context, series int64, source string, start, end, width, align int64,
) ([]store.Bucket, error) {
	var q string
	switch source {
	case "raw":
		q = `SELECT (ts - $1) / $2 AS b, count(*), sum(raw), min(raw), max(raw),
				count(processed), COALESCE(sum(processed), 0), min(processed), max(processed)
			FROM readings WHERE series_id = $3 AND ts >= $4 AND ts < $5 AND quality <> 'error'
			GROUP BY b ORDER BY b`
	case "1m", "1h", "1d":
		q = `SELECT (bucket - $1) / $2 AS b, sum(n)::bigint, sum(sum_raw), min(min_raw), max(max_raw),
				sum(n_p)::bigint, sum(sum_p), min(min_p), max(max_p)
			FROM rollup_` + source + ` WHERE series_id = $3 AND bucket >= $4 AND bucket < $5
			GROUP BY b ORDER BY b`
	default:
		return nil, fmt.Errorf("unknown bucket source %q", source)
	}
	rows, err := s.pool.Query(ctx, q, align, width, series, start, end)
	out, err := collect(rows, err, func(r pgx.Rows) (store.Bucket, error) {
		var b store.Bucket
		var idx int64
		err := r.Scan(&idx, &b.N, &b.SumRaw, &b.MinRaw, &b.MaxRaw, &b.NP, &b.SumP, &b.MinP, &b.MaxP)
		b.Start = align + idx*width
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("query buckets: %w", err)
	}
	return out, nil
}

// LatestReadings returns the newest reading of every series.
func (s *Store) LatestReadings(ctx context.Context) ([]store.RawRow, error) {
	rows, err := s.pool.Query(ctx, readingSelect+` FROM sensor_series s
		CROSS JOIN LATERAL (SELECT * FROM readings WHERE series_id = s.id ORDER BY ts DESC LIMIT 1) r`)
	return collect(rows, err, scanRaw)
}

// CountReadings counts rows of a series older than before (0 = all series / no bound).
func (s *Store) CountReadings(ctx context.Context, series int64, before int64) (int64, error) {
	q, args := `SELECT count(*) FROM readings WHERE true`, []any{}
	if series != 0 {
		args = append(args, series)
		q += fmt.Sprintf(` AND series_id = $%d`, len(args))
	}
	if before != 0 {
		args = append(args, before)
		q += fmt.Sprintf(` AND ts < $%d`, len(args))
	}
	var n int64
	err := s.pool.QueryRow(ctx, q, args...).Scan(&n)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// DeleteReadingsBatch deletes up to limit oldest rows of a series older than before.
func (s *Store) DeleteReadingsBatch(ctx context.Context, series int64, before int64, limit int) (int64, error) {
	var n int64
	err := s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM readings WHERE series_id = $1 AND ts IN (
			SELECT ts FROM readings WHERE series_id = $1 AND ts < $2 ORDER BY ts LIMIT $3)`, series, before, limit)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// DeleteRollupsBefore deletes up to limit rollup rows of a granularity older than before.
func (s *Store) DeleteRollupsBefore(ctx context.Context, source string, before int64, limit int) (int64, error) {
	switch source {
	case "1m", "1h", "1d":
	default:
		return 0, fmt.Errorf("unknown rollup %q", source)
	}
	var n int64
	err := s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM rollup_`+source+` WHERE (series_id, bucket) IN (
			SELECT series_id, bucket FROM rollup_`+source+` WHERE bucket < $1 ORDER BY bucket LIMIT $2)`,
			before, limit)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// RawSamples returns up to limit raw readings of a series with from ≤ ts <
// to, oldest first.
func (s *Store) RawSamples(ctx context.Context, series, from, to int64, limit int) ([]store.Sample, error) {
	rows, err := s.pool.Query(ctx, `SELECT ts, processed, quality FROM readings
		WHERE series_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4`, series, from, to, limit)
	out, err := collect(rows, err, func(r pgx.Rows) (store.Sample, error) {
		var x store.Sample
		return x, r.Scan(&x.TS, &x.Value, &x.Quality)
	})
	if err != nil {
		return nil, fmt.Errorf("query raw samples: %w", err)
	}
	return out, nil
}

// MinuteSamples returns up to limit 1-minute rollups of a series with
// from ≤ bucket < to, oldest first, as averages of their processed values
// timed at the minute's last usable reading.
func (s *Store) MinuteSamples(ctx context.Context, series, from, to int64, limit int) ([]store.Sample, error) {
	rows, err := s.pool.Query(ctx, `SELECT bucket, last_ts, sum_p / n_p FROM rollup_1m
		WHERE series_id = $1 AND bucket >= $2 AND bucket < $3 AND n_p > 0 ORDER BY bucket LIMIT $4`,
		series, from, to, limit)
	out, err := collect(rows, err, func(r pgx.Rows) (store.Sample, error) {
		var x store.Sample
		var avg float64
		err := r.Scan(&x.Bucket, &x.TS, &avg)
		x.Value, x.Quality = &avg, "aggregated"
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("query minute samples: %w", err)
	}
	return out, nil
}
