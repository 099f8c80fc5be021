package actuator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Load reads configs, states and open commands, before the scheduler runs
// or any command is accepted (docs/domain.md §4.8): states count as stale
// until the device reports; commands found queued end expired, sent ones
// timeout, except hub OFFs, which are kept; a future auto-off deadline is
// re-armed, a passed one becomes a pending OFF that is sent as soon as the
// device is online, before any other command.
func (s *Service) Load(ctx context.Context) error {
	if err := s.loadConfigs(ctx); err != nil {
		return err
	}
	if err := s.loadStates(ctx); err != nil {
		return err
	}
	if err := s.recoverCommands(ctx); err != nil {
		return err
	}
	return s.rearmAutoOffs(ctx)
}

func (s *Service) loadConfigs(ctx context.Context) error {
	docs, err := s.store.LoadActuatorConfigs(ctx)
	if err != nil {
		return fmt.Errorf("load actuator configs: %w", err)
	}
	for _, d := range docs {
		var c Config
		if err := json.Unmarshal(d.JSON, &c); err != nil {
			return fmt.Errorf("actuator config %s: %w", d.ID, err)
		}
		if _, err := s.devices.Get(c.EspID); errors.Is(err, device.ErrNotFound) {
			// The device was deleted while its actuators' removal was not seen.
			if err := s.store.DeleteActuatorConfig(ctx, c.ID); err != nil {
				return fmt.Errorf("drop actuator of a deleted device: %w", err)
			}
			continue
		}
		s.units[key{c.EspID, c.GPIO}] = newUnit(c)
	}
	return nil
}

func (s *Service) loadStates(ctx context.Context) error {
	states, err := s.store.LoadActuatorStates(ctx)
	if err != nil {
		return fmt.Errorf("load actuator states: %w", err)
	}
	for _, st := range states {
		u := s.units[key{st.EspID, st.GPIO}]
		if u == nil {
			continue
		}
		if err := json.Unmarshal(st.JSON, &u.st); err != nil {
			return fmt.Errorf("actuator state %s/%d: %w", st.EspID, st.GPIO, err)
		}
		u.version = st.Version
		u.st.Stale = true // nothing is known of the output until the device reports again
	}
	return nil
}

// isHubOff reports a hub-issued OFF (never expired, docs/domain.md §4.5).
func isHubOff(rec store.ActuatorCommand) bool {
	return rec.Command == "OFF" &&
		(strings.HasPrefix(rec.IssuedBy, "system:") || strings.HasPrefix(rec.IssuedBy, "emergency:"))
}

func (s *Service) recoverCommands(ctx context.Context) error {
	open, err := s.store.OpenActuatorCommands(ctx)
	if err != nil {
		return fmt.Errorf("load open actuator commands: %w", err)
	}
	now := s.now()
	fx := &effects{}
	s.mu.Lock()
	for _, rec := range open {
		c := &command{rec: rec, hubOff: isHubOff(rec)}
		u := s.units[c.key()]
		s.byCorr[rec.CorrelationID] = c
		switch {
		case rec.Status == StatusQueued && c.hubOff && u != nil:
			u.pendingOffs = append(u.pendingOffs, c)
			if u.st.PendingOff == nil {
				u.st.PendingOff = &offIntent{IssuedBy: rec.IssuedBy, CommandType: rec.CommandType, Since: rec.IssuedAt}
				fx.state(u, now)
			}
		case rec.Status == StatusQueued:
			s.finishLocked(u, c, StatusExpired, nil, "", "still queued when the hub restarted", now, fx)
		default:
			s.finishLocked(u, c, StatusTimeout, nil, "", "still waiting for the device when the hub restarted", now, fx)
			if c.hubOff && u != nil && u.st.PendingOff == nil && !confirmedOff(u.st) {
				u.st.PendingOff = &offIntent{IssuedBy: rec.IssuedBy, CommandType: rec.CommandType, Since: rec.IssuedAt}
				fx.state(u, now)
			}
		}
	}
	for _, u := range s.units {
		if u.st.PendingOff != nil {
			s.armRetryLocked(u)
		}
	}
	s.mu.Unlock()
	s.run(ctx, fx, now)
	return nil
}

func (s *Service) rearmAutoOffs(ctx context.Context) error {
	now := s.now()
	var due []*unit
	s.mu.Lock()
	for _, u := range s.units {
		a := u.st.AutoOff
		switch {
		case a == nil:
		case a.At.After(now):
			k, id := u.key(), a.CommandID
			u.autoOff = s.afterLocked(a.At.Sub(now), func() { s.autoOffDue(k, id) })
		default:
			due = append(due, u)
		}
	}
	s.mu.Unlock()

	for _, u := range due {
		s.mu.Lock()
		k, id := u.key(), u.st.AutoOff.CommandID
		s.mu.Unlock()
		// The broker is not open to devices yet: the OFF waits as pending
		// and goes out as soon as the device is heard, before anything else.
		if err := s.deferOff(ctx, k, id); err != nil {
			return err
		}
	}
	return nil
}

// deferOff turns a passed auto-off into a committed pending OFF.
func (s *Service) deferOff(ctx context.Context, k key, autoOffID string) error {
	now := s.now()
	s.mu.Lock()
	u := s.units[k]
	if u == nil {
		s.mu.Unlock()
		return nil
	}
	u.st.AutoOff = nil
	in := offIntent{
		IssuedBy:    "system:duration",
		CommandType: "OFF",
		Metadata:    map[string]any{"command_id": autoOffID, "fired": "at_restart"},
		Since:       now,
	}
	u.st.PendingOff = &in
	c := s.newHubOffLocked(u, in, now)
	u.pendingOffs = append(u.pendingOffs, c)
	s.armRetryLocked(u)
	cRec, stRec := c.snapshotLocked(), u.stateRecLocked(now)
	s.mu.Unlock()

	if err := s.store.SaveActuatorCommand(ctx, cRec); err != nil {
		return fmt.Errorf("commit the auto-off of %s: %w", k, err)
	}
	if err := s.store.SaveActuatorState(ctx, stRec); err != nil {
		return fmt.Errorf("commit the auto-off of %s: %w", k, err)
	}
	return nil
}

// onDeviceEvent follows a device's transitions (Start).
func (s *Service) onDeviceEvent(e event.Event) {
	ctx := context.Background()
	switch d := e.Data.(type) {
	case event.DeviceStatus:
		switch d.Status {
		case device.StatusOnline:
			s.flushPending(ctx, d.EspID)
			s.pushIfDirty(ctx, d.EspID)
		case device.StatusOffline:
			s.deviceOffline(ctx, d.EspID, d.Reason, e.Time)
		case device.StatusDeleted:
			s.deviceDeleted(ctx, d.EspID)
		}
	case event.EspHealth:
		if d.Status == device.StatusOnline {
			s.flushPending(ctx, d.EspID)
		}
	}
}

func (s *Service) pushIfDirty(ctx context.Context, espID string) {
	s.mu.Lock()
	dirty := s.dirty[espID]
	s.mu.Unlock()
	if !dirty {
		return
	}
	if _, err := s.Push(ctx, espID); err != nil {
		s.log.Warn("pushing actuator changes after reconnect failed", "esp_id", espID, "error", err)
	}
}

// deviceOffline marks the device's actuators stale, records the transition
// and expires their queued commands (docs/domain.md §1.3 effects 2–3);
// pending auto-offs and hub OFFs stay.
func (s *Service) deviceOffline(ctx context.Context, espID, cause string, at time.Time) {
	if at.IsZero() {
		at = s.now()
	}
	fx := &effects{}
	s.mu.Lock()
	for k, u := range s.units {
		if k.esp != espID {
			continue
		}
		u.st.Stale = true
		s.supersedeLocked(u, fx, at, "device offline")
		fx.state(u, at)
		fx.event(u.statusEvent(at, true))
		fx.cmds = append(fx.cmds, s.eventRow(u, "DEVICE_OFFLINE", "system:"+cause, at, map[string]any{
			"state": u.st.State,
			"value": u.st.Value,
		}))
	}
	s.mu.Unlock()
	s.run(ctx, fx, at)
}

// deviceDeleted drops a deleted device's actuators (docs/api.md §6.3). An
// output not known to be off gets one last OFF on the device's last root.
func (s *Service) deviceDeleted(ctx context.Context, espID string) {
	type last struct {
		c    Config
		root string
		on   bool
	}
	var gone []last
	s.mu.Lock()
	for k, u := range s.units {
		if k.esp == espID {
			gone = append(gone, last{c: u.cfg, root: u.root, on: !confirmedOff(u.st)})
		}
	}
	s.mu.Unlock()

	now := s.now()
	for _, g := range gone {
		if g.on && g.root != "" {
			c := &command{rec: store.ActuatorCommand{Command: "OFF", EspID: g.c.EspID, GPIO: g.c.GPIO}}
			if err := s.publishCommand(ctx, g.root, c, now); err != nil {
				s.log.Warn("last OFF to a deleted device failed", "esp_id", espID, "gpio", g.c.GPIO, "error", err)
			}
		}
		if err := s.store.DeleteActuatorConfig(ctx, g.c.ID); err != nil {
			s.log.Error("deleting a deleted device's actuator failed", "esp_id", espID, "error", err)
		}
		fx := &effects{}
		s.mu.Lock()
		if u := s.units[key{g.c.EspID, g.c.GPIO}]; u != nil {
			s.forgetLocked(u, "device deleted", now, fx)
		}
		s.mu.Unlock()
		s.run(ctx, fx, now)
	}
}

// forgetLocked drops a unit: its timers stop, its waiting commands expire;
// commands in flight may still be answered; s.mu is held.
func (s *Service) forgetLocked(u *unit, reason string, now time.Time, fx *effects) {
	s.stopTimerLocked(&u.autoOff)
	s.stopTimerLocked(&u.retry)
	s.supersedeLocked(u, fx, now, reason)
	for _, c := range u.pendingOffs {
		s.finishLocked(nil, c, StatusExpired, nil, "", reason, now, fx)
	}
	u.pendingOffs = nil
	delete(s.units, u.key())
}

// PushResult follows a settled config push (device.OnPushResult): a
// successful actuator section re-created the listed actuators (C5), which
// clears their device latches, and an applied default_state:true counts as
// an ON from now (docs/domain.md §4.2, §4.7).
func (s *Service) PushResult(r device.PushResult) {
	if r.Sections["actuator"] != device.PushApplied {
		return
	}
	now := s.now()
	fx := &effects{}
	s.mu.Lock()
	for _, it := range r.Actuators {
		u := s.units[key{r.EspID, it.GPIO}]
		if u == nil || !it.Active {
			continue
		}
		u.st.DeviceLatched = false
		if it.DefaultState {
			t := now
			u.st.OnSince = &t
			row := s.eventRow(u, "ON", "system:default_state", now, map[string]any{
				"correlation_id": r.CorrelationID,
			})
			row.Command, row.Value, row.Success = "ON", 1, nil
			fx.cmds = append(fx.cmds, row)
		}
		fx.state(u, now)
	}
	s.mu.Unlock()
	s.run(context.Background(), fx, now)
}

// settleWindow is how long after a valve's OFF its statuses may still show
// the old position (the next periodic status, docs/protocol.md §3.1.3).
const settleWindow = 30

// CloseValves sends OFF to the device's valves not confirmed closed and
// returns how long the config push must wait for them (docs/protocol.md
// P4): the longest travel still running, including valves closing since an
// earlier OFF or a deletion.
func (s *Service) CloseValves(ctx context.Context, espID string) time.Duration {
	now := s.now()
	var wait time.Duration
	var close []Config
	s.mu.Lock()
	for k, until := range s.closing {
		if k.esp != espID {
			continue
		}
		if left := until.Sub(now); left > wait {
			wait = left
		}
		if now.Sub(until) > s.secs(settleWindow) {
			delete(s.closing, k)
		}
	}
	for k, u := range s.units {
		if k.esp != espID || u.cfg.Type != "valve" || confirmedOff(u.st) {
			continue
		}
		if _, closing := s.closing[k]; !closing {
			close = append(close, u.cfg)
		}
	}
	s.mu.Unlock()

	for _, c := range close {
		if _, err := s.Off(ctx, OffRequest{EspID: c.EspID, GPIO: c.GPIO, IssuedBy: "system:config_push"}); err != nil {
			s.log.Error("closing a valve before a config push", "esp_id", espID, "gpio", c.GPIO, "error", err)
		}
		if t := c.travel(s.second); t > wait {
			wait = t
		}
	}
	return wait
}

// Watchdog sends OFF (system:max_runtime) to every output on for longer
// than its max runtime + 10 s since its on-time, and raises a warning
// alert (docs/domain.md §4.8). It is the scheduler's actuator_runtime_watchdog job.
func (s *Service) Watchdog(ctx context.Context) error {
	now := s.now()
	type over struct {
		c     Config
		since time.Time
	}
	var due []over
	s.mu.Lock()
	for _, u := range s.units {
		st := u.st
		limit := s.secs(int64(u.cfg.MaxRuntimeSeconds) + watchdogGrace)
		if isOn(st) && st.OnSince != nil && st.PendingOff == nil && now.Sub(*st.OnSince) > limit {
			due = append(due, over{c: u.cfg, since: *st.OnSince})
		}
	}
	s.mu.Unlock()

	var errs []error
	for _, o := range due {
		md := map[string]any{
			"on_since":            o.since.UTC().Format(time.RFC3339),
			"max_runtime_seconds": o.c.MaxRuntimeSeconds,
		}
		if _, err := s.Off(ctx, OffRequest{
			EspID:    o.c.EspID,
			GPIO:     o.c.GPIO,
			IssuedBy: "system:max_runtime",
			Metadata: md,
		}); err != nil {
			errs = append(errs, err)
		}
		s.raise(ctx, notify.Spec{
			Key:      fmt.Sprintf("actuator_%s_%d_max_runtime", o.c.EspID, o.c.GPIO),
			Severity: "warning",
			Category: "system",
			Source:   "system",
			Title:    fmt.Sprintf("%s on %s GPIO %d exceeded its max runtime", o.c.Type, o.c.EspID, o.c.GPIO),
			Body: fmt.Sprintf("on since %s, longer than %d s: the hub switched it off",
				o.since.UTC().Format(time.RFC3339), o.c.MaxRuntimeSeconds),
			Metadata: withEntry(md, "esp_id", o.c.EspID),
		})
	}
	return errors.Join(errs...)
}

// DeviceLatched lists the gpios of espID latched by the device itself
// (docs/domain.md §4.7).
func (s *Service) DeviceLatched(espID string) []int {
	s.mu.Lock()
	var out []int
	for k, u := range s.units {
		if k.esp == espID && u.st.DeviceLatched {
			out = append(out, k.gpio)
		}
	}
	s.mu.Unlock()
	sort.Ints(out)
	return out
}

// ClearDeviceLatches clears the device latches of espID's actuators, for
// the device's `emergency_cleared` (docs/domain.md §4.7).
func (s *Service) ClearDeviceLatches(ctx context.Context, espID string) {
	now := s.now()
	fx := &effects{}
	s.mu.Lock()
	for k, u := range s.units {
		if k.esp == espID && u.st.DeviceLatched {
			u.st.DeviceLatched = false
			fx.state(u, now)
		}
	}
	s.mu.Unlock()
	s.run(ctx, fx, now)
}

// CleanupHistory deletes history rows older than 90 days (docs/domain.md §9.1).
func (s *Service) CleanupHistory(ctx context.Context) error {
	before := s.now().Add(-historyRetention)
	for range 200 {
		n, err := s.store.DeleteActuatorHistoryBefore(ctx, before, 1000)
		if err != nil || n < 1000 {
			return err
		}
	}
	return nil
}
