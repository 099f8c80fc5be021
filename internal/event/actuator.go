package event

import "strconv"

// The actuator event types without an earlier name (docs/api.md §17.5);
// TypeActuatorStatus and TypeCommandStatus are in event.go.
const (
	TypeActuatorResponse Type = "actuator_response"
	TypeActuatorAlert    Type = "actuator_alert"
)

// ActuatorStatus is an actuator state the device reported (docs/domain.md §4.6),
// or the same state marked stale when its device went offline.
type ActuatorStatus struct {
	EspID        string  `json:"esp_id"`
	GPIO         int     `json:"gpio"`
	ActuatorType string  `json:"actuator_type"`
	State        string  `json:"state"` // on, off, pwm, error, unknown
	Value        float64 `json:"value"` // 0–1
	Stale        bool    `json:"stale"`
	Emergency    string  `json:"emergency"` // normal or active
	LastCommand  *string `json:"last_command"`
	RuntimeMS    *int64  `json:"runtime_ms"`
	Timestamp    int64   `json:"timestamp"`
}

// ActuatorResponse is a device's answer to a command; CommandID is null
// when it matched no command.
type ActuatorResponse struct {
	EspID     string   `json:"esp_id"`
	GPIO      int      `json:"gpio"`
	Command   string   `json:"command"`
	Value     *float64 `json:"value"`
	Success   bool     `json:"success"`
	Message   string   `json:"message"`
	CommandID *string  `json:"command_id"`
	Timestamp int64    `json:"timestamp"`
}

// ActuatorAlert is an alert a device raised for an actuator
// (docs/domain.md §4.7; gpio 255 is the whole device), or one the hub
// raises for an actuator it stopped in an emergency. It is not a state
// message: every alert is delivered, none replaces another (docs/api.md §17.4).
type ActuatorAlert struct {
	EspID     string `json:"esp_id"`
	GPIO      int    `json:"gpio"`
	AlertType string `json:"alert_type"`
	Severity  string `json:"severity"` // critical, error or warning
	Message   string `json:"message"`
	ZoneID    string `json:"zone_id"`
	Timestamp int64  `json:"timestamp"`
}

// CommandStatus is one lifecycle change of a command (docs/api.md §8.3).
type CommandStatus struct {
	CommandID     string  `json:"command_id"`
	CorrelationID string  `json:"correlation_id"`
	EspID         string  `json:"esp_id"`
	GPIO          int     `json:"gpio"`
	Command       string  `json:"command"`
	Value         float64 `json:"value"`
	Status        string  `json:"status"`
	IssuedBy      string  `json:"issued_by"`
	Error         *string `json:"error"`
	Timestamp     int64   `json:"timestamp"`
}

func (ActuatorStatus) EventType() Type   { return TypeActuatorStatus }
func (ActuatorResponse) EventType() Type { return TypeActuatorResponse }
func (ActuatorAlert) EventType() Type    { return TypeActuatorAlert }
func (CommandStatus) EventType() Type    { return TypeCommandStatus }

// Device is the device the event is about.
func (p ActuatorStatus) Device() string   { return p.EspID }
func (p ActuatorResponse) Device() string { return p.EspID }
func (p ActuatorAlert) Device() string    { return p.EspID }
func (p CommandStatus) Device() string    { return p.EspID }

// Subject is the coalescing key of the state messages (docs/api.md §17.5):
// an actuator for its status, a command for its lifecycle.
func (p ActuatorStatus) Subject() string { return p.EspID + "|" + strconv.Itoa(p.GPIO) }
func (p CommandStatus) Subject() string  { return p.CommandID }
