package event

// The zone and subzone events (docs/api.md §17.5): a device's answer to a
// zone or subzone operation. They are event messages, queued in order and
// never coalesced, so they have no Subject.
const (
	TypeZoneAssignment    Type = "zone_assignment"
	TypeSubzoneAssignment Type = "subzone_assignment"
)

// ZoneAssignment is a device confirming or refusing a zone assignment or
// removal (docs/domain.md §7.2).
type ZoneAssignment struct {
	EspID        string `json:"esp_id"`
	Status       string `json:"status"` // zone_assigned, zone_removed or error
	ZoneID       string `json:"zone_id"`
	MasterZoneID string `json:"master_zone_id"`
	Message      string `json:"message"`
	Timestamp    int64  `json:"timestamp"`
}

// SubzoneAssignment is the outcome of a subzone operation: the device's ack,
// or a removal the baseline never acknowledges (docs/domain.md §7.3).
type SubzoneAssignment struct {
	EspID     string `json:"esp_id"`
	DeviceID  string `json:"device_id"`
	SubzoneID string `json:"subzone_id"`
	Status    string `json:"status"` // subzone_assigned, subzone_removed or error
	// ErrorCode is the device's code (docs/protocol.md §7.2), null without one.
	ErrorCode *int64 `json:"error_code"`
	Message   string `json:"message"`
	Timestamp int64  `json:"timestamp"`
}

func (ZoneAssignment) EventType() Type    { return TypeZoneAssignment }
func (SubzoneAssignment) EventType() Type { return TypeSubzoneAssignment }

// Device is the device the event is about.
func (p ZoneAssignment) Device() string    { return p.EspID }
func (p SubzoneAssignment) Device() string { return p.EspID }
