package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kaiserhub/kaiser/internal/store"
)

var _ store.Devices = (*Store)(nil)

const deviceCols = `id, device_id, name, status, kaiser_id, zone_id, zone_name, master_zone_id, hardware_type,
	ip_address, firmware_version, metadata, last_seen, discovered_at, approved_at, approved_by, rejection_reason,
	created_at, updated_at, version`

// LoadDevices reads every device record (deleted ones included).
func (s *Store) LoadDevices(ctx context.Context) ([]store.Device, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+deviceCols+` FROM devices ORDER BY device_id`)
	out, err := collect(rows, err, scanDevice)
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	return out, nil
}

// LoadDevice reads one device's record; ok is false when there is none (a
// replica reloads a device it was told has changed, migration 0004).
func (s *Store) LoadDevice(ctx context.Context, deviceID string) (d store.Device, ok bool, err error) {
	rows, err := s.pool.Query(ctx, `SELECT `+deviceCols+` FROM devices WHERE device_id = $1`, deviceID)
	out, err := collect(rows, err, scanDevice)
	if err != nil {
		return d, false, fmt.Errorf("load device %s: %w", deviceID, err)
	}
	if len(out) == 0 {
		return d, false, nil
	}
	return out[0], true, nil
}

func scanDevice(r pgx.Rows) (store.Device, error) {
	var d store.Device
	var meta string
	var lastSeen, discovered, approved *int64
	var created, updated int64
	if err := r.Scan(&d.ID, &d.DeviceID, &d.Name, &d.Status, &d.KaiserID, &d.ZoneID, &d.ZoneName,
		&d.MasterZoneID, &d.HardwareType, &d.IPAddress, &d.FirmwareVersion, &meta, &lastSeen, &discovered,
		&approved, &d.ApprovedBy, &d.RejectionReason, &created, &updated, &d.Version); err != nil {
		return d, err
	}
	if err := json.Unmarshal([]byte(meta), &d.Metadata); err != nil {
		return d, fmt.Errorf("device %s metadata: %w", d.DeviceID, err)
	}
	d.LastSeen, d.DiscoveredAt, d.ApprovedAt = fromMS(lastSeen), fromMS(discovered), fromMS(approved)
	d.CreatedAt, d.UpdatedAt = at(created), at(updated)
	return d, nil
}

// saveDevice is the versioned upsert (docs/decisions/0005): the guard is in
// the statement, so a stale snapshot is dropped whatever order saves arrive in.
const saveDevice = `INSERT INTO devices (` + deviceCols + `)
	VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)
	ON CONFLICT (device_id) DO UPDATE SET name=excluded.name, status=excluded.status,
	kaiser_id=excluded.kaiser_id, zone_id=excluded.zone_id, zone_name=excluded.zone_name,
	master_zone_id=excluded.master_zone_id, hardware_type=excluded.hardware_type,
	ip_address=excluded.ip_address, firmware_version=excluded.firmware_version,
	metadata=excluded.metadata, last_seen=excluded.last_seen, discovered_at=excluded.discovered_at,
	approved_at=excluded.approved_at, approved_by=excluded.approved_by,
	rejection_reason=excluded.rejection_reason, updated_at=excluded.updated_at, version=excluded.version
	WHERE excluded.version > devices.version`

func deviceSave(d store.Device) (op, error) {
	meta, err := json.Marshal(d.Metadata)
	if err != nil {
		return nil, fmt.Errorf("device %s metadata: %w", d.DeviceID, err)
	}
	if d.Metadata == nil {
		meta = []byte("{}")
	}
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, saveDevice,
			d.ID, d.DeviceID, d.Name, d.Status, d.KaiserID, d.ZoneID, d.ZoneName, d.MasterZoneID,
			d.HardwareType, d.IPAddress, d.FirmwareVersion, string(meta), ms(d.LastSeen), ms(d.DiscoveredAt),
			ms(d.ApprovedAt), d.ApprovedBy, d.RejectionReason, d.CreatedAt.UnixMilli(), d.UpdatedAt.UnixMilli(),
			d.Version)
		if err != nil {
			return fmt.Errorf("save device %s: %w", d.DeviceID, err)
		}
		return nil
	}, nil
}

func transitionAppend(t store.Transition) op {
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO device_transitions (device_id, from_state, to_state, cause, at, version)
			VALUES ($1,$2,$3,$4,$5,$6)`, t.DeviceID, t.From, t.To, t.Cause, t.At.UnixMilli(), t.Version)
		if err != nil {
			return fmt.Errorf("append transition %s: %w", t.DeviceID, err)
		}
		return nil
	}
}

// SaveDevice queues a versioned upsert of the whole record (store.Devices).
func (s *Store) SaveDevice(ctx context.Context, d store.Device) error {
	save, err := deviceSave(d)
	if err != nil {
		return err
	}
	return s.main.submit(ctx, save)
}

// AppendTransition queues a status-transition record.
func (s *Store) AppendTransition(ctx context.Context, t store.Transition) error {
	return s.main.submit(ctx, transitionAppend(t))
}

// SaveDeviceChange queues the record and its transition as one operation.
func (s *Store) SaveDeviceChange(ctx context.Context, d store.Device, t store.Transition) error {
	save, err := deviceSave(d)
	if err != nil {
		return err
	}
	appendTr := transitionAppend(t)
	return s.main.submit(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if err := save(ctx, tx); err != nil {
			return err
		}
		return appendTr(ctx, tx)
	})
}

// AppendHeartbeat queues a heartbeat record.
func (s *Store) AppendHeartbeat(ctx context.Context, h store.Heartbeat) error {
	return s.main.submit(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO device_heartbeats (
				device_id, received_at, device_time, time_source, uptime, heap_free, rssi, seq)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
			h.DeviceID, h.ReceivedAt.UnixMilli(), h.DeviceTime.UnixMilli(), h.TimeSource,
			h.Uptime, h.HeapFree, h.RSSI, h.Seq)
		if err != nil {
			return fmt.Errorf("append heartbeat %s: %w", h.DeviceID, err)
		}
		return nil
	})
}

// PurgeDevice removes a device's record, transitions and heartbeats in one
// transaction if its stored version is at most version (store.Devices).
// It goes through the queue, so saves queued before it are decided first.
func (s *Store) PurgeDevice(ctx context.Context, deviceID string, version int64) error {
	return s.main.do(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM devices WHERE device_id = $1 AND version <= $2`, deviceID, version)
		if err != nil {
			return fmt.Errorf("purge device %s: %w", deviceID, err)
		}
		if tag.RowsAffected() == 0 {
			return nil // a newer save is stored: the device is back, its history stays
		}
		for _, q := range []string{
			`DELETE FROM device_transitions WHERE device_id = $1`,
			`DELETE FROM device_heartbeats WHERE device_id = $1`,
		} {
			if _, err := tx.Exec(ctx, q, deviceID); err != nil {
				return fmt.Errorf("purge device %s: %w", deviceID, err)
			}
		}
		return nil
	})
}

// HeartbeatUptimes returns a device's stored heartbeat uptimes in insertion order.
func (s *Store) HeartbeatUptimes(ctx context.Context, deviceID string) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT uptime FROM device_heartbeats WHERE device_id = $1 ORDER BY id`, deviceID)
	return collect(rows, err, func(r pgx.Rows) (int64, error) {
		var u int64
		return u, r.Scan(&u)
	})
}

// Transitions returns a device's transitions by record version, then as written.
func (s *Store) Transitions(ctx context.Context, deviceID string) ([]store.Transition, error) {
	rows, err := s.pool.Query(ctx, `SELECT device_id, from_state, to_state, cause, at, version
		FROM device_transitions WHERE device_id = $1 ORDER BY version, id`, deviceID)
	return collect(rows, err, func(r pgx.Rows) (store.Transition, error) {
		var t store.Transition
		var ts int64
		err := r.Scan(&t.DeviceID, &t.From, &t.To, &t.Cause, &ts, &t.Version)
		t.At = at(ts)
		return t, err
	})
}

// SaveConfigPush records a device's last config push.
func (s *Store) SaveConfigPush(ctx context.Context, espID, correlationID, status string, doc []byte) error {
	now := timeNow().UnixMilli()
	return s.main.submit(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO config_pushes (esp_id, correlation_id, status, doc, updated_at)
			VALUES ($1,$2,$3,$4,$5) ON CONFLICT (esp_id) DO UPDATE SET correlation_id=excluded.correlation_id,
			status=excluded.status, doc=excluded.doc, updated_at=excluded.updated_at`,
			espID, correlationID, status, string(doc), now)
		if err != nil {
			return fmt.Errorf("save config push %s: %w", espID, err)
		}
		return nil
	})
}

// LoadConfigPushes returns the last push document per device.
func (s *Store) LoadConfigPushes(ctx context.Context) (map[string][]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT esp_id, doc FROM config_pushes`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id, doc string
		if err := rows.Scan(&id, &doc); err != nil {
			return nil, err
		}
		out[id] = []byte(doc)
	}
	return out, rows.Err()
}
