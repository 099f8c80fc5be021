package emergency

import (
	"sort"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Status is the latch status of docs/api.md §8.4 (GET /actuators/emergency).
type Status struct {
	// Active: the global latch or a device latch is active.
	Active bool
	Global *LatchInfo
	// Devices are the active device latches, by esp_id.
	Devices []LatchInfo
	// RulesPaused lists cleared devices whose rules still wait for resume_rules.
	RulesPaused []string
	// LatchPersisted is false while a latch is held only in memory.
	LatchPersisted bool
}

// LatchInfo is one active latch.
type LatchInfo struct {
	EspID                 string
	Reason                string
	ActivatedAt           time.Time
	ActivatedBy           string
	IncidentCorrelationID string
	StopPublishedAt       *time.Time
	LastClearAttempt      *store.EmergencyClearAttempt
}

// Status reports the latches from memory.
func (s *Service) Status() Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Status{
		Devices:        []LatchInfo{},
		RulesPaused:    []string{},
		LatchPersisted: !s.failing,
	}
	for _, l := range s.latches {
		switch {
		case l.Active && l.EspID == "":
			info := latchInfo(l)
			st.Global = &info
		case l.Active:
			st.Devices = append(st.Devices, latchInfo(l))
		case l.EspID != "" && l.RulesPaused:
			st.RulesPaused = append(st.RulesPaused, l.EspID)
		}
	}
	st.Active = st.Global != nil || len(st.Devices) > 0
	sort.Slice(st.Devices, func(i, j int) bool { return st.Devices[i].EspID < st.Devices[j].EspID })
	sort.Strings(st.RulesPaused)
	return st
}

func latchInfo(l *store.EmergencyLatch) LatchInfo {
	info := LatchInfo{
		EspID:                 l.EspID,
		Reason:                l.Reason,
		ActivatedAt:           l.ActivatedAt,
		ActivatedBy:           l.ActivatedBy,
		IncidentCorrelationID: l.IncidentCorrelationID,
		StopPublishedAt:       l.StopPublishedAt,
	}
	// Attempts before the latch was last set belong to an earlier stop.
	if n := len(l.ClearAttempts); n > 0 && !l.ClearAttempts[n-1].At.Before(l.ActivatedAt) {
		a := l.ClearAttempts[n-1]
		info.LastClearAttempt = &a
	}
	return info
}
