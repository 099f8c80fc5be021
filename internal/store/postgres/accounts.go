package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kaiserhub/kaiser/internal/store"
)

var (
	_ store.Users = (*Store)(nil)
	_ store.Audit = (*Store)(nil)
)

const userCols = `id, username, email, full_name, role, is_active, password_hash, token_version, created_at, updated_at`

func scanUser(row pgx.Row) (store.User, error) {
	var u store.User
	var created, updated int64
	err := row.Scan(&u.ID, &u.Username, &u.Email, &u.FullName, &u.Role, &u.IsActive, &u.PasswordHash,
		&u.TokenVersion, &created, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, store.ErrNotFound
	}
	u.CreatedAt, u.UpdatedAt = at(created), at(updated)
	return u, err
}

func insertUser(ctx context.Context, tx pgx.Tx, u *store.User) error {
	err := tx.QueryRow(ctx, `INSERT INTO users (username, email, full_name, role, is_active, password_hash,
		token_version, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) RETURNING id`,
		u.Username, u.Email, u.FullName, u.Role, u.IsActive, u.PasswordHash, u.TokenVersion,
		u.CreatedAt.UnixMilli(), u.UpdatedAt.UnixMilli()).Scan(&u.ID)
	if isUnique(err) {
		return store.ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("insert user: %w", err)
	}
	return nil
}

// usersLock serialises first-user creation among replicas.
const usersLock = 0x6b616973 + 2

// CreateFirstUser inserts u only if no user exists, in one transaction.
func (s *Store) CreateFirstUser(ctx context.Context, u store.User) (store.User, error) {
	err := s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, usersLock); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users)`).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return store.ErrSetupDone
		}
		return insertUser(ctx, tx, &u)
	})
	return u, err
}

// CreateUser inserts a user.
func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	err := s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error { return insertUser(ctx, tx, &u) })
	return u, err
}

// GetUser reads a user by id.
func (s *Store) GetUser(ctx context.Context, id int64) (store.User, error) {
	return scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
}

// FindUserByLogin matches a username or an e-mail, case-insensitively.
func (s *Store) FindUserByLogin(ctx context.Context, login string) (store.User, error) {
	return scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users
		WHERE lower(username) = lower($1) OR lower(email) = lower($1) ORDER BY id LIMIT 1`, login))
}

// ListUsers returns every user by id.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userCols+` FROM users ORDER BY id`)
	return collect(rows, err, func(r pgx.Rows) (store.User, error) { return scanUser(r) })
}

func checkAdmins(ctx context.Context, tx pgx.Tx) error {
	var any bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND is_active)`).
		Scan(&any); err != nil {
		return err
	}
	if !any {
		return store.ErrLastAdmin
	}
	return nil
}

// UpdateUser replaces a user's mutable fields; ErrLastAdmin when no
// active admin would remain.
func (s *Store) UpdateUser(ctx context.Context, u store.User) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET email=$1, full_name=$2, role=$3, is_active=$4, password_hash=$5,
			token_version=$6, updated_at=$7 WHERE id=$8`,
			u.Email, u.FullName, u.Role, u.IsActive, u.PasswordHash, u.TokenVersion, u.UpdatedAt.UnixMilli(), u.ID)
		if isUnique(err) {
			return store.ErrDuplicate
		}
		if err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return checkAdmins(ctx, tx)
	})
}

// DeleteUser removes a user; ErrLastAdmin when no active admin would remain.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, id)
		if err != nil {
			return fmt.Errorf("delete user: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return checkAdmins(ctx, tx)
	})
}

// CountUsers counts accounts.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// BlacklistToken records a revoked token until its expiry.
func (s *Store) BlacklistToken(ctx context.Context, jti string, expires time.Time) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO token_blacklist (jti, expires_at) VALUES ($1, $2)
			ON CONFLICT (jti) DO UPDATE SET expires_at = excluded.expires_at`, jti, expires.UnixMilli())
		return err
	})
}

// LoadBlacklist returns the unexpired revoked tokens.
func (s *Store) LoadBlacklist(ctx context.Context, now time.Time) (map[string]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT jti, expires_at FROM token_blacklist WHERE expires_at > $1`,
		now.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var jti string
		var exp int64
		if err := rows.Scan(&jti, &exp); err != nil {
			return nil, err
		}
		out[jti] = time.UnixMilli(exp)
	}
	return out, rows.Err()
}

// PurgeBlacklist deletes entries of tokens that have expired.
func (s *Store) PurgeBlacklist(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM token_blacklist WHERE expires_at <= $1`, now.UnixMilli())
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// AppendAudit queues an audit entry.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	details, err := json.Marshal(e.Details)
	if err != nil || e.Details == nil {
		details = []byte("{}")
	}
	return s.main.submit(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO audit_log (id, event_type, severity, source_type, source_id, status,
			message, details, error_code, error_description, ip_address, user_agent, correlation_id, created_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)`,
			e.ID, e.EventType, e.Severity, e.SourceType, e.SourceID, e.Status, e.Message, string(details), e.ErrorCode,
			e.ErrorDescription, e.IPAddress, e.UserAgent, e.CorrelationID, e.CreatedAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("append audit: %w", err)
		}
		return nil
	})
}

// where builds a WHERE clause with numbered parameters.
type where struct {
	conds []string
	args  []any
}

func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return fmt.Sprintf("$%d", len(w.args))
}

func (w *where) add(cond string) { w.conds = append(w.conds, cond) }

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

func auditWhere(f store.AuditFilter) *where {
	w := &where{}
	if len(f.EventTypes) > 0 {
		w.add("event_type = ANY(" + w.arg(f.EventTypes) + ")")
	}
	if len(f.Severities) > 0 {
		w.add("severity = ANY(" + w.arg(f.Severities) + ")")
	}
	for col, v := range map[string]string{"source_type": f.SourceType, "source_id": f.SourceID,
		"status": f.Status, "error_code": f.ErrorCode} {
		if v != "" {
			w.add(col + " = " + w.arg(v))
		}
	}
	if !f.Start.IsZero() {
		w.add("created_at >= " + w.arg(f.Start.UnixMilli()))
	}
	if !f.End.IsZero() {
		w.add("created_at <= " + w.arg(f.End.UnixMilli()))
	}
	return w
}

// QueryAudit returns matching entries newest first, and the total count.
func (s *Store) QueryAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, int, error) {
	w := auditWhere(f)
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM audit_log`+w.String(), w.args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count audit: %w", err)
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	page := w.String() + ` ORDER BY created_at DESC, seq DESC LIMIT ` + w.arg(f.Limit) + ` OFFSET ` + w.arg(f.Offset)
	rows, err := s.pool.Query(ctx, `SELECT id, event_type, severity, source_type, source_id, status, message,
		details, error_code, error_description, ip_address, user_agent, correlation_id, created_at
		FROM audit_log`+page, w.args...)
	out, err := collect(rows, err, func(r pgx.Rows) (store.AuditEntry, error) {
		var e store.AuditEntry
		var details string
		var created int64
		err := r.Scan(&e.ID, &e.EventType, &e.Severity, &e.SourceType, &e.SourceID, &e.Status, &e.Message,
			&details, &e.ErrorCode, &e.ErrorDescription, &e.IPAddress, &e.UserAgent, &e.CorrelationID, &created)
		_ = json.Unmarshal([]byte(details), &e.Details)
		e.CreatedAt = at(created)
		return e, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("query audit: %w", err)
	}
	return out, total, nil
}

// AuditCounts aggregates entries since a time (zero = all).
func (s *Store) AuditCounts(ctx context.Context, since time.Time) (
	map[string]int, map[string]int, *time.Time, *time.Time, error,
) {
	bySev, byType := map[string]int{}, map[string]int{}
	rows, err := s.pool.Query(ctx, `SELECT severity, event_type, count(*) FROM audit_log
		WHERE created_at >= $1 GROUP BY severity, event_type`, since.UnixMilli())
	if err != nil {
		return nil, nil, nil, nil, err
	}
	for rows.Next() {
		var sev, typ string
		var n int
		if err := rows.Scan(&sev, &typ, &n); err != nil {
			rows.Close()
			return nil, nil, nil, nil, err
		}
		bySev[sev] += n
		byType[typ] += n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, nil, nil, err
	}
	var lo, hi *int64
	if err := s.pool.QueryRow(ctx, `SELECT min(created_at), max(created_at) FROM audit_log WHERE created_at >= $1`,
		since.UnixMilli()).Scan(&lo, &hi); err != nil {
		return nil, nil, nil, nil, err
	}
	return bySev, byType, fromMS(lo), fromMS(hi), nil
}

// DeleteAudit deletes up to limit entries of a severity older than before,
// oldest first, keeping the listed event types.
func (s *Store) DeleteAudit(
	ctx context.Context, severity string, before time.Time, keepTypes []string, limit int,
) (int64, error) {
	if keepTypes == nil {
		keepTypes = []string{}
	}
	var n int64
	err := s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM audit_log WHERE seq IN (SELECT seq FROM audit_log
			WHERE severity = $1 AND created_at < $2 AND NOT (event_type = ANY($3))
			ORDER BY created_at LIMIT $4)`, severity, before.UnixMilli(), keepTypes, limit)
		n = tag.RowsAffected()
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
	err := s.pool.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return v, err == nil, err
}

// PutSetting stores a setting.
func (s *Store) PutSetting(ctx context.Context, key, value string) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
		return err
	})
}
