package store

import "time"

// Rule is a persisted automation rule (docs/domain.md §6.1): the document
// the rule domain owns, with the columns lists and uniqueness need.
type Rule struct {
	ID            string
	Name          string // unique
	Enabled       bool
	Priority      int
	Doc           []byte // the rule document as JSON
	LastTriggered *time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// RuleExecution is one row of the execution history (docs/domain.md §6.11).
// The JSON columns are documents the rule domain owns.
type RuleExecution struct {
	ID               string
	RuleID           string
	RuleName         string
	TriggeredAt      time.Time
	TriggerReason    string
	Trigger          []byte
	ConditionResults []byte
	ActionResults    []byte
	ActionsExecuted  int
	Success          bool
	TerminalReason   string
	ErrorMessage     string
	FinishedAt       *time.Time // nil while an action result is not terminal
	ExecutionMS      *int64
}

// RuleExecutionFilter selects history rows, newest first.
type RuleExecutionFilter struct {
	RuleID  string
	Success *bool
	From    time.Time
	To      *time.Time
	Limit   int
}

// RuleExecutionPage is one page of history with the totals of the filter.
type RuleExecutionPage struct {
	Entries   []RuleExecution
	Total     int
	Succeeded int
}

// RuleStats are a rule's execution totals for the rule object.
type RuleStats struct {
	Count       int
	LastSuccess *bool
}

// HysteresisState is a persisted hysteresis leaf state (docs/domain.md §6.3.3),
// keyed by rule and leaf path.
type HysteresisState struct {
	RuleID           string
	Path             string
	Active           bool
	LastValue        *float64
	LastActivation   *time.Time
	LastDeactivation *time.Time
}

// RuleContinuation is a pending delayed continuation of a rule's action
// list (docs/domain.md §6.4 delay), kept so that a restart resumes or ends it
// (docs/domain.md §4.8).
type RuleContinuation struct {
	ID          string
	RuleID      string
	ExecutionID string
	DueAt       time.Time
	Doc         []byte // the rule domain's continuation state
}
