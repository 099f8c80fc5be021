package device

import (
	"context"
	"fmt"

	"github.com/kaiserhub/kaiser/internal/store"
)

// recordLoader is a store that reads one device's record (the PostgreSQL
// store does); with another store Refresh reads every record.
type recordLoader interface {
	LoadDevice(ctx context.Context, deviceID string) (store.Device, bool, error)
}

// Refresh reloads one device's record from the store, after another
// replica committed a change to it (docs/decisions/0029-replicas.md): a new
// record registers the device, a changed one replaces what the registry
// holds, and a record that is gone unregisters it, so that Admit, Gate and
// Get decide by the committed record from then on. It publishes no events
// and saves nothing: the replica that made the change did both.
//
// The registry is meant to be written by one replica, the primary; Refresh
// serves the others. A record the registry holds at a newer version than
// the store (a change of its own that is not committed yet) stays.
func (s *Service) Refresh(ctx context.Context, espID string) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	rec, ok, err := s.loadRecord(ctx, espID)
	if err != nil {
		return fmt.Errorf("refresh device %s: %w", espID, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.adopt(rec)
	} else {
		s.drop(espID)
	}
	return nil
}

// RefreshAll is Refresh for every device, for when changes may have been
// missed (the change listener reconnected): devices the store no longer
// holds are unregistered.
func (s *Service) RefreshAll(ctx context.Context) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	recs, err := s.store.LoadDevices(ctx)
	if err != nil {
		return fmt.Errorf("refresh devices: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	stored := make(map[string]bool, len(recs))
	for _, r := range recs {
		stored[r.DeviceID] = true
		s.adopt(r)
	}
	for id := range s.devices {
		if !stored[id] {
			s.drop(id)
		}
	}
	return nil
}

// loadRecord reads one device's record; ok is false when there is none.
func (s *Service) loadRecord(ctx context.Context, espID string) (store.Device, bool, error) {
	if l, ok := s.store.(recordLoader); ok {
		return l.LoadDevice(ctx, espID)
	}
	recs, err := s.store.LoadDevices(ctx)
	if err != nil {
		return store.Device{}, false, err
	}
	for _, r := range recs {
		if r.DeviceID == espID {
			return r, true, nil
		}
	}
	return store.Device{}, false, nil
}

// adopt makes a stored record the registry's, unless the registry holds
// the same record (same identity) at its version or a newer one. A record
// with another identity is a device purged and discovered again, whose
// versions started anew. The entry's own bookkeeping (liveness, wills,
// payloads kept for inspection) stays; s.mu is held.
func (s *Service) adopt(r store.Device) {
	e := s.devices[r.DeviceID]
	if e != nil && e.rec.ID == r.ID && e.rec.Version >= r.Version {
		return
	}
	was := awaiting(e)
	if e == nil {
		e = &entry{}
		s.devices[r.DeviceID] = e
	}
	e.load(r, s.now())
	if isApproved(r.Status) || r.Status == StatusDeleted {
		e.release()
	}
	if !isGone(e) {
		delete(s.unknownIDs, r.DeviceID)
	}
	s.track(e, was)
}

// drop unregisters a device whose record is gone from the store; s.mu is held.
func (s *Service) drop(espID string) {
	e := s.devices[espID]
	if e == nil {
		return
	}
	if awaiting(e) {
		s.awaitingN--
	}
	e.release()
	delete(s.devices, espID)
}
