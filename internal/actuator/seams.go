// Package actuator is actuator configuration, commands and their safety
// checks (docs/domain.md §4).
package actuator

import "time"

// Output is one configured actuator.
type Output struct {
	EspID       string
	GPIO        int
	Type        string        // stored device type: relay, pump, valve, pwm, servo
	ValveTravel time.Duration // valves only; 0 for others
}

// OffRequest is a hub-issued OFF (docs/domain.md §4.5: never superseded, retried while not confirmed off).
type OffRequest struct {
	EspID       string
	GPIO        int
	IssuedBy    string         // "emergency:{user}", "system:{reason}"
	CommandType string         // "OFF" or "EMERGENCY_STOP" (history command_type)
	Metadata    map[string]any // e.g. incident_correlation_id, reason
}

// Result is what a command did at once.
type Result struct {
	CommandID     string
	CorrelationID string
	Status        string // queued, sent, failed, expired …
	Published     bool
	Message       string
}

// Latches tells whether a hub latch (global or of the device) blocks non-OFF commands.
type Latches interface {
	Latched(espID string) bool
}
