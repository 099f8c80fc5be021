// Package store defines the hub's persistence records and the interfaces
// the domain uses; sqlite/ implements them (PostgreSQL can implement the same
// interfaces later without touching the domain).
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// Device is the persisted device record (DOMAIN §1, API §6.2).
type Device struct {
	ID              string // UUID
	DeviceID        string // esp_id
	Name            string
	Status          string
	KaiserID        string
	ZoneID          string
	ZoneName        string
	MasterZoneID    string
	HardwareType    string
	IPAddress       string
	FirmwareVersion string
	Metadata        map[string]any
	LastSeen        *time.Time
	DiscoveredAt    *time.Time
	ApprovedAt      *time.Time
	ApprovedBy      string
	RejectionReason string
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// Transition is one recorded status change with its cause (CONTRACT L6).
type Transition struct {
	DeviceID string
	From, To string
	Cause    string
	At       time.Time
}

// Heartbeat is one stored heartbeat: the device's health over time.
type Heartbeat struct {
	DeviceID   string
	ReceivedAt time.Time
	DeviceTime time.Time
	TimeSource string
	Uptime     int64
	HeapFree   int64
	RSSI       int64
	Seq        *int64
}

// Devices is what the device domain needs from persistence. Writes are
// queued on the single writer and committed in groups; Flush waits for
// everything queued before it.
type Devices interface {
	LoadDevices(ctx context.Context) ([]Device, error)
	SaveDevice(ctx context.Context, d Device) error
	AppendTransition(ctx context.Context, t Transition) error
	AppendHeartbeat(ctx context.Context, h Heartbeat) error
	Flush(ctx context.Context) error
}
