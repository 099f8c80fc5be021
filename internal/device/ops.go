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

// Get returns a device that is not deleted.
func (s *Service) Get(espID string) (Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.devices[espID]
	if e == nil || e.rec.Status == StatusDeleted {
		return Device{}, ErrNotFound
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

// transition changes a device's status under the lock if allowed(from)
// holds, then persists and emits the events.
func (s *Service) transition(ctx context.Context, espID string, allowed func(string) bool, to, cause string,
	mutate func(r *store.Device, now time.Time), extra func(d Device, now time.Time) []event.Event) (Device, error) {
	now := s.now()
	s.mu.Lock()
	e := s.devices[espID]
	if e == nil || e.rec.Status == StatusDeleted {
		s.mu.Unlock()
		return Device{}, ErrNotFound
	}
	prev := e.rec.Status
	if !allowed(prev) {
		s.mu.Unlock()
		return Device{}, fmt.Errorf("%w: device %s is %s", ErrInvalidState, espID, prev)
	}
	e.rec.Status = to
	e.rec.UpdatedAt = now
	if mutate != nil {
		mutate(&e.rec, now)
	}
	snap := s.snapshot(e)
	evs := []event.Event{statusEvent(e, prev, cause, now)}
	if extra != nil {
		evs = append(evs, extra(snap, now)...)
	}
	rec := cloneRecord(e.rec)
	s.mu.Unlock()
	return snap, s.persist(ctx, rec, store.Transition{DeviceID: espID, From: prev, To: to, Cause: cause, At: now}, evs)
}

// Approve moves a pending or rejected device to approved; it goes online with
// its next heartbeat, whose ack then says "online".
func (s *Service) Approve(ctx context.Context, espID, actor, name string) (Device, error) {
	return s.transition(ctx, espID, func(st string) bool { return st == StatusPending || st == StatusRejected },
		StatusApproved, "approved", func(r *store.Device, now time.Time) {
			r.ApprovedAt, r.ApprovedBy, r.RejectionReason = &now, actor, ""
			if name != "" {
				r.Name = name
			}
		}, func(d Device, now time.Time) []event.Event {
			return []event.Event{{Time: now, Data: event.DeviceApproved{
				DeviceID:   d.DeviceID,
				ApprovedBy: actor,
				ApprovedAt: now.UTC().Format(time.RFC3339),
				Status:     StatusApproved,
			}}}
		})
}

// Reject moves a pending device to rejected.
func (s *Service) Reject(ctx context.Context, espID, actor, reason string) (Device, error) {
	return s.transition(ctx, espID, func(st string) bool { return st == StatusPending },
		StatusRejected, "rejected", func(r *store.Device, now time.Time) {
			r.RejectionReason = reason
			r.Metadata["last_rejection_at"] = now.UTC().Format(time.RFC3339)
			r.Metadata["rejected_by"] = actor
		}, func(d Device, now time.Time) []event.Event {
			return []event.Event{{Time: now, Data: event.DeviceRejected{
				DeviceID:        d.DeviceID,
				RejectionReason: reason,
				RejectedAt:      now.UTC().Format(time.RFC3339),
			}}}
		})
}

// SetPending returns an approved, online, offline or rejected device to pending.
func (s *Service) SetPending(ctx context.Context, espID, actor, reason string) (Device, error) {
	return s.transition(ctx, espID, func(st string) bool { return st != StatusPending },
		StatusPending, "set_pending", func(r *store.Device, _ time.Time) {
			r.Metadata["set_pending_by"] = actor
			if reason != "" {
				r.Metadata["set_pending_reason"] = reason
			}
		}, nil)
}

// Delete soft-deletes a device; a later heartbeat rediscovers it.
func (s *Service) Delete(ctx context.Context, espID, actor string) error {
	_, err := s.transition(ctx, espID, func(string) bool { return true }, StatusDeleted, "deleted",
		func(r *store.Device, _ time.Time) { r.Metadata["deleted_by"] = actor }, nil)
	return err
}

// Registration is an operator's pre-registration (API §6.3 POST /esp/devices).
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
	if old != nil && old.rec.Status != StatusDeleted {
		s.mu.Unlock()
		return Device{}, ErrDuplicate
	}
	rec := store.Device{ID: uuid.NewString(), DeviceID: reg.DeviceID, Name: reg.Name, Status: StatusApproved,
		KaiserID: "god", ZoneID: reg.ZoneID, ZoneName: reg.ZoneName, HardwareType: reg.HardwareType,
		IPAddress: reg.IPAddress, FirmwareVersion: reg.FirmwareVersion, Metadata: map[string]any{},
		ApprovedAt: &now, ApprovedBy: actor, CreatedAt: now, UpdatedAt: now}
	if old != nil {
		rec.ID, rec.CreatedAt = old.rec.ID, old.rec.CreatedAt
	}
	if reg.MACAddress != "" {
		rec.Metadata["mac_address"] = reg.MACAddress
	}
	if reg.Capabilities != nil {
		rec.Metadata["capabilities"] = reg.Capabilities
	}
	e := &entry{rec: rec}
	s.devices[reg.DeviceID] = e
	snap := s.snapshot(e)
	ev := statusEvent(e, "", "registered", now)
	s.mu.Unlock()
	return snap, s.persist(ctx, cloneRecord(rec), store.Transition{DeviceID: reg.DeviceID, To: StatusApproved, Cause: "registered", At: now}, []event.Event{ev})
}

// Patch is an operator's change to stored device fields (API §6.3 PATCH).
// Metadata is shallow-merged; a nil value deletes the key.
type Patch struct {
	Name, ZoneID, ZoneName *string
	IsZoneMaster           *bool
	Capabilities           map[string]any
	Metadata               map[string]any
	SetCapabilities        bool
}

// Update applies a patch to a device that is not deleted.
func (s *Service) Update(ctx context.Context, espID string, p Patch) (Device, error) {
	now := s.now()
	s.mu.Lock()
	e := s.devices[espID]
	if e == nil || e.rec.Status == StatusDeleted {
		s.mu.Unlock()
		return Device{}, ErrNotFound
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
	snap := s.snapshot(e)
	rec := cloneRecord(e.rec)
	s.mu.Unlock()
	if err := s.store.SaveDevice(ctx, rec); err != nil {
		return snap, err
	}
	return snap, s.store.Flush(ctx)
}

// ErrOffline and ErrNotApproved refuse publishing to a device (CONTRACT A5, §5.4).
var (
	ErrOffline     = errors.New("device is offline")
	ErrNotApproved = errors.New("device is not approved")
)

// FactoryReset publishes `factory_reset` with top-level confirm (CONTRACT
// §3.2.3, S2) on the device's recorded root. The registration is kept.
func (s *Service) FactoryReset(ctx context.Context, espID string) error {
	d, err := s.Get(espID)
	if err != nil {
		return err
	}
	if !isApproved(d.Status) {
		return ErrNotApproved
	}
	if d.Status != StatusOnline {
		return ErrOffline
	}
	now := s.now()
	payload, err := contract.Marshal(contract.SystemCommand{Command: "factory_reset", Confirm: true, Timestamp: now.Unix(),
		CorrelationID: "sys-" + uuid.NewString()[:8]})
	if err != nil {
		return err
	}
	return s.bus.Publish(ctx, contract.DeviceTopic(d.KaiserID, espID, "system/command"), payload, 1, false)
}
