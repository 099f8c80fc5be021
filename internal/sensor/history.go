package sensor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// HistoryQuery is GET /sensors/data (docs/api.md §7.3).
type HistoryQuery struct {
	EspID      string
	GPIO       int // -1 = any
	SensorType string
	Quality    string
	Source     string
	Start, End time.Time
	Resolution string // raw, 1m, 5m, 15m, 1h, 6h, 1d, auto, or seconds
	Buckets    int
	Limit      int
	Before     time.Time
	Asc        bool
}

// Row is one returned reading or bucket.
type Row map[string]any

// History is the query result.
type History struct {
	Rows          []Row
	Resolution    string
	BucketSeconds int64
	HasMore       bool
	NextCursor    *time.Time
}

// ErrBadResolution is an unknown resolution value.
var ErrBadResolution = errors.New("unknown resolution")

var standard = []struct {
	name string
	sec  int64
}{{"1m", 60}, {"5m", 300}, {"15m", 900}, {"1h", 3600}, {"6h", 21600}, {"1d", 86400}}

// ParseResolution returns the bucket width in seconds (0 = raw; -1 = auto).
func ParseResolution(r string) (int64, error) {
	switch r {
	case "", "raw":
		return 0, nil
	case "auto":
		return -1, nil
	}
	for _, s := range standard {
		if s.name == r {
			return s.sec, nil
		}
	}
	n, err := strconv.ParseInt(r, 10, 64)
	if err != nil || n < 10 || n > 86400 {
		return 0, ErrBadResolution
	}
	return n, nil
}

// source picks the finest rollup whose granularity divides the bucket width.
func source(widthMS int64) string {
	switch {
	case widthMS%86_400_000 == 0:
		return "1d"
	case widthMS%3_600_000 == 0:
		return "1h"
	case widthMS >= 60_000:
		return "1m"
	}
	return "raw"
}

// Query runs a history query.
func (s *Service) Query(ctx context.Context, q HistoryQuery) (History, error) {
	ids := s.SeriesIDs(q.EspID, q.GPIO, q.SensorType)
	start, end := q.Start.UnixMilli(), q.End.UnixMilli()
	width, err := ParseResolution(q.Resolution)
	if err != nil {
		return History{}, err
	}

	if q.Buckets > 0 {
		w := (end - start) / int64(q.Buckets)
		if w < 1 {
			w = 1
		}
		return s.buckets(ctx, ids, start, end, w, start, q.Limit, "buckets")
	}
	if width == -1 {
		width = autoWidth(end-start, int64(q.Limit))
	}
	if width > 0 {
		w := width * 1000
		return s.buckets(ctx, ids, start-start%w, end, w, 0, q.Limit, q.Resolution)
	}
	return s.rawHistory(ctx, ids, q)
}

// autoWidth is the finest standard resolution (seconds) that fits span
// (ms) into limit buckets; a day when none does.
func autoWidth(span, limit int64) int64 {
	for _, st := range standard {
		if span/(st.sec*1000) <= limit {
			return st.sec
		}
	}
	return 86400
}

// rawHistory pages through the raw readings, newest first unless q.Asc.
func (s *Service) rawHistory(ctx context.Context, ids []int64, q HistoryQuery) (History, error) {
	h := History{Resolution: "raw"}
	if len(ids) == 0 {
		return h, nil
	}
	rq := store.RawQuery{
		Series:  ids,
		Start:   q.Start.UnixMilli(),
		End:     q.End.UnixMilli(),
		Quality: q.Quality,
		Source:  q.Source,
		Limit:   q.Limit + 1,
		Asc:     q.Asc,
	}
	if !q.Before.IsZero() {
		rq.Before = q.Before.UnixMilli()
	}
	rows, err := s.store.QueryReadings(ctx, rq)
	if err != nil {
		return h, err
	}

	if len(rows) > q.Limit {
		rows = rows[:q.Limit]
		h.HasMore = true
		t := time.UnixMilli(rows[len(rows)-1].TS).UTC()
		h.NextCursor = &t
	}
	for _, r := range rows {
		h.Rows = append(h.Rows, RawRowJSON(r))
	}
	return h, nil
}

// RawRowJSON is the docs/api.md §7.3 raw row.
func RawRowJSON(r store.RawRow) Row {
	return Row{
		"timestamp":       rowTime(r.TS),
		"esp_id":          r.Key.EspID,
		"gpio":            r.Key.GPIO,
		"sensor_type":     r.Key.SensorType,
		"raw_value":       r.Raw,
		"processed_value": r.Processed,
		"unit":            r.Unit,
		"quality":         r.Quality,
		"processing_mode": r.Mode,
		"zone_id":         nilEmpty(r.ZoneID),
		"subzone_id":      nilEmpty(r.SubzoneID),
	}
}

// rowTime is a row's timestamp: UTC with milliseconds (docs/api.md §7.3).
func rowTime(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }

func nilEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// buckets aggregates each series into buckets of w ms from start (aligned
// to align when not 0), keeping the newest limit buckets per series.
func (s *Service) buckets(
	ctx context.Context, ids []int64, start, end, w, align int64, limit int, name string,
) (History, error) {
	h := History{Resolution: name, BucketSeconds: w / 1000}
	src := source(w)
	if align != 0 && src != "raw" {
		src = "1m" // buckets aligned to start_time: exact to the minute (docs/api.md §7.3)
		if w < 60_000 {
			src = "raw"
		}
	}
	for _, id := range ids {
		key, _ := s.SeriesKeyOf(id)
		bs, err := s.store.Buckets(ctx, id, src, start, end, w, align)
		if err != nil {
			return h, fmt.Errorf("buckets: %w", err)
		}
		if len(bs) > limit {
			bs = bs[len(bs)-limit:]
			h.HasMore = true
		}
		unit := ""
		if r, ok := s.latestByID(id); ok {
			unit = r.Unit
		}
		for _, b := range bs {
			if b.N > 0 {
				h.Rows = append(h.Rows, bucketRow(key, unit, b))
			}
		}
	}
	return h, nil
}

// bucketRow is the docs/api.md §7.3 aggregated row: averages of the processed
// values when the bucket has any, else of the raw values.
func bucketRow(key store.SeriesKey, unit string, b store.Bucket) Row {
	row := Row{
		"timestamp":       rowTime(b.Start),
		"esp_id":          key.EspID,
		"gpio":            key.GPIO,
		"sensor_type":     key.SensorType,
		"unit":            unit,
		"raw_value":       b.SumRaw / float64(b.N),
		"processed_value": nil,
		"sample_count":    b.N,
		"quality":         "aggregated",
	}
	if b.NP > 0 {
		avg := b.SumP / float64(b.NP)
		row["processed_value"], row["avg_value"], row["min_value"], row["max_value"] = avg, avg, b.MinP, b.MaxP
	} else {
		row["avg_value"], row["min_value"], row["max_value"] = b.SumRaw/float64(b.N), b.MinRaw, b.MaxRaw
	}
	return row
}

func (s *Service) latestByID(id int64) (store.Reading, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if l := s.latest[id]; l != nil {
		return l.r, true
	}
	return store.Reading{}, false
}

// RetentionResult is a cleanup run's outcome (docs/domain.md §9.1).
type RetentionResult struct {
	Status  string `json:"status"`
	Deleted int64  `json:"deleted"`
}

// Retention limits (docs/domain.md §9.1).
type Retention struct {
	DefaultDays     int
	MaxRowsPerRun   int64
	BatchSize       int
	MaxBatches      int
	Force, DryRun   bool
	MinuteRollupDay int
	HourRollupDays  int
}

// DefaultRetention is docs/domain.md §9.1's default.
func DefaultRetention() Retention {
	return Retention{
		DefaultDays:     30,
		MaxRowsPerRun:   1_000_000,
		BatchSize:       5000,
		MaxBatches:      200,
		MinuteRollupDay: 90,
		HourRollupDays:  365,
	}
}

// CleanupReadings deletes raw readings older than each sensor's retention,
// oldest first in batches, never more than the per-run cap; it aborts when
// the rows to delete exceed half the table unless forced.
func (s *Service) CleanupReadings(ctx context.Context, r Retention) (RetentionResult, error) {
	now := s.now()
	total, err := s.store.CountReadings(ctx, 0, 0)
	if err != nil {
		return RetentionResult{}, err
	}
	targets, due, oldest, err := s.retentionTargets(ctx, r.DefaultDays, now)
	if err != nil {
		return RetentionResult{}, err
	}

	switch {
	case due == 0:
		return RetentionResult{Status: "nothing_to_delete"}, nil
	case r.DryRun:
		return RetentionResult{Status: "dry_run", Deleted: due}, nil
	case !r.Force && due*2 > total:
		s.log.Warn("retention aborted: more than half of the readings would be deleted", "due", due, "total", total)
		return RetentionResult{Status: "aborted_safety_limit", Deleted: 0}, nil
	}
	if due*10 > total {
		s.log.Warn("retention deletes more than 10 % of the readings", "due", due, "total", total)
	}

	// A store partitioned by day drops the days every sensor's retention
	// has expired whole (docs/decisions/0025-postgres-store.md); the rows
	// a shorter retention expires in younger days go in batches.
	var dropped int64
	if d, ok := s.store.(dayDropper); ok {
		if dropped, err = d.DropReadingsBefore(ctx, oldest); err != nil {
			return RetentionResult{Status: "partial", Deleted: dropped}, err
		}
	}
	deleted, err := s.deleteExpired(ctx, targets, r)
	deleted += dropped
	if err != nil {
		return RetentionResult{Status: "partial", Deleted: deleted}, err
	}
	status := "success"
	if deleted < due {
		status = "partial"
	}
	return RetentionResult{Status: status, Deleted: deleted}, nil
}

// expired is a series' rows past its retention.
type expired struct {
	series int64
	cutoff int64 // ms: rows before it are due
}

// dayDropper is a store whose readings are partitioned by day: it drops
// the days that end before a cutoff at once.
type dayDropper interface {
	DropReadingsBefore(ctx context.Context, before int64) (int64, error)
}

// retentionTargets counts each series' rows past its sensor's retention
// (defaultDays without one); due is their sum, and oldest the cutoff of
// the longest retention: rows before it are due in every series.
func (s *Service) retentionTargets(
	ctx context.Context, defaultDays int, now time.Time,
) ([]expired, int64, int64, error) {
	s.mu.RLock()
	days := make(map[int64]int, len(s.series))
	for k, st := range s.series {
		days[st.id] = defaultDays
		if c := s.configFor(k); c != nil && c.RetentionDays != nil && *c.RetentionDays > 0 {
			days[st.id] = *c.RetentionDays
		}
	}
	s.mu.RUnlock()

	var targets []expired
	var due int64
	oldest := now.Add(-time.Duration(defaultDays) * 24 * time.Hour).UnixMilli()
	for id, d := range days {
		cutoff := now.Add(-time.Duration(d) * 24 * time.Hour).UnixMilli()
		oldest = min(oldest, cutoff)
		n, err := s.store.CountReadings(ctx, id, cutoff)
		if err != nil {
			return nil, 0, 0, err
		}
		if n > 0 {
			targets = append(targets, expired{series: id, cutoff: cutoff})
			due += n
		}
	}
	return targets, due, oldest, nil
}

// deleteExpired deletes the targets' rows in batches, within the run's
// row and batch caps.
func (s *Service) deleteExpired(ctx context.Context, targets []expired, r Retention) (int64, error) {
	var deleted int64
	batches := 0
	for _, t := range targets {
		for deleted < r.MaxRowsPerRun && batches < r.MaxBatches {
			limit := min(int64(r.BatchSize), r.MaxRowsPerRun-deleted)
			n, err := s.store.DeleteReadingsBatch(ctx, t.series, t.cutoff, int(limit))
			if err != nil {
				return deleted, err
			}
			deleted += n
			batches++
			if n < limit {
				break
			}
		}
	}
	return deleted, nil
}

// CleanupRollups deletes minute and hour rollups past their retention.
func (s *Service) CleanupRollups(ctx context.Context, r Retention) error {
	now := s.now()
	for _, x := range []struct {
		src  string
		days int
	}{{"1m", r.MinuteRollupDay}, {"1h", r.HourRollupDays}} {
		cut := now.Add(-time.Duration(x.days) * 24 * time.Hour).UnixMilli()
		for i := 0; i < r.MaxBatches; i++ {
			n, err := s.store.DeleteRollupsBefore(ctx, x.src, cut, r.BatchSize)
			if err != nil {
				return err
			}
			if n < int64(r.BatchSize) {
				break
			}
		}
	}
	return nil
}

// RepairRollups recomputes recent closed buckets (catch-up job).
func (s *Service) RepairRollups(ctx context.Context) error {
	now := s.now()
	return s.store.RepairRollups(ctx, now.Add(-15*time.Minute), now.Add(-5*time.Minute))
}
