package emergency

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Scopes of a stop or clear (docs/api.md §8.4).
const (
	ScopeGlobal = "global"
	ScopeDevice = "device"
)

// CommandType is the history command type of the stop's OFFs (docs/domain.md §4.9).
const CommandType = "EMERGENCY_STOP"

// Wire values of the broadcast: the operator's reason stays in the hub
// (docs/api.md §8.4 step 4).
const (
	broadcastReason   = "operator_stop"
	broadcastIssuedBy = "hub"
)

// Actor is who asked, for history and audit.
type Actor struct {
	User      string
	RequestID string
	IPAddress string
}

// StopRequest is an operator's emergency stop (docs/api.md §8.4).
type StopRequest struct {
	// EspID names the device; empty stops everything (global).
	EspID string
	// GPIO narrows the explicit OFFs; every valve of the device still gets
	// its OFF, and the latch and stop message cover the whole device.
	GPIO   *int
	Reason string
	Actor  Actor
}

// StopResult is what a stop did (docs/api.md §8.4 response).
type StopResult struct {
	IncidentCorrelationID string
	Scope                 string
	DevicesStopped        int
	ActuatorsStopped      int
	Reason                string
	Timestamp             time.Time
	// LatchPersisted is false when the latches are enforced from memory
	// while their write is retried.
	LatchPersisted bool
	Details        []DeviceStop
}

// DeviceStop is one device's part of a stop.
type DeviceStop struct {
	EspID     string
	ZoneID    string
	Actuators []ActuatorStop
}

// ActuatorStop is one OFF of a stop and its publish result.
type ActuatorStop struct {
	EspID   string
	GPIO    int
	Success bool
	Message string
}

// stopRecord is what every latch and OFF of one stop shares.
type stopRecord struct {
	incident string
	reason   string
	user     string
	at       time.Time
}

func (st stopRecord) issuedBy() string { return "emergency:" + st.user }

func (st stopRecord) metadata(extra string) map[string]any {
	md := map[string]any{
		"incident_correlation_id": st.incident,
		"reason":                  st.reason,
	}
	if extra != "" {
		md["resafe"] = extra
	}
	return md
}

// Stop runs the stop procedure of docs/domain.md §5.2: the latches are set
// under each device's command fence and committed before anything is
// published; queued non-OFF commands expire; every actuator in scope gets
// its OFF at once; the broadcast or device stop follows at once, or after
// the largest valve travel time (the reply does not wait for it). A stop
// never fails because of MQTT or the database, nor ends early because its
// caller went away.
func (s *Service) Stop(ctx context.Context, req StopRequest) (StopResult, error) {
	// A caller going away must not cut a stop short.
	ctx = context.WithoutCancel(ctx)
	targets, err := s.stopTargets(req.EspID)
	if err != nil {
		return StopResult{}, err
	}
	st := stopRecord{
		incident: uuid.NewString(),
		reason:   req.Reason,
		user:     req.Actor.User,
		at:       time.Now().UTC(),
	}

	s.latchTargets(req.EspID == "", targets, st)
	persisted := s.commit(ctx) == nil

	for _, d := range targets {
		s.acts.ExpireQueued(ctx, d.DeviceID, "emergency_stop")
	}
	details, travel := s.stopOutputs(ctx, targets, req.GPIO, st)
	s.sendStopMessage(req.EspID, targets, travel, st.incident)

	res := StopResult{
		IncidentCorrelationID: st.incident,
		Scope:                 ScopeGlobal,
		DevicesStopped:        len(targets),
		Reason:                req.Reason,
		Timestamp:             st.at,
		LatchPersisted:        persisted,
		Details:               details,
	}
	if req.EspID != "" {
		res.Scope = ScopeDevice
	}
	for _, d := range details {
		for _, a := range d.Actuators {
			if a.Success {
				res.ActuatorsStopped++
			}
		}
	}
	s.reportStop(ctx, req, res)
	return res, nil
}

// stopTargets are the devices a stop latches: the named one, or every
// approved device for a global stop.
func (s *Service) stopTargets(espID string) ([]device.Device, error) {
	if espID != "" {
		d, err := s.devices.Get(espID)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrDeviceNotFound, espID)
		}
		return []device.Device{d}, nil
	}

	var out []device.Device
	for _, d := range s.devices.List() {
		if approved(d.Status) {
			out = append(out, d)
		}
	}
	return out, nil
}

// latchTargets sets the latches in memory. The global latch goes first, so
// that every later latch check fails; each device latch is set inside the
// device's command fence, so that once it returns no non-OFF command of
// that device can still be published (docs/domain.md §5.2 step 1).
func (s *Service) latchTargets(global bool, targets []device.Device, st stopRecord) {
	if global {
		s.mu.Lock()
		s.latchLocked(store.LatchGlobal, "", st)
		s.mu.Unlock()
	}
	for _, d := range targets {
		id := d.DeviceID
		s.acts.Fence(id, func() {
			s.mu.Lock()
			s.latchLocked(deviceScope(id), id, st)
			s.mu.Unlock()
		})
	}
}

// inScope reports whether o gets an explicit OFF: every actuator without a
// gpio, else the gpio's and every valve, which the stop message leaves
// where it is (docs/protocol.md Q14).
func inScope(o actuator.Output, gpio *int) bool {
	return gpio == nil || o.GPIO == *gpio || o.Type == "valve"
}

// reachable reports whether the hub may publish to d now (docs/protocol.md A5).
func reachable(d device.Device) bool { return d.Status == device.StatusOnline }

// stopOutputs sends the OFFs of a stop to the reachable targets and returns
// the per-device results and each device's largest valve travel time. An
// unreachable device is re-safed when it is back (docs/protocol.md E3).
func (s *Service) stopOutputs(
	ctx context.Context, targets []device.Device, gpio *int, st stopRecord,
) ([]DeviceStop, map[string]time.Duration) {
	details := make([]DeviceStop, 0, len(targets))
	travel := map[string]time.Duration{}
	for _, d := range targets {
		ds := DeviceStop{EspID: d.DeviceID, ZoneID: d.ZoneID, Actuators: []ActuatorStop{}}
		up := reachable(d)
		if !up {
			s.mu.Lock()
			s.resafe[d.DeviceID] = true
			s.mu.Unlock()
		}

		for _, o := range s.acts.Outputs(d.DeviceID) {
			if !inScope(o, gpio) {
				continue
			}
			o.EspID = d.DeviceID
			if !up {
				ds.Actuators = append(ds.Actuators, ActuatorStop{
					EspID:   d.DeviceID,
					GPIO:    o.GPIO,
					Message: "device " + d.Status + ": stopped when it is back online",
				})
				continue
			}
			ds.Actuators = append(ds.Actuators, s.off(ctx, o, st, ""))
			if o.Type == "valve" {
				travel[d.DeviceID] = max(travel[d.DeviceID], o.ValveTravel)
			}
		}
		details = append(details, ds)
	}
	return details, travel
}

// off issues one emergency OFF through the actuator part.
func (s *Service) off(ctx context.Context, o actuator.Output, st stopRecord, resafe string) ActuatorStop {
	res, err := s.acts.Off(ctx, actuator.OffRequest{
		EspID:       o.EspID,
		GPIO:        o.GPIO,
		IssuedBy:    st.issuedBy(),
		CommandType: CommandType,
		Metadata:    st.metadata(resafe),
	})
	as := ActuatorStop{
		EspID:   o.EspID,
		GPIO:    o.GPIO,
		Success: err == nil && res.Published,
		Message: res.Message,
	}
	switch {
	case err != nil:
		as.Message = err.Error()
	case as.Message == "" && as.Success:
		as.Message = "OFF sent"
	case as.Message == "":
		as.Message = "OFF " + res.Status
	}
	return as
}

// sendStopMessage publishes the broadcast (global) or the device stop at
// once, or after the largest valve travel time of the OFFs just sent
// (docs/protocol.md E1, E4).
func (s *Service) sendStopMessage(
	espID string, targets []device.Device, travel map[string]time.Duration, incident string,
) {
	if espID == "" {
		var wait time.Duration
		for _, t := range travel {
			wait = max(wait, t)
		}
		s.later(wait, func() { s.publishBroadcast(incident) })
		return
	}

	if reachable(targets[0]) {
		s.later(travel[espID], func() { s.publishDeviceStop(espID, incident) })
	}
}

// later runs fn now when wait is zero, else after wait.
func (s *Service) later(wait time.Duration, fn func()) {
	if wait <= 0 {
		fn()
		return
	}
	s.after(wait, fn)
}

// publishBroadcast sends the global stop of incident unless the global
// latch was cleared or re-set by a newer stop meanwhile. If it cannot be
// sent, every latched device is re-safed at its next heartbeat.
func (s *Service) publishBroadcast(incident string) {
	g := s.snapshot(store.LatchGlobal)
	if g == nil || !g.Active || g.IncidentCorrelationID != incident {
		return
	}

	b := contract.NewBroadcastEmergency(broadcastReason, broadcastIssuedBy, time.Now())
	b.AuthToken = s.broadcastToken()
	payload, err := contract.Marshal(b)
	if err == nil {
		err = s.broker.Publish(context.Background(), contract.BroadcastEmergencyTopic, payload, 1, false)
	}
	if err != nil {
		s.log.Error("emergency broadcast not published; latched devices are re-safed at their next heartbeat",
			"incident_correlation_id", incident, "error", err)
		s.resafeIncident(incident)
		return
	}
	s.log.Warn("emergency broadcast published", "incident_correlation_id", incident)
	s.markPublished(incident, "")
	s.expectConfirmation(incident, s.reachableLatched(incident))
}

// reachableLatched lists the online devices latched by incident.
func (s *Service) reachableLatched(incident string) []string {
	var ids []string
	s.mu.RLock()
	for _, l := range s.latches {
		if l.Active && l.EspID != "" && l.IncidentCorrelationID == incident {
			ids = append(ids, l.EspID)
		}
	}
	s.mu.RUnlock()

	out := ids[:0]
	for _, id := range ids {
		if d, err := s.devices.Get(id); err == nil && reachable(d) {
			out = append(out, id)
		}
	}
	return out
}

// publishDeviceStop sends the device stop of docs/protocol.md §3.2.8 with
// the device's token while the device latch of incident is still active;
// incident "" (re-safing) needs any hub latch of the device. It reports
// whether it was published.
func (s *Service) publishDeviceStop(espID, incident string) bool {
	if incident == "" && !s.Latched(espID) {
		return false
	}
	if incident != "" {
		l := s.snapshot(deviceScope(espID))
		if l == nil || !l.Active || l.IncidentCorrelationID != incident {
			return false
		}
	}

	d, err := s.devices.Get(espID)
	if err == nil && !reachable(d) {
		err = fmt.Errorf("device is %s", d.Status)
	}
	if err == nil {
		err = s.publishDeviceEmergency(d, "emergency_stop", "")
	}
	if err != nil {
		s.log.Warn("device stop not published; re-safed at the next heartbeat", "esp_id", espID, "error", err)
		s.mu.Lock()
		s.resafe[espID] = true
		s.mu.Unlock()
		return false
	}
	s.markPublished("", espID)
	if st, ok := s.stopOf(espID); ok && newerFirmware(d) {
		s.expectConfirmation(st.incident, []string{espID})
	}
	return true
}

// publishDeviceEmergency publishes a command on the device's emergency topic.
func (s *Service) publishDeviceEmergency(d device.Device, command, corr string) error {
	if corr == "" {
		corr = newCorrelation("em")
	}
	payload, err := contract.Marshal(contract.DeviceEmergency{
		Command:       command,
		AuthToken:     s.deviceToken(d.DeviceID),
		CorrelationID: corr,
	})
	if err != nil {
		return err
	}
	topic := contract.DeviceTopic(d.KaiserID, d.DeviceID, "actuator/emergency")
	return s.broker.Publish(context.Background(), topic, payload, 1, false)
}

// newCorrelation is a correlation id that fits the devices' identifier
// rule (docs/protocol.md §7.4).
func newCorrelation(prefix string) string { return prefix + "-" + uuid.NewString()[:18] }

// markPublished records the stop message's time, which the clear guard
// counts from: for a broadcast on the global latch and every device latch
// of the incident, else on the device's latch.
func (s *Service) markPublished(incident, espID string) {
	now := time.Now().UTC()
	s.mu.Lock()
	for _, l := range s.latches {
		match := l.EspID == espID && espID != ""
		if incident != "" {
			match = l.IncidentCorrelationID == incident
		}
		if l.Active && match {
			l.StopPublishedAt = &now
			s.touchLocked(l, now)
		}
	}
	s.mu.Unlock()
	s.goSafe(func() { _ = s.commit(context.Background()) })
}

// resafeIncident marks every device latched by incident for re-safing.
func (s *Service) resafeIncident(incident string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.latches {
		if l.Active && l.EspID != "" && l.IncidentCorrelationID == incident {
			s.resafe[l.EspID] = true
		}
	}
}

// reportStop writes the audit entry, the live events and the critical
// alert of a stop (docs/domain.md §5.2 step 5).
func (s *Service) reportStop(ctx context.Context, req StopRequest, res StopResult) {
	perDevice := make([]map[string]any, 0, len(res.Details))
	for _, d := range res.Details {
		perDevice = append(perDevice, map[string]any{"esp_id": d.EspID, "actuators": len(d.Actuators)})
	}
	details := map[string]any{
		"scope":                   res.Scope,
		"esp_id":                  req.EspID,
		"reason":                  req.Reason,
		"incident_correlation_id": res.IncidentCorrelationID,
		"devices_stopped":         res.DevicesStopped,
		"actuators_stopped":       res.ActuatorsStopped,
		"latch_persisted":         res.LatchPersisted,
		"devices":                 perDevice,
	}
	if req.GPIO != nil {
		details["gpio"] = *req.GPIO
	}
	s.audit.Record(ctx, store.AuditEntry{
		EventType:     "emergency_stop",
		Severity:      "critical",
		SourceType:    "user",
		SourceID:      req.Actor.User,
		Message:       fmt.Sprintf("emergency stop (%s): %s", res.Scope, req.Reason),
		Details:       details,
		IPAddress:     req.Actor.IPAddress,
		CorrelationID: req.Actor.RequestID,
	})

	now := res.Timestamp
	ev := event.Emergency{
		Action:                "stop",
		Scope:                 res.Scope,
		GPIO:                  req.GPIO,
		Reason:                req.Reason,
		IssuedBy:              "emergency:" + req.Actor.User,
		IncidentCorrelationID: res.IncidentCorrelationID,
		DevicesAffected:       res.DevicesStopped,
		ActuatorsAffected:     res.ActuatorsStopped,
		Success:               true,
		StillActive:           true,
		Timestamp:             now.Unix(),
	}
	if req.EspID != "" {
		ev.EspID = &req.EspID
	}
	s.events.Publish(event.Event{Time: now, Data: ev})
	for _, d := range res.Details {
		for _, a := range d.Actuators {
			s.events.Publish(event.Event{Time: now, Data: event.ActuatorAlert{
				EspID:     a.EspID,
				GPIO:      a.GPIO,
				AlertType: "emergency_stop",
				Severity:  "critical",
				Message:   "Emergency stop: " + req.Reason,
				ZoneID:    d.ZoneID,
				Timestamp: now.Unix(),
			}})
		}
	}

	err := s.alerts.Raise(ctx, notify.Spec{
		Key:      "emergency_stop:" + res.IncidentCorrelationID,
		Severity: "critical",
		Category: "system",
		Source:   "emergency",
		Title:    "Emergency stop (" + res.Scope + ")",
		Body:     fmt.Sprintf("%s by %s: %s", stopTarget(req.EspID), req.Actor.User, req.Reason),
		Metadata: map[string]any{
			"incident_correlation_id": res.IncidentCorrelationID,
			"esp_id":                  req.EspID,
			"devices_stopped":         res.DevicesStopped,
			"actuators_stopped":       res.ActuatorsStopped,
		},
	})
	if err != nil {
		s.log.Warn("emergency alert not raised", "error", err)
	}
}

func stopTarget(espID string) string {
	if espID == "" {
		return "All devices stopped"
	}
	return espID + " stopped"
}
