package event

// The sequence events of docs/api.md §17.5: event messages, never coalesced,
// emitted after the progress they report is stored.
const (
	TypeSequenceStarted   Type = "sequence_started"
	TypeSequenceStep      Type = "sequence_step"
	TypeSequenceCompleted Type = "sequence_completed"
	TypeSequenceError     Type = "sequence_error"
	TypeSequenceCancelled Type = "sequence_cancelled"
)

// SequenceStarted is a sequence that began its first step.
type SequenceStarted struct {
	SequenceID  string `json:"sequence_id"`
	RuleID      string `json:"rule_id"`
	RuleName    string `json:"rule_name"`
	TotalSteps  int    `json:"total_steps"`
	Description string `json:"description"`
	Timestamp   int64  `json:"timestamp"`
}

// SequenceStep is a step that starts, completes or fails.
type SequenceStep struct {
	SequenceID string `json:"sequence_id"`
	// Step is the step's index, from 0 like step_results[].step_index.
	Step            int     `json:"step"`
	StepName        string  `json:"step_name"`
	TotalSteps      int     `json:"total_steps"`
	ProgressPercent float64 `json:"progress_percent"`
	Status          string  `json:"status"` // starting, completed or failed
	Timestamp       int64   `json:"timestamp"`
}

// SequenceCompleted is a sequence's end, whatever its status.
type SequenceCompleted struct {
	SequenceID      string  `json:"sequence_id"`
	Status          string  `json:"status"`
	Success         bool    `json:"success"`
	DurationSeconds float64 `json:"duration_seconds"`
	StepsCompleted  int     `json:"steps_completed"`
	StepsFailed     int     `json:"steps_failed"`
	Error           *string `json:"error"`
	ErrorCode       *string `json:"error_code"`
	Timestamp       int64   `json:"timestamp"`
}

// SequenceError is a step that failed after its retries, or a sequence
// that hit its overall limit.
type SequenceError struct {
	SequenceID string `json:"sequence_id"`
	ErrorCode  string `json:"error_code"`
	Message    string `json:"message"`
	Timestamp  int64  `json:"timestamp"`
}

// SequenceCancelled is a successful cancel (REST, emergency stop, restart).
type SequenceCancelled struct {
	SequenceID  string `json:"sequence_id"`
	Reason      string `json:"reason"`
	CancelledBy string `json:"cancelled_by"`
	Timestamp   int64  `json:"timestamp"`
}

func (SequenceStarted) EventType() Type   { return TypeSequenceStarted }
func (SequenceStep) EventType() Type      { return TypeSequenceStep }
func (SequenceCompleted) EventType() Type { return TypeSequenceCompleted }
func (SequenceError) EventType() Type     { return TypeSequenceError }
func (SequenceCancelled) EventType() Type { return TypeSequenceCancelled }
