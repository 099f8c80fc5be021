package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kaiserhub/kaiser/internal/store"
)

// The control tables (actuators, emergency latches and tokens, device
// credentials) are written by the control writer, so that a commit that
// gates a publish never waits behind the main writer's backlog
// (docs/decisions/0013-control-database.md, here one database, two writers).

var _ store.DeviceCredentials = (*Store)(nil)

// SaveActuatorConfig upserts an actuator config document and waits for the commit.
func (s *Store) SaveActuatorConfig(ctx context.Context, d store.Doc) error {
	return s.control.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO actuator_configs (id, esp_id, gpio, actuator_type, doc, created_at,
			updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (id) DO UPDATE SET esp_id=excluded.esp_id,
			gpio=excluded.gpio, actuator_type=excluded.actuator_type, doc=excluded.doc, updated_at=excluded.updated_at`,
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
	return s.control.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `WITH gone AS (DELETE FROM actuator_configs WHERE id = $1 RETURNING esp_id, gpio)
			DELETE FROM actuator_states st USING gone WHERE st.esp_id = gone.esp_id AND st.gpio = gone.gpio`, id)
		if err != nil {
			return fmt.Errorf("delete actuator config: %w", err)
		}
		return nil
	})
}

func scanDoc(r pgx.Rows) (store.Doc, error) {
	var d store.Doc
	var doc string
	var c, u int64
	err := r.Scan(&d.ID, &d.EspID, &d.GPIO, &d.Kind, &d.Address, &doc, &c, &u)
	d.JSON, d.CreatedAt, d.UpdatedAt = []byte(doc), at(c), at(u)
	return d, err
}

// LoadActuatorConfigs returns every actuator config document.
func (s *Store) LoadActuatorConfigs(ctx context.Context) ([]store.Doc, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT id, esp_id, gpio, actuator_type, '', doc, created_at, updated_at FROM actuator_configs`)
	out, err := collect(rows, err, scanDoc)
	if err != nil {
		return nil, fmt.Errorf("load actuator configs: %w", err)
	}
	return out, nil
}

func saveState(st store.ActuatorState) op {
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO actuator_states (esp_id, gpio, doc, updated_at, version)
			VALUES ($1,$2,$3,$4,$5) ON CONFLICT (esp_id, gpio) DO UPDATE SET doc=excluded.doc,
			updated_at=excluded.updated_at, version=excluded.version WHERE excluded.version > actuator_states.version`,
			st.EspID, st.GPIO, string(st.JSON), st.UpdatedAt.UnixMilli(), st.Version)
		if err != nil {
			return fmt.Errorf("save actuator state: %w", err)
		}
		return nil
	}
}

// SaveActuatorState upserts an actuator's runtime state and waits for the
// commit, through the urgent lane (the upsert keeps the higher version, so
// overtaking a queued state is safe).
func (s *Store) SaveActuatorState(ctx context.Context, st store.ActuatorState) error {
	return s.control.doUrgent(ctx, saveState(st))
}

// QueueActuatorState upserts an actuator's runtime state without waiting.
func (s *Store) QueueActuatorState(ctx context.Context, st store.ActuatorState) error {
	return s.control.submit(ctx, saveState(st))
}

// LoadActuatorStates returns every actuator's runtime state.
func (s *Store) LoadActuatorStates(ctx context.Context) ([]store.ActuatorState, error) {
	rows, err := s.pool.Query(ctx, `SELECT esp_id, gpio, doc, updated_at, version FROM actuator_states`)
	out, err := collect(rows, err, func(r pgx.Rows) (store.ActuatorState, error) {
		var st store.ActuatorState
		var doc string
		var u int64
		err := r.Scan(&st.EspID, &st.GPIO, &doc, &u, &st.Version)
		st.JSON, st.UpdatedAt = []byte(doc), at(u)
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("load actuator states: %w", err)
	}
	return out, nil
}

func saveCommand(c store.ActuatorCommand) (op, error) {
	md, err := json.Marshal(c.Metadata)
	if err != nil {
		return nil, fmt.Errorf("actuator command metadata: %w", err)
	}
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO actuator_history (`+commandCols+`)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)
			ON CONFLICT (id) DO UPDATE SET status=excluded.status, success=excluded.success,
			error_message=excluded.error_message, response_message=excluded.response_message,
			metadata=excluded.metadata, correlation_id=excluded.correlation_id, sent_at=excluded.sent_at,
			completed_at=excluded.completed_at, version=excluded.version
			WHERE excluded.version > actuator_history.version`,
			c.ID, c.EspID, c.GPIO, c.ActuatorType, c.CommandType, c.Command, c.Value, c.Duration, c.IssuedBy,
			c.CorrelationID, c.Status, c.Success, c.Error, c.ResponseMessage, string(md), c.IssuedAt.UnixMilli(),
			ms(c.SentAt), ms(c.CompletedAt), c.Version)
		if err != nil {
			return fmt.Errorf("save actuator command: %w", err)
		}
		return nil
	}, nil
}

// SaveActuatorCommand upserts a history row and waits for the commit
// (urgent lane: an ON is published only after it; the upsert keeps the
// higher version).
func (s *Store) SaveActuatorCommand(ctx context.Context, c store.ActuatorCommand) error {
	save, err := saveCommand(c)
	if err != nil {
		return err
	}
	return s.control.doUrgent(ctx, save)
}

// QueueActuatorCommand upserts a history row without waiting.
func (s *Store) QueueActuatorCommand(ctx context.Context, c store.ActuatorCommand) error {
	save, err := saveCommand(c)
	if err != nil {
		return err
	}
	return s.control.submit(ctx, save)
}

const commandCols = `id, esp_id, gpio, actuator_type, command_type, command, value, duration, issued_by,
	correlation_id, status, success, error_message, response_message, metadata, issued_at, sent_at, completed_at,
	version`

func scanCommand(row pgx.Row) (store.ActuatorCommand, error) {
	var c store.ActuatorCommand
	var sent, completed *int64
	var md string
	var issued int64
	err := row.Scan(&c.ID, &c.EspID, &c.GPIO, &c.ActuatorType, &c.CommandType, &c.Command, &c.Value, &c.Duration,
		&c.IssuedBy, &c.CorrelationID, &c.Status, &c.Success, &c.Error, &c.ResponseMessage, &md, &issued, &sent,
		&completed, &c.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, store.ErrNotFound
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(md), &c.Metadata); err != nil {
		return c, fmt.Errorf("actuator command %s metadata: %w", c.ID, err)
	}
	c.IssuedAt, c.SentAt, c.CompletedAt = at(issued), fromMS(sent), fromMS(completed)
	return c, nil
}

func (s *Store) queryCommands(ctx context.Context, q string, args ...any) ([]store.ActuatorCommand, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	out, err := collect(rows, err, func(r pgx.Rows) (store.ActuatorCommand, error) { return scanCommand(r) })
	if err != nil {
		return nil, fmt.Errorf("query actuator history: %w", err)
	}
	return out, nil
}

// GetActuatorCommand returns one history row by id (store.ErrNotFound if none).
func (s *Store) GetActuatorCommand(ctx context.Context, id string) (store.ActuatorCommand, error) {
	return scanCommand(s.pool.QueryRow(ctx, `SELECT `+commandCols+` FROM actuator_history WHERE id = $1`, id))
}

// FindActuatorCommand returns the command a correlation id names (store.ErrNotFound if none).
func (s *Store) FindActuatorCommand(ctx context.Context, correlationID string) (store.ActuatorCommand, error) {
	return scanCommand(s.pool.QueryRow(ctx, `SELECT `+commandCols+` FROM actuator_history
		WHERE correlation_id = $1 AND status <> '' ORDER BY issued_at DESC LIMIT 1`, correlationID))
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
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM actuator_history WHERE esp_id = $1 AND gpio = $2`,
		espID, gpio).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count actuator history: %w", err)
	}
	rows, err := s.queryCommands(ctx, `SELECT `+commandCols+` FROM actuator_history WHERE esp_id = $1 AND gpio = $2
		ORDER BY issued_at DESC, id DESC LIMIT $3`, espID, gpio, limit)
	return rows, total, err
}

// DeleteActuatorHistoryBefore deletes up to limit finished rows issued
// before the cutoff, oldest first (docs/domain.md §9.1); open commands stay.
func (s *Store) DeleteActuatorHistoryBefore(ctx context.Context, before time.Time, limit int) (int64, error) {
	var n int64
	err := s.control.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM actuator_history WHERE id IN (SELECT id FROM actuator_history
			WHERE issued_at < $1 AND status NOT IN ('queued', 'sent') ORDER BY issued_at LIMIT $2)`,
			before.UnixMilli(), limit)
		if err != nil {
			return fmt.Errorf("delete actuator history: %w", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// saveLatch is the versioned upsert of a latch (docs/decisions/0005).
const saveLatch = `INSERT INTO emergency_latches (scope, esp_id, active, incident_correlation_id, reason,
	activated_by, activated_at, stop_published_at, cleared_by, cleared_at, clear_attempts, rules_paused,
	updated_at, version)
	VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)
	ON CONFLICT (scope) DO UPDATE SET esp_id=excluded.esp_id, active=excluded.active,
	incident_correlation_id=excluded.incident_correlation_id, reason=excluded.reason,
	activated_by=excluded.activated_by, activated_at=excluded.activated_at,
	stop_published_at=excluded.stop_published_at, cleared_by=excluded.cleared_by,
	cleared_at=excluded.cleared_at, clear_attempts=excluded.clear_attempts,
	rules_paused=excluded.rules_paused, updated_at=excluded.updated_at, version=excluded.version
	WHERE excluded.version > emergency_latches.version`

// SaveLatches writes the latches in one transaction and returns once it is
// committed (docs/domain.md §5.2 step 1), through the urgent lane.
func (s *Store) SaveLatches(ctx context.Context, latches []store.EmergencyLatch) error {
	attempts := make([]string, len(latches))
	for i, l := range latches {
		b, err := json.Marshal(l.ClearAttempts)
		if err != nil {
			return fmt.Errorf("latch %s attempts: %w", l.Scope, err)
		}
		if l.ClearAttempts == nil {
			b = []byte("[]")
		}
		attempts[i] = string(b)
	}
	return s.control.doUrgent(ctx, func(ctx context.Context, tx pgx.Tx) error {
		for i, l := range latches {
			_, err := tx.Exec(ctx, saveLatch, l.Scope, l.EspID, l.Active, l.IncidentCorrelationID, l.Reason,
				l.ActivatedBy, l.ActivatedAt.UnixMilli(), ms(l.StopPublishedAt), l.ClearedBy, ms(l.ClearedAt),
				attempts[i], l.RulesPaused, l.UpdatedAt.UnixMilli(), l.Version)
			if err != nil {
				return fmt.Errorf("save latch %s: %w", l.Scope, err)
			}
		}
		return nil
	})
}

// LoadLatches reads every latch record, inactive ones included.
func (s *Store) LoadLatches(ctx context.Context) ([]store.EmergencyLatch, error) {
	rows, err := s.pool.Query(ctx, `SELECT scope, esp_id, active, incident_correlation_id, reason,
		activated_by, activated_at, stop_published_at, cleared_by, cleared_at, clear_attempts, rules_paused,
		updated_at, version FROM emergency_latches ORDER BY scope`)
	out, err := collect(rows, err, func(r pgx.Rows) (store.EmergencyLatch, error) {
		var l store.EmergencyLatch
		var activated, updated int64
		var published, cleared *int64
		var attempts string
		if err := r.Scan(&l.Scope, &l.EspID, &l.Active, &l.IncidentCorrelationID, &l.Reason,
			&l.ActivatedBy, &activated, &published, &l.ClearedBy, &cleared, &attempts, &l.RulesPaused,
			&updated, &l.Version); err != nil {
			return l, err
		}
		if err := json.Unmarshal([]byte(attempts), &l.ClearAttempts); err != nil {
			return l, fmt.Errorf("latch %s attempts: %w", l.Scope, err)
		}
		if len(l.ClearAttempts) == 0 {
			l.ClearAttempts = nil
		}
		l.ActivatedAt, l.UpdatedAt = at(activated), at(updated)
		l.StopPublishedAt, l.ClearedAt = fromMS(published), fromMS(cleared)
		return l, nil
	})
	if err != nil {
		return nil, fmt.Errorf("load latches: %w", err)
	}
	return out, nil
}

// SaveEmergencyToken writes a token and returns once it is committed,
// before the device is told it (urgent lane; tokens are written only here).
func (s *Store) SaveEmergencyToken(ctx context.Context, t store.EmergencyToken) error {
	return s.control.doUrgent(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO emergency_tokens (scope, esp_id, token, sent_at, confirmed_at, updated_at)
			VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (scope) DO UPDATE SET esp_id=excluded.esp_id, token=excluded.token,
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
	rows, err := s.pool.Query(ctx, `SELECT scope, esp_id, token, sent_at, confirmed_at, updated_at
		FROM emergency_tokens ORDER BY scope`)
	out, err := collect(rows, err, func(r pgx.Rows) (store.EmergencyToken, error) {
		var t store.EmergencyToken
		var sent, confirmed *int64
		var updated int64
		err := r.Scan(&t.Scope, &t.EspID, &t.Token, &sent, &confirmed, &updated)
		t.SentAt, t.ConfirmedAt, t.UpdatedAt = fromMS(sent), fromMS(confirmed), at(updated)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("load emergency tokens: %w", err)
	}
	return out, nil
}

// SaveDeviceCredential writes a device's credentials, replacing earlier
// ones, and returns once committed.
func (s *Store) SaveDeviceCredential(ctx context.Context, c store.DeviceCredential) error {
	return s.control.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO device_credentials (esp_id, password_hash, version, issued_by, issued_at)
			VALUES ($1,$2,$3,$4,$5) ON CONFLICT (esp_id) DO UPDATE SET password_hash=excluded.password_hash,
			version=excluded.version, issued_by=excluded.issued_by, issued_at=excluded.issued_at`,
			c.EspID, c.PasswordHash, c.Version, c.IssuedBy, c.IssuedAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("save credentials of %s: %w", c.EspID, err)
		}
		return nil
	})
}

// DeleteDeviceCredential removes a device's credentials, if any, once committed.
func (s *Store) DeleteDeviceCredential(ctx context.Context, espID string) error {
	return s.control.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM device_credentials WHERE esp_id = $1`, espID); err != nil {
			return fmt.Errorf("delete credentials of %s: %w", espID, err)
		}
		return nil
	})
}

// LoadDeviceCredentials reads every device's credentials.
func (s *Store) LoadDeviceCredentials(ctx context.Context) ([]store.DeviceCredential, error) {
	rows, err := s.pool.Query(ctx, `SELECT esp_id, password_hash, version, issued_by, issued_at
		FROM device_credentials ORDER BY esp_id`)
	out, err := collect(rows, err, func(r pgx.Rows) (store.DeviceCredential, error) {
		var c store.DeviceCredential
		var issued int64
		err := r.Scan(&c.EspID, &c.PasswordHash, &c.Version, &c.IssuedBy, &issued)
		c.IssuedAt = at(issued)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("load device credentials: %w", err)
	}
	return out, nil
}
