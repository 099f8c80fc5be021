package device

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/store"
)

// lookup finds a device that is not deleted; s.mu is held.
func (s *Service) lookup(espID string) (*entry, error) {
	e := s.devices[espID]
	if isGone(e) {
		return nil, ErrNotFound
	}
	return e, nil
}

// Get returns a device that is not deleted.
func (s *Service) Get(espID string) (Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookup(espID)
	if err != nil {
		return Device{}, err
	}
	return s.snapshot(e), nil
}

// List returns every device that is not deleted, ordered by device id.
func (s *Service) List() []Device {
	s.mu.Lock()
	out := make([]Device, 0, len(s.devices))
	for _, e := range s.devices {
		if e.rec.Status != StatusDeleted {
			out = append(out, s.snapshot(e))
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].DeviceID < out[j].DeviceID })
	return out
}

// Known reports a registered device: pending, approved (any liveness) or
// rejected, not deleted. The embedded broker never refuses such an id at
// CONNECT (docs/protocol.md M5): a rejected device may be approved later,
// and a baseline node that was refused 10 times never comes back (Q8).
func (s *Service) Known(espID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !isGone(s.devices[espID])
}

// Status is a device's status, StatusDeleted included; ok is false for an
// id the registry never saw.
func (s *Service) Status(espID string) (status string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.devices[espID]; e != nil {
		return e.rec.Status, true
	}
	return "", false
}

// Registered is the number of registered devices (deleted excluded).
func (s *Service) Registered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.devices {
		if e.rec.Status != StatusDeleted {
			n++
		}
	}
	return n
}

// Counts returns the number of devices per status (deleted excluded).
func (s *Service) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := map[string]int{}
	for _, e := range s.devices {
		if e.rec.Status != StatusDeleted {
			c[e.rec.Status]++
		}
	}
	return c
}

// statusChange is an operator's status change of one device.
type statusChange struct {
	allowed func(from string) bool
	to      string
	cause   string
	// mutate and events are optional: further record changes under the
	// lock, and events beside the device_status one.
	mutate func(r *store.Device, now time.Time)
	events func(d Device, now time.Time) []event.Event
}

// transition applies c under the lock if c.allowed holds for the device's
// status, then persists and emits the events.
func (s *Service) transition(ctx context.Context, espID string, c statusChange) (Device, error) {
	now := s.now()
	s.mu.Lock()
	e, err := s.lookup(espID)
	if err != nil {
		s.mu.Unlock()
		return Device{}, err
	}
	prev := e.rec.Status
	if !c.allowed(prev) {
		s.mu.Unlock()
		return Device{}, fmt.Errorf("%w: device %s is %s", ErrInvalidState, espID, prev)
	}

	was := awaiting(e)
	e.rec.Status = c.to
	e.rec.UpdatedAt = now
	if c.mutate != nil {
		c.mutate(&e.rec, now)
	}
	s.track(e, was)
	if isApproved(c.to) || c.to == StatusDeleted {
		e.release() // payloads are kept for inspection only while not approved
	}

	rec := e.stamp()
	tr := e.transitionFrom(prev, c.cause, now)
	snap := s.snapshot(e)
	evs := []event.Event{statusEvent(e, prev, c.cause, now)}
	if c.events != nil {
		evs = append(evs, c.events(snap, now)...)
	}
	s.mu.Unlock()

	return snap, s.persistCommitted(ctx, rec, tr, evs)
}

// Approve moves a pending or rejected device to approved; it goes online with
// its next heartbeat, whose ack then says "online".
func (s *Service) Approve(ctx context.Context, espID, actor, name string) (Device, error) {
	return s.transition(ctx, espID, statusChange{
		allowed: func(st string) bool { return st == StatusPending || st == StatusRejected },
		to:      StatusApproved,
		cause:   "approved",
		mutate: func(r *store.Device, now time.Time) {
			r.ApprovedAt, r.ApprovedBy, r.RejectionReason = &now, actor, ""
			if name != "" {
				r.Name = name
			}
		},
		events: func(d Device, now time.Time) []event.Event {
			return []event.Event{{Time: now, Data: event.DeviceApproved{
				DeviceID:   d.DeviceID,
				ApprovedBy: actor,
				ApprovedAt: now.UTC().Format(time.RFC3339),
				Status:     StatusApproved,
			}}}
		},
	})
}

// Reject moves a pending device to rejected.
func (s *Service) Reject(ctx context.Context, espID, actor, reason string) (Device, error) {
	return s.transition(ctx, espID, statusChange{
		allowed: func(st string) bool { return st == StatusPending },
		to:      StatusRejected,
		cause:   "rejected",
		mutate: func(r *store.Device, now time.Time) {
			r.RejectionReason = reason
			r.Metadata["last_rejection_at"] = now.UTC().Format(time.RFC3339)
			r.Metadata["rejected_by"] = actor
		},
		events: func(d Device, now time.Time) []event.Event {
			return []event.Event{{Time: now, Data: event.DeviceRejected{
				DeviceID:        d.DeviceID,
				RejectionReason: reason,
				RejectedAt:      now.UTC().Format(time.RFC3339),
			}}}
		},
	})
}

// SetPending returns an approved, online, offline or rejected device to pending.
func (s *Service) SetPending(ctx context.Context, espID, actor, reason string) (Device, error) {
	return s.transition(ctx, espID, statusChange{
		allowed: func(st string) bool { return st != StatusPending },
		to:      StatusPending,
		cause:   "set_pending",
		mutate: func(r *store.Device, _ time.Time) {
			r.Metadata["set_pending_by"] = actor
			if reason != "" {
				r.Metadata["set_pending_reason"] = reason
			}
		},
	})
}

// Delete soft-deletes a device; a later heartbeat rediscovers it.
func (s *Service) Delete(ctx context.Context, espID, actor string) error {
	_, err := s.transition(ctx, espID, statusChange{
		allowed: func(string) bool { return true },
		to:      StatusDeleted,
		cause:   "deleted",
		mutate:  func(r *store.Device, _ time.Time) { r.Metadata["deleted_by"] = actor },
	})
	if err == nil {
		s.notifyDeleted(ctx, espID)
	}
	return err
}

// Registration is an operator's pre-registration (docs/api.md §6.3 POST /esp/devices).
type Registration struct {
	DeviceID, Name, ZoneID, ZoneName string
	IPAddress, MACAddress            string
	FirmwareVersion, HardwareType    string
	Capabilities                     map[string]any
}

// Register creates an approved device, or revives a deleted one.
func (s *Service) Register(ctx context.Context, reg Registration, actor string) (Device, error) {
	now := s.now()
	s.mu.Lock()
	old := s.devices[reg.DeviceID]
	if !isGone(old) {
		s.mu.Unlock()
		return Device{}, ErrDuplicate
	}

	e := &entry{rec: registered(reg, actor, old, now)}
	s.devices[reg.DeviceID] = e
	rec := e.stamp()
	tr := e.transitionFrom("", "registered", now)
	snap := s.snapshot(e)
	ev := statusEvent(e, "", "registered", now)
	s.mu.Unlock()

	if err := s.persistCommitted(ctx, rec, tr, []event.Event{ev}); err != nil {
		s.unregister(reg.DeviceID, e, old)
		return Device{}, err
	}
	return snap, nil
}

// unregister undoes a registration whose commit failed, unless the entry
// has been replaced since: the operator was told it is not stored.
func (s *Service) unregister(espID string, e, old *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.devices[espID] != e {
		return
	}
	if old == nil {
		delete(s.devices, espID)
		return
	}
	s.devices[espID] = old
}

// registered is the approved record of a pre-registration; a deleted
// device keeps its identity and continues its version, so that a save of
// the deleted record still on its way cannot replace the new one.
func registered(reg Registration, actor string, old *entry, now time.Time) store.Device {
	rec := store.Device{
		ID:              uuid.NewString(),
		DeviceID:        reg.DeviceID,
		Name:            reg.Name,
		Status:          StatusApproved,
		KaiserID:        "god",
		ZoneID:          reg.ZoneID,
		ZoneName:        reg.ZoneName,
		HardwareType:    reg.HardwareType,
		IPAddress:       reg.IPAddress,
		FirmwareVersion: reg.FirmwareVersion,
		Metadata:        map[string]any{},
		ApprovedAt:      &now,
		ApprovedBy:      actor,
		CreatedAt:       now,
		UpdatedAt:       now,
	}
	if old != nil {
		rec.ID, rec.CreatedAt, rec.Version = old.rec.ID, old.rec.CreatedAt, old.rec.Version
	}
	if reg.MACAddress != "" {
		rec.Metadata["mac_address"] = reg.MACAddress
	}
	if reg.Capabilities != nil {
		rec.Metadata["capabilities"] = reg.Capabilities
	}
	return rec
}

// Patch is an operator's change to stored device fields (docs/api.md §6.3 PATCH).
// Metadata is shallow-merged; a nil value deletes the key.
type Patch struct {
	Name, ZoneID, ZoneName *string
	IsZoneMaster           *bool
	Capabilities           map[string]any
	Metadata               map[string]any
	SetCapabilities        bool

	// MasterZoneID is set only by the zone assignment (docs/domain.md §7.2),
	// which keeps the three zone fields together in one versioned save.
	MasterZoneID *string
}

// Update applies a patch to a device that is not deleted.
func (s *Service) Update(ctx context.Context, espID string, p Patch) (Device, error) {
	now := s.now()
	s.mu.Lock()
	e, err := s.lookup(espID)
	if err != nil {
		s.mu.Unlock()
		return Device{}, err
	}

	if p.Name != nil {
		e.rec.Name = *p.Name
	}
	if p.ZoneID != nil {
		e.rec.ZoneID = *p.ZoneID
	}
	if p.ZoneName != nil {
		e.rec.ZoneName = *p.ZoneName
	}
	if p.MasterZoneID != nil {
		e.rec.MasterZoneID = *p.MasterZoneID
	}
	if p.IsZoneMaster != nil {
		e.rec.Metadata["is_zone_master"] = *p.IsZoneMaster
	}
	if p.SetCapabilities {
		e.rec.Metadata["capabilities"] = p.Capabilities
	}
	for k, v := range p.Metadata {
		if v == nil {
			delete(e.rec.Metadata, k)
		} else {
			e.rec.Metadata[k] = v
		}
	}
	e.rec.UpdatedAt = now
	rec := e.stamp()
	snap := s.snapshot(e)
	s.mu.Unlock()

	err = waitCommitted(ctx, func(ctx context.Context) error { return s.store.SaveDevice(ctx, rec) })
	if err != nil {
		return snap, fmt.Errorf("commit device %s: %w", espID, err)
	}
	return snap, nil
}

// ErrOffline and ErrNotApproved refuse publishing to a device (docs/protocol.md A5, §5.4).
var (
	ErrOffline     = errors.New("device is offline")
	ErrNotApproved = errors.New("device is not approved")
)

// online returns a device the hub may publish to: approved and online.
func (s *Service) online(espID string) (Device, error) {
	d, err := s.Get(espID)
	if err != nil {
		return Device{}, err
	}
	if !isApproved(d.Status) {
		return Device{}, ErrNotApproved
	}
	if d.Status != StatusOnline {
		return Device{}, ErrOffline
	}
	return d, nil
}

// FactoryReset publishes `factory_reset` with top-level confirm
// (docs/protocol.md §3.2.3, S2) on the device's recorded root. The registration is kept.
func (s *Service) FactoryReset(ctx context.Context, espID string) error {
	d, err := s.online(espID)
	if err != nil {
		return err
	}

	payload, err := contract.Marshal(contract.SystemCommand{
		Command:       "factory_reset",
		Confirm:       true,
		Timestamp:     s.now().Unix(),
		CorrelationID: "sys-" + uuid.NewString()[:8],
	})
	if err != nil {
		return err
	}

	topic := contract.DeviceTopic(d.KaiserID, espID, "system/command")
	return s.bus.Publish(ctx, topic, payload, 1, false)
}
