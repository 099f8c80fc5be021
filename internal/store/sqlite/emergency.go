package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// saveLatch is the versioned upsert of a latch: an older snapshot that
// reaches the writer after a newer one is dropped by the statement itself.
const saveLatch = `INSERT INTO emergency_latches (scope, esp_id, active, incident_correlation_id, reason,
	activated_by, activated_at, stop_published_at, cleared_by, cleared_at, clear_attempts, rules_paused,
	updated_at, version)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
	ON CONFLICT(scope) DO UPDATE SET esp_id=excluded.esp_id, active=excluded.active,
	incident_correlation_id=excluded.incident_correlation_id, reason=excluded.reason,
	activated_by=excluded.activated_by, activated_at=excluded.activated_at,
	stop_published_at=excluded.stop_published_at, cleared_by=excluded.cleared_by,
	cleared_at=excluded.cleared_at, clear_attempts=excluded.clear_attempts,
	rules_paused=excluded.rules_paused, updated_at=excluded.updated_at, version=excluded.version
	WHERE excluded.version > emergency_latches.version`

// SaveLatches writes the latches in one transaction and returns once it is
// committed (docs/domain.md §5.2 step 1: committed, not queued, before
// anything is published), through the writer's urgent lane: a stop must not
// wait behind bulk writes. Latches are written only here, so no queued write
// of theirs can be overtaken.
func (s *Store) SaveLatches(ctx context.Context, latches []store.EmergencyLatch) error {
	type row struct {
		l        store.EmergencyLatch
		attempts string
	}
	rows := make([]row, 0, len(latches))
	for _, l := range latches {
		attempts, err := json.Marshal(l.ClearAttempts)
		if err != nil {
			return fmt.Errorf("latch %s attempts: %w", l.Scope, err)
		}
		if l.ClearAttempts == nil {
			attempts = []byte("[]")
		}
		rows = append(rows, row{l, string(attempts)})
	}

	return s.control.writer.DoUrgent(ctx, func(_ context.Context, tx *Tx) error {
		for _, r := range rows {
			l := r.l
			_, err := tx.Exec(saveLatch, l.Scope, l.EspID, l.Active, l.IncidentCorrelationID, l.Reason,
				l.ActivatedBy, l.ActivatedAt.UnixMilli(), ms(l.StopPublishedAt), l.ClearedBy, ms(l.ClearedAt),
				r.attempts, l.RulesPaused, l.UpdatedAt.UnixMilli(), l.Version)
			if err != nil {
				return fmt.Errorf("save latch %s: %w", l.Scope, err)
			}
		}
		return nil
	})
}

// LoadLatches reads every latch record, inactive ones included.
func (s *Store) LoadLatches(ctx context.Context) ([]store.EmergencyLatch, error) {
	rows, err := s.control.read.QueryContext(ctx, `SELECT scope, esp_id, active, incident_correlation_id, reason,
		activated_by, activated_at, stop_published_at, cleared_by, cleared_at, clear_attempts, rules_paused,
		updated_at, version FROM emergency_latches ORDER BY scope`)
	if err != nil {
		return nil, fmt.Errorf("load latches: %w", err)
	}
	defer rows.Close()

	var out []store.EmergencyLatch
	for rows.Next() {
		var l store.EmergencyLatch
		var activated, updated int64
		var published, cleared sql.NullInt64
		var attempts string
		if err := rows.Scan(&l.Scope, &l.EspID, &l.Active, &l.IncidentCorrelationID, &l.Reason,
			&l.ActivatedBy, &activated, &published, &l.ClearedBy, &cleared, &attempts, &l.RulesPaused,
			&updated, &l.Version); err != nil {
			return nil, fmt.Errorf("scan latch: %w", err)
		}
		if err := json.Unmarshal([]byte(attempts), &l.ClearAttempts); err != nil {
			return nil, fmt.Errorf("latch %s attempts: %w", l.Scope, err)
		}
		if len(l.ClearAttempts) == 0 {
			l.ClearAttempts = nil
		}
		l.ActivatedAt, l.UpdatedAt = time.UnixMilli(activated).UTC(), time.UnixMilli(updated).UTC()
		l.StopPublishedAt, l.ClearedAt = fromMS(published), fromMS(cleared)
		out = append(out, l)
	}
	return out, rows.Err()
}

// SaveEmergencyToken writes a token and returns once it is committed: a
// token must be stored before a device is told it, or a crash would leave
// the device with a token the hub no longer knows. Tokens are written only
// here, through the urgent lane, so their writes keep their order.
func (s *Store) SaveEmergencyToken(ctx context.Context, t store.EmergencyToken) error {
	return s.control.writer.DoUrgent(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO emergency_tokens (scope, esp_id, token, sent_at, confirmed_at, updated_at)
			VALUES (?,?,?,?,?,?) ON CONFLICT(scope) DO UPDATE SET esp_id=excluded.esp_id, token=excluded.token,
			sent_at=excluded.sent_at, confirmed_at=excluded.confirmed_at, updated_at=excluded.updated_at`,
			t.Scope, t.EspID, t.Token, ms(t.SentAt), ms(t.ConfirmedAt), t.UpdatedAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("save emergency token %s: %w", t.Scope, err)
		}
		return nil
	})
}

// LoadEmergencyTokens reads every stored emergency token.
func (s *Store) LoadEmergencyTokens(ctx context.Context) ([]store.EmergencyToken, error) {
	rows, err := s.control.read.QueryContext(ctx, `SELECT scope, esp_id, token, sent_at, confirmed_at, updated_at
		FROM emergency_tokens ORDER BY scope`)
	if err != nil {
		return nil, fmt.Errorf("load emergency tokens: %w", err)
	}
	defer rows.Close()

	var out []store.EmergencyToken
	for rows.Next() {
		var t store.EmergencyToken
		var sent, confirmed sql.NullInt64
		var updated int64
		if err := rows.Scan(&t.Scope, &t.EspID, &t.Token, &sent, &confirmed, &updated); err != nil {
			return nil, fmt.Errorf("scan emergency token: %w", err)
		}
		t.SentAt, t.ConfirmedAt, t.UpdatedAt = fromMS(sent), fromMS(confirmed), time.UnixMilli(updated).UTC()
		out = append(out, t)
	}
	return out, rows.Err()
}
