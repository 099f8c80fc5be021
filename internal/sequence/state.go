package sequence

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Progress is a sequence's progress object (docs/api.md §11).
type Progress struct {
	SequenceID  string       `json:"sequence_id"`
	RuleID      string       `json:"rule_id"`
	RuleName    string       `json:"rule_name"`
	Status      string       `json:"status"`
	Description string       `json:"description"`
	CurrentStep int          `json:"current_step"`
	TotalSteps  int          `json:"total_steps"`
	StartedAt   time.Time    `json:"started_at"`
	CompletedAt *time.Time   `json:"completed_at"`
	Steps       []StepResult `json:"step_results"`
	Error       string       `json:"error"`
	ErrorCode   string       `json:"error_code"`
	// CancelledBy and CleanupOffs say who cancelled and which actuators
	// got the cleanup OFF of docs/domain.md §6.5.
	CancelledBy string       `json:"cancelled_by"`
	CleanupOffs []CleanupOff `json:"cleanup_offs"`
}

// StepResult is one finished step.
type StepResult struct {
	Index       int       `json:"step_index"`
	Name        string    `json:"step_name"`
	Success     bool      `json:"success"`
	Message     string    `json:"message"`
	ErrorCode   string    `json:"error_code"`
	StartedAt   time.Time `json:"started_at"`
	CompletedAt time.Time `json:"completed_at"`
	Retries     int       `json:"retries"`
}

// DurationMS is the step's time from its start to its end, delays included.
func (r StepResult) DurationMS() int64 { return r.CompletedAt.Sub(r.StartedAt).Milliseconds() }

// CleanupOff is one cleanup OFF a sequence's end sent.
type CleanupOff struct {
	Target    string `json:"target"` // esp_id:gpio
	CommandID string `json:"command_id"`
	Error     string `json:"error"`
}

// Active reports a pending or running sequence.
func (p Progress) Active() bool { return p.Status == StatusPending || p.Status == StatusRunning }

// StepName is the name of the current step.
func (p Progress) StepName(steps []rule.Step) string {
	if p.CurrentStep < len(steps) {
		return stepName(steps, p.CurrentStep)
	}
	return ""
}

// Percent is the share of finished steps.
func (p Progress) Percent() float64 {
	if p.Status == StatusCompleted || p.TotalSteps == 0 {
		return 100
	}
	return float64(len(p.Steps)) * 100 / float64(p.TotalSteps)
}

func stepName(steps []rule.Step, i int) string {
	if n := steps[i].Name; n != "" {
		return n
	}
	return fmt.Sprintf("step %d", i)
}

// Phases of a step: each ends with a stored cursor, so that a restart
// picks the step up where it was.
const (
	phaseStart  = ""       // the step has not begun
	phaseBefore = "before" // waiting delay_before_seconds
	phaseAction = "action" // an attempt is under way
	phaseRetry  = "retry"  // waiting retry_delay_seconds
	phaseDelay  = "delay"  // a delay step's wait
	phaseAfter  = "after"  // waiting delay_after_seconds
)

// cursor is where a sequence is.
type cursor struct {
	Step        int        `json:"step"`
	Phase       string     `json:"phase"`
	Attempts    int        `json:"attempts"`
	Until       *time.Time `json:"until,omitempty"`        // the end of the current wait
	AttemptEnds *time.Time `json:"attempt_ends,omitempty"` // the timeout of the attempt under way
	CommandID   string     `json:"command_id,omitempty"`   // the attempt's command
	// Marked: this attempt put its actuator on the switched-on list (taken
	// back when the command is not issued). Off: the issued command
	// switches off (an acknowledged one takes the actuator off the list).
	Marked      bool      `json:"marked,omitempty"`
	Off         bool      `json:"off,omitempty"`
	StepStarted time.Time `json:"step_started"`
	// StepFailed, with its code and message, is the outcome of a step that
	// failed and went on (on_failure continue) into its delay_after.
	StepFailed bool   `json:"step_failed,omitempty"`
	LastCode   string `json:"last_code,omitempty"`
	LastError  string `json:"last_error,omitempty"`
}

// state is a sequence's persisted document: the progress and what a
// restart needs to go on.
type state struct {
	Progress Progress `json:"progress"`
	// Action is the sequence action as the rule had it at the start, so that
	// a changed rule does not change a running sequence.
	Action   json.RawMessage `json:"action"`
	Trigger  rule.Trigger    `json:"trigger"`
	Deadline time.Time       `json:"deadline"`
	// SwitchedOn are the actuators a step switched on (recorded before its
	// command is issued) and no later step switched off: the cleanup OFFs.
	SwitchedOn []rule.Target `json:"switched_on"`
	Cursor     cursor        `json:"cursor"`

	seq *rule.Sequence // decoded Action
}

// sequenceID is q's id: its own, else seq-{rule_id}-{epoch_seconds}.
func sequenceID(r *rule.Rule, q *rule.Sequence, now time.Time) string {
	if q.SequenceID != "" {
		return q.SequenceID
	}
	return fmt.Sprintf("seq-%s-%d", r.ID, now.Unix())
}

func newState(r *rule.Rule, q *rule.Sequence, trig rule.Trigger, now time.Time, maxDuration time.Duration) state {
	cp := *q
	cp.Steps = slices.Clone(q.Steps)
	raw, _ := json.Marshal(rule.Action{Type: rule.TypeSequence, Sequence: &cp})
	return state{
		Progress: Progress{
			SequenceID:  sequenceID(r, q, now),
			RuleID:      r.ID,
			RuleName:    r.Name,
			Status:      StatusPending,
			Description: q.Description,
			TotalSteps:  len(q.Steps),
			StartedAt:   now.UTC(),
			Steps:       []StepResult{},
			CleanupOffs: []CleanupOff{},
		},
		Action:     raw,
		Trigger:    trig,
		Deadline:   now.Add(maxDuration),
		SwitchedOn: []rule.Target{},
		seq:        &cp,
	}
}

func decodeState(doc []byte) (state, error) {
	var st state
	if err := json.Unmarshal(doc, &st); err != nil {
		return st, err
	}
	a, issues := rule.DecodeAction(st.Action)
	if len(issues) > 0 || a.Sequence == nil {
		return st, fmt.Errorf("stored sequence action: %v", issues)
	}
	st.seq = a.Sequence
	return st, nil
}

func (st *state) row() (store.Sequence, error) {
	doc, err := json.Marshal(st)
	if err != nil {
		return store.Sequence{}, fmt.Errorf("encode sequence: %w", err)
	}
	return store.Sequence{
		ID:         st.Progress.SequenceID,
		RuleID:     st.Progress.RuleID,
		Status:     st.Progress.Status,
		StartedAt:  st.Progress.StartedAt,
		FinishedAt: st.Progress.CompletedAt,
		Doc:        doc,
	}, nil
}

func (st *state) active() bool { return st.Progress.Active() }

// due is when the sequence next had to act: the end of its wait or of its
// attempt, else its start.
func (st *state) due() time.Time {
	switch {
	case st.Cursor.Until != nil:
		return *st.Cursor.Until
	case st.Cursor.AttemptEnds != nil:
		return *st.Cursor.AttemptEnds
	case st.Progress.Status == StatusPending:
		return st.Progress.StartedAt
	}
	return time.Now()
}

// touches reports a step or a switched-on actuator on espID.
func (st *state) touches(espID string) bool {
	for _, t := range st.SwitchedOn {
		if t.EspID == espID {
			return true
		}
	}
	for _, s := range st.seq.Steps {
		if s.Action != nil && s.Action.Command != nil && s.Action.Command.EspID == espID {
			return true
		}
	}
	return false
}

// switched records t as switched on (on) or off; it reports whether the
// list changed.
func (st *state) switched(t rule.Target, on bool) bool {
	i := slices.Index(st.SwitchedOn, t)
	switch {
	case on && i < 0:
		st.SwitchedOn = append(st.SwitchedOn, t)
		return true
	case !on && i >= 0:
		st.SwitchedOn = slices.Delete(st.SwitchedOn, i, i+1)
		return true
	}
	return false
}

// run is one sequence in memory; mu guards st, cancel and done.
type run struct {
	mu     sync.Mutex
	st     state
	cancel context.CancelCauseFunc // nil once it has ended (or before it was launched)
	done   chan struct{}           // closed when its goroutine has returned
}

func (rn *run) active() bool {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.st.active()
}

// progress copies the progress.
func (rn *run) progress() Progress {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.st.Progress
	p.Steps = slices.Clone(p.Steps)
	p.CleanupOffs = slices.Clone(p.CleanupOffs)
	return p
}

// View is a sequence's progress with its current step's name.
type View struct {
	Progress
	CurrentStepName string
}

func (rn *run) view() View {
	p := rn.progress()
	rn.mu.Lock()
	name := p.StepName(rn.st.seq.Steps)
	rn.mu.Unlock()
	return View{Progress: p, CurrentStepName: name}
}
