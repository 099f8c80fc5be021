package store

import "time"

// Latch scopes (docs/domain.md §5.1).
const (
	LatchGlobal = "global"
	// LatchDevicePrefix precedes the esp_id in a device latch's scope: "device:ESP_A1B2C3".
	LatchDevicePrefix = "device:"
)

// EmergencyLatch is one persisted emergency-stop latch (docs/domain.md §5.1).
// An inactive record is kept for its clear attempts and for the rule pause
// that outlives the latch (docs/domain.md §5.4).
type EmergencyLatch struct {
	Scope                 string // LatchGlobal or LatchDevicePrefix + esp_id
	EspID                 string // "" for the global latch
	Active                bool
	IncidentCorrelationID string
	Reason                string
	ActivatedBy           string
	ActivatedAt           time.Time
	// StopPublishedAt is when the stop message (broadcast or device stop) was
	// last published; the clear guard counts from it. Nil: not published yet.
	StopPublishedAt *time.Time
	ClearedBy       string
	ClearedAt       *time.Time
	ClearAttempts   []EmergencyClearAttempt
	// RulesPaused: the latch was cleared without resume_rules, so rules
	// targeting the device still wait (device latches only).
	RulesPaused bool
	UpdatedAt   time.Time

	// Version orders the saves of one latch like device records
	// (docs/decisions/0005): a save is written only if it is newer.
	Version int64
}

// EmergencyClearAttempt is one clear attempt on a latch.
type EmergencyClearAttempt struct {
	At      time.Time `json:"at"`
	User    string    `json:"user"`
	Outcome string    `json:"outcome"`
	Message string    `json:"message"`
}

// TokenBroadcast is the scope of the hub's broadcast emergency token; device
// tokens use LatchDevicePrefix + esp_id (docs/protocol.md S4).
const TokenBroadcast = "broadcast"

// EmergencyToken is an emergency auth token the hub provisions on newer
// firmware (docs/protocol.md S4).
type EmergencyToken struct {
	Scope       string // TokenBroadcast or LatchDevicePrefix + esp_id
	EspID       string // "" for the broadcast token
	Token       string
	SentAt      *time.Time // last set_emergency_token publish
	ConfirmedAt *time.Time // last success answer of the device
	UpdatedAt   time.Time
}
