// Package retention trims the hub's event histories (heartbeats, device
// transitions, zone changes, rule executions, resolved alerts and read
// notifications) so that a hub running for years keeps a bounded
// database: each history has a fixed age (docs/domain.md §9.1,
// docs/decisions/0024-history-retention.md), deleted oldest first in
// committed batches, at most a bounded number of batches per run.
package retention

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Policy is how long one history is kept.
type Policy struct {
	Table string
	Keep  time.Duration
}

const day = 24 * time.Hour

// Policies are the ages of docs/domain.md §9.1 where it names the data,
// and those of decision 0024 where it does not.
var Policies = []Policy{
	{Table: "device_heartbeats", Keep: 7 * day},
	{Table: "device_transitions", Keep: 90 * day},
	{Table: "zone_changes", Keep: 90 * day},
	{Table: "rule_executions", Keep: 90 * day},
	{Table: "alerts", Keep: 180 * day},
	{Table: "notifications", Keep: 180 * day},
}

// Batch and MaxBatches bound one run per table (docs/domain.md §9.1 rules
// 2 and 4: batches of 1000, at most 100,000 rows a run); rows beyond them
// wait for the next run. The job runs hourly, so a fleet whose heartbeats
// add fewer than 100,000 rows an hour (1,000 devices add 60,000) never
// falls behind.
const (
	Batch      = 1000
	MaxBatches = 100
)

// Trimmer deletes up to limit rows of table older than before.
type Trimmer interface {
	DeleteHistoryBefore(ctx context.Context, table string, before time.Time, limit int) (int64, error)
}

// Result is what one run did to one table.
type Result struct {
	Table   string
	Deleted int64
	// Partial is true when the run stopped at MaxBatches with rows left.
	Partial bool
}

// Trim is the retention job: it trims every history of policies older
// than its age at now, and reports what it did. A failed table ends the
// run with its error; tables before it keep their deletions (each batch
// commits on its own).
func Trim(ctx context.Context, t Trimmer, policies []Policy, now time.Time, log *slog.Logger) ([]Result, error) {
	out := make([]Result, 0, len(policies))
	for _, p := range policies {
		r, err := trimOne(ctx, t, p, now)
		out = append(out, r)
		if err != nil {
			return out, err
		}
		if r.Deleted > 0 {
			log.Info("history retention", "table", r.Table, "deleted", r.Deleted, "partial", r.Partial,
				"older_than", now.Add(-p.Keep).UTC().Format(time.RFC3339))
		}
	}
	return out, nil
}

func trimOne(ctx context.Context, t Trimmer, p Policy, now time.Time) (Result, error) {
	r := Result{Table: p.Table}
	before := now.Add(-p.Keep)
	for range MaxBatches {
		n, err := t.DeleteHistoryBefore(ctx, p.Table, before, Batch)
		r.Deleted += n
		if err != nil {
			return r, fmt.Errorf("history retention of %s: %w", p.Table, err)
		}
		if n < Batch {
			return r, nil
		}
	}
	r.Partial = true
	return r, nil
}
