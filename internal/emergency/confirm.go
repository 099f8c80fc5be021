package emergency

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/notify"
)

// ConfirmWait is how long after a stop message its devices have to confirm
// it (docs/protocol.md E2), in the hub's seconds.
const ConfirmWait = 10 * time.Second

// confirmation is one device's outstanding confirmation of a stop message:
// the configured gpios not yet reported stopped.
type confirmation struct {
	incident string
	missing  map[int]bool
}

// expectConfirmation starts E2 for the devices that got a stop message: a
// device confirms with one live emergency_stop alert, or a status with
// emergency "active", per configured actuator; one without actuators
// counts as confirmed. Those still missing after ConfirmWait are reported.
// Only stops the device acts on are tracked: the broadcast, and a device
// stop on newer firmware (the baseline never executes one, Q5).
func (s *Service) expectConfirmation(incident string, espIDs []string) {
	pending := map[string]*confirmation{}
	for _, id := range espIDs {
		missing := map[int]bool{}
		for _, o := range s.acts.Outputs(id) {
			missing[o.GPIO] = true
		}
		if len(missing) > 0 {
			pending[id] = &confirmation{incident: incident, missing: missing}
		}
	}

	var tracked []string
	s.mu.Lock()
	for id, c := range pending {
		s.confirms[id] = c
		tracked = append(tracked, id)
	}
	s.mu.Unlock()
	if len(tracked) > 0 {
		s.after(s.hub(ConfirmWait), func() { s.reportUnconfirmed(incident, tracked) })
	}
}

// Confirm records that espID reported gpio stopped: a live emergency_stop
// alert, or a status with emergency "active" (docs/protocol.md E2). The
// actuator part calls it from its alert and status handling.
func (s *Service) Confirm(espID string, gpio int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.confirms[espID]
	if c == nil {
		return
	}
	delete(c.missing, gpio)
	if len(c.missing) == 0 {
		delete(s.confirms, espID)
	}
}

// reportUnconfirmed reports the devices of incident that have not
// confirmed its stop message.
func (s *Service) reportUnconfirmed(incident string, espIDs []string) {
	var late []string
	s.mu.Lock()
	for _, id := range espIDs {
		if c := s.confirms[id]; c != nil && c.incident == incident {
			late = append(late, id)
			delete(s.confirms, id)
		}
	}
	s.mu.Unlock()
	if len(late) == 0 {
		return
	}

	sort.Strings(late)
	s.log.Warn("devices did not confirm the emergency stop", "incident_correlation_id", incident, "esp_ids", late)
	err := s.alerts.Raise(context.Background(), notify.Spec{
		Key:      "emergency_unconfirmed:" + incident,
		Severity: "warning",
		Category: "system",
		Source:   "emergency",
		Title:    "Emergency stop not confirmed",
		Body: "No emergency_stop alert or active emergency status within 10 s of the stop message from: " +
			strings.Join(late, ", ") + ". Their outputs may still be on.",
		Metadata: map[string]any{"incident_correlation_id": incident, "esp_ids": late},
	})
	if err != nil {
		s.log.Warn("raising the confirmation alert failed", "error", err)
	}
}
