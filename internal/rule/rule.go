// Package rule is the automation rule document of docs/domain.md §6: its typed
// model with aliases and defaults, save-time validation with loop detection
// (docs/domain.md §6.10), and a pure evaluator of its conditions
// (docs/domain.md §6.2–6.3). Nothing here does I/O, so the engine, the dry-run
// and a backtest share one definition of what a rule means.
package rule

import (
	"encoding/json"
	"fmt"
	"time"
	// IANA zones must resolve on hosts without a zoneinfo database (a
	// small container or a router image), so the hub carries its own copy.
	_ "time/tzdata"
)

// Condition and action types, canonical names (docs/domain.md §6.3, §6.4).
const (
	TypeThreshold  = "sensor_threshold"
	TypeTime       = "time_window"
	TypeHysteresis = "hysteresis"
	TypeCompound   = "compound"

	TypeCommand      = "actuator_command"
	TypeDelay        = "delay"
	TypeNotification = "notification"
	TypeSequence     = "sequence"
)

// aliases maps accepted input type names to canonical ones.
var aliases = map[string]string{
	"sensor":         TypeThreshold,
	TypeThreshold:    TypeThreshold,
	"time":           TypeTime,
	TypeTime:         TypeTime,
	TypeHysteresis:   TypeHysteresis,
	TypeCompound:     TypeCompound,
	"actuator":       TypeCommand,
	TypeCommand:      TypeCommand,
	TypeDelay:        TypeDelay,
	TypeNotification: TypeNotification,
	TypeSequence:     TypeSequence,
}

// Canonical returns the canonical type of an input type name, or "" when
// the type is unknown.
func Canonical(t string) string { return aliases[t] }

// Defaults of docs/domain.md §6.1.
const (
	DefaultPriority = 50
	DefaultCooldown = 60
	DefaultLogic    = "AND"
)

// Rule is one automation rule.
type Rule struct {
	ID                   string      `json:"id"`
	Name                 string      `json:"name"`
	Description          *string     `json:"description"`
	Enabled              bool        `json:"enabled"`
	Priority             int         `json:"priority"`
	LogicOperator        string      `json:"logic_operator"`
	Conditions           []Condition `json:"conditions"`
	Actions              []Action    `json:"actions"`
	CooldownSeconds      int         `json:"cooldown_seconds"`
	MaxExecutionsPerHour *int        `json:"max_executions_per_hour"`
	LastTriggered        *time.Time  `json:"last_triggered"`
	CreatedAt            time.Time   `json:"created_at"`
	UpdatedAt            time.Time   `json:"updated_at"`
}

// Root is the rule's condition tree: a one-element list is that condition,
// a longer one a compound of the rule's logic operator (docs/domain.md §6.1).
// Paths of the list's members are their indexes either way.
func (r *Rule) Root() Condition {
	if len(r.Conditions) == 1 {
		return r.Conditions[0]
	}
	return Condition{
		Type:     TypeCompound,
		Compound: &Compound{Logic: r.LogicOperator, Conditions: r.Conditions},
	}
}

// Condition is one node of a condition tree: exactly one of the kind
// pointers is set, matching Kind().
type Condition struct {
	// Type is the type as the client wrote it (an alias stays an alias, so a
	// client reads back its own document); "" for a compound written as
	// {logic, conditions} only.
	Type       string
	Threshold  *Threshold
	Window     *Window
	Hysteresis *Hysteresis
	Compound   *Compound
}

// Kind is the canonical type.
func (c Condition) Kind() string {
	switch {
	case c.Threshold != nil:
		return TypeThreshold
	case c.Window != nil:
		return TypeTime
	case c.Hysteresis != nil:
		return TypeHysteresis
	case c.Compound != nil:
		return TypeCompound
	}
	return ""
}

// Threshold is a sensor threshold leaf (docs/domain.md §6.3.1).
type Threshold struct {
	SensorRef
	Operator string   `json:"operator"`
	Value    *float64 `json:"value,omitempty"`
	Min      *float64 `json:"min,omitempty"`
	Max      *float64 `json:"max,omitempty"`
	// MaxAgeSeconds is nil for the sensor's default freshness.
	MaxAgeSeconds *int `json:"max_age_seconds,omitempty"`
}

// SensorRef names the sensor a leaf reads.
type SensorRef struct {
	EspID string `json:"esp_id"`
	GPIO  int    `json:"gpio"`
	// SensorType is "" for any type on the pin, else normalised.
	SensorType string `json:"sensor_type,omitempty"`
}

// Window is a time window leaf (docs/domain.md §6.3.2), in minutes of the day.
type Window struct {
	Start int // 0–1439
	End   int // 0–1440
	// Timezone is "" for the hub's configured zone.
	Timezone string
	// Days is nil for every day; 0 = Monday … 6 = Sunday.
	Days []int
	loc  *time.Location
}

type windowJSON struct {
	StartTime string `json:"start_time"`
	EndTime   string `json:"end_time"`
	Timezone  string `json:"timezone,omitempty"`
	Days      []int  `json:"days_of_week,omitempty"`
}

func clock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// Hysteresis is a hysteresis leaf (docs/domain.md §6.3.3): cooling sets
// ActivateAbove and DeactivateBelow, heating ActivateBelow and
// DeactivateAbove.
type Hysteresis struct {
	SensorRef
	ActivateAbove   *float64 `json:"activate_above,omitempty"`
	DeactivateBelow *float64 `json:"deactivate_below,omitempty"`
	ActivateBelow   *float64 `json:"activate_below,omitempty"`
	DeactivateAbove *float64 `json:"deactivate_above,omitempty"`
}

// Cooling reports the cooling mode.
func (h *Hysteresis) Cooling() bool { return h.ActivateAbove != nil }

// Compound combines its members with AND or OR (docs/domain.md §6.3.4).
type Compound struct {
	Logic      string      `json:"logic"`
	Conditions []Condition `json:"conditions"`
}

// MarshalJSON writes the condition flat, as clients write it.
func (c Condition) MarshalJSON() ([]byte, error) {
	typ := c.Type
	if typ == "" && c.Compound == nil {
		typ = c.Kind()
	}
	switch {
	case c.Threshold != nil:
		return json.Marshal(struct {
			Type string `json:"type"`
			*Threshold
		}{typ, c.Threshold})
	case c.Window != nil:
		w := c.Window
		return json.Marshal(struct {
			Type string `json:"type"`
			windowJSON
		}{typ, windowJSON{
			StartTime: clock(w.Start),
			EndTime:   clock(w.End),
			Timezone:  w.Timezone,
			Days:      w.Days,
		}})
	case c.Hysteresis != nil:
		return json.Marshal(struct {
			Type string `json:"type"`
			*Hysteresis
		}{typ, c.Hysteresis})
	case c.Compound != nil:
		return json.Marshal(struct {
			Type string `json:"type,omitempty"`
			*Compound
		}{typ, c.Compound})
	}
	return nil, fmt.Errorf("condition without a kind")
}

// Action is one action: exactly one of the kind pointers is set.
type Action struct {
	Type         string // as written, like Condition.Type
	Command      *Command
	Delay        *Delay
	Notification *Notification
	Sequence     *Sequence
}

// Kind is the canonical type.
func (a Action) Kind() string {
	switch {
	case a.Command != nil:
		return TypeCommand
	case a.Delay != nil:
		return TypeDelay
	case a.Notification != nil:
		return TypeNotification
	case a.Sequence != nil:
		return TypeSequence
	}
	return ""
}

// Command is an actuator command action (docs/domain.md §6.4).
type Command struct {
	Target
	Command          string  `json:"command"`
	Value            float64 `json:"value"`
	DurationSeconds  int     `json:"duration_seconds"`
	IsSafetyCritical bool    `json:"is_safety_critical"`
}

// Target is an actuator an action drives.
type Target struct {
	EspID string `json:"esp_id"`
	GPIO  int    `json:"gpio"`
}

// Key is the conflict-lock key of docs/domain.md §6.8.
func (t Target) Key() string { return fmt.Sprintf("%s:%d", t.EspID, t.GPIO) }

// Delay suspends the rest of the action list (docs/domain.md §6.4).
type Delay struct {
	Seconds int `json:"seconds"`
}

// Notification channels.
const (
	ChannelWebSocket = "websocket"
	ChannelEmail     = "email"
	ChannelWebhook   = "webhook"
)

// Notification sends a rendered message (docs/domain.md §6.4).
type Notification struct {
	Channel         string `json:"channel"`
	Target          string `json:"target"`
	MessageTemplate string `json:"message_template"`
	Severity        string `json:"severity"`
}

// Sequence is a background step list (docs/domain.md §6.5). The engine of
// this package's first version validates and stores it; running it is the
// sequence runner's job.
type Sequence struct {
	SequenceID         string `json:"sequence_id,omitempty"`
	Description        string `json:"description,omitempty"`
	AbortOnFailure     bool   `json:"abort_on_failure"`
	MaxDurationSeconds int    `json:"max_duration_seconds"`
	Steps              []Step `json:"steps"`
}

// Step is one sequence step: an action, a pure delay, or both delays around
// an action.
type Step struct {
	Name               string  `json:"name,omitempty"`
	Action             *Action `json:"action,omitempty"`
	DelaySeconds       *int    `json:"delay_seconds,omitempty"`
	DelayBeforeSeconds int     `json:"delay_before_seconds,omitempty"`
	DelayAfterSeconds  int     `json:"delay_after_seconds,omitempty"`
	TimeoutSeconds     int     `json:"timeout_seconds"`
	RetryCount         int     `json:"retry_count"`
	RetryDelaySeconds  float64 `json:"retry_delay_seconds"`
	OnFailure          string  `json:"on_failure,omitempty"` // "" = the sequence's abort_on_failure decides
}

// MarshalJSON writes the action flat, as clients write it.
func (a Action) MarshalJSON() ([]byte, error) {
	typ := a.Type
	if typ == "" {
		typ = a.Kind()
	}
	switch {
	case a.Command != nil:
		return json.Marshal(struct {
			Type string `json:"type"`
			*Command
		}{typ, a.Command})
	case a.Delay != nil:
		return json.Marshal(struct {
			Type string `json:"type"`
			*Delay
		}{typ, a.Delay})
	case a.Notification != nil:
		return json.Marshal(struct {
			Type string `json:"type"`
			*Notification
		}{typ, a.Notification})
	case a.Sequence != nil:
		return json.Marshal(struct {
			Type string `json:"type"`
			*Sequence
		}{typ, a.Sequence})
	}
	return nil, fmt.Errorf("action without a kind")
}
