package logic

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/rule"
)

// run is what an action list carries across its delays: the trigger (for
// the templates) and the actuators it switched on and did not switch off
// again, which get the cleanup OFFs of a run that ends failed or cancelled
// (docs/domain.md §6.5).
type run struct {
	Trigger    rule.Trigger  `json:"trigger"`
	SwitchedOn []rule.Target `json:"switched_on"`
}

func newRun(trig rule.Trigger) *run { return &run{Trigger: trig} }

func (r *run) switched(t rule.Target, on bool) {
	for i, x := range r.SwitchedOn {
		if x == t {
			if !on {
				r.SwitchedOn = append(r.SwitchedOn[:i], r.SwitchedOn[i+1:]...)
			}
			return
		}
	}
	if on {
		r.SwitchedOn = append(r.SwitchedOn, t)
	}
}

// issuedBy is the history issuer of a rule's commands (docs/domain.md §4.9).
func issuedBy(ruleID string) string { return "logic:" + ruleID }

// runActions runs the actions from index from in list order until the end
// or a delay (docs/domain.md §6.4); e.mu is held. It reports whether the
// list reached its end.
func (s *Service) runActions(ctx context.Context, e *entry, x *execution, from int, r *run) bool {
	for i := from; i < len(e.rule.Actions); i++ {
		a := e.rule.Actions[i]
		switch {
		case a.Delay != nil:
			s.suspend(ctx, e, x, i, r)
			return false
		case a.Command != nil:
			s.doCommand(ctx, e, x, i, a.Command, r)
		case a.Notification != nil:
			s.doNotify(ctx, e, x, i, a.Notification, r.Trigger)
		case a.Sequence != nil:
			s.doSequence(ctx, e, x, i, a.Sequence, r.Trigger)
		}
	}
	x.close()
	return true
}

// doCommand issues an actuator command action through the actuator
// service's checks (docs/domain.md §4.4), with issued_by logic:{rule_id}.
func (s *Service) doCommand(ctx context.Context, e *entry, x *execution, i int, c *rule.Command, r *run) {
	res := ActionResult{Index: i, Type: rule.TypeCommand, Target: c.Target.Key()}
	if c.Command != "OFF" && s.d.Pauses != nil && s.d.Pauses.RulesPaused(c.EspID) {
		res.Status, res.Code = StatusBlockedSafety, actuator.CodeEmergencyStop
		res.Message = "rules targeting " + c.EspID + " are paused by an emergency stop until a clear with resume_rules"
		x.add(res)
		return
	}
	if r.Trigger.Kind == rule.TriggerTimer {
		if why, same := s.unchanged(c); same {
			res.Status, res.Message = StatusNoChange, why
			x.add(res)
			return
		}
	}

	req := actuator.Request{
		EspID:    c.EspID,
		GPIO:     c.GPIO,
		Command:  c.Command,
		IssuedBy: issuedBy(e.rule.ID),
		Metadata: map[string]any{
			"rule_id":      e.rule.ID,
			"rule_name":    e.rule.Name,
			"execution_id": x.rec.ID,
		},
	}
	if c.Command != "TOGGLE" {
		v := c.Value
		req.Value = &v
	}
	d := int64(c.DurationSeconds)
	req.Duration = &d
	out, err := s.d.Actuators.Command(ctx, req)

	var rej *actuator.Rejection
	switch {
	case errors.As(err, &rej):
		res.Status, res.Code, res.Message = StatusBlockedSafety, rej.Code, rej.Message
	case err != nil:
		res.Status, res.Code, res.Message = StatusFailed, codeCommandError, err.Error()
	default:
		res.CommandID, res.Status = out.CommandID, StatusPending
		res.Message = fmt.Sprintf("%s %s", out.Command, out.Status)
		r.switched(c.Target, out.Command != "OFF")
		if st, code := commandOutcome(out.Status); st != "" {
			res.Status, res.Code = st, code
		}
	}
	idx := x.add(res)
	if res.Status == StatusPending {
		s.track(out.CommandID, x, idx)
	}
}

// unchanged reports a timer-triggered command whose target already is in
// the commanded state (skipped_no_change, docs/domain.md §6.4). An output that
// is on is switched on again, restarting its bound, when less than two
// timer intervals of the bound remain.
func (s *Service) unchanged(c *rule.Command) (string, bool) {
	st, err := s.d.Actuators.State(c.EspID, c.GPIO)
	if err != nil || st.Stale {
		return "", false
	}
	value := st.Value
	if value >= 0.99 {
		value = 1
	}
	on := st.State == "on" || (st.State == "pwm" && value > 0)
	switch c.Command {
	case "OFF":
		return "already off", st.State == "off"
	case "ON":
		if !on || value < 1 {
			return "", false
		}
	case "PWM":
		if !on || math.Abs(value-c.Value) > 0.005 {
			return "", false
		}
	default:
		return "", false
	}
	if st.AutoOffAt != nil && st.AutoOffAt.Sub(s.now()) < 2*s.opt.TimerInterval {
		return "", false
	}
	return "already " + st.State, true
}

// doNotify sends a notification action (docs/domain.md §6.4) with source
// logic_engine. WebSocket delivery is done when the copies are stored;
// webhooks and e-mail are sent off the rule's path and settle the result
// when they are delivered or have failed.
func (s *Service) doNotify(ctx context.Context, e *entry, x *execution, i int, n *rule.Notification, trig rule.Trigger) {
	res := ActionResult{Index: i, Type: rule.TypeNotification, Target: n.Channel + ":" + n.Target}
	now := s.now()
	spec := notify.Spec{
		Severity: n.Severity,
		Category: "system",
		Source:   "logic_engine",
		Title:    e.rule.Name,
		Body:     render(n.MessageTemplate, &e.rule, trig, now),
		Metadata: map[string]any{
			"rule_id":      e.rule.ID,
			"rule_name":    e.rule.Name,
			"channel":      n.Channel,
			"target":       n.Target,
			"execution_id": x.rec.ID,
		},
	}
	switch n.Channel {
	case rule.ChannelWebSocket:
		users, err := s.recipients(ctx, n.Target)
		switch {
		case err != nil:
			res.Status, res.Code, res.Message = StatusFailed, codeDelivery, err.Error()
		case len(users) == 0:
			res.Status, res.Code, res.Message = StatusFailed, codeNoRecipients, "no active user matches "+n.Target
		default:
			to, err := s.d.Alerts.Send(ctx, spec, users)
			if err != nil {
				res.Status, res.Code, res.Message = StatusFailed, codeDelivery, err.Error()
			} else {
				res.Status = StatusSucceeded
				res.Message = fmt.Sprintf("delivered to %d of %d users (the others within the dedup window)", len(to), len(users))
			}
		}
		x.add(res)
	case rule.ChannelWebhook:
		if !s.webhookAllowed(n.Target) {
			res.Status, res.Code, res.Message = StatusFailed, codeHostNotAllowed, "webhook host is not allowed"
			x.add(res)
			return
		}
		res.Status = StatusPending
		idx := x.add(res)
		s.background(func() {
			if err := s.hooks.post(s.ctx, n.Target, webhookBody(spec, now)); err != nil {
				x.set(idx, StatusFailed, codeDelivery, err.Error())
				return
			}
			x.set(idx, StatusSucceeded, "", "delivered")
		})
	case rule.ChannelEmail:
		if !s.mailer.enabled() {
			res.Status, res.Code, res.Message = StatusFailed, codeEmailDisabled, "no SMTP relay is configured"
			x.add(res)
			return
		}
		res.Status = StatusPending
		idx := x.add(res)
		s.background(func() {
			if err := s.mailer.send(s.ctx, n.Target, spec); err != nil {
				x.set(idx, StatusFailed, codeDelivery, err.Error())
				return
			}
			x.set(idx, StatusSucceeded, "", "sent")
		})
	}
}

// background runs fn off the rule path; Stop waits for it.
func (s *Service) background(fn func()) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// recipients resolves a websocket target: a role name (plural accepted) is
// every active user with at least that role, anything else a username.
func (s *Service) recipients(ctx context.Context, target string) ([]int64, error) {
	us, err := s.d.Users.Users(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	t := strings.ToLower(strings.TrimSpace(target))
	role := strings.TrimSuffix(t, "s")
	isRole := auth.RoleRank(role) > 0
	var out []int64
	for _, u := range us {
		if !u.IsActive {
			continue
		}
		if (isRole && auth.RoleRank(u.Role) >= auth.RoleRank(role)) || (!isRole && strings.EqualFold(u.Username, target)) {
			out = append(out, u.ID)
		}
	}
	return out, nil
}

// render fills a message template (docs/domain.md §6.4); placeholders without
// a value, and unknown ones, stay as written.
func render(tmpl string, r *rule.Rule, trig rule.Trigger, now time.Time) string {
	pairs := []string{
		"{rule_name}", r.Name,
		"{rule_id}", r.ID,
		"{timestamp}", now.UTC().Format(time.RFC3339),
	}
	if trig.EspID != "" {
		pairs = append(pairs, "{esp_id}", trig.EspID)
	}
	if trig.GPIO != nil {
		pairs = append(pairs, "{gpio}", strconv.Itoa(*trig.GPIO))
	}
	if trig.SensorType != "" {
		pairs = append(pairs, "{sensor_type}", trig.SensorType)
	}
	if trig.Value != nil {
		pairs = append(pairs, "{sensor_value}", strconv.FormatFloat(*trig.Value, 'f', -1, 64))
	}
	return strings.NewReplacer(pairs...).Replace(tmpl)
}

// doSequence hands a sequence action to the sequence runner.
func (s *Service) doSequence(ctx context.Context, e *entry, x *execution, i int, q *rule.Sequence, trig rule.Trigger) {
	res := ActionResult{Index: i, Type: rule.TypeSequence}
	if s.seq == nil {
		res.Status, res.Code = StatusFailed, codeNotSupported
		res.Message = "this hub runs no sequences yet"
		x.add(res)
		return
	}
	id, err := s.seq.Start(ctx, &e.rule, q, trig)
	if err != nil {
		res.Status, res.Code, res.Message = StatusFailed, "sequence_failed", err.Error()
	} else {
		res.Status, res.SequenceID = StatusStarted, id
	}
	x.add(res)
}

// offTargets sends a hub OFF (docs/domain.md §4.5: kept and retried until the
// device confirms) to each target, as actions of x with the given reason.
func (s *Service) offTargets(ctx context.Context, e *entry, x *execution, targets []rule.Target, reason string) {
	for _, t := range targets {
		res := ActionResult{Index: x.len(), Type: rule.TypeCommand, Target: t.Key()}
		out, err := s.d.Actuators.Off(ctx, actuator.OffRequest{
			EspID:    t.EspID,
			GPIO:     t.GPIO,
			IssuedBy: issuedBy(e.rule.ID),
			Metadata: map[string]any{
				"rule_id":      e.rule.ID,
				"rule_name":    e.rule.Name,
				"execution_id": x.rec.ID,
				"reason":       reason,
			},
		})
		switch {
		case out.CommandID == "":
			res.Status, res.Code, res.Message = StatusFailed, codeCommandError, errText(err)
		default:
			res.CommandID, res.Status, res.Message = out.CommandID, StatusPending, "OFF "+out.Status
			if st, code := commandOutcome(out.Status); st != "" {
				res.Status, res.Code = st, code
			}
		}
		idx := x.add(res)
		if res.Status == StatusPending {
			s.track(out.CommandID, x, idx)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "no command issued"
	}
	return err.Error()
}

// hysteresisOff is a deactivation edge (docs/domain.md §6.3.3): OFF at once to
// every target of the rule's actuator actions (not sequence steps),
// bypassing cooldown and rate limits but not the conflict locks; the other
// actions do not run. e.mu is held.
func (s *Service) hysteresisOff(ctx context.Context, e *entry, trig rule.Trigger, leaves []rule.LeafResult, b *batch) {
	now := s.now()
	s.cancelContinuationLocked(ctx, e, trig.Reason, false)
	targets := e.rule.Targets(false)
	want := make([]lockWant, 0, len(targets))
	for _, t := range targets {
		want = append(want, lockWant{key: t.Key()})
	}
	x := s.newExecution(e, trig, leaves, now)
	if lost := b.acquire(e.rule.ID, e.rule.Priority, want, now); lost != nil {
		s.noteConflict(ctx, e, lost)
		for _, t := range targets {
			x.add(ActionResult{Index: x.len(), Type: rule.TypeCommand, Target: t.Key(), Status: StatusBlockedConflict,
				Code: codeConflict, Message: "lock held by rule " + lost.HolderRule})
		}
		x.close()
		return
	}
	s.offTargets(ctx, e, x, targets, trig.Reason)
	x.close()
}

// sourceOffline clears the active hysteresis states whose sensor is on a
// device that went offline, sending the rule's OFF (docs/domain.md §6.3.3).
func (s *Service) sourceOffline(ctx context.Context, espID string) {
	for _, e := range s.entries() {
		s.resetSource(ctx, e, espID)
	}
}

func (s *Service) resetSource(ctx context.Context, e *entry, espID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone {
		return
	}
	var paths []string
	for _, l := range e.rule.Leaves() {
		if h := l.Condition.Hysteresis; h != nil && h.EspID == espID && e.hyst[l.Path].Active {
			paths = append(paths, l.Path)
		}
	}
	if len(paths) == 0 {
		return
	}
	s.resetHysteresisLocked(ctx, e, paths, rule.Trigger{Kind: "device_offline", Reason: "source_offline", EspID: espID})
}

// resetHysteresisLocked clears the hysteresis states at paths; if one was
// active, the rule's OFF is sent (docs/domain.md §6.3.3). e.mu is held.
func (s *Service) resetHysteresisLocked(ctx context.Context, e *entry, paths []string, trig rule.Trigger) {
	active := false
	for _, p := range paths {
		if st, ok := e.hyst[p]; ok {
			active = active || st.Active
			delete(e.hyst, p)
			if err := s.d.Store.SaveHysteresis(ctx, storeState(e.rule.ID, p, rule.HysteresisState{})); err != nil {
				s.log.Error("hysteresis reset not stored", "rule_id", e.rule.ID, "error", err)
			}
		}
	}
	if !active {
		return
	}
	b := s.conflicts.batch()
	defer b.release()
	s.hysteresisOff(ctx, e, trig, nil, b)
}

// entries lists the rules.
func (s *Service) entries() []*entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*entry, 0, len(s.rules))
	for _, e := range s.rules {
		out = append(out, e)
	}
	return out
}

// recordSkip records an execution stopped by a gate, without actions.
func (s *Service) recordSkip(ctx context.Context, e *entry, trig rule.Trigger, leaves []rule.LeafResult,
	now time.Time, code, msg string) {
	x := s.newExecution(e, trig, leaves, now)
	x.mu.Lock()
	x.rec.ErrorMessage = msg
	x.more = false
	ms := int64(0)
	x.rec.FinishedAt, x.rec.ExecutionMS, x.rec.TerminalReason = &x.rec.TriggeredAt, &ms, code
	x.saveLocked()
	x.mu.Unlock()
	s.mu.Lock()
	delete(s.execs, x.rec.ID)
	s.mu.Unlock()
	s.metrics.executions.WithLabelValues(code).Inc()
}

// conflictLost records gate 5's refusal: no action runs.
func (s *Service) conflictLost(ctx context.Context, e *entry, trig rule.Trigger, leaves []rule.LeafResult,
	now time.Time, lost *Conflict) {
	s.noteConflict(ctx, e, lost)
	x := s.newExecution(e, trig, leaves, now)
	for i, a := range e.rule.Actions {
		if a.Delay != nil {
			break
		}
		r := ActionResult{Index: i, Type: a.Kind(), Status: StatusBlockedConflict, Code: codeConflict,
			Message: fmt.Sprintf("%s is locked by rule %s", lost.Key, lost.HolderRule)}
		if a.Command != nil {
			r.Target = a.Command.Target.Key()
		}
		x.add(r)
	}
	x.close()
}

// noteConflict raises the conflict alert (docs/domain.md §6.8).
func (s *Service) noteConflict(ctx context.Context, e *entry, lost *Conflict) {
	err := s.d.Alerts.Raise(ctx, notify.Spec{
		Key:      "conflict_" + e.rule.ID,
		Severity: "warning",
		Category: "system",
		Source:   "logic_engine",
		Title:    "Rule conflict: " + e.rule.Name,
		Body:     fmt.Sprintf("rule %q lost the lock on %s to rule %s", e.rule.Name, lost.Key, lost.HolderRule),
		Metadata: map[string]any{"rule_id": e.rule.ID, "target": lost.Key, "holder_rule_id": lost.HolderRule},
	})
	if err != nil {
		s.log.Error("conflict alert not raised", "rule_id", e.rule.ID, "error", err)
	}
}

// Conflicts returns the last conflicts (docs/domain.md §6.8).
func (s *Service) Conflicts() []Conflict { return s.conflicts.Recent() }
