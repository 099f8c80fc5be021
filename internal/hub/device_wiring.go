package hub

import (
	"context"
	"errors"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/zone"
)

var _ device.Counts = deviceComponents{}

// deviceComponents are a device's configured sensors and actuators, for its
// device object (docs/api.md §6.2) and its esp_health counts. The device
// routes are registered with the HTTP core before the actuators are loaded,
// so it looks the services up when asked; nothing asks before the hub serves.
type deviceComponents struct{ h *Hub }

// Assign performs the zone assignment an approval asks for; zones load
// after the device routes are registered, hence the indirection.
func (c deviceComponents) Assign(ctx context.Context, espID string, a zone.Assignment) (zone.AssignResult, error) {
	if c.h.Zones == nil {
		return zone.AssignResult{}, errors.New("zones are not loaded")
	}
	return c.h.Zones.Assign(ctx, espID, a)
}

// ForDevice lists the device's actuators for its device object.
func (c deviceComponents) ForDevice(espID string) []actuator.View {
	if c.h.Actuators == nil {
		return nil
	}
	return c.h.Actuators.ForDevice(espID)
}

// ComponentCounts counts the device's configured sensors and actuators.
func (c deviceComponents) ComponentCounts(espID string) (sensors, actuators int) {
	if c.h.Sensors != nil {
		sensors = len(c.h.Sensors.ByDevice(espID))
	}
	if c.h.Actuators != nil {
		actuators = len(c.h.Actuators.ByDevice(espID))
	}
	return sensors, actuators
}
