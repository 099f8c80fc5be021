package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

var _ store.DeviceCredentials = (*Store)(nil)

// SaveDeviceCredential writes a device's credentials, replacing earlier
// ones, and returns once committed (the control database commits at once).
func (s *Store) SaveDeviceCredential(ctx context.Context, c store.DeviceCredential) error {
	return s.control.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO device_credentials (esp_id, password_hash, version, issued_by, issued_at)
			VALUES (?,?,?,?,?) ON CONFLICT(esp_id) DO UPDATE SET password_hash=excluded.password_hash,
			version=excluded.version, issued_by=excluded.issued_by, issued_at=excluded.issued_at`,
			c.EspID, c.PasswordHash, c.Version, c.IssuedBy, c.IssuedAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("save credentials of %s: %w", c.EspID, err)
		}
		return nil
	})
}

// DeleteDeviceCredential removes a device's credentials, if it has any,
// and returns once committed.
func (s *Store) DeleteDeviceCredential(ctx context.Context, espID string) error {
	return s.control.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		if _, err := tx.Exec(`DELETE FROM device_credentials WHERE esp_id = ?`, espID); err != nil {
			return fmt.Errorf("delete credentials of %s: %w", espID, err)
		}
		return nil
	})
}

// LoadDeviceCredentials reads every device's credentials.
func (s *Store) LoadDeviceCredentials(ctx context.Context) ([]store.DeviceCredential, error) {
	rows, err := s.control.read.QueryContext(ctx, `SELECT esp_id, password_hash, version, issued_by, issued_at
		FROM device_credentials ORDER BY esp_id`)
	if err != nil {
		return nil, fmt.Errorf("load device credentials: %w", err)
	}
	defer rows.Close()

	var out []store.DeviceCredential
	for rows.Next() {
		var c store.DeviceCredential
		var issued int64
		if err := rows.Scan(&c.EspID, &c.PasswordHash, &c.Version, &c.IssuedBy, &issued); err != nil {
			return nil, fmt.Errorf("scan device credentials: %w", err)
		}
		c.IssuedAt = time.UnixMilli(issued).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
