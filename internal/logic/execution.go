package logic

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Action result statuses (docs/domain.md §6.11); pending is the only one
// that is not terminal.
const (
	StatusSucceeded       = "succeeded"
	StatusFailed          = "failed"
	StatusBlockedConflict = "blocked_conflict"
	StatusBlockedSafety   = "blocked_safety"
	StatusNoChange        = "skipped_no_change"
	StatusStarted         = "started"
	StatusPending         = "pending"
)

// Terminal reason codes of an execution; an action's code is one of these
// or a rejection code of docs/domain.md §4.4 (emergency_stop_active, …).
const (
	codeCompleted      = "completed"
	codeConflict       = "conflict_priority_lost"
	codeRateLimited    = "rate_limited"
	codeTargetOffline  = "skipped_target_offline"
	codeCommandTimeout = "command_timeout"
	codeCommandFailed  = "command_failed"
	codeCommandExpired = "command_expired"
	codeCommandError   = "command_error"
	codeDelivery       = "delivery_failed"
	codeNoRecipients   = "no_recipients"
	codeHostNotAllowed = "host_not_allowed"
	codeEmailDisabled  = "email_disabled"
	codeNotSupported   = "not_supported"
	codeCancelled      = "cancelled"
)

// ActionResult is one action's outcome (docs/domain.md §6.11 action_results).
type ActionResult struct {
	Index      int    `json:"index"`
	Type       string `json:"type"`
	Target     string `json:"target,omitempty"`
	Status     string `json:"status"`
	CommandID  string `json:"command_id,omitempty"`
	SequenceID string `json:"sequence_id,omitempty"`
	Code       string `json:"code,omitempty"`
	Message    string `json:"message,omitempty"`
}

func (a ActionResult) ok() bool {
	return a.Status == StatusSucceeded || a.Status == StatusNoChange || a.Status == StatusStarted
}

// Execution is one history record (docs/domain.md §6.11).
type Execution struct {
	ID             string            `json:"id"`
	RuleID         string            `json:"rule_id"`
	RuleName       string            `json:"rule_name"`
	TriggeredAt    time.Time         `json:"triggered_at"`
	Trigger        rule.Trigger      `json:"trigger"`
	Conditions     []rule.LeafResult `json:"condition_results"`
	Actions        []ActionResult    `json:"action_results"`
	Success        bool              `json:"success"`
	TerminalReason string            `json:"terminal_reason_code"`
	ErrorMessage   string            `json:"error_message"`
	FinishedAt     *time.Time        `json:"finished_at"`
	ExecutionMS    *int64            `json:"execution_time_ms"`
}

// execution is a record on its way to its final state: created when the
// actions start, finalised once no action is pending and no continuation
// can add one.
type execution struct {
	s    *Service
	mu   sync.Mutex
	rec  Execution
	more bool // the action list has not run to its end yet
}

func (s *Service) newExecution(e *entry, trig rule.Trigger, leaves []rule.LeafResult, now time.Time) *execution {
	x := &execution{s: s, more: true, rec: Execution{
		ID:          uuid.NewString(),
		RuleID:      e.rule.ID,
		RuleName:    e.rule.Name,
		TriggeredAt: now.UTC(),
		Trigger:     trig,
		Conditions:  leaves,
	}}
	s.mu.Lock()
	s.execs[x.rec.ID] = x
	s.mu.Unlock()
	x.mu.Lock()
	x.saveLocked()
	x.mu.Unlock()
	return x
}

// execution returns the open record of id.
func (s *Service) execution(id string) *execution {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.execs[id]
}

// add appends an action result and returns its position.
func (x *execution) add(r ActionResult) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.rec.Actions = append(x.rec.Actions, r)
	i := len(x.rec.Actions) - 1
	x.changedLocked(i)
	return i
}

// set gives the pending result at position i its outcome.
func (x *execution) set(i int, status, code, msg string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if i >= len(x.rec.Actions) || x.rec.Actions[i].Status != StatusPending {
		return
	}
	a := &x.rec.Actions[i]
	a.Status, a.Code = status, code
	if msg != "" {
		a.Message = msg
	}
	x.changedLocked(i)
}

// close says that no more action results will be added.
func (x *execution) close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.more = false
	x.finishLocked()
}

// failedSince reports a result from position i on that did not succeed.
func (x *execution) failedSince(i int) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, a := range x.rec.Actions[min(i, len(x.rec.Actions)):] {
		if a.Status != StatusPending && !a.ok() {
			return true
		}
	}
	return false
}

func (x *execution) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.rec.Actions)
}

// snapshot copies the record.
func (x *execution) snapshot() Execution {
	x.mu.Lock()
	defer x.mu.Unlock()
	r := x.rec
	r.Actions = append([]ActionResult(nil), x.rec.Actions...)
	return r
}

// changedLocked saves the record, then emits the logic_execution event of a
// terminal result, so that whoever sees the event finds the record saved;
// x.mu is held.
func (x *execution) changedLocked(i int) {
	if !x.finishLocked() {
		x.saveLocked()
	}
	if a := x.rec.Actions[i]; a.Status != StatusPending {
		x.emitLocked(a)
	}
}

// finishLocked finalises the record when nothing is pending; x.mu is held.
func (x *execution) finishLocked() bool {
	if x.more || x.rec.FinishedAt != nil {
		return false
	}
	for _, a := range x.rec.Actions {
		if a.Status == StatusPending {
			return false
		}
	}
	now := x.s.now().UTC()
	ms := now.Sub(x.rec.TriggeredAt).Milliseconds()
	x.rec.FinishedAt, x.rec.ExecutionMS = &now, &ms
	x.rec.Success, x.rec.TerminalReason = true, codeCompleted
	for _, a := range x.rec.Actions {
		if !a.ok() {
			x.rec.Success, x.rec.TerminalReason, x.rec.ErrorMessage = false, a.Code, a.Message
			break
		}
	}
	if x.rec.TerminalReason == "" {
		x.rec.TerminalReason = StatusFailed
	}
	x.saveLocked()
	x.s.metrics.executions.WithLabelValues(x.rec.TerminalReason).Inc()
	x.s.mu.Lock()
	delete(x.s.execs, x.rec.ID)
	x.s.mu.Unlock()
	return true
}

func (x *execution) emitLocked(a ActionResult) {
	t := x.rec.Trigger
	lt := event.LogicTrigger{
		Type:       t.Kind,
		Reason:     t.Reason,
		EspID:      t.EspID,
		GPIO:       t.GPIO,
		SensorType: t.SensorType,
		Value:      t.Value,
	}
	if t.ReadingTime != nil {
		u := t.ReadingTime.Unix()
		lt.ReadingTime = &u
	}
	now := x.s.now()
	x.s.d.Events.Publish(event.Event{Time: now, Data: event.LogicExecution{
		RuleID:      x.rec.RuleID,
		RuleName:    x.rec.RuleName,
		ExecutionID: x.rec.ID,
		Trigger:     lt,
		Action: event.LogicAction{
			Index:      a.Index,
			Type:       a.Type,
			Target:     a.Target,
			Status:     a.Status,
			CommandID:  a.CommandID,
			SequenceID: a.SequenceID,
			Code:       a.Code,
		},
		Success:   a.ok(),
		Message:   a.Message,
		Timestamp: now.Unix(),
	}})
}

// saveLocked queues the record's current state; x.mu is held.
func (x *execution) saveLocked() {
	r := x.rec
	trig, _ := json.Marshal(r.Trigger)
	conds, _ := json.Marshal(nonNil(r.Conditions))
	acts, _ := json.Marshal(nonNil(r.Actions))
	executed := 0
	for _, a := range r.Actions {
		if a.Status == StatusSucceeded || a.Status == StatusStarted || a.Status == StatusPending {
			executed++
		}
	}
	reason := r.Trigger.Reason
	if reason == "" {
		reason = r.Trigger.Kind
	}
	err := x.s.d.Store.SaveRuleExecution(context.Background(), store.RuleExecution{
		ID:               r.ID,
		RuleID:           r.RuleID,
		RuleName:         r.RuleName,
		TriggeredAt:      r.TriggeredAt,
		TriggerReason:    reason,
		Trigger:          trig,
		ConditionResults: conds,
		ActionResults:    acts,
		ActionsExecuted:  executed,
		Success:          r.Success,
		TerminalReason:   r.TerminalReason,
		ErrorMessage:     r.ErrorMessage,
		FinishedAt:       r.FinishedAt,
		ExecutionMS:      r.ExecutionMS,
	})
	if err != nil {
		x.s.log.Error("rule execution not stored", "execution_id", r.ID, "error", err)
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// tracked is an action waiting for its command's terminal state.
type tracked struct {
	x     *execution
	index int
	timer *time.Timer
}

// pollAfter is when an unfinished command is looked up, should its
// terminal command_status event have been missed: past the queue expiry
// and the response timeout (docs/domain.md §4.5).
const pollAfter = 50 * time.Second

// track waits for the outcome of command id for the result at index.
func (s *Service) track(id string, x *execution, index int) {
	t := &tracked{x: x, index: index}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.pending[id] = t
	s.armPollLocked(id, t)
	s.mu.Unlock()
	// The answer may have come before the command was tracked.
	s.poll(id)
}

func (s *Service) armPollLocked(id string, t *tracked) {
	s.wg.Add(1)
	t.timer = time.AfterFunc(pollAfter, func() {
		defer s.wg.Done()
		s.poll(id)
		s.mu.Lock()
		if cur := s.pending[id]; cur == t && !s.stopped {
			s.armPollLocked(id, t)
		}
		s.mu.Unlock()
	})
}

// poll reads the command's record and settles a terminal one.
func (s *Service) poll(id string) {
	rec, err := s.d.Actuators.CommandByID(context.Background(), id)
	if err != nil {
		return
	}
	var msg *string
	if rec.Error != "" {
		msg = &rec.Error
	}
	s.commandStatus(id, rec.Status, msg)
}

// commandStatus settles a tracked action on its command's terminal state.
func (s *Service) commandStatus(id, status string, errMsg *string) {
	res, code := commandOutcome(status)
	if res == "" {
		return
	}
	s.mu.Lock()
	t := s.pending[id]
	if t != nil {
		delete(s.pending, id)
		if t.timer != nil && t.timer.Stop() {
			s.wg.Done()
		}
	}
	s.mu.Unlock()
	if t == nil {
		return
	}
	msg := "command " + status
	if errMsg != nil && *errMsg != "" {
		msg += ": " + *errMsg
	}
	t.x.set(t.index, res, code, msg)
}

// commandOutcome maps a terminal command state to an action result.
func commandOutcome(status string) (result, code string) {
	switch status {
	case actuator.StatusAcknowledged:
		return StatusSucceeded, ""
	case actuator.StatusFailed:
		return StatusFailed, codeCommandFailed
	case actuator.StatusTimeout:
		return StatusFailed, codeCommandTimeout
	case actuator.StatusExpired:
		return StatusFailed, codeCommandExpired
	}
	return "", ""
}

// History returns execution records (docs/api.md §10.1).
func (s *Service) History(ctx context.Context, f store.RuleExecutionFilter) ([]Execution, int, float64, error) {
	page, err := s.d.Store.QueryRuleExecutions(ctx, f)
	if err != nil {
		return nil, 0, 0, err
	}
	out := make([]Execution, 0, len(page.Entries))
	for _, r := range page.Entries {
		x := Execution{
			ID:             r.ID,
			RuleID:         r.RuleID,
			RuleName:       r.RuleName,
			TriggeredAt:    r.TriggeredAt,
			Success:        r.Success,
			TerminalReason: r.TerminalReason,
			ErrorMessage:   r.ErrorMessage,
			FinishedAt:     r.FinishedAt,
			ExecutionMS:    r.ExecutionMS,
		}
		_ = json.Unmarshal(r.Trigger, &x.Trigger)
		_ = json.Unmarshal(r.ConditionResults, &x.Conditions)
		_ = json.Unmarshal(r.ActionResults, &x.Actions)
		out = append(out, x)
	}
	rate := 0.0
	if page.Total > 0 {
		rate = float64(page.Succeeded) / float64(page.Total)
	}
	return out, page.Total, rate, nil
}
