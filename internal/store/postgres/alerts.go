package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kaiserhub/kaiser/internal/store"
)

// SaveSensorConfig upserts a sensor config document and waits for the commit.
func (s *Store) SaveSensorConfig(ctx context.Context, d store.Doc) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO sensor_configs (id, esp_id, gpio, sensor_type, address, doc, created_at,
			updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (id) DO UPDATE SET esp_id=excluded.esp_id,
			gpio=excluded.gpio, sensor_type=excluded.sensor_type, address=excluded.address, doc=excluded.doc,
			updated_at=excluded.updated_at`,
			d.ID, d.EspID, d.GPIO, d.Kind, d.Address, string(d.JSON), d.CreatedAt.UnixMilli(), d.UpdatedAt.UnixMilli())
		if isUnique(err) {
			return store.ErrDuplicate
		}
		if err != nil {
			return fmt.Errorf("save sensor config: %w", err)
		}
		return nil
	})
}

// DeleteSensorConfig removes a sensor config document.
func (s *Store) DeleteSensorConfig(ctx context.Context, id string) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM sensor_configs WHERE id = $1`, id)
		return err
	})
}

// LoadSensorConfigs returns every sensor config document.
func (s *Store) LoadSensorConfigs(ctx context.Context) ([]store.Doc, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, esp_id, gpio, sensor_type, address, doc, created_at, updated_at
		FROM sensor_configs`)
	return collect(rows, err, scanDoc)
}

// LoadSensorConfigsOf returns one device's sensor config documents (a
// replica reloads a device's configs it was told have changed, migration 0004).
func (s *Store) LoadSensorConfigsOf(ctx context.Context, espID string) ([]store.Doc, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, esp_id, gpio, sensor_type, address, doc, created_at, updated_at
		FROM sensor_configs WHERE esp_id = $1`, espID)
	docs, err := collect(rows, err, scanDoc)
	if err != nil {
		return nil, fmt.Errorf("load sensor configs of %s: %w", espID, err)
	}
	return docs, nil
}

// SaveAlert upserts an alert with the notification copies of its
// NotifyUsers and waits for the commit.
func (s *Store) SaveAlert(ctx context.Context, a store.Alert) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO alerts (id, alert_key, severity, category, source, title, body, metadata,
			status, suppressed, occurrence_count, created_at, updated_at, acknowledged_at, acknowledged_by,
			resolved_at, resolved_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)
			ON CONFLICT (id) DO UPDATE SET severity=excluded.severity, title=excluded.title, body=excluded.body,
			metadata=excluded.metadata, status=excluded.status, suppressed=excluded.suppressed,
			occurrence_count=excluded.occurrence_count, updated_at=excluded.updated_at,
			acknowledged_at=excluded.acknowledged_at, acknowledged_by=excluded.acknowledged_by,
			resolved_at=excluded.resolved_at, resolved_by=excluded.resolved_by`,
			a.ID, a.Key, a.Severity, a.Category, a.Source, a.Title, a.Body, string(a.Metadata), a.Status, a.Suppressed,
			a.Occurrences, a.CreatedAt.UnixMilli(), a.UpdatedAt.UnixMilli(), ms(a.AcknowledgedAt), a.AcknowledgedBy,
			ms(a.ResolvedAt), a.ResolvedBy)
		if err != nil {
			return fmt.Errorf("save alert: %w", err)
		}
		for _, uid := range a.NotifyUsers {
			if _, err := tx.Exec(ctx, `INSERT INTO notifications (id, user_id, alert_id, created_at)
				VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING`,
				fmt.Sprintf("%s-%d", a.ID, uid), uid, a.ID, a.UpdatedAt.UnixMilli()); err != nil {
				return fmt.Errorf("save notification: %w", err)
			}
		}
		return nil
	})
}

const alertCols = `a.id, a.alert_key, a.severity, a.category, a.source, a.title, a.body, a.metadata,
	a.status, a.suppressed, a.occurrence_count, a.created_at, a.updated_at,
	a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by`

func scanAlert(row pgx.Row, extra ...any) (store.Alert, error) {
	var a store.Alert
	var md string
	var c, u int64
	var ack, res *int64
	dest := append([]any{&a.ID, &a.Key, &a.Severity, &a.Category, &a.Source, &a.Title, &a.Body, &md, &a.Status,
		&a.Suppressed, &a.Occurrences, &c, &u, &ack, &a.AcknowledgedBy, &res, &a.ResolvedBy}, extra...)
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return a, store.ErrNotFound
		}
		return a, err
	}
	a.Metadata = []byte(md)
	a.CreatedAt, a.UpdatedAt = at(c), at(u)
	a.AcknowledgedAt, a.ResolvedAt = fromMS(ack), fromMS(res)
	return a, nil
}

// OpenAlerts returns alerts that are not resolved.
func (s *Store) OpenAlerts(ctx context.Context) ([]store.Alert, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+alertCols+` FROM alerts a WHERE a.status <> 'resolved'`)
	return collect(rows, err, func(r pgx.Rows) (store.Alert, error) { return scanAlert(r) })
}

// ListNotifications returns a user's notifications (newest first) and the total.
func (s *Store) ListNotifications(ctx context.Context, f store.NotificationFilter) ([]store.Notification, int, error) {
	w := &where{}
	w.add("n.user_id = " + w.arg(f.UserID))
	for col, v := range map[string]string{"a.severity": f.Severity, "a.category": f.Category,
		"a.source": f.Source, "a.status": f.Status, "n.id": f.ID} {
		if v != "" {
			w.add(col + " = " + w.arg(v))
		}
	}
	if f.IsRead != nil {
		w.add("n.is_read = " + w.arg(*f.IsRead))
	}
	from := ` FROM notifications n JOIN alerts a ON a.id = n.alert_id`
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT count(*)`+from+w.String(), w.args...).Scan(&total); err != nil {
		return nil, 0, err
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	q := `SELECT ` + alertCols + `, n.id, n.user_id, n.is_read, n.read_at, n.channel` + from + w.String() +
		` ORDER BY n.created_at DESC, n.id LIMIT ` + w.arg(f.Limit) + ` OFFSET ` + w.arg(f.Offset)
	rows, err := s.pool.Query(ctx, q, w.args...)
	out, err := collect(rows, err, func(r pgx.Rows) (store.Notification, error) {
		var n store.Notification
		var readAt *int64
		a, err := scanAlert(r, &n.ID, &n.UserID, &n.IsRead, &readAt, &n.Channel)
		n.Alert, n.ReadAt = a, fromMS(readAt)
		return n, err
	})
	return out, total, err
}

// MarkRead marks notifications of a user read (one id, or all when id is "").
func (s *Store) MarkRead(ctx context.Context, userID int64, id string) (int64, error) {
	now := timeNow().UnixMilli()
	var n int64
	err := s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE notifications SET is_read = true, read_at = $1
			WHERE user_id = $2 AND NOT is_read AND ($3 = '' OR id = $3)`, now, userID, id)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// The event histories that retention trims (docs/domain.md §9.1), oldest
// first by an indexed column, as in the SQLite store.
var historyTrims = map[string]string{
	"device_heartbeats": `DELETE FROM device_heartbeats WHERE id IN (
		SELECT id FROM device_heartbeats WHERE received_at < $1 ORDER BY received_at LIMIT $2)`,
	"device_transitions": `DELETE FROM device_transitions WHERE id IN (
		SELECT id FROM device_transitions WHERE at < $1 ORDER BY at LIMIT $2)`,
	"zone_changes": `DELETE FROM zone_changes WHERE id IN (
		SELECT id FROM zone_changes WHERE at < $1 ORDER BY at LIMIT $2)`,
	"rule_executions": `DELETE FROM rule_executions WHERE id IN (
		SELECT id FROM rule_executions WHERE triggered_at < $1 ORDER BY triggered_at LIMIT $2)`,
	// An open alert stays however old: only resolved ones age out.
	"alerts": `DELETE FROM alerts WHERE id IN (
		SELECT id FROM alerts WHERE created_at < $1 AND status = 'resolved' AND resolved_at < $1
		ORDER BY created_at LIMIT $2)`,
	// Read copies age out, and so does every copy of an alert that is gone.
	"notifications": `DELETE FROM notifications WHERE id IN (
		SELECT id FROM notifications n
		WHERE (n.is_read AND n.read_at < $1)
		   OR (n.created_at < $1 AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id = n.alert_id))
		LIMIT $2)`,
}

// DeleteHistoryBefore deletes at most limit rows of an event history table
// older than before, oldest first, in one transaction, and returns how many went.
func (s *Store) DeleteHistoryBefore(ctx context.Context, table string, before time.Time, limit int) (int64, error) {
	q, ok := historyTrims[table]
	if !ok {
		return 0, fmt.Errorf("delete history: %q is not a history table", table)
	}
	var n int64
	err := s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, q, before.UnixMilli(), limit)
		if err != nil {
			return fmt.Errorf("delete %s history: %w", table, err)
		}
		n = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
