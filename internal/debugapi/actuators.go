package debugapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/actuatorapi"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/sim"
)

// actuators is what mock devices need from the hub's actuators: the
// configured ones with their confirmed state, and the command path every
// device's commands take (docs/api.md §8.3).
type actuators interface {
	ForDevice(espID string) []actuator.View
	State(espID string, gpio int) (actuator.StateView, error)
	Command(ctx context.Context, req actuator.Request) (actuator.Result, error)
	Upsert(ctx context.Context, c actuator.Config) (actuator.Config, error)
}

var _ actuators = (*actuator.Service)(nil)

// mockActuators lists the mock's real actuators: the simulated node's
// while it runs, as the device itself has them, and the hub's configured
// ones it has not got (yet, or the simulation is stopped) with their last
// confirmed state. The hub's config names the type and name where it has one.
func (d *Debug) mockActuators(espID string) []mockActuatorState {
	var configured []actuator.View
	if d.actuators != nil {
		configured = d.actuators.ForDevice(espID)
	}
	byGPIO := map[int]actuator.View{}
	for _, v := range configured {
		byGPIO[v.GPIO] = v
	}

	out := []mockActuatorState{}
	onNode := map[int]bool{}
	if n := d.mocks.node(espID); n != nil {
		for _, a := range n.Actuators() {
			onNode[a.GPIO] = true
			out = append(out, d.nodeActuator(espID, a, byGPIO))
		}
	}
	for _, v := range configured {
		if !onNode[v.GPIO] {
			out = append(out, d.configuredActuator(espID, v))
		}
	}
	return out
}

func (d *Debug) nodeActuator(espID string, a sim.ActuatorState, configured map[int]actuator.View) mockActuatorState {
	st := mockActuatorState{
		GPIO:             a.GPIO,
		ActuatorType:     a.Type,
		Name:             api.NullString(a.Name),
		State:            a.On,
		PWMValue:         float64(a.PWM) / 255,
		EmergencyStopped: a.Latched,
		LastCommand:      d.lastCommand(espID, a.GPIO),
	}
	if v, ok := configured[a.GPIO]; ok {
		st.ActuatorType, st.Name = v.Type, api.NullString(v.Name)
		st.EmergencyStopped = st.EmergencyStopped || v.EmergencyStopped
	}
	return st
}

func (d *Debug) configuredActuator(espID string, v actuator.View) mockActuatorState {
	return mockActuatorState{
		GPIO:             v.GPIO,
		ActuatorType:     v.Type,
		Name:             api.NullString(v.Name),
		State:            v.On,
		PWMValue:         v.PWMValue,
		EmergencyStopped: v.EmergencyStopped,
		LastCommand:      d.lastCommand(espID, v.GPIO),
	}
}

// lastCommand is the last command the hub knows of for a configured actuator.
func (d *Debug) lastCommand(espID string, gpio int) *string {
	if d.actuators == nil {
		return nil
	}
	st, err := d.actuators.State(espID, gpio)
	if err != nil {
		return nil
	}
	return api.NullString(st.LastCommand)
}

// mockCommandRequest is a command as docs/api.md §8.2 has it; the domain
// checks the value's scale and the duration's range (docs/domain.md §4.4 row 1).
type mockCommandRequest struct {
	Command  string  `json:"command" api:"required,min=1,max=20"`
	Value    float64 `json:"value" api:"default=1"`
	Duration *int64  `json:"duration"`
}

// mockCommandResponse is the reply of docs/api.md §16.1. State and
// pwm_value are the confirmed state when the command was accepted: a command
// never changes it, the device's answer does (docs/domain.md §4.6).
type mockCommandResponse struct {
	Success  bool    `json:"success"`
	EspID    string  `json:"esp_id"`
	GPIO     int     `json:"gpio"`
	Command  string  `json:"command"`
	State    bool    `json:"state"`
	PWMValue float64 `json:"pwm_value"`
	Message  string  `json:"message"`
}

// commandActuator runs a mock actuator's command through the hub's command
// path, every check and latch included, as issuer simulator:{esp_id}
// (docs/domain.md §4.9); the admin who asked is kept in the metadata.
func (d *Debug) commandActuator(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req mockCommandRequest
	if !api.Decode(w, r, &req) {
		return
	}
	dev, _, ok := d.mockFromPath(w, r)
	if !ok {
		return
	}
	g, ok := api.PathGPIO(w, r)
	if !ok {
		return
	}

	if d.actuators == nil {
		d.srv.Internal(w, r, errors.New("no actuator service"))
		return
	}
	v := req.Value
	res, err := d.actuators.Command(r.Context(), actuator.Request{
		EspID:    dev.DeviceID,
		GPIO:     g,
		Command:  req.Command,
		Value:    &v,
		Duration: req.Duration,
		IssuedBy: "simulator:" + dev.DeviceID,
		Metadata: map[string]any{"requested_by": "user:" + p.User.Username},
	})
	var rej *actuator.Rejection
	switch {
	case errors.As(err, &rej):
		actuatorapi.WriteRejection(w, r, d.srv, dev.DeviceID, g, rej)
		return
	case err != nil:
		d.srv.Internal(w, r, err)
		return
	}

	out := mockCommandResponse{
		Success: res.Status != actuator.StatusFailed,
		EspID:   dev.DeviceID,
		GPIO:    g,
		Command: res.Command,
		Message: res.Message,
	}
	for _, a := range d.actuators.ForDevice(dev.DeviceID) {
		if a.GPIO == g {
			out.State, out.PWMValue = a.On, a.PWMValue
		}
	}
	api.WriteJSON(w, http.StatusOK, out)
}
