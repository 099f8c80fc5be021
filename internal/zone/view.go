package zone

import (
	"encoding/json"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
)

// The zone state of a device lives in its record's metadata beside the zone
// fields, so that both change in one versioned save (docs/domain.md §7.1).
const (
	keyPending        = "pending_zone_assignment"
	keyConfirmed      = "zone_confirmed_at"
	keyError          = "zone_error"
	keyRemoval        = "zone_removal"
	keyRebootRequired = "reboot_required"
	keyZoneMaster     = "is_zone_master"
)

// Pending is an assignment the device has not confirmed yet
// (docs/domain.md §7.2 step 2). Times are RFC 3339 strings, as they read
// back from the stored metadata.
type Pending struct {
	ZoneID        string  `json:"zone_id"`
	MasterZoneID  string  `json:"master_zone_id"`
	ZoneName      string  `json:"zone_name"`
	CorrelationID string  `json:"correlation_id"`
	SentAt        *string `json:"sent_at"`          // null while it waits for the device to be online
	Strategy      string  `json:"subzone_strategy"` // what happens to the subzones once it is confirmed
	AckTimeoutAt  *string `json:"ack_timeout_at"`   // set when the ack wait ran out; it stays pending
}

// Removal states (docs/protocol.md Z2).
const (
	RemovalWaiting      = "waiting"
	RemovalConfirmed    = "confirmed"
	RemovalUnconfirmed  = "not_confirmed_by_device"
	RemovalNotPublished = "not_sent"
)

// Removal is the hub's record of a zone removal: newer firmware confirms
// it, the baseline never does (docs/protocol.md Z2).
type Removal struct {
	CorrelationID string  `json:"correlation_id"`
	SentAt        *string `json:"sent_at"`
	Status        string  `json:"status"`
}

// ZoneError is the device's last refusal of an assignment.
type ZoneError struct {
	Message string `json:"message"`
	At      string `json:"at"`
}

// DeviceZone is the zone view of a device (docs/api.md §9 GET /zone/devices/{esp_id}).
type DeviceZone struct {
	DeviceID     string
	ZoneID       string
	MasterZoneID string
	ZoneName     string
	IsZoneMaster bool
	KaiserID     string
	Pending      *Pending
	ConfirmedAt  *time.Time
	Error        *ZoneError
	Removal      *Removal
	// RebootRequired: the device moved its root and hears nothing but zone
	// messages until it reboots (docs/protocol.md Q4, A4).
	RebootRequired bool
}

// DeviceZone returns a device's zone view.
func (s *Service) DeviceZone(espID string) (DeviceZone, error) {
	d, err := s.devices.Get(espID)
	if err != nil {
		return DeviceZone{}, err
	}
	return viewOf(d), nil
}

func viewOf(d device.Device) DeviceZone {
	master, _ := d.Metadata[keyZoneMaster].(bool)
	return DeviceZone{
		DeviceID:       d.DeviceID,
		ZoneID:         d.ZoneID,
		MasterZoneID:   d.MasterZoneID,
		ZoneName:       d.ZoneName,
		IsZoneMaster:   master,
		KaiserID:       d.KaiserID,
		Pending:        pendingOf(d),
		ConfirmedAt:    parseTime(d.Metadata[keyConfirmed]),
		Error:          fromMeta[ZoneError](d.Metadata[keyError]),
		Removal:        removalOf(d),
		RebootRequired: d.RebootRequired,
	}
}

func pendingOf(d device.Device) *Pending { return fromMeta[Pending](d.Metadata[keyPending]) }

func removalOf(d device.Device) *Removal { return fromMeta[Removal](d.Metadata[keyRemoval]) }

// toMeta is v as the metadata holds it after a restart: a JSON object.
func toMeta(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic("zone: metadata value does not encode: " + err.Error())
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// fromMeta reads a metadata object back as T; nil when absent or malformed.
func fromMeta[T any](v any) *T {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out T
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return &out
}
