package zone

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// defaultRoot is the root a device without a kaiser id listens on for
// zone/assign, and moves to on one (docs/protocol.md A3, A4, Q4).
const defaultRoot = "god"

// wireText is the byte limit of free text sent to devices (docs/protocol.md J4).
const wireText = 32

// Assignment is an operator's zone assignment (docs/api.md §9).
type Assignment struct {
	ZoneID       string
	MasterZoneID string
	ZoneName     string
	Strategy     string // transfer (default), copy or reset
	Actor        string
}

// AssignResult is what an assignment did at once; the device's answer
// comes later as a zone_assignment event.
type AssignResult struct {
	DeviceID      string
	ZoneID        string
	MasterZoneID  string
	ZoneName      string
	Topic         string
	Sent          bool
	CorrelationID string
	// RebootRequired: the device had no kaiser id, so the assignment moves
	// its root and it stays deaf to everything but zone messages until it
	// reboots (docs/protocol.md A4). Reported, never hidden.
	RebootRequired bool
}

// Assign stores a device's new zone and publishes it when the device is
// online, else when it comes back (docs/domain.md §7.2). An unknown zone id
// is created on the fly, an archived zone refused.
func (s *Service) Assign(ctx context.Context, espID string, a Assignment) (AssignResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	d, err := s.approved(espID)
	if err != nil {
		return AssignResult{}, err
	}
	z, err := s.zoneToAssign(ctx, a)
	if err != nil {
		return AssignResult{}, err
	}

	p := Pending{
		ZoneID:        z.ZoneID,
		MasterZoneID:  strings.ToLower(a.MasterZoneID),
		ZoneName:      a.ZoneName,
		CorrelationID: correlationID("zone"),
		Strategy:      a.Strategy,
	}
	if p.ZoneName == "" {
		p.ZoneName = z.Name
	}
	if p.Strategy == "" {
		p.Strategy = StrategyTransfer
	}

	removed, err := s.applyStrategy(ctx, d, p)
	if err != nil {
		return AssignResult{}, err
	}
	if d, err = s.storeAssignment(ctx, d, p, a.Actor); err != nil {
		return AssignResult{}, err
	}

	res := AssignResult{
		DeviceID:      d.DeviceID,
		ZoneID:        p.ZoneID,
		MasterZoneID:  p.MasterZoneID,
		ZoneName:      p.ZoneName,
		Topic:         assignTopic(d),
		CorrelationID: p.CorrelationID,
	}
	if d.Status != device.StatusOnline {
		return res, nil // sent when the device is back (resync)
	}

	s.publishRemovals(ctx, d, removed, "zone_changed")
	res.Sent, res.RebootRequired = s.sendAssignment(ctx, d, p)
	return res, nil
}

// zoneToAssign is the active zone of an assignment, created when unknown
// (docs/api.md §9: reference clients never create zones first); s.mu is held.
func (s *Service) zoneToAssign(ctx context.Context, a Assignment) (store.Zone, error) {
	id := strings.ToLower(a.ZoneID)
	z, ok := s.zones[id]
	if !ok {
		name := a.ZoneName
		if name == "" {
			name = id
		}
		return s.createZone(ctx, id, name, "")
	}
	if z.Status != StatusActive {
		return z, fmt.Errorf("%w: zone %s is archived", ErrInvalidState, id)
	}
	return z, nil
}

// storeAssignment commits the zone fields, the pending assignment and the
// history row before anything is published; s.mu is held.
func (s *Service) storeAssignment(
	ctx context.Context, d device.Device, p Pending, actor string,
) (device.Device, error) {
	nd, err := s.devices.Update(ctx, d.DeviceID, device.Patch{
		ZoneID:       &p.ZoneID,
		ZoneName:     &p.ZoneName,
		MasterZoneID: &p.MasterZoneID,
		Metadata: map[string]any{
			keyPending: toMeta(p),
			keyError:   nil,
			keyRemoval: nil,
		},
	})
	if err != nil {
		return d, fmt.Errorf("store zone assignment of %s: %w", d.DeviceID, err)
	}

	s.recordChange(ctx, store.ZoneChange{
		EspID:         d.DeviceID,
		FromZoneID:    d.ZoneID,
		ToZoneID:      p.ZoneID,
		Strategy:      p.Strategy,
		Actor:         actor,
		CorrelationID: p.CorrelationID,
		At:            s.now(),
	})
	return nd, nil
}

// recordChange writes a history row; a failure costs the row, not the change.
func (s *Service) recordChange(ctx context.Context, c store.ZoneChange) {
	if err := s.store.AppendZoneChange(ctx, c); err != nil {
		s.log.Warn("zone history row not stored", "esp_id", c.EspID, "error", err)
	}
}

// rootOf is where a device hears zone/assign and the kaiser_id the message
// carries (docs/protocol.md A3, A4): the recorded root, or `god` for a device
// that has none, whose root the message then moves.
func rootOf(d device.Device) (root string, movesRoot bool) {
	if d.KaiserID == "" {
		return defaultRoot, true
	}
	return d.KaiserID, false
}

func assignTopic(d device.Device) string {
	root, _ := rootOf(d)
	return contract.DeviceTopic(root, d.DeviceID, "zone/assign")
}

// sendAssignment publishes p, then records when it went out and, for a
// device whose root it moves, that the device needs a reboot; s.mu is held.
func (s *Service) sendAssignment(ctx context.Context, d device.Device, p Pending) (sent, deaf bool) {
	root, moves := rootOf(d)
	msg := contract.ZoneAssign{
		ZoneID:        p.ZoneID,
		MasterZoneID:  p.MasterZoneID,
		ZoneName:      contract.DeviceText(p.ZoneName, wireText),
		KaiserID:      root,
		Timestamp:     s.now().Unix(),
		CorrelationID: p.CorrelationID,
	}
	if err := s.publish(ctx, assignTopic(d), msg); err != nil {
		s.log.Warn("zone assignment not published; sent when the device is heard again",
			"esp_id", d.DeviceID, "zone_id", p.ZoneID, "error", err)
		return false, false
	}

	st := s.dev(d.DeviceID)
	st.lastSent = s.now()
	s.armZoneTimer(d.DeviceID, p.CorrelationID)

	sentAt := s.stamp()
	p.SentAt, p.AckTimeoutAt = &sentAt, nil
	md := map[string]any{keyPending: toMeta(p)}
	if moves {
		md[keyRebootRequired] = true
	}
	if _, err := s.devices.Update(ctx, d.DeviceID, device.Patch{Metadata: md}); err != nil {
		s.log.Warn("sent zone assignment not recorded", "esp_id", d.DeviceID, "error", err)
	}
	if moves {
		s.reportDeaf(ctx, d.DeviceID)
	}
	return true, moves
}

// reportDeaf tells operators that a baseline device without a kaiser id now
// listens on a root it has not subscribed to (docs/protocol.md Q4, A4).
func (s *Service) reportDeaf(ctx context.Context, espID string) {
	s.log.Warn("zone assignment moved the device's topic root from \"\" to god: it hears nothing but "+
		"zone messages until it reboots", "esp_id", espID)
	s.raise(ctx, notify.Spec{
		Key:      "zone:reboot_required:" + espID,
		Severity: "warning",
		Category: "system",
		Source:   "zone",
		Title:    "Device needs a reboot",
		Body: fmt.Sprintf("%s had no kaiser id; its zone assignment moved it to the root god, and until it "+
			"reboots it receives no config or commands", espID),
		Metadata: map[string]any{"esp_id": espID, "reason": "reboot_required"},
	})
}

func (s *Service) publish(ctx context.Context, topic string, msg any) error {
	payload, err := contract.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode %s: %w", topic, err)
	}
	if err := s.bus.Publish(ctx, topic, payload, 1, false); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, topic, err)
	}
	return nil
}

// armZoneTimer starts the ack wait of an assignment (docs/protocol.md Z1);
// s.mu is held.
func (s *Service) armZoneTimer(espID, correlation string) {
	st := s.dev(espID)
	stopTimer(st.zoneTimer)
	st.zoneTimer = time.AfterFunc(s.cfg.AckTimeout, func() { s.zoneAckTimedOut(espID, correlation) })
}

// zoneAckTimedOut leaves the assignment pending and says so
// (docs/domain.md §7.2 step 5); the next reconnect or mismatched heartbeat
// sends it again.
func (s *Service) zoneAckTimedOut(espID, correlation string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	d, err := s.devices.Get(espID)
	if err != nil {
		return
	}
	p := pendingOf(d)
	if p == nil || p.CorrelationID != correlation {
		return
	}

	s.log.Warn("no zone ack; the assignment stays pending", "esp_id", espID, "zone_id", p.ZoneID,
		"timeout", s.cfg.AckTimeout)
	at := s.stamp()
	p.AckTimeoutAt = &at
	if _, err := s.devices.Update(ctx, espID, device.Patch{Metadata: map[string]any{keyPending: toMeta(*p)}}); err != nil {
		s.log.Warn("zone ack timeout not recorded", "esp_id", espID, "error", err)
	}
}

// RemoveResult is what a zone removal did at once.
type RemoveResult struct {
	DeviceID string
	Topic    string
	Sent     bool
}

// Unassign clears a device's zone and deletes its subzones, then publishes
// subzone/remove for each and the empty assignment (docs/domain.md §7.2,
// docs/protocol.md Z2). The baseline acknowledges neither; a removal is
// never sent again.
func (s *Service) Unassign(ctx context.Context, espID, actor string) (RemoveResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	d, err := s.devices.Get(espID)
	if err != nil {
		return RemoveResult{}, err
	}
	online := d.Status == device.StatusOnline
	subs := s.deviceSubzones(espID)
	for _, sz := range subs {
		if err := s.dropSubzone(ctx, espID, sz.SubzoneID); err != nil {
			return RemoveResult{}, err
		}
	}

	r := Removal{CorrelationID: correlationID("zone"), Status: RemovalNotPublished}
	if online {
		at := s.stamp()
		r.Status, r.SentAt = RemovalWaiting, &at
	}
	if d, err = s.storeRemoval(ctx, d, r, actor); err != nil {
		return RemoveResult{}, err
	}
	for _, sz := range subs {
		s.emitSubzone(espID, sz.SubzoneID, "subzone_removed", nil, "removed with the device's zone")
	}

	res := RemoveResult{DeviceID: espID, Topic: assignTopic(d)}
	if !online {
		return res, nil
	}
	s.publishRemovals(ctx, d, subs, "zone_removed")
	res.Sent = s.sendRemoval(ctx, d, r)
	return res, nil
}

// storeRemoval commits the cleared zone fields and the removal record; s.mu is held.
func (s *Service) storeRemoval(ctx context.Context, d device.Device, r Removal, actor string) (device.Device, error) {
	empty := ""
	nd, err := s.devices.Update(ctx, d.DeviceID, device.Patch{
		ZoneID:       &empty,
		ZoneName:     &empty,
		MasterZoneID: &empty,
		Metadata: map[string]any{
			keyPending:   nil,
			keyConfirmed: nil,
			keyError:     nil,
			keyRemoval:   toMeta(r),
		},
	})
	if err != nil {
		return d, fmt.Errorf("store zone removal of %s: %w", d.DeviceID, err)
	}

	st := s.dev(d.DeviceID)
	stopTimer(st.zoneTimer)
	s.recordChange(ctx, store.ZoneChange{
		EspID:         d.DeviceID,
		FromZoneID:    d.ZoneID,
		Actor:         actor,
		CorrelationID: r.CorrelationID,
		At:            s.now(),
	})
	return nd, nil
}

// sendRemoval publishes the empty assignment under the device's current
// kaiser id, so that its root does not move (docs/protocol.md Z2); s.mu is held.
func (s *Service) sendRemoval(ctx context.Context, d device.Device, r Removal) bool {
	msg := contract.ZoneAssign{
		KaiserID:      d.KaiserID,
		Timestamp:     s.now().Unix(),
		CorrelationID: r.CorrelationID,
	}
	if err := s.publish(ctx, assignTopic(d), msg); err != nil {
		s.log.Warn("zone removal not published; it is not sent again", "esp_id", d.DeviceID, "error", err)
		r.Status, r.SentAt = RemovalNotPublished, nil
		s.saveRemoval(ctx, d.DeviceID, r)
		return false
	}
	s.armRemovalTimer(d.DeviceID, r.CorrelationID)
	return true
}

func (s *Service) saveRemoval(ctx context.Context, espID string, r Removal) {
	if _, err := s.devices.Update(ctx, espID, device.Patch{Metadata: map[string]any{keyRemoval: toMeta(r)}}); err != nil {
		s.log.Warn("zone removal state not recorded", "esp_id", espID, "error", err)
	}
}

// armRemovalTimer ends the wait for a removal's confirmation; s.mu is held.
func (s *Service) armRemovalTimer(espID, correlation string) {
	st := s.dev(espID)
	stopTimer(st.removalTimer)
	st.removalTimer = time.AfterFunc(s.cfg.AckTimeout, func() { s.removalTimedOut(espID, correlation) })
}

// removalTimedOut records the removal as not confirmed by the device
// (docs/protocol.md Z2): the baseline never confirms one.
func (s *Service) removalTimedOut(espID, correlation string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	d, err := s.devices.Get(espID)
	if err != nil {
		return
	}
	r := removalOf(d)
	if r == nil || r.CorrelationID != correlation || r.Status != RemovalWaiting {
		return
	}
	r.Status = RemovalUnconfirmed
	s.saveRemoval(ctx, espID, *r)
	s.log.Info("zone removal not confirmed by the device", "esp_id", espID)
}

// HandleZoneAck is the ingest handler of `zone/ack` (docs/protocol.md §3.1.7):
// it completes or fails the pending assignment or removal, and every live
// ack reaches the WebSocket as zone_assignment.
func (s *Service) HandleZoneAck(ctx context.Context, m ingest.Message) error {
	ack, err := contract.DecodeZoneAck(m.Topic, m.Payload)
	if err != nil {
		return err
	}
	if m.Replay {
		return ingest.Drop(contract.ReasonReplay, "retained zone ack confirms nothing")
	}
	d, err := s.devices.Admit(m) // records the root the ack came on: A4's switch to god
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch ack.Status {
	case "zone_assigned":
		return s.zoneAssigned(ctx, d, ack)
	case "zone_removed":
		return s.zoneRemoved(ctx, d, ack)
	case "error":
		return s.zoneRefused(ctx, d, ack)
	}
	s.log.Warn("zone ack with an unknown status ignored", "esp_id", d.DeviceID, "status", ack.Status)
	return nil
}

// matches reports whether an ack answers p: the same correlation id, or
// the same zone (the baseline echoes no id).
func (p *Pending) matches(ack contract.ZoneAck) bool {
	if p == nil {
		return false
	}
	if ack.CorrelationID != "" && ack.CorrelationID == p.CorrelationID {
		return true
	}
	return ack.ZoneID != "" && strings.EqualFold(ack.ZoneID, p.ZoneID)
}

// zoneAssigned confirms the pending assignment and, for transfer and copy,
// sends the device's subzones again under their new parent; s.mu is held.
func (s *Service) zoneAssigned(ctx context.Context, d device.Device, ack contract.ZoneAck) error {
	defer s.emit(event.ZoneAssignment{
		EspID:        d.DeviceID,
		Status:       ack.Status,
		ZoneID:       ack.ZoneID,
		MasterZoneID: ack.MasterZoneID,
		Message:      ack.Message,
		Timestamp:    s.now().Unix(),
	})

	p := pendingOf(d)
	if !p.matches(ack) {
		s.log.Info("zone ack matches no pending assignment", "esp_id", d.DeviceID, "zone_id", ack.ZoneID,
			"configured", d.ZoneID)
		return nil
	}

	stopTimer(s.dev(d.DeviceID).zoneTimer)
	confirmed, err := s.devices.Update(ctx, d.DeviceID, device.Patch{Metadata: map[string]any{
		keyPending:   nil,
		keyConfirmed: s.stamp(),
		keyError:     nil,
	}})
	if err != nil {
		return fmt.Errorf("confirm zone of %s: %w", d.DeviceID, err)
	}
	s.clear(ctx, "zone:error:"+d.DeviceID)

	if p.Strategy == StrategyTransfer || p.Strategy == StrategyCopy {
		s.resendSubzones(ctx, confirmed)
	}
	return nil
}

// zoneRemoved records a newer device's confirmation of a removal; s.mu is held.
func (s *Service) zoneRemoved(ctx context.Context, d device.Device, ack contract.ZoneAck) error {
	s.emit(event.ZoneAssignment{
		EspID:     d.DeviceID,
		Status:    ack.Status,
		Message:   ack.Message,
		Timestamp: s.now().Unix(),
	})

	r := removalOf(d)
	if r == nil || r.Status == RemovalConfirmed {
		return nil
	}
	stopTimer(s.dev(d.DeviceID).removalTimer)
	r.Status = RemovalConfirmed
	s.saveRemoval(ctx, d.DeviceID, *r)
	return nil
}

// zoneRefused keeps the assignment pending and records the device's reason
// (docs/domain.md §7.2 step 4); s.mu is held.
func (s *Service) zoneRefused(ctx context.Context, d device.Device, ack contract.ZoneAck) error {
	zoneID := ack.ZoneID
	p := pendingOf(d)
	if zoneID == "" && p != nil {
		zoneID = p.ZoneID
	}
	s.emit(event.ZoneAssignment{
		EspID:        d.DeviceID,
		Status:       ack.Status,
		ZoneID:       zoneID,
		MasterZoneID: ack.MasterZoneID,
		Message:      ack.Message,
		Timestamp:    s.now().Unix(),
	})
	s.log.Warn("device refused its zone assignment", "esp_id", d.DeviceID, "zone_id", zoneID,
		"message", ack.Message)

	stopTimer(s.dev(d.DeviceID).zoneTimer) // answered, if only with a refusal
	zerr := ZoneError{Message: ack.Message, At: s.stamp()}
	md := map[string]any{keyError: toMeta(zerr)}
	if _, err := s.devices.Update(ctx, d.DeviceID, device.Patch{Metadata: md}); err != nil {
		return fmt.Errorf("record zone error of %s: %w", d.DeviceID, err)
	}
	s.raise(ctx, notify.Spec{
		Key:      "zone:error:" + d.DeviceID,
		Severity: "warning",
		Category: "system",
		Source:   "zone",
		Title:    "Zone assignment refused",
		Body:     fmt.Sprintf("%s refused zone %s: %s", d.DeviceID, zoneID, ack.Message),
		Metadata: map[string]any{"esp_id": d.DeviceID, "zone_id": zoneID},
	})
	return nil
}

// resync sends what a device online again should have (docs/domain.md §7.2
// step 6): an assignment never sent, a pending one after a reconnect, the
// configured one when the heartbeat reports another zone; re-sends at most
// once per ResyncEvery. A removal is never re-sent, and a zone the device
// reports while the hub has none is only logged.
func (s *Service) resync(espID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	d, err := s.devices.Get(espID)
	if err != nil || d.Status != device.StatusOnline {
		return
	}

	st := s.dev(espID)
	reconnected := st.reconnected
	st.reconnected = false
	due := st.lastSent.IsZero() || s.now().Sub(st.lastSent) >= s.cfg.ResyncEvery

	p := pendingOf(d)
	switch {
	case p != nil && p.SentAt == nil:
		s.sendAssignment(ctx, d, *p)
	case p != nil && reconnected && due:
		s.sendAssignment(ctx, d, *p)
	case p == nil && d.ZoneID != "" && reportsOtherZone(d) && due:
		s.reassign(ctx, d)
	case p == nil && d.ZoneID == "" && reportedZone(d) != "":
		s.log.Debug("device reports a zone the hub has not assigned", "esp_id", espID, "zone_id", reportedZone(d))
	}

	if p == nil && !d.RebootRequired {
		s.resendUnconfirmed(ctx, d)
	}
}

func reportedZone(d device.Device) string {
	z, _ := d.Metadata["reported_zone_id"].(string)
	return z
}

// reportsOtherZone: the heartbeat names another zone, or says no zone is
// assigned (docs/domain.md §7.2 step 6).
func reportsOtherZone(d device.Device) bool {
	if assigned, ok := d.Metadata["zone_assigned"].(bool); ok && !assigned {
		return true
	}
	return !strings.EqualFold(reportedZone(d), d.ZoneID)
}

// reassign sends the configured zone again as a new pending assignment;
// its subzones follow the ack; s.mu is held.
func (s *Service) reassign(ctx context.Context, d device.Device) {
	if !contract.ValidIdentifier(d.ZoneID, 32) || (d.MasterZoneID != "" && !contract.ValidIdentifier(d.MasterZoneID, 32)) {
		s.log.Warn("configured zone cannot be sent to the device (docs/protocol.md J4)", "esp_id", d.DeviceID,
			"zone_id", d.ZoneID)
		return
	}

	p := Pending{
		ZoneID:        d.ZoneID,
		MasterZoneID:  d.MasterZoneID,
		ZoneName:      d.ZoneName,
		CorrelationID: correlationID("zone"),
		Strategy:      StrategyTransfer,
	}
	s.log.Info("heartbeat reports another zone; sending the configured one again", "esp_id", d.DeviceID,
		"reported", reportedZone(d), "zone_id", d.ZoneID)
	md := map[string]any{keyPending: toMeta(p)}
	if _, err := s.devices.Update(ctx, d.DeviceID, device.Patch{Metadata: md}); err != nil {
		s.log.Warn("zone re-sync not stored", "esp_id", d.DeviceID, "error", err)
		return
	}
	s.sendAssignment(ctx, d, p)
}
