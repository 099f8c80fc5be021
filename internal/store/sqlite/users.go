package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

var _ store.Users = (*Store)(nil)

const userCols = `
	id, username, email, full_name, role, is_active,
	password_hash, token_version, created_at, updated_at`

func scanUser(row interface{ Scan(...any) error }) (store.User, error) {
	var u store.User
	var active int
	var created, updated int64
	err := row.Scan(
		&u.ID, &u.Username, &u.Email, &u.FullName, &u.Role, &active,
		&u.PasswordHash, &u.TokenVersion, &created, &updated,
	)
	if errors.Is(err, sql.ErrNoRows) {
		return u, store.ErrNotFound
	}
	u.IsActive = active != 0
	u.CreatedAt, u.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return u, err
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func insertUser(tx *Tx, u *store.User) error {
	res, err := tx.Exec(`
		INSERT INTO users (
			username, email, full_name, role, is_active,
			password_hash, token_version, created_at, updated_at
		)
		VALUES (?,?,?,?,?,?,?,?,?)`,
		u.Username, u.Email, u.FullName, u.Role, boolInt(u.IsActive),
		u.PasswordHash, u.TokenVersion, u.CreatedAt.UnixMilli(), u.UpdatedAt.UnixMilli())
	if isUnique(err) {
		return store.ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("insert user: %w", err)
	}
	u.ID, err = res.LastInsertId()
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// CreateFirstUser inserts u only if no user exists, in one transaction.
func (s *Store) CreateFirstUser(ctx context.Context, u store.User) (store.User, error) {
	err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return store.ErrSetupDone
		}
		return insertUser(tx, &u)
	})
	return u, err
}

// CreateUser inserts a user.
func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error { return insertUser(tx, &u) })
	return u, err
}

// GetUser reads a user by id, on the reserved connections: every
// authenticated request asks it.
func (s *Store) GetUser(ctx context.Context, id int64) (store.User, error) {
	return scanUser(s.prio.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
}

// FindUserByLogin matches a username, or an email case-insensitively, on
// the reserved connections: a login must not wait for history queries.
func (s *Store) FindUserByLogin(ctx context.Context, login string) (store.User, error) {
	return scanUser(s.prio.QueryRowContext(ctx, `
		SELECT `+userCols+` FROM users
		WHERE username = ? OR email = ?
		LIMIT 1`,
		login, login))
}

// ListUsers returns every user by id.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func checkAdmins(tx *Tx) error {
	var n int
	if err := tx.QueryRow(`SELECT COUNT(*) FROM users WHERE role = 'admin' AND is_active = 1`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return store.ErrLastAdmin
	}
	return nil
}

// UpdateUser replaces a user's mutable fields.
func (s *Store) UpdateUser(ctx context.Context, u store.User) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		res, err := tx.Exec(`
			UPDATE users SET
				email=?, full_name=?, role=?, is_active=?,
				password_hash=?, token_version=?, updated_at=?
			WHERE id=?`,
			u.Email, u.FullName, u.Role, boolInt(u.IsActive),
			u.PasswordHash, u.TokenVersion, u.UpdatedAt.UnixMilli(), u.ID)
		if isUnique(err) {
			return store.ErrDuplicate
		}
		if err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return checkAdmins(tx)
	})
}

// DeleteUser removes a user.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		res, err := tx.Exec(`DELETE FROM users WHERE id = ?`, id)
		if err != nil {
			return fmt.Errorf("delete user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return checkAdmins(tx)
	})
}

// CountUsers counts accounts.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// BlacklistToken records a revoked token until its expiry.
func (s *Store) BlacklistToken(ctx context.Context, jti string, expires time.Time) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT OR REPLACE INTO token_blacklist (jti, expires_at) VALUES (?, ?)`, jti, expires.UnixMilli())
		return err
	})
}

// LoadBlacklist returns the unexpired revoked tokens.
func (s *Store) LoadBlacklist(ctx context.Context, now time.Time) (map[string]time.Time, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT jti, expires_at FROM token_blacklist
		WHERE expires_at > ?`,
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
	err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		res, err := tx.Exec(`DELETE FROM token_blacklist WHERE expires_at <= ?`, now.UnixMilli())
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
