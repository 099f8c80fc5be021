// Package backtest replays a rule over the stored sensor history
// (docs/api.md §10.3): the readings of the rule's sensors in time order, and
// the timer trigger every logic timer interval, go through the same
// evaluator as the live engine (internal/rule) with a replay clock and
// in-memory state, and the engine's gates, the actuators' duration
// auto-offs and max-runtime bound are modelled on top. It answers what the
// rule would have done; it sends, stores and changes nothing.
package backtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/logic"
	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Limits of one backtest (docs/decisions/0017-backtest.md).
const (
	// MaxRange is the longest time range.
	MaxRange = 30 * 24 * time.Hour
	// MaxSeries bounds the sensor series one replay reads.
	MaxSeries = 32
	// MaxSamples bounds the stored values one replay reads.
	MaxSamples = 2_000_000
	// MaxFirings is how many firings the report lists; the counts cover all.
	MaxFirings = 1000
	// DefaultChatter is the switch-ons per hour above which an actuator
	// is reported as chattering.
	DefaultChatter = 6
	// pageSize is how many values of one series are held at once.
	pageSize = 512
)

// History is the stored sensor history, read page by page.
type History interface {
	LoadSeries(ctx context.Context) (map[store.SeriesKey]int64, error)
	RawSamples(ctx context.Context, series, from, to int64, limit int) ([]store.Sample, error)
	MinuteSamples(ctx context.Context, series, from, to int64, limit int) ([]store.Sample, error)
}

// Rules are the stored rules.
type Rules interface {
	Get(ctx context.Context, id string) (logic.Rule, error)
	List(ctx context.Context, enabled *bool) ([]logic.Rule, error)
}

// Actuators are the actuator configs (max runtime, cooldown, class).
type Actuators interface {
	Get(espID string, gpio int) (actuator.Config, error)
	ByDevice(espID string) []actuator.Config
}

// Sensors are the sensor configs (an on-demand sensor's freshness).
type Sensors interface {
	ByDevice(espID string) []sensor.Config
}

var (
	_ Rules     = (*logic.Service)(nil)
	_ Actuators = (*actuator.Service)(nil)
	_ Sensors   = (*sensor.Service)(nil)
)

// Deps are what a backtest reads.
type Deps struct {
	History   History
	Rules     Rules
	Actuators Actuators
	Sensors   Sensors
}

// Options are the engine settings a replay follows.
type Options struct {
	// Zone is the hub's zone for time windows without their own (UTC).
	Zone *time.Location
	// TimerInterval is the logic timer's period (60 s).
	TimerInterval time.Duration
}

// Request is one backtest.
type Request struct {
	// RuleID names a saved rule; else Document is an unsaved rule document,
	// checked like a save.
	RuleID   string
	Document []byte
	// Start and End bound the replay, [Start, End), at most MaxRange.
	Start, End time.Time
	// Chatter is the switch-ons per hour above which an actuator chatters
	// (0: DefaultChatter).
	Chatter int
}

// Errors of Run besides *logic.InvalidError (an unsaved document the
// save-time checks refuse) and logic.ErrNotFound (an unknown rule id).
var (
	ErrRange = errors.New("the time range must be positive and at most 30 days")
	ErrBusy  = errors.New("a backtest is already running")
)

// LimitError is a replay larger than the limits allow.
type LimitError struct{ Msg string }

func (e *LimitError) Error() string { return e.Msg }

// Service runs backtests one at a time: a replay reads much of the
// database and takes a core while it runs.
type Service struct {
	d    Deps
	opt  Options
	busy sync.Mutex
}

// New builds the service.
func New(d Deps, opt Options) *Service {
	if opt.Zone == nil {
		opt.Zone = time.UTC
	}
	if opt.TimerInterval <= 0 {
		opt.TimerInterval = 60 * time.Second
	}
	return &Service{d: d, opt: opt}
}

// Run replays the rule over [Start, End).
func (s *Service) Run(ctx context.Context, req Request) (Report, error) {
	if !req.End.After(req.Start) || req.End.Sub(req.Start) > MaxRange {
		return Report{}, ErrRange
	}
	if req.Chatter <= 0 {
		req.Chatter = DefaultChatter
	}
	if !s.busy.TryLock() {
		return Report{}, ErrBusy
	}
	defer s.busy.Unlock()

	stored, err := s.d.Rules.List(ctx, nil)
	if err != nil {
		return Report{}, fmt.Errorf("list rules: %w", err)
	}
	others := make([]rule.Rule, 0, len(stored))
	for _, o := range stored {
		others = append(others, o.Rule)
	}
	r, warnings, err := s.ruleOf(ctx, req, others)
	if err != nil {
		return Report{}, err
	}
	streams, sources, err := s.open(ctx, &r, req.Start, req.End)
	if err != nil {
		return Report{}, err
	}
	p := newReplay(s, &r, req, streams)
	if err := p.run(ctx); err != nil {
		return Report{}, err
	}
	rep := p.report(sources)
	rep.Saved = req.RuleID != ""
	rep.ValidationWarnings = warnings
	rep.Warnings = append(rep.Warnings, lockWarnings(&r, others)...)
	return rep, nil
}

// ruleOf is the saved rule, or the unsaved document checked like a save
// (docs/domain.md §6.10) against the stored rules.
func (s *Service) ruleOf(ctx context.Context, req Request, others []rule.Rule) (rule.Rule, []rule.Issue, error) {
	if req.RuleID != "" {
		got, err := s.d.Rules.Get(ctx, req.RuleID)
		if err != nil {
			return rule.Rule{}, nil, err
		}
		return got.Rule, nil, nil
	}
	if !json.Valid(req.Document) {
		return rule.Rule{}, nil, &logic.InvalidError{Errors: []rule.Issue{{Code: rule.CodeType, Message: "must be an object"}}}
	}
	r, issues := rule.Decode(req.Document)
	if len(issues) > 0 {
		return r, nil, &logic.InvalidError{Errors: issues}
	}
	f := rule.Check(&r, catalog{s.d}, others)
	if len(f.Errors) > 0 {
		return r, f.Warnings, &logic.InvalidError{Errors: f.Errors, Warnings: f.Warnings}
	}
	return r, f.Warnings, nil
}

// catalog answers the save-time existence checks from the configs, as the
// engine's does.
type catalog struct{ d Deps }

func (c catalog) DeviceConfigured(espID string) bool {
	return len(c.d.Actuators.ByDevice(espID))+len(c.d.Sensors.ByDevice(espID)) > 0
}

func (c catalog) ActuatorExists(espID string, gpio int) bool {
	_, err := c.d.Actuators.Get(espID, gpio)
	return err == nil
}

func (c catalog) SensorExists(espID string, gpio int, sensorType string) bool {
	for _, sc := range c.d.Sensors.ByDevice(espID) {
		if sc.GPIO == gpio && (sensorType == "" || normalised(sc.SensorType) == sensorType) {
			return true
		}
	}
	return false
}
