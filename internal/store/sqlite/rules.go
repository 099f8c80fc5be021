package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Rule writes wait for their commit: a rule answered as saved is stored
// (docs/api.md §10). History rows and hysteresis states are queued without
// waiting; the engine never blocks on them.

// LoadRules returns every rule, ordered by priority then name.
func (s *Store) LoadRules(ctx context.Context) ([]store.Rule, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, name, enabled, priority, doc, last_triggered,
		created_at, updated_at FROM rules ORDER BY priority, name`)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	defer rows.Close()

	var out []store.Rule
	for rows.Next() {
		var r store.Rule
		var enabled int
		var doc string
		var last sql.NullInt64
		var created, updated int64
		if err := rows.Scan(&r.ID, &r.Name, &enabled, &r.Priority, &doc, &last, &created, &updated); err != nil {
			return nil, fmt.Errorf("scan rule: %w", err)
		}
		r.Enabled, r.Doc, r.LastTriggered = enabled != 0, []byte(doc), fromMS(last)
		r.CreatedAt, r.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// SaveRule upserts a rule; a name another rule has fails with
// store.ErrDuplicate.
func (s *Store) SaveRule(ctx context.Context, r store.Rule) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO rules (id, name, enabled, priority, doc, last_triggered, created_at, updated_at)
			VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET name=excluded.name, enabled=excluded.enabled,
			priority=excluded.priority, doc=excluded.doc, last_triggered=excluded.last_triggered,
			updated_at=excluded.updated_at`,
			r.ID, r.Name, boolInt(r.Enabled), r.Priority, string(r.Doc), ms(r.LastTriggered),
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
func (s *Store) SetRuleTriggered(ctx context.Context, id string, at time.Time) error {
	return s.writer.Submit(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`UPDATE rules SET last_triggered = ? WHERE id = ?`, at.UnixMilli(), id)
		if err != nil {
			return fmt.Errorf("rule %s last_triggered: %w", id, err)
		}
		return nil
	})
}

// DeleteRule removes a rule with its history, hysteresis states and
// continuations (docs/api.md §10.1: its execution history goes with it).
func (s *Store) DeleteRule(ctx context.Context, id string) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		for _, table := range []string{"rule_executions", "rule_hysteresis", "rule_continuations"} {
			if _, err := tx.Exec(`DELETE FROM `+table+` WHERE rule_id = ?`, id); err != nil {
				return fmt.Errorf("delete rule %s from %s: %w", id, table, err)
			}
		}
		if _, err := tx.Exec(`DELETE FROM rules WHERE id = ?`, id); err != nil {
			return fmt.Errorf("delete rule %s: %w", id, err)
		}
		return nil
	})
}

// SaveRuleExecution queues an upsert of a history row; a row of a rule
// deleted meanwhile is not written.
func (s *Store) SaveRuleExecution(ctx context.Context, e store.RuleExecution) error {
	return s.writer.Submit(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO rule_executions (id, rule_id, rule_name, triggered_at, trigger_reason,
			trigger, condition_results, action_results, actions_executed, success, terminal_reason,
			error_message, finished_at, execution_ms)
			SELECT ?,?,?,?,?,?,?,?,?,?,?,?,?,? WHERE EXISTS (SELECT 1 FROM rules WHERE id = ?)
			ON CONFLICT(id) DO UPDATE SET action_results=excluded.action_results,
			actions_executed=excluded.actions_executed, success=excluded.success,
			terminal_reason=excluded.terminal_reason, error_message=excluded.error_message,
			finished_at=excluded.finished_at, execution_ms=excluded.execution_ms`,
			e.ID, e.RuleID, e.RuleName, e.TriggeredAt.UnixMilli(), e.TriggerReason,
			string(e.Trigger), string(e.ConditionResults), string(e.ActionResults), e.ActionsExecuted,
			boolInt(e.Success), e.TerminalReason, e.ErrorMessage, ms(e.FinishedAt), e.ExecutionMS, e.RuleID)
		if err != nil {
			return fmt.Errorf("save rule execution %s: %w", e.ID, err)
		}
		return nil
	})
}

// QueryRuleExecutions returns history rows, newest first, with the
// filter's totals.
func (s *Store) QueryRuleExecutions(ctx context.Context, f store.RuleExecutionFilter) (store.RuleExecutionPage, error) {
	var where []string
	var args []any
	where, args = append(where, "triggered_at >= ?"), append(args, f.From.UnixMilli())
	if f.To != nil {
		where, args = append(where, "triggered_at <= ?"), append(args, f.To.UnixMilli())
	}
	if f.RuleID != "" {
		where, args = append(where, "rule_id = ?"), append(args, f.RuleID)
	}
	if f.Success != nil {
		where, args = append(where, "success = ?"), append(args, boolInt(*f.Success))
	}
	cond := strings.Join(where, " AND ")

	var page store.RuleExecutionPage
	err := s.read.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(success),0) FROM rule_executions WHERE `+cond,
		args...).Scan(&page.Total, &page.Succeeded)
	if err != nil {
		return page, fmt.Errorf("count rule executions: %w", err)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT id, rule_id, rule_name, triggered_at, trigger_reason, trigger,
		condition_results, action_results, actions_executed, success, terminal_reason, error_message,
		finished_at, execution_ms FROM rule_executions WHERE `+cond+` ORDER BY triggered_at DESC, id LIMIT ?`,
		append(args, f.Limit)...)
	if err != nil {
		return page, fmt.Errorf("query rule executions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanExecution(rows)
		if err != nil {
			return page, err
		}
		page.Entries = append(page.Entries, e)
	}
	return page, rows.Err()
}

func scanExecution(rows *sql.Rows) (store.RuleExecution, error) {
	var e store.RuleExecution
	var at int64
	var trig, conds, acts string
	var success int
	var finished, took sql.NullInt64
	err := rows.Scan(&e.ID, &e.RuleID, &e.RuleName, &at, &e.TriggerReason, &trig, &conds, &acts,
		&e.ActionsExecuted, &success, &e.TerminalReason, &e.ErrorMessage, &finished, &took)
	if err != nil {
		return e, fmt.Errorf("scan rule execution: %w", err)
	}
	e.TriggeredAt = time.UnixMilli(at).UTC()
	e.Trigger, e.ConditionResults, e.ActionResults = []byte(trig), []byte(conds), []byte(acts)
	e.Success, e.FinishedAt = success != 0, fromMS(finished)
	if took.Valid {
		v := took.Int64
		e.ExecutionMS = &v
	}
	return e, nil
}

// RuleStats returns each rule's execution count and the outcome of its
// latest finished execution.
func (s *Store) RuleStats(ctx context.Context) (map[string]store.RuleStats, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT e.rule_id, COUNT(*),
		(SELECT success FROM rule_executions l WHERE l.rule_id = e.rule_id AND l.finished_at IS NOT NULL
		 ORDER BY l.triggered_at DESC LIMIT 1)
		FROM rule_executions e GROUP BY e.rule_id`)
	if err != nil {
		return nil, fmt.Errorf("rule stats: %w", err)
	}
	defer rows.Close()
	out := map[string]store.RuleStats{}
	for rows.Next() {
		var id string
		var st store.RuleStats
		var last sql.NullInt64
		if err := rows.Scan(&id, &st.Count, &last); err != nil {
			return nil, fmt.Errorf("scan rule stats: %w", err)
		}
		if last.Valid {
			b := last.Int64 != 0
			st.LastSuccess = &b
		}
		out[id] = st
	}
	return out, rows.Err()
}

// LoadHysteresis returns every stored hysteresis state.
func (s *Store) LoadHysteresis(ctx context.Context) ([]store.HysteresisState, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT rule_id, path, is_active, last_value, last_activation,
		last_deactivation FROM rule_hysteresis`)
	if err != nil {
		return nil, fmt.Errorf("load hysteresis: %w", err)
	}
	defer rows.Close()
	var out []store.HysteresisState
	for rows.Next() {
		var h store.HysteresisState
		var active int
		var value sql.NullFloat64
		var on, off sql.NullInt64
		if err := rows.Scan(&h.RuleID, &h.Path, &active, &value, &on, &off); err != nil {
			return nil, fmt.Errorf("scan hysteresis: %w", err)
		}
		h.Active, h.LastActivation, h.LastDeactivation = active != 0, fromMS(on), fromMS(off)
		if value.Valid {
			v := value.Float64
			h.LastValue = &v
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// SaveHysteresis queues a hysteresis state write.
func (s *Store) SaveHysteresis(ctx context.Context, h store.HysteresisState) error {
	return s.writer.Submit(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO rule_hysteresis (rule_id, path, is_active, last_value, last_activation,
			last_deactivation) VALUES (?,?,?,?,?,?) ON CONFLICT(rule_id, path) DO UPDATE SET
			is_active=excluded.is_active, last_value=excluded.last_value,
			last_activation=excluded.last_activation, last_deactivation=excluded.last_deactivation`,
			h.RuleID, h.Path, boolInt(h.Active), h.LastValue, ms(h.LastActivation), ms(h.LastDeactivation))
		if err != nil {
			return fmt.Errorf("save hysteresis %s/%s: %w", h.RuleID, h.Path, err)
		}
		return nil
	})
}

// ResetHysteresis queues the removal of a rule's hysteresis states.
func (s *Store) ResetHysteresis(ctx context.Context, ruleID string) error {
	return s.writer.Submit(ctx, func(_ context.Context, tx *Tx) error {
		if _, err := tx.Exec(`DELETE FROM rule_hysteresis WHERE rule_id = ?`, ruleID); err != nil {
			return fmt.Errorf("reset hysteresis of %s: %w", ruleID, err)
		}
		return nil
	})
}

// SaveContinuation stores a pending delay continuation and waits for the
// commit, so that a restart finds every delay the engine answered for.
func (s *Store) SaveContinuation(ctx context.Context, c store.RuleContinuation) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO rule_continuations (id, rule_id, execution_id, due_at, doc)
			VALUES (?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET due_at=excluded.due_at, doc=excluded.doc`,
			c.ID, c.RuleID, c.ExecutionID, c.DueAt.UnixMilli(), string(c.Doc))
		if err != nil {
			return fmt.Errorf("save continuation %s: %w", c.ID, err)
		}
		return nil
	})
}

// DeleteContinuation queues the removal of a continuation.
func (s *Store) DeleteContinuation(ctx context.Context, id string) error {
	return s.writer.Submit(ctx, func(_ context.Context, tx *Tx) error {
		if _, err := tx.Exec(`DELETE FROM rule_continuations WHERE id = ?`, id); err != nil {
			return fmt.Errorf("delete continuation %s: %w", id, err)
		}
		return nil
	})
}

// LoadContinuations returns the pending continuations, earliest first.
func (s *Store) LoadContinuations(ctx context.Context) ([]store.RuleContinuation, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, rule_id, execution_id, due_at, doc
		FROM rule_continuations ORDER BY due_at, id`)
	if err != nil {
		return nil, fmt.Errorf("load continuations: %w", err)
	}
	defer rows.Close()
	var out []store.RuleContinuation
	for rows.Next() {
		var c store.RuleContinuation
		var due int64
		var doc string
		if err := rows.Scan(&c.ID, &c.RuleID, &c.ExecutionID, &due, &doc); err != nil {
			return nil, fmt.Errorf("scan continuation: %w", err)
		}
		c.DueAt, c.Doc = time.UnixMilli(due).UTC(), []byte(doc)
		out = append(out, c)
	}
	return out, rows.Err()
}
