package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

var _ store.Devices = (*Store)(nil)

func ms(t *time.Time) any {
	if t == nil || t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.UnixMilli(v.Int64).UTC()
	return &t
}

// LoadDevices reads every device record (deleted ones included).
func (s *Store) LoadDevices(ctx context.Context) ([]store.Device, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, device_id, name, status, kaiser_id, zone_id, zone_name,
		master_zone_id, hardware_type, ip_address, firmware_version, metadata, last_seen, discovered_at,
		approved_at, approved_by, rejection_reason, created_at, updated_at, version FROM devices ORDER BY device_id`)
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	defer rows.Close()
	var out []store.Device
	for rows.Next() {
		var d store.Device
		var meta string
		var lastSeen, discovered, approved sql.NullInt64
		var created, updated int64
		if err := rows.Scan(&d.ID, &d.DeviceID, &d.Name, &d.Status, &d.KaiserID, &d.ZoneID, &d.ZoneName,
			&d.MasterZoneID, &d.HardwareType, &d.IPAddress, &d.FirmwareVersion, &meta, &lastSeen, &discovered,
			&approved, &d.ApprovedBy, &d.RejectionReason, &created, &updated, &d.Version); err != nil {
			return nil, fmt.Errorf("scan device: %w", err)
		}
		if err := json.Unmarshal([]byte(meta), &d.Metadata); err != nil {
			return nil, fmt.Errorf("device %s metadata: %w", d.DeviceID, err)
		}
		d.LastSeen, d.DiscoveredAt, d.ApprovedAt = fromMS(lastSeen), fromMS(discovered), fromMS(approved)
		d.CreatedAt, d.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// saveDevice is the versioned upsert: the guard sits in the statement
// itself, so a heartbeat's save costs no extra round trip and a stale
// snapshot is dropped by the database whatever order the writes arrive in.
const saveDevice = `INSERT INTO devices (id, device_id, name, status, kaiser_id, zone_id, zone_name,
	master_zone_id, hardware_type, ip_address, firmware_version, metadata, last_seen, discovered_at,
	approved_at, approved_by, rejection_reason, created_at, updated_at, version)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
	ON CONFLICT(device_id) DO UPDATE SET name=excluded.name, status=excluded.status,
	kaiser_id=excluded.kaiser_id, zone_id=excluded.zone_id, zone_name=excluded.zone_name,
	master_zone_id=excluded.master_zone_id, hardware_type=excluded.hardware_type,
	ip_address=excluded.ip_address, firmware_version=excluded.firmware_version,
	metadata=excluded.metadata, last_seen=excluded.last_seen, discovered_at=excluded.discovered_at,
	approved_at=excluded.approved_at, approved_by=excluded.approved_by,
	rejection_reason=excluded.rejection_reason, updated_at=excluded.updated_at, version=excluded.version
	WHERE excluded.version > devices.version`

// SaveDevice queues a versioned upsert of the whole device record (see
// store.Devices): it is written only if d.Version is newer than the stored one.
func (s *Store) SaveDevice(ctx context.Context, d store.Device) error {
	save, err := s.deviceSave(d)
	if err != nil {
		return err
	}
	return s.writer.Submit(ctx, save)
}

// AppendTransition queues a status-transition record.
func (s *Store) AppendTransition(ctx context.Context, t store.Transition) error {
	return s.writer.Submit(ctx, transitionAppend(t))
}

// SaveDeviceChange queues the record and its transition as one operation,
// so they commit in one transaction.
func (s *Store) SaveDeviceChange(ctx context.Context, d store.Device, t store.Transition) error {
	save, err := s.deviceSave(d)
	if err != nil {
		return err
	}
	appendTr := transitionAppend(t)
	return s.writer.Submit(ctx, func(ctx context.Context, tx *Tx) error {
		if err := save(ctx, tx); err != nil {
			return err
		}
		return appendTr(ctx, tx)
	})
}

func (s *Store) deviceSave(d store.Device) (Op, error) {
	meta, err := json.Marshal(d.Metadata)
	if err != nil {
		return nil, fmt.Errorf("device %s metadata: %w", d.DeviceID, err)
	}
	if d.Metadata == nil {
		meta = []byte("{}")
	}
	return func(_ context.Context, tx *Tx) error {
		res, err := tx.Exec(saveDevice,
			d.ID, d.DeviceID, d.Name, d.Status, d.KaiserID, d.ZoneID, d.ZoneName, d.MasterZoneID,
			d.HardwareType, d.IPAddress, d.FirmwareVersion, string(meta), ms(d.LastSeen), ms(d.DiscoveredAt),
			ms(d.ApprovedAt), d.ApprovedBy, d.RejectionReason, d.CreatedAt.UnixMilli(), d.UpdatedAt.UnixMilli(),
			d.Version)
		if err != nil {
			return fmt.Errorf("save device %s: %w", d.DeviceID, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			s.log.Debug("stale device save ignored", "esp_id", d.DeviceID, "version", d.Version)
		}
		return nil
	}, nil
}

func transitionAppend(t store.Transition) Op {
	return func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO device_transitions (device_id, from_state, to_state, cause, at, version)
			VALUES (?,?,?,?,?,?)`, t.DeviceID, t.From, t.To, t.Cause, t.At.UnixMilli(), t.Version)
		if err != nil {
			return fmt.Errorf("append transition %s: %w", t.DeviceID, err)
		}
		return nil
	}
}

// PurgeDevice removes a device's record, transitions and heartbeats in one
// transaction if its stored version is at most version (see store.Devices).
func (s *Store) PurgeDevice(ctx context.Context, deviceID string, version int64) error {
	return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		res, err := tx.Exec(`DELETE FROM devices WHERE device_id = ? AND version <= ?`, deviceID, version)
		if err != nil {
			return fmt.Errorf("purge device %s: %w", deviceID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // a newer save is stored: the device is back, its history stays
		}
		for _, q := range []string{
			`DELETE FROM device_transitions WHERE device_id = ?`,
			`DELETE FROM device_heartbeats WHERE device_id = ?`,
		} {
			if _, err := tx.Exec(q, deviceID); err != nil {
				return fmt.Errorf("purge device %s: %w", deviceID, err)
			}
		}
		return nil
	})
}

// AppendHeartbeat queues a heartbeat record.
func (s *Store) AppendHeartbeat(ctx context.Context, h store.Heartbeat) error {
	return s.writer.Submit(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`
			INSERT INTO device_heartbeats (
				device_id, received_at, device_time, time_source, uptime, heap_free, rssi, seq
			)
			VALUES (?,?,?,?,?,?,?,?)`,
			h.DeviceID, h.ReceivedAt.UnixMilli(), h.DeviceTime.UnixMilli(), h.TimeSource,
			h.Uptime, h.HeapFree, h.RSSI, h.Seq)
		if err != nil {
			return fmt.Errorf("append heartbeat %s: %w", h.DeviceID, err)
		}
		return nil
	})
}

// HeartbeatUptimes returns a device's stored heartbeat uptimes in insertion order.
func (s *Store) HeartbeatUptimes(ctx context.Context, deviceID string) ([]int64, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT uptime FROM device_heartbeats WHERE device_id = ? ORDER BY id`, deviceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var u int64
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Transitions returns a device's recorded transitions in the order they
// happened: by the record version they were saved with, then as written.
func (s *Store) Transitions(ctx context.Context, deviceID string) ([]store.Transition, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT device_id, from_state, to_state, cause, at, version
		FROM device_transitions WHERE device_id = ? ORDER BY version, id`, deviceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Transition
	for rows.Next() {
		var t store.Transition
		var at int64
		if err := rows.Scan(&t.DeviceID, &t.From, &t.To, &t.Cause, &at, &t.Version); err != nil {
			return nil, err
		}
		t.At = time.UnixMilli(at).UTC()
		out = append(out, t)
	}
	return out, rows.Err()
}
