package device

import (
	"sync/atomic"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/event"
)

// Counts tells how many sensors and actuators the hub has configured for a
// device. The heartbeat's own counts are not authoritative
// (docs/protocol.md §3.1.2: the baseline loses one actuator per re-configuration), so esp_health
// carries these once the hub provides them.
type Counts interface {
	ComponentCounts(espID string) (sensors, actuators int)
}

// counts holds the hub's Counts; nil until SetCounts.
type counts struct{ src atomic.Pointer[Counts] }

// SetCounts makes every esp_health event carry c's counts. Until it is
// called, the events carry the last heartbeat's counts, 0 where unreported.
func (s *Service) SetCounts(c Counts) { s.counts.src.Store(&c) }

// withCounts fills an esp_health event with the configured counts; it runs
// outside the registry's lock, since the sources read the registry.
func (s *Service) withCounts(ev event.Event) event.Event {
	h, ok := ev.Data.(event.EspHealth)
	src := s.counts.src.Load()
	if !ok || src == nil {
		return ev
	}
	h.SensorCount, h.ActuatorCount = (*src).ComponentCounts(h.EspID)
	ev.Data = h
	return ev
}

// reportedCounts are a heartbeat's counts, 0 where it sent none.
func reportedCounts(hb contract.Heartbeat) (sensors, actuators int) {
	if hb.SensorCount != nil {
		sensors = int(*hb.SensorCount)
	}
	if hb.ActuatorCount != nil {
		actuators = int(*hb.ActuatorCount)
	}
	return sensors, actuators
}

// storedCount is a count kept in the metadata: int64 while the hub runs,
// float64 after a restart, 0 when never reported.
func storedCount(v any) int {
	switch n := v.(type) {
	case int64:
		return int(n)
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}
