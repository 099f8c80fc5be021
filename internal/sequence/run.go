package sequence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/rule"
)

// A sequence runs on its own goroutine as a loop of phase transitions
// (docs/domain.md §6.5): each transition changes the cursor, is stored,
// and only then are its events published. The run's context ends with a
// cancellation (its cause says who), max_duration_seconds (errTimeout) or
// the hub's stop (errStopping, which leaves the sequence running in the
// store for the next start).

// aborted is a step failure that ends the sequence (on_failure abort).
type aborted struct{ code, msg string }

func (a *aborted) Error() string { return a.msg }

// execute runs rn from its cursor to its end.
func (s *Service) execute(ctx context.Context, rn *run) {
	s.begin(ctx, rn)
	for {
		if ctx.Err() != nil {
			break
		}
		done, err := s.advance(ctx, rn)
		if done {
			s.complete(ctx, rn)
			return
		}
		var ab *aborted
		if errors.As(err, &ab) {
			s.end(context.WithoutCancel(ctx), rn, ab)
			return
		}
	}
	cause := context.Cause(ctx)
	if errors.Is(cause, errStopping) {
		return
	}
	s.end(context.WithoutCancel(ctx), rn, cause)
}

// begin moves a pending sequence to running (sequence_started).
func (s *Service) begin(ctx context.Context, rn *run) {
	rn.mu.Lock()
	p := &rn.st.Progress
	if p.Status != StatusPending {
		rn.mu.Unlock()
		return
	}
	p.Status = StatusRunning
	started := event.SequenceStarted{
		SequenceID:  p.SequenceID,
		RuleID:      p.RuleID,
		RuleName:    p.RuleName,
		TotalSteps:  p.TotalSteps,
		Description: p.Description,
		Timestamp:   time.Now().Unix(),
	}
	rn.mu.Unlock()
	s.commit(ctx, rn, started)
}

// advance makes one phase transition; done once every step has run. A
// returned error ends the sequence: the context's, or *aborted.
func (s *Service) advance(ctx context.Context, rn *run) (done bool, err error) {
	rn.mu.Lock()
	cur := rn.st.Cursor
	steps := rn.st.seq.Steps
	rn.mu.Unlock()
	if cur.Step >= len(steps) {
		return true, nil
	}
	step := steps[cur.Step]
	var events []event.Payload
	switch cur.Phase {
	case phaseStart:
		events = s.startStep(rn, step)
	case phaseBefore, phaseRetry, phaseDelay, phaseAfter:
		if err := s.sleep(ctx, *cur.Until); err != nil {
			return false, err
		}
		events = s.waited(rn, step, cur.Phase)
	case phaseAction:
		if step.DelaySeconds != nil {
			rn.mu.Lock()
			rn.st.Cursor.Phase, rn.st.Cursor.Until = phaseDelay, s.after(*step.DelaySeconds)
			rn.mu.Unlock()
			break
		}
		res, err := s.attempt(ctx, rn, step)
		if err != nil {
			return false, err
		}
		events, err = s.attempted(rn, step, res)
		if err != nil {
			s.commit(ctx, rn, events...)
			return false, err
		}
	}
	s.commit(ctx, rn, events...)
	return false, nil
}

// after is the instant n of the runner's seconds from now.
func (s *Service) after(n int) *time.Time {
	t := time.Now().Add(s.secs(float64(n)))
	return &t
}

// sleep waits until t or the end of ctx.
func (s *Service) sleep(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startStep begins the current step: its delay_before, or its action.
func (s *Service) startStep(rn *run, step rule.Step) []event.Payload {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	c := &rn.st.Cursor
	c.StepStarted, c.Attempts, c.StepFailed, c.LastCode, c.LastError = time.Now().UTC(), 0, false, "", ""
	c.Phase = phaseAction
	if step.DelayBeforeSeconds > 0 {
		c.Phase, c.Until = phaseBefore, s.after(step.DelayBeforeSeconds)
	}
	rn.st.Progress.CurrentStep = c.Step
	return []event.Payload{rn.stepEvent("starting")}
}

// waited ends a wait: the action follows delay_before and retry_delay, a
// delay step is done, delay_after leads to the next step.
func (s *Service) waited(rn *run, step rule.Step, phase string) []event.Payload {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	c := &rn.st.Cursor
	c.Until = nil
	switch phase {
	case phaseBefore, phaseRetry:
		c.Phase = phaseAction
	case phaseDelay:
		c.Attempts = 1
		return rn.stepDoneLocked(s, step, outcome{ok: true, msg: fmt.Sprintf("waited %d s", *step.DelaySeconds)})
	case phaseAfter:
		rn.nextStepLocked()
	}
	return nil
}

// attempted settles an attempt: the step succeeds, retries after its
// retry_delay, or fails; a failure that aborts is returned as *aborted.
func (s *Service) attempted(rn *run, step rule.Step, res outcome) ([]event.Payload, error) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	c := &rn.st.Cursor
	c.AttemptEnds, c.CommandID, c.Marked, c.Off = nil, "", false, false
	if !res.ok && c.Attempts <= step.RetryCount {
		c.Phase, c.LastCode, c.LastError = phaseRetry, res.code, res.msg
		t := time.Now().Add(s.secs(step.RetryDelaySeconds))
		c.Until = &t
		return nil, nil
	}
	events := rn.stepDoneLocked(s, step, res)
	if !res.ok && !continues(rn.st.seq, step) {
		return events, &aborted{code: res.code, msg: rn.failureText(res)}
	}
	return events, nil
}

// continues is docs/domain.md §6.5's failure rule: the step's on_failure
// decides, else the sequence's abort_on_failure.
func continues(q *rule.Sequence, step rule.Step) bool {
	if step.OnFailure != "" {
		return step.OnFailure == "continue"
	}
	return !q.AbortOnFailure
}

// stepDoneLocked records the step's result and moves on to its
// delay_after or the next step; rn.mu is held.
func (rn *run) stepDoneLocked(s *Service, step rule.Step, res outcome) []event.Payload {
	c := &rn.st.Cursor
	rn.st.Progress.Steps = append(rn.st.Progress.Steps, StepResult{
		Index:       c.Step,
		Name:        stepName(rn.st.seq.Steps, c.Step),
		Success:     res.ok,
		Message:     res.msg,
		ErrorCode:   res.code,
		StartedAt:   c.StepStarted,
		CompletedAt: time.Now().UTC(),
		Retries:     max(0, c.Attempts-1),
	})
	status := "completed"
	events := []event.Payload{}
	if !res.ok {
		status = "failed"
	}
	events = append(events, rn.stepEvent(status))
	if !res.ok {
		events = append(events, event.SequenceError{
			SequenceID: rn.st.Progress.SequenceID,
			ErrorCode:  res.code,
			Message:    rn.failureText(res),
			Timestamp:  time.Now().Unix(),
		})
		if !continues(rn.st.seq, step) {
			return events
		}
	}
	if step.DelayAfterSeconds > 0 {
		c.Phase, c.Until = phaseAfter, s.after(step.DelayAfterSeconds)
		return events
	}
	rn.nextStepLocked()
	return events
}

func (rn *run) nextStepLocked() {
	rn.st.Cursor = cursor{Step: rn.st.Cursor.Step + 1}
}

// failureText names the failed step; rn.mu is held.
func (rn *run) failureText(res outcome) string {
	c := rn.st.Cursor
	return fmt.Sprintf("step %d (%s): %s", c.Step, stepName(rn.st.seq.Steps, c.Step), res.msg)
}

// stepEvent is a sequence_step event of the current step; rn.mu is held.
func (rn *run) stepEvent(status string) event.SequenceStep {
	p := rn.st.Progress
	return event.SequenceStep{
		SequenceID:      p.SequenceID,
		Step:            rn.st.Cursor.Step,
		StepName:        stepName(rn.st.seq.Steps, rn.st.Cursor.Step),
		TotalSteps:      p.TotalSteps,
		ProgressPercent: p.Percent(),
		Status:          status,
		Timestamp:       time.Now().Unix(),
	}
}

// outcome is one attempt's result.
type outcome struct {
	ok        bool
	code, msg string
}

func failure(code, format string, args ...any) outcome {
	return outcome{code: code, msg: fmt.Sprintf(format, args...)}
}

// attempt runs one attempt of the current step's action. An attempt found
// under way after a restart waits for its command's outcome; one that had
// not issued its command yet counts as failed.
func (s *Service) attempt(ctx context.Context, rn *run, step rule.Step) (outcome, error) {
	rn.mu.Lock()
	c := rn.st.Cursor
	rn.mu.Unlock()
	switch {
	case c.CommandID != "":
		return s.await(ctx, rn, c.CommandID, *c.AttemptEnds)
	case c.AttemptEnds != nil:
		return failure(codeInterrupted, "the attempt was interrupted by a hub restart"), nil
	}
	ends := time.Now().Add(s.secs(float64(step.TimeoutSeconds)))
	rn.mu.Lock()
	rn.st.Cursor.Attempts++
	rn.st.Cursor.AttemptEnds = &ends
	if cmd := step.Action.Command; cmd != nil && cmd.Command != "OFF" {
		// Recorded before the command is issued: a restart that finds it
		// sends the cleanup OFF even if the answer never came.
		rn.st.Cursor.Marked = rn.st.switched(cmd.Target, true)
	}
	rn.mu.Unlock()
	s.commit(ctx, rn)
	if n := step.Action.Notification; n != nil {
		return s.notify(ctx, rn, n, ends)
	}
	return s.command(ctx, rn, step.Action.Command, ends)
}

// command issues a step's command as the rule (logic:{rule_id}) through
// every check of docs/domain.md §4.4, and waits for its acknowledgement.
func (s *Service) command(ctx context.Context, rn *run, c *rule.Command, ends time.Time) (outcome, error) {
	rn.mu.Lock()
	p := rn.st.Progress
	step := rn.st.Cursor.Step
	name := stepName(rn.st.seq.Steps, step)
	rn.mu.Unlock()
	if c.Command != "OFF" && s.d.Pauses != nil && s.d.Pauses.RulesPaused(c.EspID) {
		s.unmark(rn, c.Target)
		return failure(actuator.CodeEmergencyStop,
			"rules targeting %s are paused by an emergency stop until a clear with resume_rules", c.EspID), nil
	}
	if !s.d.Engine.AdmitStep(c.EspID) {
		s.unmark(rn, c.Target)
		return failure(codeRateLimited, "the device's command rate limit is reached"), nil
	}
	req := actuator.Request{
		EspID:    c.EspID,
		GPIO:     c.GPIO,
		Command:  c.Command,
		IssuedBy: "logic:" + p.RuleID,
		Metadata: map[string]any{
			"rule_id":     p.RuleID,
			"rule_name":   p.RuleName,
			"sequence_id": p.SequenceID,
			"step":        step,
			"step_name":   name,
		},
	}
	if c.Command != "TOGGLE" {
		v := c.Value
		req.Value = &v
	}
	d := int64(c.DurationSeconds)
	req.Duration = &d
	// The command is not cut short by a cancellation: it either is issued
	// (and the cleanup OFF follows) or it is not.
	out, err := s.d.Actuators.Command(context.WithoutCancel(ctx), req)
	var rej *actuator.Rejection
	switch {
	case errors.As(err, &rej):
		s.unmark(rn, c.Target)
		return failure(rej.Code, "%s", rej.Message), nil
	case err != nil:
		s.unmark(rn, c.Target)
		return failure(codeCommandError, "%v", err), nil
	}
	rn.mu.Lock()
	rn.st.Cursor.CommandID = out.CommandID
	rn.st.Cursor.Off = out.Command == "OFF" || (out.Command == "PWM" && out.Value == 0)
	rn.mu.Unlock()
	s.commit(ctx, rn)
	return s.await(ctx, rn, out.CommandID, ends)
}

// unmark takes back the switched-on record of a command that was not
// issued, unless an earlier step had switched the actuator on.
func (s *Service) unmark(rn *run, t rule.Target) {
	rn.mu.Lock()
	if rn.st.Cursor.Marked {
		rn.st.switched(t, false)
		rn.st.Cursor.Marked = false
	}
	rn.mu.Unlock()
}

// await waits for command id's outcome until ends: acknowledged is the
// step's success (docs/domain.md §6.5), any other terminal state or no
// acknowledgement in time its failure.
func (s *Service) await(ctx context.Context, rn *run, id string, ends time.Time) (outcome, error) {
	ch := s.awaitOutcome(id)
	defer s.forget(id)
	// The answer may have come before the attempt listened.
	if rec, err := s.d.Actuators.CommandByID(context.WithoutCancel(ctx), id); err == nil && terminal(rec.Status) {
		return s.settled(rn, id, rec.Status, rec.Error), nil
	}
	tm := time.NewTimer(time.Until(ends))
	defer tm.Stop()
	select {
	case status := <-ch:
		rec, _ := s.d.Actuators.CommandByID(context.WithoutCancel(ctx), id)
		return s.settled(rn, id, status, rec.Error), nil
	case <-tm.C:
		rec, err := s.d.Actuators.CommandByID(context.WithoutCancel(ctx), id)
		if err == nil && terminal(rec.Status) {
			return s.settled(rn, id, rec.Status, rec.Error), nil
		}
		return failure(codeStepTimeout, "command %s not acknowledged within timeout_seconds (%s)", id, rec.Status), nil
	case <-ctx.Done():
		return outcome{}, ctx.Err()
	}
}

// settled maps a terminal command state to the attempt's outcome; an
// acknowledged OFF takes its actuator off the cleanup list.
func (s *Service) settled(rn *run, id, status, errText string) outcome {
	switch status {
	case actuator.StatusAcknowledged:
		rn.mu.Lock()
		if rn.st.Cursor.Off {
			if c := rn.st.seq.Steps[rn.st.Cursor.Step].Action.Command; c != nil {
				rn.st.switched(c.Target, false)
			}
		}
		rn.mu.Unlock()
		return outcome{ok: true, msg: "command " + id + " acknowledged"}
	case actuator.StatusFailed:
		return failure(codeCommandFailed, "command %s failed: %s", id, errText)
	case actuator.StatusTimeout:
		return failure(codeTimedOut, "command %s timed out", id)
	}
	return failure(codeExpired, "command %s expired: %s", id, errText)
}

// notify delivers a notification step through the engine's channels; the
// step succeeds when the channel accepted it before ends.
func (s *Service) notify(ctx context.Context, rn *run, n *rule.Notification, ends time.Time) (outcome, error) {
	rn.mu.Lock()
	p := rn.st.Progress
	trig := rn.st.Trigger
	step := rn.st.Cursor.Step
	rn.mu.Unlock()
	actx, cancel := context.WithDeadline(ctx, ends)
	defer cancel()
	msg, err := s.d.Engine.Deliver(actx, &rule.Rule{ID: p.RuleID, Name: p.RuleName}, n, trig, map[string]any{
		"sequence_id": p.SequenceID,
		"step":        step,
	})
	if ctx.Err() != nil {
		return outcome{}, ctx.Err()
	}
	if err != nil {
		if actx.Err() != nil {
			return failure(codeStepTimeout, "not delivered within timeout_seconds: %v", err), nil
		}
		code := codeDelivery
		var coded interface{ ErrorCode() string }
		if errors.As(err, &coded) {
			code = coded.ErrorCode()
		}
		return failure(code, "%v", err), nil
	}
	return outcome{ok: true, msg: msg}, nil
}

// complete ends a sequence whose steps all ran.
func (s *Service) complete(ctx context.Context, rn *run) {
	now := time.Now().UTC()
	rn.mu.Lock()
	p := &rn.st.Progress
	p.Status, p.CompletedAt = StatusCompleted, &now
	p.CurrentStep = max(0, p.TotalSteps-1)
	rn.cancel = nil
	done := rn.completedEvent(now)
	rn.mu.Unlock()
	s.commit(ctx, rn, done)
}

// end finishes a sequence that failed, timed out or was cancelled: the
// step under way fails with it, and every actuator it switched on that no
// later step switched off gets its OFF (logic:{rule_id}, reason
// sequence_abort, docs/domain.md §6.5).
func (s *Service) end(ctx context.Context, rn *run, cause error) {
	var events []event.Payload
	rn.mu.Lock()
	st := &rn.st
	p := &st.Progress
	var c *cancelled
	var ab *aborted
	switch {
	case errors.As(cause, &c):
		p.Status, p.Error, p.ErrorCode, p.CancelledBy = StatusCancelled, c.reason, codeCancelled, c.by
		events = append(events, event.SequenceCancelled{SequenceID: p.SequenceID, Reason: c.reason,
			CancelledBy: c.by, Timestamp: time.Now().Unix()})
	case errors.As(cause, &ab):
		p.Status, p.Error, p.ErrorCode = StatusFailed, ab.msg, ab.code
	default:
		p.Status, p.ErrorCode = StatusTimeout, codeTimeout
		p.Error = fmt.Sprintf("max_duration_seconds (%d) reached", st.seq.MaxDurationSeconds)
		events = append(events, event.SequenceError{SequenceID: p.SequenceID, ErrorCode: codeTimeout,
			Message: p.Error, Timestamp: time.Now().Unix()})
	}
	if cur := st.Cursor; cur.Step < len(st.seq.Steps) && cur.Phase != phaseStart && !rn.recordedLocked() {
		p.Steps = append(p.Steps, StepResult{
			Index:       cur.Step,
			Name:        stepName(st.seq.Steps, cur.Step),
			Message:     p.Error,
			ErrorCode:   p.ErrorCode,
			StartedAt:   cur.StepStarted,
			CompletedAt: time.Now().UTC(),
			Retries:     max(0, cur.Attempts-1),
		})
	}
	targets := st.SwitchedOn
	st.SwitchedOn = []rule.Target{}
	st.Cursor.Until, st.Cursor.AttemptEnds = nil, nil
	rn.cancel = nil
	rn.mu.Unlock()

	offs := s.cleanup(ctx, rn, targets)
	now := time.Now().UTC()
	rn.mu.Lock()
	p.CleanupOffs, p.CompletedAt = offs, &now
	events = append(events, rn.completedEvent(now))
	rn.mu.Unlock()
	s.commit(ctx, rn, events...)
}

// recordedLocked reports a result for the current step; rn.mu is held.
func (rn *run) recordedLocked() bool {
	steps := rn.st.Progress.Steps
	return len(steps) > 0 && steps[len(steps)-1].Index == rn.st.Cursor.Step
}

// cleanup sends the hub OFF (kept and retried while the device is away)
// to each target.
func (s *Service) cleanup(ctx context.Context, rn *run, targets []rule.Target) []CleanupOff {
	p := rn.progress()
	out := []CleanupOff{}
	for _, t := range targets {
		res, err := s.d.Actuators.Off(ctx, actuator.OffRequest{
			EspID:    t.EspID,
			GPIO:     t.GPIO,
			IssuedBy: "logic:" + p.RuleID,
			Metadata: map[string]any{
				"rule_id":     p.RuleID,
				"rule_name":   p.RuleName,
				"sequence_id": p.SequenceID,
				"reason":      "sequence_abort",
			},
		})
		off := CleanupOff{Target: t.Key(), CommandID: res.CommandID}
		if err != nil {
			off.Error = err.Error()
			s.log.Error("sequence cleanup OFF not issued", "sequence_id", p.SequenceID, "target", t.Key(), "error", err)
		}
		out = append(out, off)
	}
	return out
}

// completedEvent is the sequence_completed event; rn.mu is held.
func (rn *run) completedEvent(now time.Time) event.SequenceCompleted {
	p := rn.st.Progress
	ev := event.SequenceCompleted{
		SequenceID:      p.SequenceID,
		Status:          p.Status,
		Success:         p.Status == StatusCompleted,
		DurationSeconds: now.Sub(p.StartedAt).Seconds(),
		Timestamp:       now.Unix(),
	}
	for _, r := range p.Steps {
		if r.Success {
			ev.StepsCompleted++
		} else {
			ev.StepsFailed++
		}
	}
	if p.Error != "" {
		e, c := p.Error, p.ErrorCode
		ev.Error, ev.ErrorCode = &e, &c
	}
	return ev
}

// commit stores rn's progress, then publishes the events it reports.
func (s *Service) commit(ctx context.Context, rn *run, events ...event.Payload) {
	_ = s.save(ctx, rn)
	now := time.Now()
	for _, e := range events {
		s.d.Events.Publish(event.Event{Time: now, Data: e})
	}
}
