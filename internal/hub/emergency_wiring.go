package hub

import (
	"context"
	"errors"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/emergency"
)

// emergencyActuators is the actuator part the emergency stop works through.
//
// Placeholder until the actuator part's Service is wired here: then this
// returns it, and loadEmergency calls its SetLatches(h.Emergency) before any
// command is accepted. Meanwhile no actuator is configured: a stop latches,
// publishes its stop messages and answers clears, and sends no OFFs.
func (h *Hub) emergencyActuators() emergency.Actuators { return noActuators{} }

type noActuators struct{}

var _ emergency.Actuators = noActuators{}

func (noActuators) Outputs(string) []actuator.Output { return nil }

func (noActuators) Off(context.Context, actuator.OffRequest) (actuator.Result, error) {
	return actuator.Result{Status: "failed"}, errors.New("no actuator service")
}

func (noActuators) ExpireQueued(context.Context, string, string) {}

// Fence runs fn at once: without actuators no command can be in flight.
func (noActuators) Fence(_ string, fn func()) { fn() }

func (noActuators) DeviceLatched(string) []int { return nil }
