package event

// TypeActuatorAlert is a device's actuator alert or an alert the hub raises
// for an actuator, such as an emergency stop (docs/api.md §17.5). The
// actuator part emits it for device alerts as well; both use this payload.
const TypeActuatorAlert Type = "actuator_alert"

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

// ActuatorAlert is one actuator's alert. It is not a state message: every
// alert is delivered, none replaces another (docs/api.md §17.4).
type ActuatorAlert struct {
	EspID     string `json:"esp_id"`
	GPIO      int    `json:"gpio"`
	AlertType string `json:"alert_type"`
	Severity  string `json:"severity"` // critical, error or warning
	Message   string `json:"message"`
	ZoneID    string `json:"zone_id"`
	Timestamp int64  `json:"timestamp"`
}

func (Emergency) EventType() Type     { return TypeEmergency }
func (ActuatorAlert) EventType() Type { return TypeActuatorAlert }

// Device is the device the alert is about.
func (p ActuatorAlert) Device() string { return p.EspID }
