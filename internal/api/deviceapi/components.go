package deviceapi

import (
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
)

// sensorView is a sensor of the device object with its latest reading
// (docs/api.md §6.2); the reading's fields are null until one arrives.
type sensorView struct {
	GPIO           int      `json:"gpio"`
	SensorType     string   `json:"sensor_type"`
	Name           *string  `json:"name"`
	Unit           *string  `json:"unit"`
	Quality        *string  `json:"quality"`
	RawValue       *float64 `json:"raw_value"`
	ProcessedValue *float64 `json:"processed_value"`
	LastRead       *string  `json:"last_read"`
}

// actuatorView is an actuator of the device object (docs/api.md §6.2):
// state is true only for a confirmed, current on.
type actuatorView struct {
	GPIO             int     `json:"gpio"`
	ActuatorType     string  `json:"actuator_type"`
	Name             *string `json:"name"`
	State            bool    `json:"state"`
	ConfirmedState   string  `json:"confirmed_state"`
	Stale            bool    `json:"stale"`
	PWMValue         float64 `json:"pwm_value"`
	EmergencyStopped bool    `json:"emergency_stopped"`
}

func (h *handlers) sensorViews(espID string) []sensorView {
	out := []sensorView{}
	if h.sensors == nil {
		return out
	}
	for _, c := range h.sensors.ByDevice(espID) {
		v := sensorView{
			GPIO:       c.GPIO,
			SensorType: c.SensorType,
			Name:       api.NullString(c.Name),
		}
		if r, ok := h.sensors.LatestOf(c); ok {
			raw := r.Raw
			v.RawValue, v.ProcessedValue = &raw, r.Processed
			v.Unit, v.Quality = api.NullString(r.Unit), api.NullString(r.Quality)
			v.LastRead = api.Timestamp(time.UnixMilli(r.TS))
		}
		out = append(out, v)
	}
	return out
}

func (h *handlers) actuatorViews(espID string) []actuatorView {
	out := []actuatorView{}
	if h.actuators == nil {
		return out
	}
	for _, a := range h.actuators.ForDevice(espID) {
		out = append(out, actuatorView{
			GPIO:             a.GPIO,
			ActuatorType:     a.Type,
			Name:             api.NullString(a.Name),
			State:            a.On,
			ConfirmedState:   a.ConfirmedState,
			Stale:            a.Stale,
			PWMValue:         a.PWMValue,
			EmergencyStopped: a.EmergencyStopped,
		})
	}
	return out
}

// lastInt is a figure of the last heartbeat kept in the metadata (int64
// while the hub runs, float64 after a restart), null when none arrived.
func lastInt(md map[string]any, key string) *int64 {
	v, ok := md[key]
	if !ok || v == nil {
		return nil
	}
	n := api.MetadataInt(v)
	return &n
}
