package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Zone and subzone writes wait for their commit: the zone domain publishes
// to a device only what is already stored (docs/domain.md §7.2, §7.3).

// LoadZones returns every zone, ordered by id.
func (s *Store) LoadZones(ctx context.Context) ([]store.Zone, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT zone_id, name, description, status, created_at, updated_at
		FROM zones ORDER BY zone_id`)
	if err != nil {
		return nil, fmt.Errorf("load zones: %w", err)
	}
	defer rows.Close()

	var out []store.Zone
	for rows.Next() {
		var z store.Zone
		var created, updated int64
		if err := rows.Scan(&z.ZoneID, &z.Name, &z.Description, &z.Status, &created, &updated); err != nil {
			return nil, fmt.Errorf("scan zone: %w", err)
		}
		z.CreatedAt, z.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, z)
	}
	return out, rows.Err()
}

// SaveZone upserts a zone.
func (s *Store) SaveZone(ctx context.Context, z store.Zone) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO zones (zone_id, name, description, status, created_at, updated_at)
			VALUES (?,?,?,?,?,?) ON CONFLICT(zone_id) DO UPDATE SET name=excluded.name,
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
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		if _, err := tx.Exec(`DELETE FROM zones WHERE zone_id = ?`, zoneID); err != nil {
			return fmt.Errorf("delete zone %s: %w", zoneID, err)
		}
		return nil
	})
}

// LoadSubzones returns every subzone, ordered by device and id.
func (s *Store) LoadSubzones(ctx context.Context) ([]store.Subzone, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT esp_id, subzone_id, name, parent_zone_id, gpios, safe_mode,
		status, error_code, error_message, last_ack_at, created_at, updated_at
		FROM subzones ORDER BY esp_id, subzone_id`)
	if err != nil {
		return nil, fmt.Errorf("load subzones: %w", err)
	}
	defer rows.Close()

	var out []store.Subzone
	for rows.Next() {
		sz, err := scanSubzone(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sz)
	}
	return out, rows.Err()
}

func scanSubzone(rows *sql.Rows) (store.Subzone, error) {
	var sz store.Subzone
	var gpios string
	var safe int
	var code, lastAck sql.NullInt64
	var created, updated int64
	err := rows.Scan(&sz.EspID, &sz.SubzoneID, &sz.Name, &sz.ParentZoneID, &gpios, &safe,
		&sz.Status, &code, &sz.ErrorMessage, &lastAck, &created, &updated)
	if err != nil {
		return sz, fmt.Errorf("scan subzone: %w", err)
	}
	if err := json.Unmarshal([]byte(gpios), &sz.GPIOs); err != nil {
		return sz, fmt.Errorf("subzone %s/%s gpios: %w", sz.EspID, sz.SubzoneID, err)
	}

	sz.SafeMode = safe != 0
	if code.Valid {
		c := code.Int64
		sz.ErrorCode = &c
	}
	sz.LastAckAt = fromMS(lastAck)
	sz.CreatedAt, sz.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return sz, nil
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

	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO subzones (esp_id, subzone_id, name, parent_zone_id, gpios, safe_mode,
			status, error_code, error_message, last_ack_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
			ON CONFLICT(esp_id, subzone_id) DO UPDATE SET name=excluded.name, parent_zone_id=excluded.parent_zone_id,
			gpios=excluded.gpios, safe_mode=excluded.safe_mode, status=excluded.status,
			error_code=excluded.error_code, error_message=excluded.error_message,
			last_ack_at=excluded.last_ack_at, updated_at=excluded.updated_at`,
			sz.EspID, sz.SubzoneID, sz.Name, sz.ParentZoneID, string(gpios), boolInt(sz.SafeMode),
			sz.Status, sz.ErrorCode, sz.ErrorMessage, ms(sz.LastAckAt),
			sz.CreatedAt.UnixMilli(), sz.UpdatedAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("save subzone %s/%s: %w", sz.EspID, sz.SubzoneID, err)
		}
		return nil
	})
}

// DeleteSubzone removes one subzone of a device.
func (s *Store) DeleteSubzone(ctx context.Context, espID, subzoneID string) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`DELETE FROM subzones WHERE esp_id = ? AND subzone_id = ?`, espID, subzoneID)
		if err != nil {
			return fmt.Errorf("delete subzone %s/%s: %w", espID, subzoneID, err)
		}
		return nil
	})
}

// AppendZoneChange records one zone assignment or removal of a device.
func (s *Store) AppendZoneChange(ctx context.Context, c store.ZoneChange) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO zone_changes (esp_id, from_zone_id, to_zone_id, strategy, actor,
			correlation_id, at) VALUES (?,?,?,?,?,?,?)`,
			c.EspID, c.FromZoneID, c.ToZoneID, c.Strategy, c.Actor, c.CorrelationID, c.At.UnixMilli())
		if err != nil {
			return fmt.Errorf("append zone change %s: %w", c.EspID, err)
		}
		return nil
	})
}

// ZoneChanges returns a device's zone history, oldest first.
func (s *Store) ZoneChanges(ctx context.Context, espID string) ([]store.ZoneChange, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT esp_id, from_zone_id, to_zone_id, strategy, actor,
		correlation_id, at FROM zone_changes WHERE esp_id = ? ORDER BY id`, espID)
	if err != nil {
		return nil, fmt.Errorf("zone changes %s: %w", espID, err)
	}
	defer rows.Close()

	var out []store.ZoneChange
	for rows.Next() {
		var c store.ZoneChange
		var at int64
		if err := rows.Scan(&c.EspID, &c.FromZoneID, &c.ToZoneID, &c.Strategy, &c.Actor,
			&c.CorrelationID, &at); err != nil {
			return nil, fmt.Errorf("scan zone change: %w", err)
		}
		c.At = time.UnixMilli(at).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
