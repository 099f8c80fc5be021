package live

import (
	"slices"
	"strings"

	"github.com/kaiserhub/kaiser/internal/event"
)

// deviceScoped and sensorScoped are payloads the esp_ids and sensor_types
// filters look at; payloads without them pass those filters (docs/api.md §17.3).
type deviceScoped interface {
	Device() string
}

type sensorScoped interface {
	Sensor() string
}

// filters is a connection's subscription (docs/api.md §17.3); an empty list does
// not restrict its dimension.
type filters struct {
	Types       []string `json:"types"`
	EspIDs      []string `json:"esp_ids"`
	SensorTypes []string `json:"sensor_types"`
}

func (f filters) withinLimits() bool {
	return len(f.Types) <= 64 && len(f.EspIDs) <= 500 && len(f.SensorTypes) <= 64
}

// match reports whether an event of typ with data passes f: device ids are
// compared exactly, sensor types case-insensitively.
func (f filters) match(typ event.Type, data event.Payload) bool {
	if len(f.Types) > 0 && !slices.Contains(f.Types, string(typ)) {
		return false
	}
	if d, ok := data.(deviceScoped); ok && len(f.EspIDs) > 0 && !slices.Contains(f.EspIDs, d.Device()) {
		return false
	}
	if s, ok := data.(sensorScoped); ok && len(f.SensorTypes) > 0 {
		return slices.ContainsFunc(f.SensorTypes, func(x string) bool { return strings.EqualFold(x, s.Sensor()) })
	}
	return true
}

// without removes drop's values from every dimension of f.
func (f filters) without(drop filters) filters {
	return filters{
		Types:       remove(f.Types, drop.Types),
		EspIDs:      remove(f.EspIDs, drop.EspIDs),
		SensorTypes: remove(f.SensorTypes, drop.SensorTypes),
	}
}

func remove(list, drop []string) []string {
	var out []string
	for _, x := range list {
		if !slices.Contains(drop, x) {
			out = append(out, x)
		}
	}
	return out
}
