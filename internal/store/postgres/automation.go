package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Zones, rules and sequences. As in the SQLite store, zone and rule writes
// wait for their commit; history rows, hysteresis states and
// last_triggered are queued.

// LoadZones returns every zone, ordered by id.
func (s *Store) LoadZones(ctx context.Context) ([]store.Zone, error) {
	rows, err := s.pool.Query(ctx, `SELECT zone_id, name, description, status, created_at, updated_at
		FROM zones ORDER BY zone_id`)
	out, err := collect(rows, err, func(r pgx.Rows) (store.Zone, error) {
		var z store.Zone
		var c, u int64
		err := r.Scan(&z.ZoneID, &z.Name, &z.Description, &z.Status, &c, &u)
		z.CreatedAt, z.UpdatedAt = at(c), at(u)
		return z, err
	})
	if err != nil {
		return nil, fmt.Errorf("load zones: %w", err)
	}
	return out, nil
}

// SaveZone upserts a zone.
func (s *Store) SaveZone(ctx context.Context, z store.Zone) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO zones (zone_id, name, description, status, created_at, updated_at)
			VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (zone_id) DO UPDATE SET name=excluded.name,
			description=excluded.description, status=excluded.status, updated_at=excluded.updated_at`,
			z.ZoneID, z.Name, z.Description, z.Status, z.CreatedAt.UnixMilli(), z.UpdatedAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("save zone %s: %w", z.ZoneID, err)
		}
		return nil
	})
}

// DeleteZone removes a zone.
func (s *Store) DeleteZone(ctx context.Context, zoneID string) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM zones WHERE zone_id = $1`, zoneID); err != nil {
			return fmt.Errorf("delete zone %s: %w", zoneID, err)
		}
		return nil
	})
}

// LoadSubzones returns every subzone, ordered by device and id.
func (s *Store) LoadSubzones(ctx context.Context) ([]store.Subzone, error) {
	rows, err := s.pool.Query(ctx, `SELECT esp_id, subzone_id, name, parent_zone_id, gpios, safe_mode,
		status, error_code, error_message, last_ack_at, created_at, updated_at
		FROM subzones ORDER BY esp_id, subzone_id`)
	out, err := collect(rows, err, func(r pgx.Rows) (store.Subzone, error) {
		var sz store.Subzone
		var gpios string
		var lastAck *int64
		var c, u int64
		if err := r.Scan(&sz.EspID, &sz.SubzoneID, &sz.Name, &sz.ParentZoneID, &gpios, &sz.SafeMode,
			&sz.Status, &sz.ErrorCode, &sz.ErrorMessage, &lastAck, &c, &u); err != nil {
			return sz, err
		}
		if err := json.Unmarshal([]byte(gpios), &sz.GPIOs); err != nil {
			return sz, fmt.Errorf("subzone %s/%s gpios: %w", sz.EspID, sz.SubzoneID, err)
		}
		sz.LastAckAt, sz.CreatedAt, sz.UpdatedAt = fromMS(lastAck), at(c), at(u)
		return sz, nil
	})
	if err != nil {
		return nil, fmt.Errorf("load subzones: %w", err)
	}
	return out, nil
}

// SaveSubzone upserts a subzone.
func (s *Store) SaveSubzone(ctx context.Context, sz store.Subzone) error {
	gpios, err := json.Marshal(sz.GPIOs)
	if err != nil {
		return fmt.Errorf("subzone %s/%s gpios: %w", sz.EspID, sz.SubzoneID, err)
	}
	if sz.GPIOs == nil {
		gpios = []byte("[]")
	}
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO subzones (esp_id, subzone_id, name, parent_zone_id, gpios, safe_mode,
			status, error_code, error_message, last_ack_at, created_at, updated_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
			ON CONFLICT (esp_id, subzone_id) DO UPDATE SET name=excluded.name, parent_zone_id=excluded.parent_zone_id,
			gpios=excluded.gpios, safe_mode=excluded.safe_mode, status=excluded.status,
			error_code=excluded.error_code, error_message=excluded.error_message,
			last_ack_at=excluded.last_ack_at, updated_at=excluded.updated_at`,
			sz.EspID, sz.SubzoneID, sz.Name, sz.ParentZoneID, string(gpios), sz.SafeMode, sz.Status, sz.ErrorCode,
			sz.ErrorMessage, ms(sz.LastAckAt), sz.CreatedAt.UnixMilli(), sz.UpdatedAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("save subzone %s/%s: %w", sz.EspID, sz.SubzoneID, err)
		}
		return nil
	})
}

// DeleteSubzone removes one subzone of a device.
func (s *Store) DeleteSubzone(ctx context.Context, espID, subzoneID string) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM subzones WHERE esp_id = $1 AND subzone_id = $2`,
			espID, subzoneID); err != nil {
			return fmt.Errorf("delete subzone %s/%s: %w", espID, subzoneID, err)
		}
		return nil
	})
}

// AppendZoneChange records one zone assignment or removal of a device.
func (s *Store) AppendZoneChange(ctx context.Context, c store.ZoneChange) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO zone_changes (esp_id, from_zone_id, to_zone_id, strategy, actor,
			correlation_id, at) VALUES ($1,$2,$3,$4,$5,$6,$7)`,
			c.EspID, c.FromZoneID, c.ToZoneID, c.Strategy, c.Actor, c.CorrelationID, c.At.UnixMilli())
		if err != nil {
			return fmt.Errorf("append zone change %s: %w", c.EspID, err)
		}
		return nil
	})
}

// ZoneChanges returns a device's zone history, oldest first.
func (s *Store) ZoneChanges(ctx context.Context, espID string) ([]store.ZoneChange, error) {
	rows, err := s.pool.Query(ctx, `SELECT esp_id, from_zone_id, to_zone_id, strategy, actor, correlation_id, at
		FROM zone_changes WHERE esp_id = $1 ORDER BY id`, espID)
	return collect(rows, err, func(r pgx.Rows) (store.ZoneChange, error) {
		var c store.ZoneChange
		var ts int64
		err := r.Scan(&c.EspID, &c.FromZoneID, &c.ToZoneID, &c.Strategy, &c.Actor, &c.CorrelationID, &ts)
		c.At = at(ts)
		return c, err
	})
}

// LoadRules returns every rule, ordered by priority then name.
func (s *Store) LoadRules(ctx context.Context) ([]store.Rule, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, enabled, priority, doc, last_triggered, created_at, updated_at
		FROM rules ORDER BY priority, name`)
	out, err := collect(rows, err, func(r pgx.Rows) (store.Rule, error) {
		var x store.Rule
		var doc string
		var last *int64
		var c, u int64
		err := r.Scan(&x.ID, &x.Name, &x.Enabled, &x.Priority, &doc, &last, &c, &u)
		x.Doc, x.LastTriggered, x.CreatedAt, x.UpdatedAt = []byte(doc), fromMS(last), at(c), at(u)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	return out, nil
}

// SaveRule upserts a rule; a name another rule has fails with store.ErrDuplicate.
func (s *Store) SaveRule(ctx context.Context, r store.Rule) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO rules (id, name, enabled, priority, doc, last_triggered, created_at,
			updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (id) DO UPDATE SET name=excluded.name,
			enabled=excluded.enabled, priority=excluded.priority, doc=excluded.doc,
			last_triggered=excluded.last_triggered, updated_at=excluded.updated_at`,
			r.ID, r.Name, r.Enabled, r.Priority, string(r.Doc), ms(r.LastTriggered),
			r.CreatedAt.UnixMilli(), r.UpdatedAt.UnixMilli())
		if isUnique(err) {
			return store.ErrDuplicate
		}
		if err != nil {
			return fmt.Errorf("save rule %s: %w", r.ID, err)
		}
		return nil
	})
}

// SetRuleTriggered queues a rule's last_triggered.
func (s *Store) SetRuleTriggered(ctx context.Context, id string, t time.Time) error {
	return s.main.submit(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE rules SET last_triggered = $1 WHERE id = $2`, t.UnixMilli(), id); err != nil {
			return fmt.Errorf("rule %s last_triggered: %w", id, err)
		}
		return nil
	})
}

// DeleteRule removes a rule with its history, hysteresis states and continuations.
func (s *Store) DeleteRule(ctx context.Context, id string) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		for _, table := range []string{"rule_executions", "rule_hysteresis", "rule_continuations"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE rule_id = $1`, id); err != nil {
				return fmt.Errorf("delete rule %s from %s: %w", id, table, err)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM rules WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete rule %s: %w", id, err)
		}
		return nil
	})
}

// SaveRuleExecution queues an upsert of a history row; a row of a rule
// deleted meanwhile is not written.
func (s *Store) SaveRuleExecution(ctx context.Context, e store.RuleExecution) error {
	return s.main.submit(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO rule_executions (id, rule_id, rule_name, triggered_at, trigger_reason,
			trigger, condition_results, action_results, actions_executed, success, terminal_reason,
			error_message, finished_at, execution_ms)
			SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14 WHERE EXISTS (SELECT 1 FROM rules WHERE id = $2)
			ON CONFLICT (id) DO UPDATE SET action_results=excluded.action_results,
			actions_executed=excluded.actions_executed, success=excluded.success,
			terminal_reason=excluded.terminal_reason, error_message=excluded.error_message,
			finished_at=excluded.finished_at, execution_ms=excluded.execution_ms`,
			e.ID, e.RuleID, e.RuleName, e.TriggeredAt.UnixMilli(), e.TriggerReason,
			string(e.Trigger), string(e.ConditionResults), string(e.ActionResults), e.ActionsExecuted,
			e.Success, e.TerminalReason, e.ErrorMessage, ms(e.FinishedAt), e.ExecutionMS)
		if err != nil {
			return fmt.Errorf("save rule execution %s: %w", e.ID, err)
		}
		return nil
	})
}

// QueryRuleExecutions returns history rows, newest first, with the filter's totals.
func (s *Store) QueryRuleExecutions(ctx context.Context, f store.RuleExecutionFilter) (store.RuleExecutionPage, error) {
	w := &where{}
	w.add("triggered_at >= " + w.arg(f.From.UnixMilli()))
	if f.To != nil {
		w.add("triggered_at <= " + w.arg(f.To.UnixMilli()))
	}
	if f.RuleID != "" {
		w.add("rule_id = " + w.arg(f.RuleID))
	}
	if f.Success != nil {
		w.add("success = " + w.arg(*f.Success))
	}
	var page store.RuleExecutionPage
	if err := s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE success) FROM rule_executions`+
		w.String(), w.args...).Scan(&page.Total, &page.Succeeded); err != nil {
		return page, fmt.Errorf("count rule executions: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT id, rule_id, rule_name, triggered_at, trigger_reason, trigger,
		condition_results, action_results, actions_executed, success, terminal_reason, error_message,
		finished_at, execution_ms FROM rule_executions`+w.String()+` ORDER BY triggered_at DESC, id LIMIT `+
		w.arg(f.Limit), w.args...)
	entries, err := collect(rows, err, func(r pgx.Rows) (store.RuleExecution, error) {
		var e store.RuleExecution
		var ts int64
		var trig, conds, acts string
		var finished *int64
		err := r.Scan(&e.ID, &e.RuleID, &e.RuleName, &ts, &e.TriggerReason, &trig, &conds, &acts,
			&e.ActionsExecuted, &e.Success, &e.TerminalReason, &e.ErrorMessage, &finished, &e.ExecutionMS)
		e.TriggeredAt, e.FinishedAt = at(ts), fromMS(finished)
		e.Trigger, e.ConditionResults, e.ActionResults = []byte(trig), []byte(conds), []byte(acts)
		return e, err
	})
	if err != nil {
		return page, fmt.Errorf("query rule executions: %w", err)
	}
	page.Entries = entries
	return page, nil
}

// RuleStats returns each rule's execution count and the outcome of its
// latest finished execution.
func (s *Store) RuleStats(ctx context.Context) (map[string]store.RuleStats, error) {
	rows, err := s.pool.Query(ctx, `SELECT rule_id, count(*),
		(array_agg(success ORDER BY triggered_at DESC) FILTER (WHERE finished_at IS NOT NULL))[1]
		FROM rule_executions GROUP BY rule_id`)
	if err != nil {
		return nil, fmt.Errorf("rule stats: %w", err)
	}
	defer rows.Close()
	out := map[string]store.RuleStats{}
	for rows.Next() {
		var id string
		var st store.RuleStats
		if err := rows.Scan(&id, &st.Count, &st.LastSuccess); err != nil {
			return nil, fmt.Errorf("scan rule stats: %w", err)
		}
		out[id] = st
	}
	return out, rows.Err()
}

// LoadHysteresis returns every stored hysteresis state.
func (s *Store) LoadHysteresis(ctx context.Context) ([]store.HysteresisState, error) {
	rows, err := s.pool.Query(ctx, `SELECT rule_id, path, is_active, last_value, last_activation,
		last_deactivation FROM rule_hysteresis`)
	out, err := collect(rows, err, func(r pgx.Rows) (store.HysteresisState, error) {
		var h store.HysteresisState
		var on, off *int64
		err := r.Scan(&h.RuleID, &h.Path, &h.Active, &h.LastValue, &on, &off)
		h.LastActivation, h.LastDeactivation = fromMS(on), fromMS(off)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("load hysteresis: %w", err)
	}
	return out, nil
}

// SaveHysteresis queues a hysteresis state write.
func (s *Store) SaveHysteresis(ctx context.Context, h store.HysteresisState) error {
	return s.main.submit(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO rule_hysteresis (rule_id, path, is_active, last_value, last_activation,
			last_deactivation) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (rule_id, path) DO UPDATE SET
			is_active=excluded.is_active, last_value=excluded.last_value,
			last_activation=excluded.last_activation, last_deactivation=excluded.last_deactivation`,
			h.RuleID, h.Path, h.Active, h.LastValue, ms(h.LastActivation), ms(h.LastDeactivation))
		if err != nil {
			return fmt.Errorf("save hysteresis %s/%s: %w", h.RuleID, h.Path, err)
		}
		return nil
	})
}

// ResetHysteresis queues the removal of a rule's hysteresis states.
func (s *Store) ResetHysteresis(ctx context.Context, ruleID string) error {
	return s.main.submit(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM rule_hysteresis WHERE rule_id = $1`, ruleID); err != nil {
			return fmt.Errorf("reset hysteresis of %s: %w", ruleID, err)
		}
		return nil
	})
}

// SaveContinuation stores a pending delay continuation and waits for the commit.
func (s *Store) SaveContinuation(ctx context.Context, c store.RuleContinuation) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO rule_continuations (id, rule_id, execution_id, due_at, doc)
			VALUES ($1,$2,$3,$4,$5) ON CONFLICT (id) DO UPDATE SET due_at=excluded.due_at, doc=excluded.doc`,
			c.ID, c.RuleID, c.ExecutionID, c.DueAt.UnixMilli(), string(c.Doc))
		if err != nil {
			return fmt.Errorf("save continuation %s: %w", c.ID, err)
		}
		return nil
	})
}

// DeleteContinuation queues the removal of a continuation.
func (s *Store) DeleteContinuation(ctx context.Context, id string) error {
	return s.main.submit(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM rule_continuations WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete continuation %s: %w", id, err)
		}
		return nil
	})
}

// LoadContinuations returns the pending continuations, earliest first.
func (s *Store) LoadContinuations(ctx context.Context) ([]store.RuleContinuation, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, rule_id, execution_id, due_at, doc FROM rule_continuations
		ORDER BY due_at, id`)
	out, err := collect(rows, err, func(r pgx.Rows) (store.RuleContinuation, error) {
		var c store.RuleContinuation
		var due int64
		var doc string
		err := r.Scan(&c.ID, &c.RuleID, &c.ExecutionID, &due, &doc)
		c.DueAt, c.Doc = at(due), []byte(doc)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("load continuations: %w", err)
	}
	return out, nil
}

// SaveSequence upserts a sequence's progress and waits for the commit.
func (s *Store) SaveSequence(ctx context.Context, q store.Sequence) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO sequences (id, rule_id, status, started_at, finished_at, doc)
			VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (id) DO UPDATE SET rule_id=excluded.rule_id,
			status=excluded.status, started_at=excluded.started_at, finished_at=excluded.finished_at, doc=excluded.doc`,
			q.ID, q.RuleID, q.Status, q.StartedAt.UnixMilli(), ms(q.FinishedAt), string(q.Doc))
		if err != nil {
			return fmt.Errorf("save sequence %s: %w", q.ID, err)
		}
		return nil
	})
}

// LoadSequences returns every kept sequence, oldest first.
func (s *Store) LoadSequences(ctx context.Context) ([]store.Sequence, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, rule_id, status, started_at, finished_at, doc FROM sequences
		ORDER BY started_at, id`)
	out, err := collect(rows, err, func(r pgx.Rows) (store.Sequence, error) {
		var q store.Sequence
		var started int64
		var finished *int64
		var doc string
		err := r.Scan(&q.ID, &q.RuleID, &q.Status, &started, &finished, &doc)
		q.StartedAt, q.FinishedAt, q.Doc = at(started), fromMS(finished), []byte(doc)
		return q, err
	})
	if err != nil {
		return nil, fmt.Errorf("load sequences: %w", err)
	}
	return out, nil
}

// DeleteSequencesFinishedBefore removes the sequences that ended before t.
func (s *Store) DeleteSequencesFinishedBefore(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM sequences WHERE finished_at IS NOT NULL AND finished_at < $1`,
			t.UnixMilli())
		if err != nil {
			return fmt.Errorf("sweep sequences: %w", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return int(n), err
}
