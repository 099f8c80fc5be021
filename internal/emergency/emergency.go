// Package emergency is the emergency stop (docs/domain.md §5,
// docs/protocol.md §5.10): the global and per-device latches, committed
// before anything is published and held in memory when the commit fails;
// the stop procedure (OFFs through the actuator part, then the broadcast or
// device stop after the valves' travel time); the operator's clear with the
// device's answer or a clear by re-configuration; re-safing latched devices
// that come back; and the emergency tokens newer firmware needs
// (docs/protocol.md S4).
package emergency

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Actuators is what the stop needs from the actuator part.
type Actuators interface {
	// Outputs lists a device's configured actuators.
	Outputs(espID string) []actuator.Output
	// Off issues a hub OFF that passes every latch.
	Off(ctx context.Context, r actuator.OffRequest) (actuator.Result, error)
	// ExpireQueued ends a device's queued non-OFF commands expired.
	ExpireQueued(ctx context.Context, espID, reason string)
	// Fence runs fn while no non-OFF command of espID is between its latch
	// check and its publish.
	Fence(espID string, fn func())
	// DeviceLatched lists the gpios the device itself latched (docs/domain.md §4.7).
	DeviceLatched(espID string) []int
	// ClearDeviceLatches lifts the latches the device set on its actuators.
	ClearDeviceLatches(ctx context.Context, espID string)
}

// Devices is what the stop needs from the device registry.
type Devices interface {
	Get(espID string) (device.Device, error)
	List() []device.Device
	Admit(m ingest.Message) (device.Device, error)
	PushConfig(ctx context.Context, espID, trigger string) (string, error)
}

var _ Devices = (*device.Service)(nil)

// Publisher is the message bus.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error
	Connected() bool
}

// Store persists latches and tokens; both saves return once committed.
type Store interface {
	SaveLatches(ctx context.Context, latches []store.EmergencyLatch) error
	LoadLatches(ctx context.Context) ([]store.EmergencyLatch, error)
	SaveEmergencyToken(ctx context.Context, t store.EmergencyToken) error
	LoadEmergencyTokens(ctx context.Context) ([]store.EmergencyToken, error)
}

// Auditor records audit entries; a failed write never fails the stop.
type Auditor interface {
	Record(ctx context.Context, e store.AuditEntry)
}

var _ Auditor = (*audit.Log)(nil)

// Alerter raises and resolves alerts.
type Alerter interface {
	Raise(ctx context.Context, spec notify.Spec) error
	Clear(ctx context.Context, key string) error
}

var _ Alerter = (*notify.Service)(nil)

// Errors the API maps to codes.
var (
	ErrDeviceNotFound = errors.New("device not found")
	ErrBrokerDown     = errors.New("mqtt broker unavailable")
)

// Timing of docs/protocol.md E5 and docs/domain.md §5.2. ClearGuard,
// ClearWait, ConfirmWait and tokenWait are in the hub's seconds
// (Deps.Second); the others are real time.
const (
	// ClearGuard is how long after the stop message a clear is refused (E5).
	ClearGuard = 6 * time.Second
	// ClearWait is how long a clear waits for the device's answer (E5).
	ClearWait = 10 * time.Second
	// PushWait bounds the wait for a clear by re-configuration: the push's
	// own 15 s timeout and its 2 s error grace, and a second to spare; with
	// ClearWait the request stays within docs/api.md §1.1's 30 s. It is
	// not scaled: the device registry's push timeouts are real seconds.
	PushWait = 18 * time.Second
	// RetryEvery is the retry period of a latch write that failed
	// (docs/domain.md §5.2 step 1).
	RetryEvery = time.Second
	// commitWait bounds one latch commit, so that a stuck database delays
	// the stop's OFFs by at most this much.
	commitWait = 2 * time.Second
	// tokenWait is how long a token provisioning waits for its answers (S4).
	tokenWait = 10 * time.Second
)

// TriggerClear is the config push trigger of a clear by re-configuration
// (docs/protocol.md E7); such a push is not followed by a re-safing.
const TriggerClear = "emergency_clear"

// Deps are the parts the service works with.
type Deps struct {
	Actuators Actuators
	Devices   Devices
	Broker    Publisher
	Store     Store
	Audit     Auditor
	Alerts    Alerter
	Events    *event.Bus
	Logger    *slog.Logger
	// Second is the length of one of the hub's seconds for the guard, the
	// clear's wait and the confirmation and token waits, as the actuator
	// part's Options.Second is for its timings (valve travel among them):
	// tests shorten both alike. Zero means time.Second.
	Second time.Duration
}

// Service owns the latches. It implements actuator.Latches.
type Service struct {
	acts    Actuators
	devices Devices
	broker  Publisher
	store   Store
	audit   Auditor
	alerts  Alerter
	events  *event.Bus
	log     *slog.Logger
	second  time.Duration

	mu sync.RWMutex
	// latches holds every latch record by scope, inactive ones included.
	latches map[string]*store.EmergencyLatch
	// unsaved are the scopes whose current version is not committed yet.
	unsaved map[string]bool
	// failing is set from a failed latch write until every latch is
	// committed again: the hub is not ready meanwhile.
	failing  bool
	retrying bool
	// resafe marks latched devices to re-safe at their next heartbeat
	// (offline during the stop, a lost stop message, a hub restart).
	resafe map[string]bool
	// resafing is set while a device's re-safing waits for its valves;
	// resafed is when the last one started.
	resafing map[string]bool
	resafed  map[string]time.Time
	// offerAfter are token offers (with their force) that wait for the
	// device's running re-safing; offered is when the last offer started.
	offerAfter map[string]bool
	offered    map[string]time.Time
	tokens     map[string]*store.EmergencyToken
	// tokenTried marks devices whose token was offered since the hub started.
	tokenTried map[string]bool
	// confirms are the devices' outstanding confirmations of a stop message (E2).
	confirms map[string]*confirmation
	onReady  func(bool)

	waits waits

	// lifeMu guards closing against starting goroutines and timers, so
	// that nothing joins wg once Close waits for it.
	lifeMu sync.Mutex
	timers map[*time.Timer]struct{}
	closed chan struct{}
	wg     sync.WaitGroup
	sub    *event.Subscription
}

var _ actuator.Latches = (*Service)(nil)

// New builds the service; call Load before MQTT subscriptions and before
// any command is accepted.
func New(d Deps) *Service {
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	if d.Second <= 0 {
		d.Second = time.Second
	}
	return &Service{
		acts:       d.Actuators,
		devices:    d.Devices,
		broker:     d.Broker,
		store:      d.Store,
		audit:      d.Audit,
		alerts:     d.Alerts,
		events:     d.Events,
		log:        log,
		second:     d.Second,
		latches:    map[string]*store.EmergencyLatch{},
		unsaved:    map[string]bool{},
		resafe:     map[string]bool{},
		resafing:   map[string]bool{},
		resafed:    map[string]time.Time{},
		offerAfter: map[string]bool{},
		offered:    map[string]time.Time{},
		tokens:     map[string]*store.EmergencyToken{},
		tokenTried: map[string]bool{},
		confirms:   map[string]*confirmation{},
		waits:      newWaits(),
		timers:     map[*time.Timer]struct{}{},
		closed:     make(chan struct{}),
	}
}

// Load restores the latches and tokens and starts watching device
// events. Every device latched at the last stop is re-safed at its first
// heartbeat: the hub cannot know whether a stop message in flight at the
// restart reached it.
func (s *Service) Load(ctx context.Context) error {
	latches, err := s.store.LoadLatches(ctx)
	if err != nil {
		return err
	}
	tokens, err := s.store.LoadEmergencyTokens(ctx)
	if err != nil {
		return err
	}

	s.mu.Lock()
	for i := range latches {
		l := latches[i]
		s.latches[l.Scope] = &l
		if l.Active && l.EspID != "" {
			s.resafe[l.EspID] = true
		}
	}
	for i := range tokens {
		t := tokens[i]
		s.tokens[t.Scope] = &t
	}
	s.mu.Unlock()

	if err := s.ensureBroadcastToken(ctx); err != nil {
		return err
	}
	s.watch()
	return nil
}

// Close stops the watch, the pending stop messages and the retries and
// waits for them. Latches stay as committed; a stop message still waiting
// for a valve is sent by the re-safing after the next start.
func (s *Service) Close() {
	s.lifeMu.Lock()
	select {
	case <-s.closed:
	default:
		close(s.closed)
		for t := range s.timers {
			if t.Stop() {
				s.wg.Done()
			}
		}
		s.timers = map[*time.Timer]struct{}{}
	}
	s.lifeMu.Unlock()
	if s.sub != nil {
		s.events.Unsubscribe(s.sub)
	}
	s.wg.Wait()
}

// hub is d, given in seconds, in the hub's seconds (Deps.Second).
func (s *Service) hub(d time.Duration) time.Duration {
	return time.Duration(float64(d) / float64(time.Second) * float64(s.second))
}

// join adds one to wg unless the service is closed.
func (s *Service) join() bool {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	select {
	case <-s.closed:
		return false
	default:
		s.wg.Add(1)
		return true
	}
}

// after runs fn after d on its own goroutine, unless the service closes
// first; the wait is part of wg.
func (s *Service) after(d time.Duration, fn func()) {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	select {
	case <-s.closed:
		return
	default:
	}

	s.wg.Add(1)
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		defer s.wg.Done()
		s.lifeMu.Lock()
		_, pending := s.timers[t]
		delete(s.timers, t)
		s.lifeMu.Unlock()
		if pending {
			fn()
		}
	})
	s.timers[t] = struct{}{}
}

// goSafe runs fn on a goroutine Close waits for; nothing runs once closed.
func (s *Service) goSafe(fn func()) {
	if !s.join() {
		return
	}
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Latched reports whether the global latch or the device's latch blocks
// non-OFF commands to espID (docs/domain.md §5.1), from memory: a latch
// whose commit failed blocks like a committed one.
func (s *Service) Latched(espID string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.latchedLocked(espID)
}

func (s *Service) latchedLocked(espID string) bool {
	if g := s.latches[store.LatchGlobal]; g != nil && g.Active {
		return true
	}
	l := s.latches[deviceScope(espID)]
	return l != nil && l.Active
}

// RulesPaused reports whether rules targeting espID must not act: while it
// is latched, and after a clear that did not ask for resume_rules
// (docs/domain.md §5.4).
func (s *Service) RulesPaused(espID string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.latchedLocked(espID) {
		return true
	}
	l := s.latches[deviceScope(espID)]
	return l != nil && l.RulesPaused
}

// Ready reports false from a failed latch write until every latch is
// committed: the hub is not ready while a latch is held only in memory
// (docs/domain.md §5.2 step 1).
func (s *Service) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return !s.failing
}

// OnReadiness registers fn to be told when Ready changes.
func (s *Service) OnReadiness(fn func(ready bool)) {
	s.mu.Lock()
	s.onReady = fn
	s.mu.Unlock()
}

func deviceScope(espID string) string { return store.LatchDevicePrefix + espID }

// approved reports a device status that may receive commands and stops
// (docs/api.md §6.1: approved, online, offline, error, unknown).
func approved(status string) bool {
	switch status {
	case device.StatusApproved, device.StatusOnline, device.StatusOffline, device.StatusError, device.StatusUnknown:
		return true
	}
	return false
}
