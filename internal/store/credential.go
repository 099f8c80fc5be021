package store

import (
	"context"
	"time"
)

// DeviceCredential is a device's MQTT credentials for the embedded broker
// (docs/domain.md §1.2): the password only as its hash.
type DeviceCredential struct {
	EspID        string // also the username
	PasswordHash []byte // bcrypt
	// Version counts the issues since the device last had none: 1 is the
	// first, more is a rotation.
	Version  int
	IssuedBy string
	IssuedAt time.Time
}

// DeviceCredentials is what the credential service needs from persistence.
// Writes return once committed: a password is shown only after its hash is
// stored, and a removal must not come back after a restart.
type DeviceCredentials interface {
	LoadDeviceCredentials(ctx context.Context) ([]DeviceCredential, error)
	SaveDeviceCredential(ctx context.Context, c DeviceCredential) error
	DeleteDeviceCredential(ctx context.Context, espID string) error
}
