package logic

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/sensor/processor"
)

// The dry-run of docs/domain.md §6.12 evaluates a rule and tells what its
// actions would do, reading the live state but writing nothing: no command
// (the actuator checks run through actuator.Service.Check), no notification,
// no history, no cooldown, no token (the buckets are read, not taken), no
// conflict record, no hysteresis state (the would-be states are dropped).

// MockValue is one entry of a dry-run's mock_sensor_values.
type MockValue struct {
	// Sensor's SensorType is "" for a key without a type.
	Sensor rule.SensorRef
	Value  float64
}

// ParseMockKey reads a mock_sensor_values key, "ESP_ID:GPIO" or
// "ESP_ID:GPIO:sensor_type"; the type is normalised like a leaf's.
func ParseMockKey(k string) (rule.SensorRef, error) {
	parts := strings.Split(k, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return rule.SensorRef{}, errors.New(`must be "ESP_ID:GPIO" or "ESP_ID:GPIO:sensor_type"`)
	}
	gpio, err := strconv.Atoi(parts[1])
	if err != nil || gpio < 0 || gpio > 255 {
		return rule.SensorRef{}, errors.New("the GPIO must be an integer 0-255")
	}
	ref := rule.SensorRef{EspID: parts[0], GPIO: gpio}
	if len(parts) == 3 {
		if parts[2] == "" {
			return rule.SensorRef{}, errors.New("the sensor type is empty")
		}
		ref.SensorType, _ = processor.NormaliseType(parts[2])
	}
	return ref, nil
}

// TestInput is what a dry-run is asked with.
type TestInput struct {
	Mocks []MockValue
	// MockTime is the local time of day of every time leaf, in minutes.
	MockTime *int
}

// TestResult is a dry-run's answer (docs/api.md §10.1).
type TestResult struct {
	// WouldTrigger: the conditions hold.
	WouldTrigger bool
	// HysteresisOff: a hysteresis leaf would deactivate, so the rule would
	// switch its targets off instead of running its actions.
	HysteresisOff bool
	Conditions    []rule.LeafResult
	Actions       []TestAction
	Gates         TestGates
}

// TestAction is what one action would do.
type TestAction struct {
	Index        int
	Type         string
	WouldExecute bool
	// Safety is the verdict of docs/domain.md §4.4 for a command, and for a
	// sequence its first refused step; nil for other actions.
	Safety *SafetyVerdict
	// Lock is the conflict lock outcome of a command: acquired, lost, or
	// deferred (after a delay, taken when the continuation runs); "" for
	// other actions.
	Lock    string
	Details string
}

// SafetyVerdict is the actuator checks' answer.
type SafetyVerdict struct {
	Allowed  bool
	Code     string
	Message  string
	Command  string // what the device would get (a TOGGLE resolved)
	Value    float64
	Duration int64 // the wire duration
	Warnings []string
}

// TestGates are the gates of docs/domain.md §6.7 after the conditions.
type TestGates struct {
	Enabled                  bool
	AlreadyRunning           bool
	CooldownRemainingSeconds int
	TargetsOffline           bool
	RateLimited              bool
}

// Lock outcomes of a dry-run.
const (
	LockAcquired = "acquired"
	LockLost     = "lost"
	LockDeferred = "deferred"
)

// Test dry-runs rule id (docs/domain.md §6.12).
func (s *Service) Test(ctx context.Context, id string, in TestInput) (TestResult, error) {
	s.mu.Lock()
	e := s.rules[id]
	s.mu.Unlock()
	if e == nil {
		return TestResult{}, ErrNotFound
	}
	now := s.now()
	e.mu.Lock()
	r := e.rule
	hyst := maps.Clone(e.hyst)
	runs := append([]time.Time(nil), e.runs...)
	running := e.cont != nil
	e.mu.Unlock()

	res := rule.Evaluate(&r, rule.Context{
		Now:      now,
		Trigger:  rule.Trigger{Kind: rule.TriggerTest},
		Zone:     s.opt.Zone,
		Data:     liveData{s},
		States:   states(hyst),
		MockTime: in.MockTime,
		Mock:     mockLookup(in.Mocks),
	})
	out := TestResult{
		WouldTrigger:  res.Matched,
		HysteresisOff: res.Deactivated(),
		Conditions:    res.Leaves,
		Gates:         s.testGates(&r, runs, running, now),
	}
	blocked := blockedBy(res.Matched, out.Gates)
	lost := s.peekLocks(&r, now)
	if blocked == "" && lost != "" {
		blocked = lost
	}
	beforeDelay := true
	for i, a := range r.Actions {
		t := s.testAction(ctx, &r, i, a, beforeDelay, now)
		if blocked != "" {
			t.WouldExecute, t.Details = false, blocked+"; "+t.Details
		}
		out.Actions = append(out.Actions, t)
		if a.Delay != nil {
			beforeDelay = false
		}
	}
	return out, nil
}

// mockLookup finds a leaf's mock: the entry with the leaf's type, else one
// without a type; a leaf without a type takes any entry of its pin.
func mockLookup(ms []MockValue) func(rule.SensorRef) (float64, bool) {
	return func(ref rule.SensorRef) (float64, bool) {
		var untyped, typed *MockValue
		for i := range ms {
			m := &ms[i]
			if m.Sensor.EspID != ref.EspID || m.Sensor.GPIO != ref.GPIO {
				continue
			}
			switch {
			case m.Sensor.SensorType == ref.SensorType:
				return m.Value, true
			case m.Sensor.SensorType == "":
				untyped = m
			case ref.SensorType == "" && typed == nil:
				typed = m
			}
		}
		if untyped != nil {
			return untyped.Value, true
		}
		if typed != nil {
			return typed.Value, true
		}
		return 0, false
	}
}

// testGates reads gates 2–4 as a run now would meet them.
func (s *Service) testGates(r *rule.Rule, runs []time.Time, running bool, now time.Time) TestGates {
	g := TestGates{Enabled: r.Enabled, AlreadyRunning: running, TargetsOffline: s.allTargetsOffline(r)}
	if cd := time.Duration(r.CooldownSeconds) * time.Second; cd > 0 && r.LastTriggered != nil {
		if left := cd - now.Sub(*r.LastTriggered); left >= 0 {
			g.CooldownRemainingSeconds = max(1, int(math.Ceil(left.Seconds())))
		}
	}
	recent := 0
	for _, t := range runs {
		if t.After(now.Add(-time.Hour)) {
			recent++
		}
	}
	var devices []string
	for _, t := range r.Targets(true) {
		if !containsString(devices, t.EspID) {
			devices = append(devices, t.EspID)
		}
	}
	g.RateLimited = (r.MaxExecutionsPerHour != nil && recent >= *r.MaxExecutionsPerHour) ||
		!s.limits.wouldTake(now, devices)
	return g
}

// blockedBy names the first gate that would stop the actions, "" for none.
func blockedBy(matched bool, g TestGates) string {
	switch {
	case !matched:
		return "the conditions are false"
	case !g.Enabled:
		return "the rule is disabled"
	case g.AlreadyRunning:
		return "the rule is running (a delay is pending)"
	case g.CooldownRemainingSeconds > 0:
		return fmt.Sprintf("inside the cooldown (%d s left)", g.CooldownRemainingSeconds)
	case g.TargetsOffline:
		return "every actuator target is offline"
	case g.RateLimited:
		return "rate limited"
	}
	return ""
}

// peekLocks is gate 5 without taking anything: why the locks of the actions
// up to the first delay would be lost, "" when they would be acquired.
func (s *Service) peekLocks(r *rule.Rule, now time.Time) string {
	for _, w := range locksOf(r.Actions, 0) {
		h := holder{ruleID: r.ID, priority: r.Priority, safety: w.safety, at: now}
		if by := s.conflicts.peek(w.key, h); by != "" {
			return fmt.Sprintf("the lock on %s is held by rule %s", w.key, by)
		}
	}
	return ""
}

// testAction is what action i would do if the gates let it run.
func (s *Service) testAction(ctx context.Context, r *rule.Rule, i int, a rule.Action, beforeDelay bool,
	now time.Time) TestAction {
	t := TestAction{Index: i, Type: a.Kind(), WouldExecute: true}
	switch {
	case a.Command != nil:
		t.Lock = LockDeferred
		if beforeDelay {
			t.Lock = LockAcquired
			if by := s.conflicts.peek(a.Command.Key(), holder{ruleID: r.ID, priority: r.Priority,
				safety: a.Command.IsSafetyCritical, at: now}); by != "" {
				t.Lock = LockLost
			}
		}
		v := s.verdict(a.Command)
		t.Safety, t.WouldExecute = &v, v.Allowed && t.Lock != LockLost
		t.Details = describe(a.Command, v)
	case a.Notification != nil:
		t.Details, t.WouldExecute = s.testNotification(ctx, a.Notification)
	case a.Delay != nil:
		t.Details = fmt.Sprintf("the remaining actions would run %d s later", a.Delay.Seconds)
	case a.Sequence != nil:
		t.Safety, t.Details, t.WouldExecute = s.testSequence(r, a.Sequence)
	}
	return t
}

// verdict is the safety check of a command as the rule would issue it,
// with the rule pause of docs/domain.md §5.4 first.
func (s *Service) verdict(c *rule.Command) SafetyVerdict {
	if c.Command != "OFF" && s.d.Pauses != nil && s.d.Pauses.RulesPaused(c.EspID) {
		return SafetyVerdict{Code: actuator.CodeEmergencyStop,
			Message: "rules targeting " + c.EspID + " are paused by an emergency stop until a clear with resume_rules"}
	}
	req := actuator.Request{EspID: c.EspID, GPIO: c.GPIO, Command: c.Command}
	if c.Command != "TOGGLE" {
		v := c.Value
		req.Value = &v
	}
	d := int64(c.DurationSeconds)
	req.Duration = &d
	res, err := s.d.Actuators.Check(req)
	var rej *actuator.Rejection
	switch {
	case errors.As(err, &rej):
		return SafetyVerdict{Code: rej.Code, Message: rej.Message}
	case err != nil:
		return SafetyVerdict{Code: codeCommandError, Message: err.Error()}
	}
	return SafetyVerdict{
		Allowed:  true,
		Command:  res.Command,
		Value:    res.Value,
		Duration: res.Duration,
		Warnings: res.Warnings,
	}
}

func describe(c *rule.Command, v SafetyVerdict) string {
	if !v.Allowed {
		return fmt.Sprintf("%s to %s would be refused: %s", c.Command, c.Key(), v.Code)
	}
	msg := fmt.Sprintf("would send %s (value %g) to %s", v.Command, v.Value, c.Key())
	if v.Duration > 0 {
		msg += fmt.Sprintf(" for %d s", v.Duration)
	}
	return msg
}

// testNotification tells whether the channel could deliver now.
func (s *Service) testNotification(ctx context.Context, n *rule.Notification) (string, bool) {
	if err := s.usable(n); err != nil {
		return err.Message, false
	}
	if n.Channel != rule.ChannelWebSocket {
		return "would send to " + n.Target + " by " + n.Channel, true
	}
	users, err := s.recipients(ctx, n.Target)
	if err != nil {
		return err.Error(), false
	}
	if len(users) == 0 {
		return "no active user matches " + n.Target, false
	}
	return fmt.Sprintf("would notify %d users", len(users)), true
}

// testSequence tells whether the sequence would start, and the first step
// whose command the actuator checks would refuse now.
func (s *Service) testSequence(r *rule.Rule, q *rule.Sequence) (*SafetyVerdict, string, bool) {
	if s.seq == nil {
		return nil, "this hub runs no sequences", false
	}
	if err := s.seq.CanStart(r, q); err != nil {
		return nil, err.Error(), false
	}
	v := SafetyVerdict{Allowed: true}
	details := fmt.Sprintf("would start a sequence of %d steps", len(q.Steps))
	for j, st := range q.Steps {
		if st.Action == nil || st.Action.Command == nil {
			continue
		}
		if sv := s.verdict(st.Action.Command); !sv.Allowed {
			v = sv
			v.Message = fmt.Sprintf("step %d (%s): %s", j, st.Name, sv.Message)
			details += fmt.Sprintf("; step %d would be refused now: %s", j, sv.Code)
			break
		}
	}
	return &v, details, true
}
