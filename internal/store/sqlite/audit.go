package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

var _ store.Audit = (*Store)(nil)

// AppendAudit queues an audit entry.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	details, err := json.Marshal(e.Details)
	if err != nil || e.Details == nil {
		details = []byte("{}")
	}
	return s.writer.Submit(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`
			INSERT INTO audit_log (
				id, event_type, severity, source_type, source_id, status, message, details,
				error_code, error_description, ip_address, user_agent, correlation_id, created_at
			)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			e.ID, e.EventType, e.Severity, e.SourceType, e.SourceID, e.Status, e.Message, string(details), e.ErrorCode,
			e.ErrorDescription, e.IPAddress, e.UserAgent, e.CorrelationID, e.CreatedAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("append audit: %w", err)
		}
		return nil
	})
}

func auditWhere(f store.AuditFilter) (string, []any) {
	var conds []string
	var args []any
	in := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		conds = append(conds, col+" IN ("+strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")+")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	eq := func(col, v string) {
		if v != "" {
			conds = append(conds, col+" = ?")
			args = append(args, v)
		}
	}
	in("event_type", f.EventTypes)
	in("severity", f.Severities)
	eq("source_type", f.SourceType)
	eq("source_id", f.SourceID)
	eq("status", f.Status)
	eq("error_code", f.ErrorCode)
	if !f.Start.IsZero() {
		conds = append(conds, "created_at >= ?")
		args = append(args, f.Start.UnixMilli())
	}
	if !f.End.IsZero() {
		conds = append(conds, "created_at <= ?")
		args = append(args, f.End.UnixMilli())
	}
	if len(conds) == 0 {
		return "", args
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// QueryAudit returns matching entries newest first, and the total count.
func (s *Store) QueryAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, int, error) {
	where, args := auditWhere(f)
	var total int
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_log`+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count audit: %w", err)
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	rows, err := s.read.QueryContext(ctx, `
		SELECT
			id, event_type, severity, source_type, source_id, status, message, details,
			error_code, error_description, ip_address, user_agent, correlation_id, created_at
		FROM audit_log`+where+`
		ORDER BY created_at DESC, rowid DESC
		LIMIT ? OFFSET ?`,
		append(args, f.Limit, f.Offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("query audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var details string
		var created int64
		if err := rows.Scan(
			&e.ID, &e.EventType, &e.Severity, &e.SourceType, &e.SourceID, &e.Status, &e.Message, &details,
			&e.ErrorCode, &e.ErrorDescription, &e.IPAddress, &e.UserAgent, &e.CorrelationID, &created,
		); err != nil {
			return nil, 0, err
		}
		_ = json.Unmarshal([]byte(details), &e.Details)
		e.CreatedAt = time.UnixMilli(created).UTC()
		out = append(out, e)
	}
	return out, total, rows.Err()
}

// AuditCounts aggregates entries since a time (zero = all).
func (s *Store) AuditCounts(ctx context.Context, since time.Time) (
	map[string]int, map[string]int, *time.Time, *time.Time, error,
) {
	bySev, byType := map[string]int{}, map[string]int{}
	rows, err := s.read.QueryContext(ctx, `
		SELECT severity, event_type, COUNT(*) FROM audit_log
		WHERE created_at >= ?
		GROUP BY severity, event_type`,
		since.UnixMilli())
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var sev, typ string
		var n int
		if err := rows.Scan(&sev, &typ, &n); err != nil {
			return nil, nil, nil, nil, err
		}
		bySev[sev] += n
		byType[typ] += n
	}
	var lo, hi sql.NullInt64
	if err := s.read.QueryRowContext(ctx, `
		SELECT MIN(created_at), MAX(created_at) FROM audit_log
		WHERE created_at >= ?`,
		since.UnixMilli()).Scan(&lo, &hi); err != nil {
		return nil, nil, nil, nil, err
	}
	return bySev, byType, fromMS(lo), fromMS(hi), rows.Err()
}

// DeleteAudit deletes up to limit entries of a severity older than before,
// oldest first, keeping the listed event types.
func (s *Store) DeleteAudit(
	ctx context.Context, severity string, before time.Time, keepTypes []string, limit int,
) (int64, error) {
	keep := ""
	args := []any{severity, before.UnixMilli()}
	if len(keepTypes) > 0 {
		keep = " AND event_type NOT IN (" + strings.TrimSuffix(strings.Repeat("?,", len(keepTypes)), ",") + ")"
		for _, k := range keepTypes {
			args = append(args, k)
		}
	}
	args = append(args, limit)
	var n int64
	err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		res, err := tx.Exec(`
			DELETE FROM audit_log
			WHERE rowid IN (
				SELECT rowid FROM audit_log
				WHERE severity = ? AND created_at < ?`+keep+`
				ORDER BY created_at
				LIMIT ?
			)`,
			args...)
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

// GetSetting reads a stored setting.
func (s *Store) GetSetting(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := s.read.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return v, err == nil, err
}

// PutSetting stores a setting.
func (s *Store) PutSetting(ctx context.Context, key, value string) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`
			INSERT INTO settings (key, value)
			VALUES (?, ?)
			ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
			key, value)
		return err
	})
}
