package actuator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// level is a status's value on the 0–1 scale (docs/domain.md §4.6).
func level(st contract.ActuatorStatus) float64 {
	if st.ValueFraction != nil {
		return *st.ValueFraction
	}
	if st.PWM != nil {
		return math.Round(float64(*st.PWM)/255*1000) / 1000
	}
	return 0
}

// HandleStatus is the ingest handler of `actuator/{gpio}/status`
// (docs/protocol.md §5.7): the confirmed state, in arrival order.
func (s *Service) HandleStatus(ctx context.Context, m ingest.Message) error {
	st, err := contract.DecodeActuatorStatus(m.Topic, m.Payload)
	if err != nil {
		return err
	}
	k := key{m.Topic.EspID, st.GPIO}
	if m.Replay {
		s.seedFromReplay(ctx, k, st, m.ReceivedAt)
		return ingest.Drop(contract.ReasonReplay, "retained actuator status")
	}
	if _, err := s.devices.Admit(m); err != nil {
		return err
	}
	// The device hears us: pending hub OFFs go before anything else (K8).
	s.flushPending(ctx, k.esp)

	now := m.ReceivedAt
	fx := &effects{}
	s.mu.Lock()
	u := s.units[k]
	if u == nil {
		s.mu.Unlock()
		s.log.Info("status of an actuator the hub does not know (config out of sync)", "esp_id", k.esp,
			"gpio", k.gpio)
		return nil
	}
	u.root = m.Topic.KaiserID
	s.applyStatusLocked(u, st, now, fx)
	on := isOn(u.st)
	s.mu.Unlock()
	s.run(ctx, fx, now)
	if st.Emergency == "active" {
		s.reportEmergency(k.esp, k.gpio)
	}

	if on && s.hubLatched(k.esp) {
		s.raise(ctx, notify.Spec{
			Key:      fmt.Sprintf("actuator_%s_%d_latch_inconsistent", k.esp, k.gpio),
			Severity: "critical",
			Category: "security",
			Source:   "device_event",
			Title:    "Actuator on while emergency-stopped",
			Body: fmt.Sprintf("GPIO %d of %s reports on although the device is latched by an emergency stop",
				k.gpio, k.esp),
			Metadata: map[string]any{"esp_id": k.esp, "gpio": k.gpio},
		})
	}
	return nil
}

// applyStatusLocked applies a live status; s.mu is held.
func (s *Service) applyStatusLocked(u *unit, st contract.ActuatorStatus, now time.Time, fx *effects) {
	old := u.st
	state, value := st.State, level(st)
	if state == "on" && u.cfg.Class() != ClassDigital && value > 0 && value < 0.99 {
		state = "pwm"
	}

	u.st.State, u.st.Value, u.st.Emergency = state, value, st.Emergency
	u.st.RuntimeMS = st.RuntimeMS
	if st.LastCommand != "" {
		u.st.DeviceLastCommand = st.LastCommand
	}
	t := now
	u.st.ReportedAt, u.st.Stale, u.st.Live = &t, false, true
	switch st.Emergency {
	case "active":
		u.st.DeviceLatched = true
	case "normal":
		u.st.DeviceLatched = false // docs/domain.md §4.7
	}

	wasOn, nowOn := isOn(old), isOn(u.st)
	switch {
	case wasOn && !nowOn:
		u.st.LastOffAt, u.st.OnSince = &t, nil // cooldown from here (docs/domain.md §4.8)
	case nowOn && u.st.OnSince == nil:
		u.st.OnSince = &t // on without a command the hub knows: bound it from now
	}
	if confirmedOff(u.st) && u.st.PendingOff != nil {
		u.st.PendingOff = nil // the hub OFF is done (K8)
	}
	fx.state(u, now)

	changed := !old.Live || old.Stale || old.State != u.st.State || !sameLevel(old.Value, u.st.Value) ||
		old.Emergency != u.st.Emergency
	if !changed {
		return
	}
	fx.event(u.statusEvent(now, false))
	if st.LastCommand != "" {
		fx.cmds = append(fx.cmds, s.eventRow(u, strings.ToUpper(st.LastCommand), "esp32", now, map[string]any{
			"state": u.st.State,
			"value": u.st.Value,
		}))
	}
}

// seedFromReplay lets a retained status initialise a state the hub never
// learned live; it never overwrites live state (docs/protocol.md §5.6).
func (s *Service) seedFromReplay(ctx context.Context, k key, st contract.ActuatorStatus, now time.Time) {
	fx := &effects{}
	s.mu.Lock()
	if u := s.units[k]; u != nil && !u.st.Live && u.st.State == "unknown" {
		u.st.State, u.st.Value, u.st.Stale = st.State, level(st), true
		fx.state(u, now)
	}
	s.mu.Unlock()
	s.run(ctx, fx, now)
}

// eventRow is a device-originated history row (docs/domain.md §4.9).
func (s *Service) eventRow(
	u *unit,
	commandType, issuedBy string,
	now time.Time,
	md map[string]any,
) store.ActuatorCommand {
	f := false
	return store.ActuatorCommand{
		ID:           uuid.NewString(),
		EspID:        u.cfg.EspID,
		GPIO:         u.cfg.GPIO,
		ActuatorType: u.cfg.Type,
		CommandType:  commandType,
		IssuedBy:     issuedBy,
		Success:      &f,
		Metadata:     md,
		IssuedAt:     now,
		Version:      1,
	}
}

// HandleResponse is the ingest handler of `actuator/{gpio}/response`: it
// completes the matching command (K6, K7); an answer after the timeout is
// kept as late_ack and changes nothing; one that matches nothing is history.
func (s *Service) HandleResponse(ctx context.Context, m ingest.Message) error {
	r, err := contract.DecodeActuatorResponse(m.Topic, m.Payload)
	if err != nil {
		return err
	}
	if m.Replay {
		return ingest.Drop(contract.ReasonReplay, "retained actuator response")
	}
	if _, err := s.devices.Admit(m); err != nil {
		return err
	}
	s.flushPending(ctx, r.EspID)

	now := m.ReceivedAt
	k := key{r.EspID, r.GPIO}
	s.awaitPublishes(k)
	fx := &effects{}
	s.mu.Lock()
	u := s.units[k]
	c, late := s.matchLocked(k, u, r)
	switch {
	case c != nil && late:
		s.lateAckLocked(c, r, now, fx)
	case c != nil:
		s.answerLocked(u, c, r, now, fx)
	case r.CorrelationID == "" && u != nil:
		fx.cmds = append(fx.cmds, s.eventRow(u, strings.ToUpper(r.Command), "esp32_response", now, map[string]any{
			"success": r.Success,
			"message": r.Message,
		}))
	}
	var id *string
	if c != nil {
		cid := c.rec.ID
		id = &cid
	}
	s.mu.Unlock()

	if c == nil && r.CorrelationID != "" {
		id = s.lateAckStored(ctx, k, r, now)
	}
	fx.event(event.ActuatorResponse{
		EspID:     r.EspID,
		GPIO:      r.GPIO,
		Command:   r.Command,
		Value:     r.Value,
		Success:   r.Success,
		Message:   r.Message,
		CommandID: id,
		Timestamp: now.Unix(),
	})
	s.run(ctx, fx, now)
	return nil
}

// awaitPublishes waits while commands of k are being published: an answer
// can overtake the bookkeeping of its own publish and must find its
// command sent (K6). The wait is bounded by the command timeout.
func (s *Service) awaitPublishes(k key) {
	s.mu.Lock()
	u := s.units[k]
	if u == nil || u.publishing == 0 {
		s.mu.Unlock()
		return
	}
	done := u.published
	s.mu.Unlock()

	t := time.NewTimer(s.secs(commandTimeout))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("answer handled while its command is still being published", "key", k)
	}
}

// matchLocked finds the command a response answers (K6): by correlation id
// when it carries one, else the oldest one in flight with the same command;
// late reports a command that ended before its answer; s.mu is held.
func (s *Service) matchLocked(k key, u *unit, r contract.ActuatorResponse) (c *command, late bool) {
	if r.CorrelationID != "" {
		c := s.byCorr[r.CorrelationID]
		if c == nil || c.key() != k {
			return nil, false
		}
		return c, c.rec.Status != StatusSent
	}
	if u == nil {
		return nil, false
	}
	cmd := strings.ToUpper(r.Command)
	for _, c := range u.sent {
		if c.rec.Command == cmd {
			return c, false
		}
	}
	for _, c := range u.recent {
		if c.rec.Status == StatusTimeout && !c.late && c.rec.Command == cmd {
			return c, true
		}
	}
	return nil, false
}

// answerLocked completes c from the device's answer (K7): the state comes
// from statuses, but an acknowledged ON makes its publish time the on-time
// the watchdog measures from, and an acknowledged hub OFF is done; s.mu is held.
func (s *Service) answerLocked(u *unit, c *command, r contract.ActuatorResponse, now time.Time, fx *effects) {
	ok := r.Success
	status, errMsg := StatusAcknowledged, ""
	if !ok {
		status, errMsg = StatusFailed, "device answered success:false: "+r.Message
	}
	s.finishLocked(u, c, status, &ok, r.Message, errMsg, now, fx)
	if u == nil {
		return
	}

	switch {
	case ok && running(c.rec.Command, c.rec.Value):
		if cand := u.st.OnCandidate; cand != nil && cand.CommandID == c.rec.ID {
			at := cand.At
			u.st.OnSince, u.st.OnCandidate = &at, nil
		}
	case ok && c.rec.Command == "OFF" && isOn(u.st):
		t := now
		u.st.LastOffAt = &t
	}
	if c.hubOff {
		// Done, or refused by a device that hears us (it refuses while
		// emergency-stopped, when its outputs are off): no retry either way.
		u.st.PendingOff = nil
	}
	fx.state(u, now)
}

func lateAck(r contract.ActuatorResponse, now time.Time) map[string]any {
	return map[string]any{
		"received_at": now.UTC().Format(time.RFC3339Nano),
		"success":     r.Success,
		"message":     r.Message,
	}
}

// lateAckLocked records an answer to a command that already ended; its
// state does not change (docs/domain.md §4.5); s.mu is held.
func (s *Service) lateAckLocked(c *command, r contract.ActuatorResponse, now time.Time, fx *effects) {
	c.late = true
	c.rec.Metadata = withEntry(c.rec.Metadata, "late_ack", lateAck(r, now))
	fx.cmds = append(fx.cmds, c.snapshotLocked())
}

// lateAckStored records a late answer on a command no longer in memory
// (from before a restart); it returns the command id if one matched.
func (s *Service) lateAckStored(ctx context.Context, k key, r contract.ActuatorResponse, now time.Time) *string {
	rec, err := s.store.FindActuatorCommand(ctx, r.CorrelationID)
	if err != nil || rec.EspID != k.esp || rec.GPIO != k.gpio {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("looking up a late answer failed", "correlation_id", r.CorrelationID, "error", err)
		}
		return nil
	}
	if rec.Status == StatusSent || rec.Status == StatusQueued {
		return nil // open but not in memory cannot happen; leave it alone
	}
	rec.Metadata = withEntry(rec.Metadata, "late_ack", lateAck(r, now))
	rec.Version++
	if err := s.store.QueueActuatorCommand(ctx, rec); err != nil {
		s.log.Error("recording a late answer failed", "command_id", rec.ID, "error", err)
	}
	return &rec.ID
}

// alertClass is docs/domain.md §4.7's table.
func alertClass(alertType string) (severity, category string, forcesOff bool) {
	switch alertType {
	case "emergency_stop":
		return "critical", "system", true
	case "safety_violation":
		return "critical", "security", true
	case "hardware_error":
		return "warning", "infrastructure", false
	}
	return "warning", "system", false
}

// HandleAlert is the ingest handler of `actuator/{gpio}/alert`
// (docs/domain.md §4.7): history, an alert, WebSocket actuator_alert; an
// emergency_stop or safety_violation forces the state off, and an
// emergency_stop latches the actuator on the device.
func (s *Service) HandleAlert(ctx context.Context, m ingest.Message) error {
	a, err := contract.DecodeActuatorAlert(m.Topic, m.Payload)
	if err != nil {
		return err
	}
	if m.Replay {
		s.log.Info("retained actuator alert replayed; no alarm", "esp_id", a.EspID, "gpio", a.GPIO,
			"alert_type", a.AlertType)
		return ingest.Drop(contract.ReasonReplay, "retained actuator alert")
	}
	d, err := s.devices.Admit(m)
	if err != nil {
		return err
	}

	if a.AlertType == "emergency_stop" {
		s.reportEmergency(a.EspID, a.GPIO)
	}

	now := m.ReceivedAt
	sev, category, forcesOff := alertClass(a.AlertType)
	fx := &effects{}
	var ac map[string]any
	s.mu.Lock()
	u := s.units[key{a.EspID, a.GPIO}]
	row := s.eventRow(&unit{cfg: Config{EspID: a.EspID, GPIO: a.GPIO}}, "", "esp32_alert", now, nil)
	if u != nil {
		row.ActuatorType = u.cfg.Type
		ac = u.cfg.AlertConfig
		if forcesOff {
			s.forceOffLocked(u, a.AlertType == "emergency_stop", now, fx)
		}
	}
	row.CommandType = "ALERT_" + strings.ToUpper(a.AlertType)
	row.Metadata = map[string]any{"alert_type": a.AlertType, "message": a.Message}
	fx.cmds = append(fx.cmds, row)
	s.mu.Unlock()

	fx.alerts = append(fx.alerts, notify.Spec{
		Key:      fmt.Sprintf("actuator_%s_%d_%s", a.EspID, a.GPIO, a.AlertType),
		Severity: sev,
		Category: category,
		Source:   "device_event",
		Title:    fmt.Sprintf("Actuator alert %s on %s GPIO %d", a.AlertType, a.EspID, a.GPIO),
		Body:     a.Message,
		Metadata: map[string]any{
			"esp_id":     a.EspID,
			"gpio":       a.GPIO,
			"alert_type": a.AlertType,
		},
		Suppressed: suppressed(ac, d, now),
	})
	fx.event(event.ActuatorAlert{
		EspID:     a.EspID,
		GPIO:      a.GPIO,
		AlertType: a.AlertType,
		Severity:  sev,
		Message:   a.Message,
		ZoneID:    a.ZoneID,
		Timestamp: now.Unix(),
	})
	s.run(ctx, fx, now)
	return nil
}

// forceOffLocked applies an alert that switched the output off; s.mu is held.
func (s *Service) forceOffLocked(u *unit, latch bool, now time.Time, fx *effects) {
	t := now
	if isOn(u.st) {
		u.st.LastOffAt = &t
	}
	u.st.State, u.st.Value, u.st.OnSince = "off", 0, nil
	if latch {
		u.st.DeviceLatched, u.st.Emergency = true, "active"
	}
	fx.state(u, now)
	fx.event(u.statusEvent(now, false))
}

// suppressed applies the actuator's alert_config and, unless it stops
// propagation, the device's (docs/domain.md §3.5).
func suppressed(ac map[string]any, d device.Device, now time.Time) bool {
	devAC, _ := d.Metadata["alert_config"].(map[string]any)
	sup := sensor.Suppressed(ac, now)
	if prop, ok := devAC["propagate_to_children"].(bool); !ok || prop {
		sup = sup || sensor.Suppressed(devAC, now)
	}
	return sup
}
