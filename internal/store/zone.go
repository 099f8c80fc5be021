package store

import "time"

// Zone is a persisted zone (docs/domain.md §7.1). ZoneID is stored lower-cased.
type Zone struct {
	ZoneID      string
	Name        string
	Description string
	Status      string // active or archived
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Subzone is a persisted subzone of one device (docs/domain.md §7.1),
// unique by (EspID, SubzoneID).
type Subzone struct {
	EspID        string
	SubzoneID    string
	Name         string
	ParentZoneID string
	GPIOs        []int
	SafeMode     bool
	Status       string // pending, active, removing or error
	ErrorCode    *int64
	ErrorMessage string
	LastAckAt    *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// ZoneChange is one row of a device's zone history (docs/domain.md §7.2 step 2).
type ZoneChange struct {
	EspID         string
	FromZoneID    string
	ToZoneID      string // "" for a removal
	Strategy      string // subzone_strategy of an assignment, "" for a removal
	Actor         string
	CorrelationID string
	At            time.Time
}
