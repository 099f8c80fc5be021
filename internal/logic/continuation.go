package logic

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/store"
)

// continuation is the rest of a rule's action list after a delay
// (docs/domain.md §6.4): persisted before the delay is answered as pending,
// so that a restart resumes it or ends it with its cleanup OFFs.
type continuation struct {
	ID         string    `json:"id"`
	RuleID     string    `json:"rule_id"`
	DelayIndex int       `json:"delay_index"`
	Next       int       `json:"next"`
	Due        time.Time `json:"due"`
	Run        run       `json:"run"`
	// Execution is the record so far, for a resume after a restart.
	Execution Execution `json:"execution"`

	timer *time.Timer
}

// maxOverdue is how late a continuation found at start may still run; an
// older one ends cancelled with its cleanup OFFs, since the situation it
// was meant for has passed.
const maxOverdue = time.Minute

const continuationWorker = "\x00continuations"

// suspend ends this part of the action list at the delay at index i; e.mu
// is held. The locks taken so far go back with the batch.
func (s *Service) suspend(ctx context.Context, e *entry, x *execution, i int, r *run) {
	now := s.now()
	d := time.Duration(e.rule.Actions[i].Delay.Seconds) * time.Second
	idx := x.add(ActionResult{Index: i, Type: rule.TypeDelay, Status: StatusPending,
		Message: fmt.Sprintf("the remaining actions run at %s", now.Add(d).UTC().Format(time.RFC3339))})
	c := &continuation{
		ID:         uuid.NewString(),
		RuleID:     e.rule.ID,
		DelayIndex: idx,
		Next:       i + 1,
		Due:        now.Add(d),
		Run:        *r,
		Execution:  x.snapshot(),
	}
	if err := s.persist(ctx, c); err != nil {
		s.log.Error("delay continuation not stored; it runs but a restart loses it", "rule_id", e.rule.ID,
			"error", err)
	}
	e.cont = c
	s.schedule(e, c, d)
}

func (s *Service) persist(ctx context.Context, c *continuation) error {
	doc, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.d.Store.SaveContinuation(ctx, store.RuleContinuation{
		ID:          c.ID,
		RuleID:      c.RuleID,
		ExecutionID: c.Execution.ID,
		DueAt:       c.Due,
		Doc:         doc,
	})
}

// schedule arms c's timer; e.mu is held.
func (s *Service) schedule(e *entry, c *continuation, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.wg.Add(1)
	c.timer = time.AfterFunc(d, func() {
		defer s.wg.Done()
		s.enqueue(continuationWorker, func(ctx context.Context) { s.resume(ctx, e, c) }, true)
	})
}

// resume runs a continuation that is due: it re-acquires the locks of its
// actions up to the next delay, and the actuator checks apply at dispatch.
// A continuation that fails ends with the cleanup OFFs of docs/domain.md §6.5.
func (s *Service) resume(ctx context.Context, e *entry, c *continuation) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cont != c {
		return // cancelled meanwhile
	}
	e.cont = nil
	s.forget(ctx, c)
	x := s.reopen(c)
	x.set(c.DelayIndex, StatusSucceeded, "", "")
	if e.gone || !e.rule.Enabled {
		s.endRun(ctx, e, x, &c.Run, codeCancelled, "the rule was disabled or deleted during its delay")
		return
	}

	b := s.conflicts.batch()
	defer b.release()
	now := s.now()
	if lost := b.acquire(e.rule.ID, e.rule.Priority, locksOf(e.rule.Actions, c.Next), now); lost != nil {
		s.noteConflict(ctx, e, lost)
		x.add(ActionResult{Index: c.Next, Type: e.rule.Actions[c.Next].Kind(), Status: StatusBlockedConflict,
			Code: codeConflict, Message: fmt.Sprintf("%s is locked by rule %s", lost.Key, lost.HolderRule)})
		s.endRun(ctx, e, x, &c.Run, codeConflict, "")
		return
	}
	from := x.len()
	done := s.runActions(ctx, e, x, c.Next, &c.Run)
	if x.failedSince(from) {
		if !done {
			s.cancelContinuationLocked(ctx, e, "continuation_failed", false)
			x.close()
		}
		s.cleanupOffs(ctx, e, x, &c.Run)
	}
}

// reopen finds the open record of c's execution, or rebuilds it from the
// continuation after a restart.
func (s *Service) reopen(c *continuation) *execution {
	if x := s.execution(c.Execution.ID); x != nil {
		return x
	}
	x := &execution{s: s, more: true, rec: c.Execution}
	s.mu.Lock()
	s.execs[x.rec.ID] = x
	s.mu.Unlock()
	for i, a := range x.rec.Actions {
		if a.Status == StatusPending && a.CommandID != "" {
			s.track(a.CommandID, x, i)
		}
	}
	return x
}

func (s *Service) forget(ctx context.Context, c *continuation) {
	if err := s.d.Store.DeleteContinuation(ctx, c.ID); err != nil {
		s.log.Error("continuation not removed", "id", c.ID, "error", err)
	}
}

// cancelContinuationLocked ends a pending continuation (docs/domain.md §6.5):
// its delay result fails with reason, and with cleanup the actuators it
// switched on get their OFF. e.mu is held.
func (s *Service) cancelContinuationLocked(ctx context.Context, e *entry, reason string, cleanup bool) {
	c := e.cont
	if c == nil {
		return
	}
	e.cont = nil
	s.mu.Lock()
	if c.timer != nil && c.timer.Stop() {
		s.wg.Done()
	}
	s.mu.Unlock()
	s.forget(ctx, c)
	x := s.reopen(c)
	x.set(c.DelayIndex, StatusFailed, codeCancelled, "cancelled: "+reason)
	if cleanup {
		s.cleanupOffs(ctx, e, x, &c.Run)
	}
	x.close()
}

// endRun closes a run that cannot go on, with the cleanup OFFs.
func (s *Service) endRun(ctx context.Context, e *entry, x *execution, r *run, code, msg string) {
	if msg != "" {
		x.add(ActionResult{Index: x.len(), Type: rule.TypeDelay, Status: StatusFailed, Code: code, Message: msg})
	}
	s.cleanupOffs(ctx, e, x, r)
	x.close()
}

// cleanupOffs sends OFF to every actuator the run switched on and did not
// switch off (reason sequence_abort, docs/domain.md §6.5).
func (s *Service) cleanupOffs(ctx context.Context, e *entry, x *execution, r *run) {
	targets := r.SwitchedOn
	r.SwitchedOn = nil
	s.offTargets(ctx, e, x, targets, "sequence_abort")
}

// loadContinuations reads the pending continuations at start; Start
// schedules them (docs/domain.md §4.8).
func (s *Service) loadContinuations(ctx context.Context) error {
	cs, err := s.d.Store.LoadContinuations(ctx)
	if err != nil {
		return fmt.Errorf("load continuations: %w", err)
	}
	for _, sc := range cs {
		var c continuation
		if err := json.Unmarshal(sc.Doc, &c); err != nil {
			s.log.Error("stored continuation does not decode; dropped", "id", sc.ID, "error", err)
			s.forget(ctx, &continuation{ID: sc.ID})
			continue
		}
		s.mu.Lock()
		e := s.rules[c.RuleID]
		s.mu.Unlock()
		if e == nil || c.Next > len(e.rule.Actions) {
			s.forget(ctx, &c)
			continue
		}
		e.mu.Lock()
		e.cont = &c
		e.mu.Unlock()
	}
	return nil
}

// resumeContinuations schedules the continuations found at start: a
// future one at its time, a recent overdue one at once, an older one ends
// cancelled with its cleanup OFFs.
func (s *Service) resumeContinuations() {
	now := s.now()
	for _, e := range s.entries() {
		e.mu.Lock()
		c := e.cont
		if c != nil && c.timer == nil {
			switch late := now.Sub(c.Due); {
			case late > maxOverdue:
				s.cancelContinuationLocked(context.Background(), e, "hub_restart", true)
			default:
				s.schedule(e, c, max(0, -late))
			}
		}
		e.mu.Unlock()
	}
}

// emergencyStop cancels the pending continuations that target the stopped
// device, or every one for a global stop (docs/domain.md §5.2 step 2).
func (s *Service) emergencyStop(ctx context.Context, espID string) {
	for _, e := range s.entries() {
		e.mu.Lock()
		if c := e.cont; c != nil && (espID == "" || touches(e, c, espID)) {
			s.cancelContinuationLocked(ctx, e, "emergency_stop", true)
		}
		e.mu.Unlock()
	}
}

// touches reports a continuation with a switched-on or remaining target on espID.
func touches(e *entry, c *continuation, espID string) bool {
	for _, t := range c.Run.SwitchedOn {
		if t.EspID == espID {
			return true
		}
	}
	for _, a := range e.rule.Actions[min(c.Next, len(e.rule.Actions)):] {
		if a.Command != nil && a.Command.EspID == espID {
			return true
		}
	}
	return false
}

// storeState is a hysteresis state as stored.
func storeState(ruleID, path string, h rule.HysteresisState) store.HysteresisState {
	return store.HysteresisState{
		RuleID:           ruleID,
		Path:             path,
		Active:           h.Active,
		LastValue:        h.LastValue,
		LastActivation:   h.LastActivation,
		LastDeactivation: h.LastDeactivation,
	}
}
