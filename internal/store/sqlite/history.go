package sqlite

import (
	"context"
	"fmt"
	"time"
)

// The event histories that retention trims (docs/domain.md §9.1): each is
// named by the job and deleted oldest first by its own statement, whose
// inner SELECT walks an index or the rowid from the oldest row so that a
// batch costs its size, not the table's.
var historyTrims = map[string]string{
	"device_heartbeats": `DELETE FROM device_heartbeats WHERE id IN (
		SELECT id FROM device_heartbeats WHERE received_at < ?1 ORDER BY id LIMIT ?2)`,
	"device_transitions": `DELETE FROM device_transitions WHERE id IN (
		SELECT id FROM device_transitions WHERE at < ?1 ORDER BY id LIMIT ?2)`,
	"zone_changes": `DELETE FROM zone_changes WHERE id IN (
		SELECT id FROM zone_changes WHERE at < ?1 ORDER BY id LIMIT ?2)`,
	"rule_executions": `DELETE FROM rule_executions WHERE id IN (
		SELECT id FROM rule_executions WHERE triggered_at < ?1 ORDER BY triggered_at LIMIT ?2)`,
	// An open alert stays however old: only resolved ones age out.
	"alerts": `DELETE FROM alerts WHERE id IN (
		SELECT id FROM alerts WHERE created_at < ?1 AND status = 'resolved' AND resolved_at < ?1
		ORDER BY created_at LIMIT ?2)`,
	// Read copies age out, and so does every copy of an alert that is gone.
	"notifications": `DELETE FROM notifications WHERE id IN (
		SELECT id FROM notifications n
		WHERE (n.is_read = 1 AND n.read_at < ?1)
		   OR (n.created_at < ?1 AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id = n.alert_id))
		LIMIT ?2)`,
}

// HistoryTables lists the tables DeleteHistoryBefore trims.
func HistoryTables() []string {
	out := make([]string, 0, len(historyTrims))
	for t := range historyTrims {
		out = append(out, t)
	}
	return out
}

// DeleteHistoryBefore deletes at most limit rows of an event history table
// that are older than before, oldest first, in one transaction, and
// returns how many went.
func (s *Store) DeleteHistoryBefore(ctx context.Context, table string, before time.Time, limit int) (int64, error) {
	q, ok := historyTrims[table]
	if !ok {
		return 0, fmt.Errorf("delete history: %q is not a history table", table)
	}
	var n int64
	err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		res, err := tx.Exec(q, before.UnixMilli(), limit)
		if err != nil {
			return fmt.Errorf("delete %s history: %w", table, err)
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
