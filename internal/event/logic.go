package event

// TypeLogicExecution is emitted after each action of a rule execution
// (docs/api.md §17.5); an event message, never coalesced.
const TypeLogicExecution Type = "logic_execution"

// LogicExecution is one action result of a rule execution (docs/domain.md §6.11).
type LogicExecution struct {
	RuleID      string       `json:"rule_id"`
	RuleName    string       `json:"rule_name"`
	ExecutionID string       `json:"execution_id"`
	Trigger     LogicTrigger `json:"trigger"`
	Action      LogicAction  `json:"action"`
	Success     bool         `json:"success"`
	Message     string       `json:"message"`
	Timestamp   int64        `json:"timestamp"`
}

// LogicTrigger is what started the execution.
type LogicTrigger struct {
	Type       string   `json:"type"`
	Reason     string   `json:"reason,omitempty"`
	EspID      string   `json:"esp_id,omitempty"`
	GPIO       *int     `json:"gpio,omitempty"`
	SensorType string   `json:"sensor_type,omitempty"`
	Value      *float64 `json:"value,omitempty"`
	// ReadingTime is the reading's time in unix seconds.
	ReadingTime *int64 `json:"reading_time,omitempty"`
}

// LogicAction is the action and its result.
type LogicAction struct {
	Index      int    `json:"index"`
	Type       string `json:"type"`
	Target     string `json:"target,omitempty"`
	Status     string `json:"status"`
	CommandID  string `json:"command_id,omitempty"`
	SequenceID string `json:"sequence_id,omitempty"`
	Code       string `json:"code,omitempty"`
}

func (LogicExecution) EventType() Type { return TypeLogicExecution }
