// Package logic runs the automation rules of docs/domain.md §6: it keeps the
// rules (checked by internal/rule, persisted), matches every trigger to the
// rules it concerns, gates them (cooldown, rate limits, conflict locks),
// runs their actions through the actuator commands and the notification
// channels, and records every execution until its outcome is known.
package logic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Store is the persistence of rules and their runs.
type Store interface {
	LoadRules(ctx context.Context) ([]store.Rule, error)
	SaveRule(ctx context.Context, r store.Rule) error
	SetRuleTriggered(ctx context.Context, id string, at time.Time) error
	DeleteRule(ctx context.Context, id string) error
	SaveRuleExecution(ctx context.Context, e store.RuleExecution) error
	QueryRuleExecutions(ctx context.Context, f store.RuleExecutionFilter) (store.RuleExecutionPage, error)
	RuleStats(ctx context.Context) (map[string]store.RuleStats, error)
	LoadHysteresis(ctx context.Context) ([]store.HysteresisState, error)
	SaveHysteresis(ctx context.Context, h store.HysteresisState) error
	ResetHysteresis(ctx context.Context, ruleID string) error
	SaveContinuation(ctx context.Context, c store.RuleContinuation) error
	DeleteContinuation(ctx context.Context, id string) error
	LoadContinuations(ctx context.Context) ([]store.RuleContinuation, error)
}

// Actuators issues the rules' commands through the normal command path
// (docs/domain.md §4.4) and tells the confirmed states.
type Actuators interface {
	Command(ctx context.Context, req actuator.Request) (actuator.Result, error)
	// Check is Command's checks without the command (the dry-run).
	Check(req actuator.Request) (actuator.Result, error)
	Off(ctx context.Context, r actuator.OffRequest) (actuator.Result, error)
	State(espID string, gpio int) (actuator.StateView, error)
	Get(espID string, gpio int) (actuator.Config, error)
	ByDevice(espID string) []actuator.Config
	CommandByID(ctx context.Context, id string) (store.ActuatorCommand, error)
}

// Devices tells device states.
type Devices interface {
	Get(espID string) (device.Device, error)
}

// Sensors tells configured sensors and their latest readings.
type Sensors interface {
	ByDevice(espID string) []sensor.Config
	Latest(espID string, gpio int, sensorType string) []sensor.LatestValue
}

// Alerts routes notifications and raises the conflict alert.
type Alerts interface {
	Raise(ctx context.Context, spec notify.Spec) error
	Send(ctx context.Context, spec notify.Spec, users []int64) ([]int64, error)
}

// Users lists the accounts a websocket notification may go to.
type Users interface {
	Users(ctx context.Context) ([]store.User, error)
}

// Pauses tells devices whose rules must not act after an emergency stop
// (docs/domain.md §5.4).
type Pauses interface {
	RulesPaused(espID string) bool
}

// Sequencer starts a sequence action in the background (docs/domain.md §6.5);
// the sequence runner implements it. Without one, sequence actions fail
// with not_supported.
type Sequencer interface {
	Start(ctx context.Context, r *rule.Rule, s *rule.Sequence, trig rule.Trigger) (sequenceID string, err error)
	// CanStart tells why Start would refuse the sequence now (the hub-wide
	// limit, a running duplicate id), changing nothing: the dry-run's view.
	CanStart(r *rule.Rule, s *rule.Sequence) error
}

var (
	_ Actuators = (*actuator.Service)(nil)
	_ Devices   = (*device.Service)(nil)
	_ Sensors   = (*sensor.Service)(nil)
	_ Alerts    = (*notify.Service)(nil)
)

// Deps are the services the engine works with.
type Deps struct {
	Store     Store
	Actuators Actuators
	Devices   Devices
	Sensors   Sensors
	Alerts    Alerts
	Users     Users
	Pauses    Pauses // nil: nothing is paused
	Events    *event.Bus
}

// Options tunes the engine; zero values take the defaults of docs/domain.md §6.
type Options struct {
	// Zone is the hub's time zone for time leaves without their own (UTC).
	Zone *time.Location
	// TimerInterval is logic_timer_interval_seconds (60 s, 1–3600 s).
	TimerInterval time.Duration
	// WebhookHosts, when not empty, are the only hosts webhooks may target.
	WebhookHosts []string
	// WebhookClient sends webhooks (default: a client with the 5 s timeout).
	WebhookClient *http.Client
	// WebhookBackoff are the waits between webhook attempts (1 s, 2 s).
	WebhookBackoff []time.Duration
	// SMTP is the mail relay; e-mail actions fail while Addr is empty.
	SMTP SMTP
	// Now is the clock (time.Now).
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// SMTP is the relay e-mail actions go through.
type SMTP struct {
	Addr     string // host:port
	From     string
	Username string
	Password string
	Timeout  time.Duration // per message (default 10 s)
}

// Service is the rule engine. It is safe for concurrent use.
type Service struct {
	d   Deps
	opt Options
	log *slog.Logger
	now func() time.Time
	seq Sequencer

	mu       sync.RWMutex
	rules    map[string]*entry
	bySensor map[rule.Target][]*entry
	timed    []*entry
	workers  map[string]chan job
	pending  map[string]*tracked // command id → the action waiting for it
	execs    map[string]*execution
	stopped  bool

	conflicts *conflicts
	limits    *limiter
	mailer    *mailer
	hooks     *webhooks
	metrics   *metrics

	readings *event.Subscription // the tap of stored readings, set by Start
	stop     chan struct{}
	// ctx ends at Stop: deliveries off the rule path stop with the engine.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// droppedLog is when a dropped trigger was last logged.
	droppedLog time.Time
}

// Errors of the rule operations besides *InvalidError.
var (
	ErrNotFound  = errors.New("rule not found")
	ErrDuplicate = errors.New("a rule with this name exists")
)

// InvalidError is a rule the save-time checks refuse (docs/domain.md §6.10).
type InvalidError struct {
	Errors   []rule.Issue
	Warnings []rule.Issue
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("rule validation failed: %d errors", len(e.Errors))
}

// New builds the engine; call Load, then Start.
func New(d Deps, opt Options) *Service {
	if opt.Zone == nil {
		opt.Zone = time.UTC
	}
	if opt.TimerInterval <= 0 {
		opt.TimerInterval = 60 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.WebhookBackoff == nil {
		opt.WebhookBackoff = []time.Duration{time.Second, 2 * time.Second}
	}
	s := &Service{
		d:         d,
		opt:       opt,
		log:       opt.Logger,
		now:       opt.Now,
		rules:     map[string]*entry{},
		bySensor:  map[rule.Target][]*entry{},
		workers:   map[string]chan job{},
		pending:   map[string]*tracked{},
		execs:     map[string]*execution{},
		conflicts: newConflicts(),
		limits:    newLimiter(),
		stop:      make(chan struct{}),
		metrics:   newMetrics(opt.Registerer),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mailer = &mailer{cfg: opt.SMTP}
	s.hooks = &webhooks{client: opt.WebhookClient, backoff: opt.WebhookBackoff}
	if s.hooks.client == nil {
		s.hooks.client = &http.Client{Timeout: 5 * time.Second}
	}
	return s
}

// SetSequencer connects the sequence runner; call it before Start.
func (s *Service) SetSequencer(q Sequencer) { s.seq = q }

// AdmitStep takes a token from the device's bucket for a sequence step's
// command (docs/domain.md §6.9: the per-device bucket counts actuator
// actions and sequence-step actions); false when it is empty.
func (s *Service) AdmitStep(espID string) bool { return s.limits.takeDevice(s.now(), espID) }

// TimerInterval is the period Tick should be called with.
func (s *Service) TimerInterval() time.Duration { return s.opt.TimerInterval }

// metrics are the engine's instruments.
type metrics struct {
	dropped    prometheus.Counter
	executions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kaiser_logic_triggers_dropped_total",
			Help: "Rule triggers dropped because the engine's queue was full.",
		}),
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kaiser_logic_executions_total",
			Help: "Rule executions recorded, by terminal reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.dropped, m.executions)
	}
	return m
}
