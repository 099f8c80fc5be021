package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// SaveSensorConfig upserts a sensor config document and waits for the commit.
func (s *Store) SaveSensorConfig(ctx context.Context, d store.Doc) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`
			INSERT INTO sensor_configs (id, esp_id, gpio, sensor_type, address, doc, created_at, updated_at)
			VALUES (?,?,?,?,?,?,?,?)
			ON CONFLICT(id) DO UPDATE SET
				esp_id=excluded.esp_id,
				gpio=excluded.gpio,
				sensor_type=excluded.sensor_type,
				address=excluded.address,
				doc=excluded.doc,
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
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`DELETE FROM sensor_configs WHERE id = ?`, id)
		return err
	})
}

// LoadSensorConfigs returns every sensor config document.
func (s *Store) LoadSensorConfigs(ctx context.Context) ([]store.Doc, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT id, esp_id, gpio, sensor_type, address, doc, created_at, updated_at
		FROM sensor_configs`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Doc
	for rows.Next() {
		var d store.Doc
		var doc string
		var c, u int64
		if err := rows.Scan(&d.ID, &d.EspID, &d.GPIO, &d.Kind, &d.Address, &doc, &c, &u); err != nil {
			return nil, err
		}
		d.JSON, d.CreatedAt, d.UpdatedAt = []byte(doc), time.UnixMilli(c).UTC(), time.UnixMilli(u).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// SaveConfigPush records a device's last config push.
func (s *Store) SaveConfigPush(ctx context.Context, espID, correlationID, status string, doc []byte) error {
	return s.writer.Submit(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`
			INSERT INTO config_pushes (esp_id, correlation_id, status, doc, updated_at)
			VALUES (?,?,?,?,?)
			ON CONFLICT(esp_id) DO UPDATE SET
				correlation_id=excluded.correlation_id,
				status=excluded.status,
				doc=excluded.doc,
				updated_at=excluded.updated_at`,
			espID, correlationID, status, string(doc), time.Now().UnixMilli())
		return err
	})
}

// LoadConfigPushes returns the last push document per device.
func (s *Store) LoadConfigPushes(ctx context.Context) (map[string][]byte, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT esp_id, doc FROM config_pushes`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id, doc string
		if err := rows.Scan(&id, &doc); err != nil {
			return nil, err
		}
		out[id] = []byte(doc)
	}
	return out, rows.Err()
}

// SaveAlert upserts an alert and waits for the commit.
func (s *Store) SaveAlert(ctx context.Context, a store.Alert) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`
			INSERT INTO alerts (
				id, alert_key, severity, category, source, title, body, metadata, status, suppressed,
				occurrence_count, created_at, updated_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by
			)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
			ON CONFLICT(id) DO UPDATE SET
				severity=excluded.severity,
				title=excluded.title,
				body=excluded.body,
				metadata=excluded.metadata,
				status=excluded.status,
				suppressed=excluded.suppressed,
				occurrence_count=excluded.occurrence_count,
				updated_at=excluded.updated_at,
				acknowledged_at=excluded.acknowledged_at,
				acknowledged_by=excluded.acknowledged_by,
				resolved_at=excluded.resolved_at,
				resolved_by=excluded.resolved_by`,
			a.ID, a.Key, a.Severity, a.Category, a.Source, a.Title, a.Body, string(a.Metadata), a.Status, boolInt(a.Suppressed),
			a.Occurrences, a.CreatedAt.UnixMilli(), a.UpdatedAt.UnixMilli(), ms(a.AcknowledgedAt), a.AcknowledgedBy,
			ms(a.ResolvedAt), a.ResolvedBy)
		if err != nil {
			return fmt.Errorf("save alert: %w", err)
		}
		for _, uid := range a.NotifyUsers {
			if _, err := tx.Exec(`
				INSERT INTO notifications (id, user_id, alert_id, created_at)
				VALUES (?,?,?,?)`,
				a.ID+fmt.Sprintf("-%d", uid), uid, a.ID, a.UpdatedAt.UnixMilli()); err != nil && !isUnique(err) {
				return fmt.Errorf("save notification: %w", err)
			}
		}
		return nil
	})
}

const alertCols = `
	a.id, a.alert_key, a.severity, a.category, a.source, a.title, a.body, a.metadata,
	a.status, a.suppressed, a.occurrence_count, a.created_at, a.updated_at,
	a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by`

func scanAlert(row interface{ Scan(...any) error }, extra ...any) (store.Alert, error) {
	var a store.Alert
	var md string
	var sup int
	var c, u int64
	var ack, res sql.NullInt64
	dest := append([]any{&a.ID, &a.Key, &a.Severity, &a.Category, &a.Source, &a.Title, &a.Body, &md, &a.Status, &sup,
		&a.Occurrences, &c, &u, &ack, &a.AcknowledgedBy, &res, &a.ResolvedBy}, extra...)
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return a, store.ErrNotFound
		}
		return a, err
	}
	a.Metadata, a.Suppressed = []byte(md), sup != 0
	a.CreatedAt, a.UpdatedAt = time.UnixMilli(c).UTC(), time.UnixMilli(u).UTC()
	a.AcknowledgedAt, a.ResolvedAt = fromMS(ack), fromMS(res)
	return a, nil
}

// OpenAlerts returns alerts that are not resolved.
func (s *Store) OpenAlerts(ctx context.Context) ([]store.Alert, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+alertCols+` FROM alerts a WHERE a.status != 'resolved'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ListNotifications returns a user's notifications (newest first) and the total.
func (s *Store) ListNotifications(ctx context.Context, f store.NotificationFilter) ([]store.Notification, int, error) {
	where, args := ` WHERE n.user_id = ?`, []any{f.UserID}
	add := func(cond string, v any) { where += " AND " + cond; args = append(args, v) }
	if f.Severity != "" {
		add("a.severity = ?", f.Severity)
	}
	if f.Category != "" {
		add("a.category = ?", f.Category)
	}
	if f.Source != "" {
		add("a.source = ?", f.Source)
	}
	if f.Status != "" {
		add("a.status = ?", f.Status)
	}
	if f.IsRead != nil {
		add("n.is_read = ?", boolInt(*f.IsRead))
	}
	if f.ID != "" {
		add("n.id = ?", f.ID)
	}
	var total int
	if err := s.read.QueryRowContext(ctx, `
		SELECT COUNT(*) FROM notifications n
		JOIN alerts a ON a.id = n.alert_id`+where,
		args...).Scan(&total); err != nil {
		return nil, 0, err
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	rows, err := s.read.QueryContext(ctx, `
		SELECT `+alertCols+`, n.id, n.user_id, n.is_read, n.read_at, n.channel
		FROM notifications n
		JOIN alerts a ON a.id = n.alert_id`+where+`
		ORDER BY n.created_at DESC, n.id
		LIMIT ? OFFSET ?`,
		append(args, f.Limit, f.Offset)...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []store.Notification
	for rows.Next() {
		var n store.Notification
		var read int
		var readAt sql.NullInt64
		a, err := scanAlert(rows, &n.ID, &n.UserID, &read, &readAt, &n.Channel)
		if err != nil {
			return nil, 0, err
		}
		n.Alert, n.IsRead, n.ReadAt = a, read != 0, fromMS(readAt)
		out = append(out, n)
	}
	return out, total, rows.Err()
}

// MarkRead marks notifications of a user read (one id, or all when id is "").
func (s *Store) MarkRead(ctx context.Context, userID int64, id string) (int64, error) {
	var n int64
	err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		q := `
			UPDATE notifications SET is_read = 1, read_at = ?
			WHERE user_id = ? AND is_read = 0`
		args := []any{time.Now().UnixMilli(), userID}
		if id != "" {
			q += ` AND id = ?`
			args = append(args, id)
		}
		res, err := tx.Exec(q, args...)
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
