package zone

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Info is a zone with the number of devices assigned to it (docs/api.md §9).
type Info struct {
	store.Zone
	DeviceCount int
}

// NewZone is an operator's new zone.
type NewZone struct {
	ZoneID, Name, Description string
}

// ZonePatch changes a zone's texts; nil fields stay as they are.
type ZonePatch struct {
	Name, Description *string
}

// Zones lists the zones, filtered by status when it is not empty, ordered by id.
func (s *Service) Zones(status string) []Info {
	counts := s.deviceCounts()

	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Info, 0, len(s.zones))
	for _, id := range sortedIDs(s.zones) {
		z := s.zones[id]
		if status == "" || z.Status == status {
			out = append(out, Info{Zone: z, DeviceCount: counts[id]})
		}
	}
	return out
}

// Zone returns one zone; the id is matched case-insensitively.
func (s *Service) Zone(zoneID string) (Info, error) {
	s.mu.Lock()
	z, ok := s.zones[strings.ToLower(zoneID)]
	s.mu.Unlock()
	if !ok {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, zoneID)
	}
	return s.info(z), nil
}

// CreateZone stores a new active zone under its lower-cased id.
func (s *Service) CreateZone(ctx context.Context, nz NewZone) (Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	id := strings.ToLower(nz.ZoneID)
	if _, ok := s.zones[id]; ok {
		return Info{}, fmt.Errorf("%w: %s", ErrDuplicate, id)
	}
	z, err := s.createZone(ctx, id, nz.Name, nz.Description)
	if err != nil {
		return Info{}, err
	}
	return Info{Zone: z}, nil
}

// createZone stores a new active zone; s.mu is held.
func (s *Service) createZone(ctx context.Context, id, name, description string) (store.Zone, error) {
	now := s.now()
	z := store.Zone{
		ZoneID:      id,
		Name:        name,
		Description: description,
		Status:      StatusActive,
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	if err := s.store.SaveZone(ctx, z); err != nil {
		return store.Zone{}, err
	}
	s.zones[id] = z
	return z, nil
}

// UpdateZone changes a zone's name or description.
func (s *Service) UpdateZone(ctx context.Context, zoneID string, p ZonePatch) (Info, error) {
	return s.changeZone(ctx, zoneID, func(z *store.Zone) {
		if p.Name != nil {
			z.Name = *p.Name
		}
		if p.Description != nil {
			z.Description = *p.Description
		}
	})
}

// Archive makes a zone refuse new devices; its assignments stay (docs/domain.md §7.1).
func (s *Service) Archive(ctx context.Context, zoneID string) (Info, error) {
	return s.changeZone(ctx, zoneID, func(z *store.Zone) { z.Status = StatusArchived })
}

// Reactivate makes an archived zone take devices again.
func (s *Service) Reactivate(ctx context.Context, zoneID string) (Info, error) {
	return s.changeZone(ctx, zoneID, func(z *store.Zone) { z.Status = StatusActive })
}

func (s *Service) changeZone(ctx context.Context, zoneID string, change func(z *store.Zone)) (Info, error) {
	s.mu.Lock()
	id := strings.ToLower(zoneID)
	z, ok := s.zones[id]
	if !ok {
		s.mu.Unlock()
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, zoneID)
	}

	change(&z)
	z.UpdatedAt = s.now()
	if err := s.store.SaveZone(ctx, z); err != nil {
		s.mu.Unlock()
		return Info{}, err
	}
	s.zones[id] = z
	s.mu.Unlock()
	return s.info(z), nil
}

// DeleteZone removes a zone no device is assigned to.
func (s *Service) DeleteZone(ctx context.Context, zoneID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()

	id := strings.ToLower(zoneID)
	if _, ok := s.zones[id]; !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, zoneID)
	}
	if n := s.deviceCounts()[id]; n > 0 {
		return fmt.Errorf("%w: %d device(s) are assigned to zone %s", ErrInvalidState, n, id)
	}

	if err := s.store.DeleteZone(ctx, id); err != nil {
		return err
	}
	delete(s.zones, id)
	return nil
}

func (s *Service) info(z store.Zone) Info {
	return Info{Zone: z, DeviceCount: s.deviceCounts()[z.ZoneID]}
}

// deviceCounts counts the devices of each zone. Zone fields set by an
// operator's PATCH keep their case, so they are compared lower-cased.
func (s *Service) deviceCounts() map[string]int {
	counts := map[string]int{}
	for _, d := range s.devices.List() {
		if d.ZoneID != "" {
			counts[strings.ToLower(d.ZoneID)]++
		}
	}
	return counts
}

// DevicesInZone returns the zone view of every device in a zone, ordered
// by device id; the zone id is matched case-insensitively and need not exist.
func (s *Service) DevicesInZone(zoneID string) []DeviceZone {
	var out []DeviceZone
	for _, d := range s.devices.List() {
		if d.ZoneID != "" && strings.EqualFold(d.ZoneID, zoneID) {
			out = append(out, viewOf(d))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DeviceID < out[j].DeviceID })
	return out
}

// Unassigned lists the approved devices without a zone, ordered by id.
func (s *Service) Unassigned() []string {
	var out []string
	for _, d := range s.devices.List() {
		if d.ZoneID == "" && isApproved(d.Status) {
			out = append(out, d.DeviceID)
		}
	}
	sort.Strings(out)
	return out
}
