package emergency

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Outcomes of a clear attempt (docs/api.md §8.4).
const (
	OutcomeCleared      = "cleared"
	OutcomeReconfigured = "reconfigured"
	OutcomeRejected     = "rejected_by_device"
	OutcomeTimeout      = "timeout"
	OutcomeGuard        = "guard"
	OutcomeOffline      = "offline"
)

// ClearRequest is an operator's clear (docs/api.md §8.4).
type ClearRequest struct {
	// EspID names the device; empty clears the global latch and every
	// latched device.
	EspID  string
	Reason string
	// Reconfigure allows the clear by re-configuration for a device that
	// does not answer (docs/protocol.md E7).
	Reconfigure bool
	// ResumeRules lets rules targeting the cleared devices act again.
	ResumeRules bool
	Actor       Actor
}

// ClearResult is what a clear did.
type ClearResult struct {
	// Success is true only when every targeted latch was cleared.
	Success        bool
	DevicesCleared int
	Reason         string
	Timestamp      time.Time
	// StillActive: a latch still blocks the targeted devices.
	StillActive bool
	// GlobalCleared is set when the request removed the global latch.
	GlobalCleared bool
	Message       string
	Details       []DeviceClear
}

// DeviceClear is one device's clear attempt.
type DeviceClear struct {
	EspID   string
	Outcome string
	Message string
}

func (d DeviceClear) cleared() bool {
	return d.Outcome == OutcomeCleared || d.Outcome == OutcomeReconfigured
}

// Clear runs the clear of docs/domain.md §5.4 for one device or, without
// an esp_id, for the global latch and every latched device. Each device is
// cleared only by its own answer (or a successful clear by
// re-configuration), never earlier than ClearGuard after its stop message,
// never while offline. Actuators stay off.
func (s *Service) Clear(ctx context.Context, req ClearRequest) (ClearResult, error) {
	if req.EspID != "" {
		if _, err := s.devices.Get(req.EspID); err != nil {
			return ClearResult{}, fmt.Errorf("%w: %s", ErrDeviceNotFound, req.EspID)
		}
	}
	if !s.broker.Connected() {
		return ClearResult{}, ErrBrokerDown
	}

	now := time.Now().UTC()
	g := s.snapshot(store.LatchGlobal)
	globalTargeted := req.EspID == "" && g != nil && g.Active

	details := s.clearDevices(ctx, s.clearTargets(req.EspID), req)
	var globalOutcome DeviceClear
	if globalTargeted {
		globalOutcome = s.clearGlobal(req, g.IncidentCorrelationID, now)
	}
	s.resumeRules(req)
	_ = s.commit(ctx)

	res := ClearResult{
		Success:       !globalTargeted || globalOutcome.cleared(),
		Reason:        req.Reason,
		Timestamp:     now,
		GlobalCleared: globalTargeted && globalOutcome.cleared(),
		Details:       details,
	}
	for _, d := range details {
		if d.cleared() {
			res.DevicesCleared++
		} else {
			res.Success = false
		}
	}
	res.StillActive = s.stillActive(req.EspID)
	res.Message = clearMessage(res, globalTargeted, globalOutcome)

	s.reportClear(ctx, req, res, globalTargeted, globalOutcome)
	s.resolveIncidents(ctx)
	return res, nil
}

// clearTargets are the devices a clear tries: the named one, or every
// hub-latched device, plus devices whose actuators the device itself
// latched (docs/domain.md §5.4 "Per device").
func (s *Service) clearTargets(espID string) []string {
	if espID != "" {
		if s.hubLatchedDevice(espID) || len(s.acts.DeviceLatched(espID)) > 0 {
			return []string{espID}
		}
		return nil
	}

	set := map[string]bool{}
	s.mu.RLock()
	for _, l := range s.latches {
		if l.Active && l.EspID != "" {
			set[l.EspID] = true
		}
	}
	s.mu.RUnlock()
	for _, d := range s.devices.List() {
		if approved(d.Status) && len(s.acts.DeviceLatched(d.DeviceID)) > 0 {
			set[d.DeviceID] = true
		}
	}

	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// hubLatchedDevice reports whether espID's own latch is active.
func (s *Service) hubLatchedDevice(espID string) bool {
	l := s.snapshot(deviceScope(espID))
	return l != nil && l.Active
}

// clearDevices clears the targets in parallel: each may wait for its answer
// and its re-configuration, and the request must end within 30 s
// (docs/api.md §1.1).
func (s *Service) clearDevices(ctx context.Context, targets []string, req ClearRequest) []DeviceClear {
	out := make([]DeviceClear, len(targets))
	var wg sync.WaitGroup
	for i, id := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.clearOne(ctx, id, req)
		}()
	}
	wg.Wait()
	return out
}

// clearOne is the per-device clear, one at a time per device.
func (s *Service) clearOne(ctx context.Context, espID string, req ClearRequest) DeviceClear {
	lock := s.waits.lock(espID)
	lock.Lock()
	defer lock.Unlock()

	// The clear answers the stop seen now; a newer stop while it waits is
	// not cleared by it.
	var incident string
	if l := s.snapshot(deviceScope(espID)); l != nil && l.Active {
		incident = l.IncidentCorrelationID
	}
	outcome, msg := s.attemptClear(ctx, espID, req)
	outcome, msg = s.recordAttempt(espID, incident, req, outcome, msg)
	if outcome == OutcomeCleared {
		// The device's emergency_cleared also lifts the latches it set on
		// its actuators itself (docs/domain.md §4.7).
		s.acts.ClearDeviceLatches(ctx, espID)
	}
	return DeviceClear{EspID: espID, Outcome: outcome, Message: msg}
}

// attemptClear decides one device's outcome.
func (s *Service) attemptClear(ctx context.Context, espID string, req ClearRequest) (string, string) {
	d, err := s.devices.Get(espID)
	if err != nil {
		return OutcomeOffline, "device is gone; it stays latched"
	}
	if !reachable(d) {
		return OutcomeOffline, "device is " + d.Status + "; it stays latched until it is online and cleared"
	}
	if l := s.snapshot(deviceScope(espID)); l != nil && l.Active {
		if ok, msg := s.guardPassed(l.StopPublishedAt, time.Now()); !ok {
			return OutcomeGuard, msg
		}
	}

	r, answered, err := s.askClear(ctx, d)
	switch {
	case err != nil:
		return OutcomeTimeout, "clear_emergency not published: " + err.Error()
	case answered && r.Status == "emergency_cleared":
		return OutcomeCleared, "device answered emergency_cleared"
	case answered:
		return OutcomeRejected, rejection(r)
	case !req.Reconfigure:
		return OutcomeTimeout, "no answer within 10 s (baseline firmware never answers, docs/protocol.md Q5); " +
			"reconfigure_if_no_answer allows the clear by re-configuration"
	}
	return s.reconfigure(ctx, espID)
}

// guardPassed applies docs/protocol.md E5: a clear only ClearGuard after
// the stop message was published, both in the hub's seconds.
func (s *Service) guardPassed(published *time.Time, now time.Time) (bool, string) {
	if published == nil {
		return false, "the stop message is not published yet (it waits for a valve's travel time)"
	}
	if since := now.Sub(*published); since < s.hub(ClearGuard) {
		return false, fmt.Sprintf("the stop message was published %.1f s ago; a clear is allowed %d s after it",
			float64(since)/float64(s.second), int(ClearGuard/time.Second))
	}
	return true, ""
}

func rejection(r contract.EmergencyReply) string {
	switch r.Error {
	case "unauthorized":
		return "token mismatch: the device answered unauthorized (" + r.Message + ")"
	case "clear_failed":
		return "the device refused: less than 5 s since its stop by its clock (clear_failed: " + r.Message + ")"
	}
	return "the device answered " + r.Error + r.Status + ": " + r.Message
}

// askClear publishes clear_emergency with the device's token and waits up
// to ClearWait for its answer.
func (s *Service) askClear(ctx context.Context, d device.Device) (contract.EmergencyReply, bool, error) {
	ch, done := expect(&s.waits, s.waits.clears, d.DeviceID, 1)
	defer done()
	if err := s.publishDeviceEmergency(d, "clear_emergency", ""); err != nil {
		return contract.EmergencyReply{}, false, err
	}

	t := time.NewTimer(s.hub(ClearWait))
	defer t.Stop()
	select {
	case r := <-ch:
		return r, true, nil
	case <-t.C:
	case <-ctx.Done():
	case <-s.closed:
	}
	return contract.EmergencyReply{}, false, nil
}

// reconfigure is the clear by re-configuration (docs/protocol.md E7): the
// full config is pushed while the device is still hub-latched, so every
// actuator item carries default_state:false, and a successful actuator
// section re-creates the actuators off and unlatched.
func (s *Service) reconfigure(ctx context.Context, espID string) (string, string) {
	const prefix = "no answer; "
	ch, done := expect(&s.waits, s.waits.pushes, espID, 4)
	defer done()
	corr, err := s.devices.PushConfig(ctx, espID, TriggerClear)
	if err != nil {
		return OutcomeTimeout, prefix + "the clear by re-configuration was not pushed: " + err.Error()
	}
	if corr == "" {
		if len(s.acts.Outputs(espID)) == 0 {
			return OutcomeReconfigured, prefix + "the device has no configuration to re-create"
		}
		return OutcomeTimeout, prefix + "the config push carried no actuators"
	}

	t := time.NewTimer(PushWait)
	defer t.Stop()
	for {
		select {
		case r := <-ch:
			if r.CorrelationID != corr {
				continue
			}
			return s.reconfigured(espID, r)
		case <-t.C:
		case <-ctx.Done():
		case <-s.closed:
		}
		return OutcomeTimeout, prefix + "the re-configuration got no answer"
	}
}

// reconfigured maps the settled push of a clear by re-configuration to an outcome.
func (s *Service) reconfigured(espID string, r device.PushResult) (string, string) {
	const prefix = "no answer; "
	section, ok := r.Sections["actuator"]
	switch {
	case section == device.PushApplied:
		return OutcomeReconfigured, prefix + "cleared by re-configuration: the actuator section was applied"
	case !ok && len(s.acts.Outputs(espID)) == 0:
		return OutcomeReconfigured, prefix + "cleared by re-configuration: the device has no actuators"
	case !ok:
		return OutcomeTimeout, prefix + "the re-configuration carried no actuator section"
	}
	return OutcomeTimeout, prefix + "the re-configuration's actuator section " + section
}

// recordAttempt keeps the attempt on the device's latch record and, on
// success, unlatches it unless a newer stop than incident re-latched it
// meanwhile; the pause of rules follows resume_rules.
func (s *Service) recordAttempt(espID, incident string, req ClearRequest, outcome, msg string) (string, string) {
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	scope := deviceScope(espID)
	l := s.latches[scope]
	if l == nil {
		l = &store.EmergencyLatch{Scope: scope, EspID: espID}
		s.latches[scope] = l
	}
	if l.Active && l.IncidentCorrelationID != incident {
		outcome, msg = OutcomeGuard, "a newer stop latched the device while the clear waited: "+msg
	}
	if outcome == OutcomeCleared || outcome == OutcomeReconfigured {
		if l.Active {
			l.Active = false
			l.ClearedBy, l.ClearedAt = req.Actor.User, &now
		}
		l.RulesPaused = !req.ResumeRules
		delete(s.resafe, espID)
	}
	s.attemptLocked(l, store.EmergencyClearAttempt{
		At:      now,
		User:    req.Actor.User,
		Outcome: outcome,
		Message: msg,
	})
	return outcome, msg
}

// clearGlobal removes the global latch once its guard has passed; the
// devices it latched each stay latched until their own clear.
func (s *Service) clearGlobal(req ClearRequest, incident string, now time.Time) DeviceClear {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.latches[store.LatchGlobal]
	out := DeviceClear{Outcome: OutcomeCleared, Message: "global latch removed"}
	ok, msg := s.guardPassed(g.StopPublishedAt, now)
	switch {
	case !g.Active:
		out.Message = "global latch already removed"
	case g.IncidentCorrelationID != incident:
		out = DeviceClear{Outcome: OutcomeGuard, Message: "a newer global stop latched while the clear ran"}
	case !ok:
		out = DeviceClear{Outcome: OutcomeGuard, Message: msg}
	default:
		g.Active = false
		g.ClearedBy, g.ClearedAt = req.Actor.User, &now
	}
	s.attemptLocked(g, store.EmergencyClearAttempt{
		At:      now,
		User:    req.Actor.User,
		Outcome: out.Outcome,
		Message: out.Message,
	})
	return out
}

// resumeRules ends the rule pause of the named device, or of every device,
// when the request asks for it, also when nothing is latched any more.
func (s *Service) resumeRules(req ClearRequest) {
	if !req.ResumeRules {
		return
	}
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.latches {
		if l.EspID != "" && !l.Active && l.RulesPaused && (req.EspID == "" || l.EspID == req.EspID) {
			l.RulesPaused = false
			s.touchLocked(l, now)
		}
	}
}

// stillActive reports whether a latch still blocks the named device, or
// any device.
func (s *Service) stillActive(espID string) bool {
	if espID != "" {
		return s.Latched(espID)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, l := range s.latches {
		if l.Active {
			return true
		}
	}
	return false
}

func clearMessage(res ClearResult, globalTargeted bool, global DeviceClear) string {
	var parts []string
	if globalTargeted {
		parts = append(parts, global.Message)
	}
	parts = append(parts, fmt.Sprintf("%d of %d devices cleared", res.DevicesCleared, len(res.Details)))
	if res.StillActive {
		parts = append(parts, "a latch is still active")
	}
	return strings.Join(parts, "; ")
}

// reportClear audits every attempt (one entry per device, and one for the
// global latch) and emits the live event.
func (s *Service) reportClear(ctx context.Context, req ClearRequest, res ClearResult, global bool, g DeviceClear) {
	entries := slices.Clone(res.Details)
	if global {
		entries = append(entries, DeviceClear{EspID: "", Outcome: g.Outcome, Message: g.Message})
	}
	for _, d := range entries {
		scope := ScopeDevice
		if d.EspID == "" {
			scope = ScopeGlobal
		}
		status, severity := "success", "warning"
		if !d.cleared() {
			status, severity = "failed", "error"
		}
		s.audit.Record(ctx, store.AuditEntry{
			EventType:  "emergency_cleared",
			Severity:   severity,
			SourceType: "user",
			SourceID:   req.Actor.User,
			Status:     status,
			Message:    fmt.Sprintf("emergency clear (%s %s): %s", scope, d.EspID, d.Outcome),
			Details: map[string]any{
				"scope":                    scope,
				"esp_id":                   d.EspID,
				"reason":                   req.Reason,
				"outcome":                  d.Outcome,
				"message":                  d.Message,
				"reconfigure_if_no_answer": req.Reconfigure,
				"resume_rules":             req.ResumeRules,
			},
			ErrorCode:     failedCode(d),
			IPAddress:     req.Actor.IPAddress,
			CorrelationID: req.Actor.RequestID,
		})
	}

	ev := event.Emergency{
		Action:          "clear",
		Scope:           ScopeGlobal,
		Reason:          req.Reason,
		IssuedBy:        "emergency:" + req.Actor.User,
		DevicesAffected: res.DevicesCleared,
		Success:         res.Success,
		StillActive:     res.StillActive,
		Timestamp:       res.Timestamp.Unix(),
	}
	if req.EspID != "" {
		ev.Scope, ev.EspID = ScopeDevice, &req.EspID
	}
	s.events.Publish(event.Event{Time: res.Timestamp, Data: ev})
}

func failedCode(d DeviceClear) string {
	if d.cleared() {
		return ""
	}
	return d.Outcome
}

// resolveIncidents resolves the alert of every incident no latch holds any more.
func (s *Service) resolveIncidents(ctx context.Context) {
	active, all := map[string]bool{}, map[string]bool{}
	s.mu.RLock()
	for _, l := range s.latches {
		if l.IncidentCorrelationID == "" {
			continue
		}
		all[l.IncidentCorrelationID] = true
		if l.Active {
			active[l.IncidentCorrelationID] = true
		}
	}
	s.mu.RUnlock()
	for inc := range all {
		if !active[inc] {
			if err := s.alerts.Clear(ctx, "emergency_stop:"+inc); err != nil {
				s.log.Warn("resolving an emergency alert failed", "error", err)
			}
		}
	}
}

// HandleEmergencyResponse is the ingest handler of
// `actuator/emergency/response` (docs/protocol.md §3.1.11).
func (s *Service) HandleEmergencyResponse(_ context.Context, m ingest.Message) error {
	r, err := contract.DecodeEmergencyResponse(m.Topic, m.Payload)
	if err != nil {
		return err
	}
	return s.reply(m, r)
}

// HandleEmergencyError is the ingest handler of `actuator/emergency/error`.
func (s *Service) HandleEmergencyError(_ context.Context, m ingest.Message) error {
	r, err := contract.DecodeEmergencyError(m.Topic, m.Payload)
	if err != nil {
		return err
	}
	return s.reply(m, r)
}

// reply completes the device's pending clear. A replay completes nothing
// (docs/protocol.md §5.6); an unauthorized answer nobody waits for is a
// refused stop, which is reported.
func (s *Service) reply(m ingest.Message, r contract.EmergencyReply) error {
	if m.Replay {
		return ingest.Drop(contract.ReasonReplay, "retained emergency reply")
	}
	if _, err := s.devices.Admit(m); err != nil {
		return err
	}
	id := m.Topic.EspID
	if deliver(&s.waits, s.waits.clears, id, r) {
		return nil
	}
	if r.Error == "unauthorized" {
		s.stopRefused(id, r)
		return nil
	}
	s.log.Info("emergency reply without a pending clear", "esp_id", id, "status", r.Status, "error", r.Error)
	return nil
}
