package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// SaveActuatorConfig upserts an actuator config document and waits for the commit.
func (s *Store) SaveActuatorConfig(ctx context.Context, d store.Doc) error {
	return s.control.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO actuator_configs (id, esp_id, gpio, actuator_type, doc, created_at, updated_at)
			VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET esp_id=excluded.esp_id, gpio=excluded.gpio,
			actuator_type=excluded.actuator_type, doc=excluded.doc, updated_at=excluded.updated_at`,
			d.ID, d.EspID, d.GPIO, d.Kind, string(d.JSON), d.CreatedAt.UnixMilli(), d.UpdatedAt.UnixMilli())
		if isUnique(err) {
			return store.ErrDuplicate
		}
		if err != nil {
			return fmt.Errorf("save actuator config: %w", err)
		}
		return nil
	})
}

// DeleteActuatorConfig removes an actuator config and its runtime state;
// its history stays.
func (s *Store) DeleteActuatorConfig(ctx context.Context, id string) error {
	return s.control.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		var esp string
		var gpio int
		err := tx.QueryRow(`SELECT esp_id, gpio FROM actuator_configs WHERE id = ?`, id).Scan(&esp, &gpio)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find actuator config: %w", err)
		}
		if _, err := tx.Exec(`DELETE FROM actuator_configs WHERE id = ?`, id); err != nil {
			return fmt.Errorf("delete actuator config: %w", err)
		}
		if _, err := tx.Exec(`DELETE FROM actuator_states WHERE esp_id = ? AND gpio = ?`, esp, gpio); err != nil {
			return fmt.Errorf("delete actuator state: %w", err)
		}
		return nil
	})
}

// LoadActuatorConfigs returns every actuator config document.
func (s *Store) LoadActuatorConfigs(ctx context.Context) ([]store.Doc, error) {
	rows, err := s.control.read.QueryContext(ctx,
		`SELECT id, esp_id, gpio, actuator_type, doc, created_at, updated_at FROM actuator_configs`)
	if err != nil {
		return nil, fmt.Errorf("load actuator configs: %w", err)
	}
	defer rows.Close()
	var out []store.Doc
	for rows.Next() {
		var d store.Doc
		var doc string
		var c, u int64
		if err := rows.Scan(&d.ID, &d.EspID, &d.GPIO, &d.Kind, &doc, &c, &u); err != nil {
			return nil, err
		}
		d.JSON, d.CreatedAt, d.UpdatedAt = []byte(doc), time.UnixMilli(c).UTC(), time.UnixMilli(u).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

func saveState(tx *Tx, st store.ActuatorState) error {
	_, err := tx.Exec(`INSERT INTO actuator_states (esp_id, gpio, doc, updated_at, version) VALUES (?,?,?,?,?)
		ON CONFLICT(esp_id, gpio) DO UPDATE SET doc=excluded.doc, updated_at=excluded.updated_at,
		version=excluded.version WHERE excluded.version > actuator_states.version`,
		st.EspID, st.GPIO, string(st.JSON), st.UpdatedAt.UnixMilli(), st.Version)
	if err != nil {
		return fmt.Errorf("save actuator state: %w", err)
	}
	return nil
}

// SaveActuatorState upserts an actuator's runtime state and waits for the
// commit: the caller may publish what the state allows only afterwards, so
// it takes the writer's urgent lane. Overtaking a QueueActuatorState still
// queued is safe: the upsert keeps the higher version.
func (s *Store) SaveActuatorState(ctx context.Context, st store.ActuatorState) error {
	return s.control.writer.DoUrgent(ctx, func(_ context.Context, tx *Tx) error { return saveState(tx, st) })
}

// QueueActuatorState upserts an actuator's runtime state without waiting.
func (s *Store) QueueActuatorState(ctx context.Context, st store.ActuatorState) error {
	return s.control.writer.Submit(ctx, func(_ context.Context, tx *Tx) error { return saveState(tx, st) })
}

// LoadActuatorStates returns every actuator's runtime state.
func (s *Store) LoadActuatorStates(ctx context.Context) ([]store.ActuatorState, error) {
	rows, err := s.control.read.QueryContext(ctx, `SELECT esp_id, gpio, doc, updated_at, version FROM actuator_states`)
	if err != nil {
		return nil, fmt.Errorf("load actuator states: %w", err)
	}
	defer rows.Close()
	var out []store.ActuatorState
	for rows.Next() {
		var st store.ActuatorState
		var doc string
		var u int64
		if err := rows.Scan(&st.EspID, &st.GPIO, &doc, &u, &st.Version); err != nil {
			return nil, err
		}
		st.JSON, st.UpdatedAt = []byte(doc), time.UnixMilli(u).UTC()
		out = append(out, st)
	}
	return out, rows.Err()
}

func nullBool(b *bool) any {
	if b == nil {
		return nil
	}
	return boolInt(*b)
}

func saveCommand(tx *Tx, c store.ActuatorCommand) error {
	md, err := json.Marshal(c.Metadata)
	if err != nil {
		return fmt.Errorf("actuator command metadata: %w", err)
	}
	_, err = tx.Exec(`INSERT INTO actuator_history (id, esp_id, gpio, actuator_type, command_type, command, value,
		duration, issued_by, correlation_id, status, success, error_message, response_message, metadata, issued_at,
		sent_at, completed_at, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET status=excluded.status, success=excluded.success,
		error_message=excluded.error_message, response_message=excluded.response_message, metadata=excluded.metadata,
		correlation_id=excluded.correlation_id, sent_at=excluded.sent_at, completed_at=excluded.completed_at,
		version=excluded.version WHERE excluded.version > actuator_history.version`,
		c.ID, c.EspID, c.GPIO, c.ActuatorType, c.CommandType, c.Command, c.Value, c.Duration, c.IssuedBy,
		c.CorrelationID, c.Status, nullBool(c.Success), c.Error, c.ResponseMessage, string(md), c.IssuedAt.UnixMilli(),
		ms(c.SentAt), ms(c.CompletedAt), c.Version)
	if err != nil {
		return fmt.Errorf("save actuator command: %w", err)
	}
	return nil
}

// SaveActuatorCommand upserts a history row and waits for the commit. An ON
// is published only after it, so it takes the writer's urgent lane;
// overtaking a QueueActuatorCommand of the same row is safe because the
// upsert keeps the higher version.
func (s *Store) SaveActuatorCommand(ctx context.Context, c store.ActuatorCommand) error {
	return s.control.writer.DoUrgent(ctx, func(_ context.Context, tx *Tx) error { return saveCommand(tx, c) })
}

// QueueActuatorCommand upserts a history row without waiting; rows of one
// command keep their order because the writer is one queue.
func (s *Store) QueueActuatorCommand(ctx context.Context, c store.ActuatorCommand) error {
	return s.control.writer.Submit(ctx, func(_ context.Context, tx *Tx) error { return saveCommand(tx, c) })
}

const commandCols = `id, esp_id, gpio, actuator_type, command_type, command, value, duration, issued_by,
	correlation_id, status, success, error_message, response_message, metadata, issued_at, sent_at, completed_at,
	version`

func scanCommand(row interface{ Scan(...any) error }) (store.ActuatorCommand, error) {
	var c store.ActuatorCommand
	var success, sent, completed sql.NullInt64
	var md string
	var issued int64
	err := row.Scan(&c.ID, &c.EspID, &c.GPIO, &c.ActuatorType, &c.CommandType, &c.Command, &c.Value, &c.Duration,
		&c.IssuedBy, &c.CorrelationID, &c.Status, &success, &c.Error, &c.ResponseMessage, &md, &issued, &sent,
		&completed, &c.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return c, store.ErrNotFound
	}
	if err != nil {
		return c, err
	}
	if success.Valid {
		b := success.Int64 != 0
		c.Success = &b
	}
	if err := json.Unmarshal([]byte(md), &c.Metadata); err != nil {
		return c, fmt.Errorf("actuator command %s metadata: %w", c.ID, err)
	}
	c.IssuedAt, c.SentAt, c.CompletedAt = time.UnixMilli(issued).UTC(), fromMS(sent), fromMS(completed)
	return c, nil
}

func (s *Store) queryCommands(ctx context.Context, q string, args ...any) ([]store.ActuatorCommand, error) {
	rows, err := s.control.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query actuator history: %w", err)
	}
	defer rows.Close()
	var out []store.ActuatorCommand
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// GetActuatorCommand returns one history row by id (store.ErrNotFound if none).
func (s *Store) GetActuatorCommand(ctx context.Context, id string) (store.ActuatorCommand, error) {
	return scanCommand(s.control.read.QueryRowContext(ctx, `SELECT `+commandCols+` FROM actuator_history WHERE id = ?`, id))
}

// FindActuatorCommand returns the command a correlation id names (store.ErrNotFound if none).
func (s *Store) FindActuatorCommand(ctx context.Context, correlationID string) (store.ActuatorCommand, error) {
	return scanCommand(s.control.read.QueryRowContext(ctx, `SELECT `+commandCols+` FROM actuator_history
		WHERE correlation_id = ? AND status != '' ORDER BY issued_at DESC LIMIT 1`, correlationID))
}

// OpenActuatorCommands returns the commands still queued or sent, oldest first.
func (s *Store) OpenActuatorCommands(ctx context.Context) ([]store.ActuatorCommand, error) {
	return s.queryCommands(ctx, `SELECT `+commandCols+` FROM actuator_history
		WHERE status IN ('queued', 'sent') ORDER BY issued_at, id`)
}

// ActuatorHistory returns an actuator's newest history rows and their total.
func (s *Store) ActuatorHistory(
	ctx context.Context, espID string, gpio, limit int,
) ([]store.ActuatorCommand, int, error) {
	var total int
	err := s.control.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM actuator_history WHERE esp_id = ? AND gpio = ?`,
		espID, gpio).Scan(&total)
	if err != nil {
		return nil, 0, fmt.Errorf("count actuator history: %w", err)
	}
	rows, err := s.queryCommands(ctx, `SELECT `+commandCols+` FROM actuator_history WHERE esp_id = ? AND gpio = ?
		ORDER BY issued_at DESC, id DESC LIMIT ?`, espID, gpio, limit)
	return rows, total, err
}

// DeleteActuatorHistoryBefore deletes up to limit finished rows issued
// before the cutoff, oldest first (docs/domain.md §9.1); open commands stay.
func (s *Store) DeleteActuatorHistoryBefore(ctx context.Context, before time.Time, limit int) (int64, error) {
	var n int64
	err := s.control.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		res, err := tx.Exec(`DELETE FROM actuator_history WHERE id IN (SELECT id FROM actuator_history
			WHERE issued_at < ? AND status NOT IN ('queued', 'sent') ORDER BY issued_at LIMIT ?)`,
			before.UnixMilli(), limit)
		if err != nil {
			return fmt.Errorf("delete actuator history: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
