package event

// Emergency is an emergency stop or clear (docs/api.md §8.4, §17.5). It has
// no Device method on purpose: a stop must reach every live client,
// whatever devices it filters on.
type Emergency struct {
	Action                string  `json:"action"` // stop or clear
	Scope                 string  `json:"scope"`  // global or device
	EspID                 *string `json:"esp_id"` // null for the global scope
	GPIO                  *int    `json:"gpio"`   // the stop's narrowing gpio, else null
	Reason                string  `json:"reason"`
	IssuedBy              string  `json:"issued_by"`
	IncidentCorrelationID string  `json:"incident_correlation_id"`
	DevicesAffected       int     `json:"devices_affected"`
	ActuatorsAffected     int     `json:"actuators_affected"`
	Success               bool    `json:"success"`
	StillActive           bool    `json:"still_active"`
	Timestamp             int64   `json:"timestamp"`
}

func (Emergency) EventType() Type { return TypeEmergency }
