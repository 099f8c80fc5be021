package backtest

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/rule"
)

// Report is a backtest's outcome (docs/api.md §10.3).
type Report struct {
	RuleID   string
	RuleName string
	Enabled  bool
	// Saved is set for a stored rule, unset for an unsaved document.
	Saved              bool
	Start, End         time.Time
	TimerInterval      time.Duration
	Chatter            int
	Summary            Summary
	Sensors            []SensorSource
	Firings            []*Firing
	FiringsTruncated   bool
	Actuators          []ActuatorReport
	Warnings           []Warning
	ValidationWarnings []rule.Issue
}

// Summary counts what the replay went through.
type Summary struct {
	Samples          int // stored values replayed
	SensorTriggers   int // evaluations started by a reading
	TimerTriggers    int // evaluations started by the timer
	Matched          int // evaluations whose conditions held
	Firings          int // runs that reached the actions (gate 6)
	HysteresisOffs   int
	Cooldown         int // matched but inside the cooldown
	RateLimited      int // matched but over a rate limit
	AlreadyRunning   int // matched while a delay continuation was pending
	Continuations    int // delay continuations run
	SequencesStarted int
}

// Source kinds of a sensor's history.
const (
	SourceRaw       = "raw"
	SourceRollup    = "rollup_1m"
	SourceRollupRaw = "rollup_1m_then_raw"
	SourceNone      = "none"
)

// SensorSource is where one series' values came from.
type SensorSource struct {
	EspID      string
	GPIO       int
	SensorType string
	Address    string
	// Source is raw, rollup_1m, rollup_1m_then_raw (minute averages until
	// the oldest raw reading left, raw from RawFrom on) or none.
	Source  string
	RawFrom *time.Time
	Samples int
}

// Firing kinds.
const (
	KindFired         = "fired"
	KindHysteresisOff = "hysteresis_off"
)

// Firing is one would-be execution: the rule's actions after its gates, or
// the OFFs of a hysteresis deactivation.
type Firing struct {
	At         time.Time
	Kind       string
	Trigger    rule.Trigger
	Conditions []rule.LeafResult
	Actions    []ActionOutcome
}

// Would-be action statuses; the engine's names (docs/domain.md §6.11).
const (
	StatusSucceeded = "succeeded"
	StatusBlocked   = "blocked_safety"
	StatusNoChange  = "skipped_no_change"
	StatusStarted   = "started"
	StatusPending   = "pending"
	StatusFailed    = "failed"
)

// ActionOutcome is one would-be action result.
type ActionOutcome struct {
	At    time.Time
	Index int
	Type  string
	// Target is esp_id:gpio for a command, channel:target for a notification.
	Target  string
	Command string
	Value   *float64
	// DurationSeconds is the duration the command would carry after the
	// max-runtime clamp; AutoOffAt is when its auto-off would fire.
	DurationSeconds *int64
	AutoOffAt       *time.Time
	SequenceID      string
	// Step is the sequence step of a step's action.
	Step    *int
	Status  string
	Code    string
	Message string
}

// ActuatorReport is one target's would-be activity.
type ActuatorReport struct {
	EspID string
	GPIO  int
	// Configured is false for a target without an actuator config (the
	// default max runtime applies then).
	Configured        bool
	MaxRuntimeSeconds int
	Commands          int // accepted commands, OFFs included
	Blocked           int // refused by a modelled safety check
	NoChange          int // timer-triggered commands skipped as unchanged
	SwitchOns         int
	SwitchOffs        int
	// SwitchCount is SwitchOns + SwitchOffs: state changes.
	SwitchCount     int
	OnSeconds       float64
	DurationOffs    int // auto-offs of a command's own duration
	MaxRuntimeOffs  int // auto-offs of the max-runtime bound
	DurationClamped int // commands whose duration the bound shortened
	MaxOnsPerHour   int // most switch-ons in any 60 minutes
	FinalState      string
}

// Warning is a finding of the replay.
type Warning struct {
	Code    string
	Message string
	Target  string
	Count   int
	FirstAt *time.Time
}

// Warning codes (docs/api.md §10.3).
const (
	WarnMaxRuntime   = "max_runtime_bound"
	WarnClamped      = "duration_clamped"
	WarnCooldown     = "cooldown_limited"
	WarnRateLimited  = "rate_limited"
	WarnRunning      = "already_running"
	WarnChattering   = "chattering"
	WarnActCooldown  = "actuator_cooldown"
	WarnBlocked      = "blocked_safety"
	WarnLocksIgnored = "locks_ignored"
	WarnNoHistory    = "no_history"
	WarnRollup       = "rollup_averages"
	WarnNoConfig     = "no_actuator_config"
	WarnTruncated    = "firings_truncated"
)

// Assumptions are what every replay assumes (docs/api.md §10.3); the report
// carries them so that a reader sees what the numbers do not include.
var Assumptions = []string{
	"every target device is online and every command is acknowledged at once",
	"hysteresis leaves start inactive, and the rule has not triggered before, at the range start",
	"freshness (max_age_seconds) is judged against the replay clock, the reading time of the value being replayed",
	"stored raw readings are replayed where they exist, else 1-minute averages timed at their minute's last reading",
	"the timer trigger runs every logic timer interval, at multiples of it since the Unix epoch",
	"duration auto-offs and the max-runtime bound come from the actuator configs (3600 s without one)",
	"the actuator checks that depend on its config and state are modelled (enabled, class, value range, cooldown, clamp); emergency latches and pauses are not",
	"other rules' conflict locks and commands are ignored; the rate-limit buckets serve this rule alone",
	"at one instant, scheduled work (auto-offs, delays, sequence steps) runs before readings, readings before the timer",
}

// lockWarnings names the enabled rules that drive the same actuators: their
// locks, ignored here, could have blocked or pre-empted this rule.
func lockWarnings(r *rule.Rule, others []rule.Rule) []Warning {
	mine := r.Targets(true)
	var out []Warning
	for _, t := range mine {
		var ids []string
		for _, o := range others {
			if o.ID != r.ID && o.Enabled && slices.Contains(o.Targets(true), t) {
				ids = append(ids, o.ID)
			}
		}
		if len(ids) == 0 {
			continue
		}
		out = append(out, Warning{
			Code:   WarnLocksIgnored,
			Target: t.Key(),
			Count:  len(ids),
			Message: fmt.Sprintf("enabled rules %s also drive %s; their conflict locks are not replayed",
				strings.Join(ids, ", "), t.Key()),
		})
	}
	return out
}

// report assembles the outcome once the replay reached its end.
func (p *replay) report(sources []*SensorSource) Report {
	rep := Report{
		RuleID:           p.r.ID,
		RuleName:         p.r.Name,
		Enabled:          p.r.Enabled,
		Start:            p.req.Start,
		End:              p.req.End,
		TimerInterval:    p.s.opt.TimerInterval,
		Chatter:          p.req.Chatter,
		Summary:          p.sum,
		Firings:          p.firings,
		FiringsTruncated: p.truncated,
	}
	for _, src := range sources {
		rep.Sensors = append(rep.Sensors, *src)
		switch src.Source {
		case SourceNone:
			rep.Warnings = append(rep.Warnings, Warning{
				Code:    WarnNoHistory,
				Target:  sensorKey(src),
				Message: "no stored values of this sensor in the range: its leaves had no data",
			})
		case SourceRollup, SourceRollupRaw:
			rep.Warnings = append(rep.Warnings, Warning{
				Code:    WarnRollup,
				Target:  sensorKey(src),
				Message: "raw readings are gone for part of the range: 1-minute averages were replayed there",
			})
		}
	}
	for _, t := range p.order {
		rep.Actuators = append(rep.Actuators, p.outputs[t].close(p.req.End))
	}
	for _, k := range p.noteOrder {
		w := *p.notes[k]
		w.Message = p.message(w)
		rep.Warnings = append(rep.Warnings, w)
	}
	return rep
}

func sensorKey(s *SensorSource) string {
	k := fmt.Sprintf("%s:%d", s.EspID, s.GPIO)
	if s.SensorType != "" {
		k += ":" + s.SensorType
	}
	return k
}

// message explains a counted warning.
func (p *replay) message(w Warning) string {
	switch w.Code {
	case WarnMaxRuntime:
		return fmt.Sprintf("the max-runtime bound (%d s) switched %s off %d times: the rule did not renew its ON in time",
			p.byKey[w.Target].cfg.MaxRuntimeSeconds, w.Target, w.Count)
	case WarnClamped:
		return fmt.Sprintf("%d commands to %s asked for longer than the max runtime and were clamped", w.Count, w.Target)
	case WarnCooldown:
		return fmt.Sprintf("the rule's conditions held %d times inside its cooldown (%d s)", w.Count, p.r.CooldownSeconds)
	case WarnRateLimited:
		return fmt.Sprintf("the rate limits (max_executions_per_hour and the token buckets) skipped %d firings", w.Count)
	case WarnRunning:
		return fmt.Sprintf("the conditions held %d times while a delay continuation was pending", w.Count)
	case WarnChattering:
		return fmt.Sprintf("%s switched on more than %d times within an hour (%d switch-ons beyond it; at most %d in an hour)",
			w.Target, p.req.Chatter, w.Count, p.byKey[w.Target].stats.MaxOnsPerHour)
	case WarnActCooldown:
		return fmt.Sprintf("the actuator's own cooldown refused %d commands to %s", w.Count, w.Target)
	case WarnBlocked:
		return fmt.Sprintf("the actuator's config refused %d commands to %s (disabled, class or value range)",
			w.Count, w.Target)
	case WarnNoConfig:
		return fmt.Sprintf("%s has no actuator config: the default max runtime (%d s) was assumed and no check applied",
			w.Target, defaultMaxRuntime)
	case WarnTruncated:
		return fmt.Sprintf("only the first %d firings are listed; the counts cover all of them", MaxFirings)
	}
	return w.Code
}
