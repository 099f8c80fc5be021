package hub

import (
	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/emergency"
)

var (
	_ emergency.Actuators = (*actuator.Service)(nil)
	_ actuator.Latches    = (*emergency.Service)(nil)
)

// emergencyActuators is the actuator part the emergency stop works through.
func (h *Hub) emergencyActuators() emergency.Actuators { return h.Actuators }
