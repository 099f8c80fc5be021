// Package actuator is the hub's actuators (docs/domain.md §4,
// docs/protocol.md §5.8): their configuration and pins, commands with the
// safety checks of docs/domain.md §4.4 and the lifecycle
// queued → sent → acknowledged/failed/timeout/expired,
// the state the devices confirm, the hub's own bounds on every output
// (auto-off, max-runtime watchdog, OFF retries) that survive a restart, the
// device's alerts and latches, and the actuator section of the config push.
//
// The baseline firmware bounds nothing by itself (docs/protocol.md Q10, Q12):
// the persisted auto-off of this package is the only bound on its outputs.
package actuator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Store is the persistence the actuator domain needs. Save* wait for the
// commit, Queue* do not.
type Store interface {
	SaveActuatorConfig(ctx context.Context, d store.Doc) error
	DeleteActuatorConfig(ctx context.Context, id string) error
	LoadActuatorConfigs(ctx context.Context) ([]store.Doc, error)
	SaveActuatorState(ctx context.Context, st store.ActuatorState) error
	QueueActuatorState(ctx context.Context, st store.ActuatorState) error
	LoadActuatorStates(ctx context.Context) ([]store.ActuatorState, error)
	SaveActuatorCommand(ctx context.Context, c store.ActuatorCommand) error
	QueueActuatorCommand(ctx context.Context, c store.ActuatorCommand) error
	GetActuatorCommand(ctx context.Context, id string) (store.ActuatorCommand, error)
	FindActuatorCommand(ctx context.Context, correlationID string) (store.ActuatorCommand, error)
	OpenActuatorCommands(ctx context.Context) ([]store.ActuatorCommand, error)
	ActuatorHistory(ctx context.Context, espID string, gpio, limit int) ([]store.ActuatorCommand, int, error)
	DeleteActuatorHistoryBefore(ctx context.Context, before time.Time, limit int) (int64, error)
}

// Devices is what the actuator domain asks of the device registry.
type Devices interface {
	Get(espID string) (device.Device, error)
	Admit(m ingest.Message) (device.Device, error)
	PushConfig(ctx context.Context, espID, trigger string) (string, error)
}

// Sensors tells which pins the device's sensors hold (docs/domain.md §8.3).
type Sensors interface {
	ByDevice(espID string) []sensor.Config
}

// Publisher publishes hub messages.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error
}

// Alerts opens the alerts of device alerts and the watchdog.
type Alerts interface {
	Raise(ctx context.Context, spec notify.Spec) error
}

// Latches tells whether a hub latch (global or of the device) blocks non-OFF commands.
type Latches interface {
	Latched(espID string) bool
}

var (
	_ Devices = (*device.Service)(nil)
	_ Sensors = (*sensor.Service)(nil)
	_ Alerts  = (*notify.Service)(nil)
)

// Errors of the domain operations besides *Rejection and *InvalidError.
var (
	ErrNotFound = errors.New("actuator not found")
	ErrLimit    = errors.New("actuator limit reached")
)

// Timings in the hub's seconds (Options.Second): docs/domain.md §4.5, §4.8,
// docs/protocol.md K8.
const (
	commandTimeout = 10 // sent → timeout
	queueExpiry    = 30 // queued → expired
	offRetry       = 10 // a hub-issued OFF whose publish failed is tried again
	watchdogGrace  = 10 // beyond max_runtime_seconds
	// WatchdogPeriod is how often the max-runtime watchdog should run (docs/domain.md §9).
	WatchdogPeriod = 10 * time.Second
	// recentPerActuator bounds the finished commands kept for late answers.
	recentPerActuator = 16
	// historyRetention is how long history rows are kept (docs/domain.md §9.1).
	historyRetention = 90 * 24 * time.Hour
)

// Options tunes the service.
type Options struct {
	// Second is the length of one second of the domain's timings: command
	// timeout, queue expiry, retries, durations, max runtimes, cooldowns and
	// valve travel. Tests shorten it; zero means time.Second.
	Second time.Duration
	Logger *slog.Logger
}

type key struct {
	esp  string
	gpio int
}

func (k key) String() string { return fmt.Sprintf("%s/%d", k.esp, k.gpio) }

// Service is the actuator domain. It is safe for concurrent use.
type Service struct {
	store   Store
	devices Devices
	sensors Sensors
	bus     Publisher
	events  *event.Bus
	alerts  Alerts
	log     *slog.Logger
	second  time.Duration
	now     func() time.Time

	mu      sync.Mutex
	latches Latches
	units   map[key]*unit
	byCorr  map[string]*command // open and recently finished commands
	gates   map[string]*sync.Mutex
	closing map[key]time.Time // valve OFFs and when the valve has travelled
	dirty   map[string]bool   // devices whose actuator changes were not pushed
	stopped bool
	wg      sync.WaitGroup // running timer callbacks and the watcher

	watchStop chan struct{}

	// emergencyReport is told of every device report that an actuator is
	// stopped by an emergency (docs/protocol.md E2); set before traffic.
	emergencyReport func(espID string, gpio int)
}

// New builds the service; call Load, then Start.
func New(st Store, devices Devices, sensors Sensors, bus Publisher, events *event.Bus, alerts Alerts,
	opt Options) *Service {
	if opt.Second <= 0 {
		opt.Second = time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Service{
		store:   st,
		devices: devices,
		sensors: sensors,
		bus:     bus,
		events:  events,
		alerts:  alerts,
		log:     opt.Logger,
		second:  opt.Second,
		now:     time.Now,
		units:   map[key]*unit{},
		byCorr:  map[string]*command{},
		gates:   map[string]*sync.Mutex{},
		closing: map[key]time.Time{},
		dirty:   map[string]bool{},
	}
}

// secs is n of the service's seconds.
func (s *Service) secs(n int64) time.Duration { return time.Duration(n) * s.second }

// OnEmergencyReport registers fn for the device reports that confirm an
// emergency stop: an `emergency_stop` alert, or a status with
// `emergency:"active"`. Call it before traffic; fn must not block.
func (s *Service) OnEmergencyReport(fn func(espID string, gpio int)) {
	s.emergencyReport = fn
}

func (s *Service) reportEmergency(espID string, gpio int) {
	if s.emergencyReport != nil {
		s.emergencyReport(espID, gpio)
	}
}

// SetLatches wires the hub latches of the emergency part; nil means nothing
// is latched. Call it before any command is accepted.
func (s *Service) SetLatches(l Latches) {
	s.mu.Lock()
	s.latches = l
	s.mu.Unlock()
}

// hubLatched reports a hub latch on the device (docs/domain.md §5.1).
func (s *Service) hubLatched(espID string) bool {
	s.mu.Lock()
	l := s.latches
	s.mu.Unlock()
	return l != nil && l.Latched(espID)
}

// gate is the device's serialisation of latch checks with publishes.
func (s *Service) gate(espID string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gates[espID]
	if g == nil {
		g = &sync.Mutex{}
		s.gates[espID] = g
	}
	return g
}

// Fence runs fn while no non-OFF command of espID is between its latch check
// and its publish (docs/domain.md §5.2 step 1): a latch set inside fn is
// seen by every non-OFF command published after it.
func (s *Service) Fence(espID string, fn func()) {
	g := s.gate(espID)
	g.Lock()
	defer g.Unlock()
	fn()
}

// Start watches device transitions: a device coming back gets its pending
// hub OFFs first (docs/protocol.md K5, K8) and its unpushed actuator
// changes; a device going offline marks its actuators stale and expires
// their queued commands (docs/domain.md §1.3); a deleted device loses its
// actuators.
func (s *Service) Start() {
	sub := s.events.Subscribe(4096, event.TypeDeviceStatus, event.TypeEspHealth)
	s.mu.Lock()
	s.watchStop = make(chan struct{})
	stop := s.watchStop
	s.wg.Add(1)
	s.mu.Unlock()

	go func() {
		defer s.wg.Done()
		defer s.events.Unsubscribe(sub)
		for {
			select {
			case <-stop:
				return
			case e := <-sub.C:
				s.onDeviceEvent(e)
			}
		}
	}()
}

// Stop ends the watcher and every timer and waits for callbacks that run.
func (s *Service) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	if s.watchStop != nil {
		close(s.watchStop)
	}
	for _, u := range s.units {
		u.stopTimers(s)
	}
	for _, c := range s.byCorr {
		s.stopTimerLocked(&c.timer)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// afterLocked runs fn after d unless the service stops first; s.mu is held.
func (s *Service) afterLocked(d time.Duration, fn func()) *time.Timer {
	if s.stopped {
		return nil
	}
	s.wg.Add(1)
	return time.AfterFunc(d, func() {
		defer s.wg.Done()
		s.mu.Lock()
		stopped := s.stopped
		s.mu.Unlock()
		if !stopped {
			fn()
		}
	})
}

// stopTimerLocked stops *t if it has not fired; s.mu is held.
func (s *Service) stopTimerLocked(t **time.Timer) {
	if *t != nil && (*t).Stop() {
		s.wg.Done()
	}
	*t = nil
}

func (s *Service) emit(at time.Time, p event.Payload) {
	s.events.Publish(event.Event{Time: at, Data: p})
}

func (s *Service) raise(ctx context.Context, spec notify.Spec) {
	if s.alerts == nil {
		return
	}
	if err := s.alerts.Raise(ctx, spec); err != nil {
		s.log.Error("raising actuator alert failed", "key", spec.Key, "error", err)
	}
}
