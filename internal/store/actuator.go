package store

import "time"

// ActuatorState is an actuator's persisted runtime state
// (docs/domain.md §4.6, §4.8): the confirmed state, the device latch, the auto-off deadline
// and the on-time, as a document the actuator domain owns.
type ActuatorState struct {
	EspID     string
	GPIO      int
	JSON      []byte
	UpdatedAt time.Time

	// Version orders the saves of one actuator's state: a save writes only
	// when its version is newer than the stored one, so snapshots may reach
	// the writer in any order (the scheme of docs/decisions/0005).
	Version int64
}

// ActuatorCommand is one row of an actuator's history (docs/domain.md §4.9):
// a command with its lifecycle, or a device-originated event
// (Status "" for an alert or an unmatched response).
type ActuatorCommand struct {
	ID              string // the command id; equal to CorrelationID for commands
	EspID           string
	GPIO            int
	ActuatorType    string
	CommandType     string // ON, OFF, PWM, TOGGLE, EMERGENCY_STOP, ALERT_*
	Command         string // what was (or would have been) sent: ON, OFF or PWM
	Value           float64
	Duration        int64
	IssuedBy        string
	CorrelationID   string
	Status          string // queued, sent, acknowledged, failed, timeout, expired; "" for events
	Success         *bool
	Error           string
	ResponseMessage string
	Metadata        map[string]any
	IssuedAt        time.Time
	SentAt          *time.Time
	CompletedAt     *time.Time

	// Version orders the saves of one row, like ActuatorState.Version.
	Version int64
}
