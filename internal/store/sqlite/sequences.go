package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// SaveSequence upserts a sequence's progress and waits for the commit: a
// step that switches an actuator on is recorded before its command is
// issued, so that a restart knows what to switch off.
func (s *Store) SaveSequence(ctx context.Context, q store.Sequence) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO sequences (id, rule_id, status, started_at, finished_at, doc)
			VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET rule_id=excluded.rule_id, status=excluded.status,
			started_at=excluded.started_at, finished_at=excluded.finished_at, doc=excluded.doc`,
			q.ID, q.RuleID, q.Status, q.StartedAt.UnixMilli(), ms(q.FinishedAt), string(q.Doc))
		if err != nil {
			return fmt.Errorf("save sequence %s: %w", q.ID, err)
		}
		return nil
	})
}

// LoadSequences returns every kept sequence, oldest first.
func (s *Store) LoadSequences(ctx context.Context) ([]store.Sequence, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, rule_id, status, started_at, finished_at, doc
		FROM sequences ORDER BY started_at, id`)
	if err != nil {
		return nil, fmt.Errorf("load sequences: %w", err)
	}
	defer rows.Close()
	var out []store.Sequence
	for rows.Next() {
		var q store.Sequence
		var started int64
		var finished sql.NullInt64
		var doc string
		if err := rows.Scan(&q.ID, &q.RuleID, &q.Status, &started, &finished, &doc); err != nil {
			return nil, fmt.Errorf("scan sequence: %w", err)
		}
		q.StartedAt, q.FinishedAt, q.Doc = time.UnixMilli(started).UTC(), fromMS(finished), []byte(doc)
		out = append(out, q)
	}
	return out, rows.Err()
}

// DeleteSequencesFinishedBefore removes the sequences that ended before t
// and reports how many.
func (s *Store) DeleteSequencesFinishedBefore(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		res, err := tx.Exec(`DELETE FROM sequences WHERE finished_at IS NOT NULL AND finished_at < ?`, t.UnixMilli())
		if err != nil {
			return fmt.Errorf("sweep sequences: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}
