package actuator

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// mark is an instant tied to the command that set it.
type mark struct {
	CommandID string    `json:"command_id"`
	At        time.Time `json:"at"`
}

// offIntent is a hub-issued OFF that is retried until the state is
// confirmed off (docs/protocol.md K8) and kept while the device is away.
type offIntent struct {
	IssuedBy    string         `json:"issued_by"`
	CommandType string         `json:"command_type"`
	Metadata    map[string]any `json:"metadata,omitempty"`
	Since       time.Time      `json:"since"`
}

// State is an actuator's persisted runtime state. The confirmed part
// (State, Value, Emergency, DeviceLatched) changes only from device
// messages (docs/domain.md §4.6); the rest are the hub's bounds on it.
type State struct {
	State             string     `json:"state"` // on, off, pwm, error, unknown
	Value             float64    `json:"value"` // 0–1
	Stale             bool       `json:"stale"`
	Emergency         string     `json:"emergency"` // as the device reports it: normal, active, …
	DeviceLatched     bool       `json:"device_latched"`
	DeviceLastCommand string     `json:"device_last_command,omitempty"`
	RuntimeMS         *int64     `json:"runtime_ms,omitempty"`
	ReportedAt        *time.Time `json:"reported_at,omitempty"`
	// Live is set once a live status was applied: a replayed one never
	// overwrites it (docs/protocol.md §5.6).
	Live bool `json:"live"`

	LastCommand   string     `json:"last_command,omitempty"`
	LastCommandAt *time.Time `json:"last_command_at,omitempty"`
	// OnSince is where the watchdog measures from; OnCandidate becomes it
	// when the ON that set it is acknowledged (docs/domain.md §4.8).
	OnSince     *time.Time `json:"on_since,omitempty"`
	OnCandidate *mark      `json:"on_candidate,omitempty"`
	// AutoOff is the deadline of the last ON that reached sent (K4).
	AutoOff    *mark      `json:"auto_off,omitempty"`
	LastOffAt  *time.Time `json:"last_off_at,omitempty"`
	PendingOff *offIntent `json:"pending_off,omitempty"`
}

// isOn reports an output the device confirmed energised.
func isOn(st State) bool {
	return st.State == "on" || (st.State == "pwm" && st.Value > 0)
}

// confirmedOff reports an output the device confirmed off and whose report
// is current.
func confirmedOff(st State) bool {
	return st.State == "off" && !st.Stale
}

// sameLevel compares values for change detection: ≥ 0.99 counts as 1.0
// (an open valve reports 254, docs/domain.md §4.6).
func sameLevel(a, b float64) bool {
	norm := func(v float64) float64 {
		if v >= 0.99 {
			return 1
		}
		return v
	}
	return norm(a) == norm(b)
}

// unit is one actuator with its state and its commands.
type unit struct {
	cfg     Config
	st      State
	version int64 // of the last state save

	sent        []*command // published, waiting for the device; oldest first
	queued      *command   // the non-OFF waiting for the one in flight
	pendingOffs []*command // hub OFFs kept until the device is online
	recent      []*command // finished commands, oldest first, for late answers
	autoOff     *time.Timer
	retry       *time.Timer
	root        string // kaiser root the device was last reached on

	// inHand are hub OFFs between their creation and their publish (or
	// their place in pendingOffs): attempts of the intent all the same, so
	// a message of the device meanwhile does not send another (K8).
	inHand []*command

	// publishing counts the unit's commands being published; published is
	// closed when it drops to zero. A device's answer can overtake the
	// bookkeeping of its own publish (the embedded broker delivers inline),
	// so answers wait for it (awaitPublishes).
	publishing int
	published  chan struct{}
}

// beginPublishLocked notes a publish of one of u's commands; s.mu is held.
func (u *unit) beginPublishLocked() {
	if u.publishing == 0 {
		u.published = make(chan struct{})
	}
	u.publishing++
}

// endPublishLocked notes that the publish and its bookkeeping are done; s.mu is held.
func (u *unit) endPublishLocked() {
	u.publishing--
	if u.publishing == 0 {
		close(u.published)
	}
}

func newUnit(c Config) *unit {
	return &unit{cfg: c, st: State{State: "unknown", Emergency: "normal"}}
}

func (u *unit) key() key { return key{u.cfg.EspID, u.cfg.GPIO} }

// inflightLocked is the non-OFF command in flight, if any; s.mu is held.
func (u *unit) inflightLocked() *command {
	for _, c := range u.sent {
		if c.rec.Command != "OFF" {
			return c
		}
	}
	return nil
}

// hasHubOffLocked reports a hub OFF in flight, waiting or on its way; s.mu is held.
func (u *unit) hasHubOffLocked() bool {
	if len(u.pendingOffs) > 0 || len(u.inHand) > 0 {
		return true
	}
	for _, c := range u.sent {
		if c.hubOff {
			return true
		}
	}
	return false
}

// takeLocked marks the hub OFF c as on its way to its publish; s.mu is held.
func (u *unit) takeLocked(c *command) {
	if c.hubOff {
		u.inHand = append(u.inHand, c)
	}
}

// handedLocked ends c's way to its publish; s.mu is held.
func (u *unit) handedLocked(c *command) {
	u.inHand = slices.DeleteFunc(u.inHand, func(h *command) bool { return h == c })
}

// stopTimers stops every timer of the unit and its commands; s.mu is held.
func (u *unit) stopTimers(s *Service) {
	s.stopTimerLocked(&u.autoOff)
	s.stopTimerLocked(&u.retry)
	for _, c := range u.sent {
		s.stopTimerLocked(&c.timer)
	}
	if u.queued != nil {
		s.stopTimerLocked(&u.queued.timer)
	}
}

// stateRecLocked is the next version of the unit's state to save; s.mu is held.
func (u *unit) stateRecLocked(now time.Time) store.ActuatorState {
	u.version++
	doc, _ := json.Marshal(u.st)
	return store.ActuatorState{
		EspID:     u.cfg.EspID,
		GPIO:      u.cfg.GPIO,
		JSON:      doc,
		UpdatedAt: now,
		Version:   u.version,
	}
}

func (u *unit) statusEvent(now time.Time, stale bool) event.ActuatorStatus {
	ev := event.ActuatorStatus{
		EspID:        u.cfg.EspID,
		GPIO:         u.cfg.GPIO,
		ActuatorType: u.cfg.Type,
		State:        u.st.State,
		Value:        u.st.Value,
		Stale:        stale || u.st.Stale,
		Emergency:    u.st.Emergency,
		RuntimeMS:    u.st.RuntimeMS,
		Timestamp:    now.Unix(),
	}
	if u.st.DeviceLastCommand != "" {
		lc := u.st.DeviceLastCommand
		ev.LastCommand = &lc
	}
	return ev
}

// command is one command with its lifecycle record.
type command struct {
	rec    store.ActuatorCommand
	hubOff bool // a hub-issued OFF: never superseded, retried (K5, K8)
	timer  *time.Timer
	late   bool // a late answer was recorded
}

func (c *command) key() key { return key{c.rec.EspID, c.rec.GPIO} }

// snapshotLocked is the next version of the record to save; s.mu is held.
func (c *command) snapshotLocked() store.ActuatorCommand {
	c.rec.Version++
	rec := c.rec
	rec.Metadata = maps.Clone(c.rec.Metadata)
	return rec
}

func (c *command) statusEvent(now time.Time) event.CommandStatus {
	ev := event.CommandStatus{
		CommandID:     c.rec.ID,
		CorrelationID: c.rec.CorrelationID,
		EspID:         c.rec.EspID,
		GPIO:          c.rec.GPIO,
		Command:       c.rec.Command,
		Value:         c.rec.Value,
		Status:        c.rec.Status,
		IssuedBy:      c.rec.IssuedBy,
		Timestamp:     now.Unix(),
	}
	if c.rec.Error != "" {
		e := c.rec.Error
		ev.Error = &e
	}
	return ev
}

// effects are the writes, events and follow-ups a locked change produced;
// they run after the lock is released.
type effects struct {
	states []store.ActuatorState
	cmds   []store.ActuatorCommand
	events []event.Payload
	alerts []notify.Spec
	next   []*command // queued commands whose turn came
}

func (fx *effects) state(u *unit, now time.Time) {
	fx.states = append(fx.states, u.stateRecLocked(now))
}

// cmd saves c's record and announces its lifecycle state.
func (fx *effects) cmd(c *command, now time.Time) {
	fx.cmds = append(fx.cmds, c.snapshotLocked())
	fx.events = append(fx.events, c.statusEvent(now))
}

func (fx *effects) event(p event.Payload) { fx.events = append(fx.events, p) }

// run performs fx: queued writes (their order is the writer's), events,
// alerts, then the queued commands whose turn came.
func (s *Service) run(ctx context.Context, fx *effects, at time.Time) {
	for _, st := range fx.states {
		if err := s.store.QueueActuatorState(ctx, st); err != nil {
			s.log.Error("saving actuator state failed", "esp_id", st.EspID, "gpio", st.GPIO, "error", err)
		}
	}
	for _, c := range fx.cmds {
		if err := s.store.QueueActuatorCommand(ctx, c); err != nil {
			s.log.Error("saving actuator command failed", "command_id", c.ID, "error", err)
		}
	}
	for _, p := range fx.events {
		s.emit(at, p)
	}
	for _, spec := range fx.alerts {
		s.raise(ctx, spec)
	}
	for _, c := range fx.next {
		s.dequeue(ctx, c)
	}
}
