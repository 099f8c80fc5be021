package live

import (
	"errors"
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

// filters is one filter of a connection's set (docs/api.md §17.2); an empty
// list does not restrict its dimension.
type filters struct {
	Types       []string `json:"types"`
	EspIDs      []string `json:"esp_ids"`
	SensorTypes []string `json:"sensor_types"`
}

// maxFilters is the size of a connection's filter set (docs/api.md §17.2).
const maxFilters = 16

var (
	errFilterLimits = errors.New("a filter lists at most 64 types, 500 esp_ids and 64 sensor_types")
	errSetFull      = errors.New("a connection has at most 16 filters")
)

func (f filters) withinLimits() bool {
	return len(f.Types) <= 64 && len(f.EspIDs) <= 500 && len(f.SensorTypes) <= 64
}

// normalised has every list non-nil, so that the ack writes [] and not null.
func (f filters) normalised() filters {
	orEmpty := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	return filters{Types: orEmpty(f.Types), EspIDs: orEmpty(f.EspIDs), SensorTypes: orEmpty(f.SensorTypes)}
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

// equal compares two filters dimension by dimension, each as a set of values.
func (f filters) equal(g filters) bool {
	return sameValues(f.Types, g.Types) && sameValues(f.EspIDs, g.EspIDs) && sameValues(f.SensorTypes, g.SensorTypes)
}

func sameValues(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}

// without removes drop's values from every dimension of f; ok is false when
// a dimension that restricted f is left empty, which would widen f to no
// restriction, so the caller drops f instead.
func (f filters) without(drop filters) (out filters, ok bool) {
	out = filters{
		Types:       remove(f.Types, drop.Types),
		EspIDs:      remove(f.EspIDs, drop.EspIDs),
		SensorTypes: remove(f.SensorTypes, drop.SensorTypes),
	}
	emptied := len(f.Types) > 0 && len(out.Types) == 0 ||
		len(f.EspIDs) > 0 && len(out.EspIDs) == 0 ||
		len(f.SensorTypes) > 0 && len(out.SensorTypes) == 0
	return out, !emptied
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

// filterSet is a connection's filters (docs/api.md §17.2): a message is
// delivered when it passes any of them, and an empty set passes everything.
type filterSet []filters

func (s filterSet) match(typ event.Type, data event.Payload) bool {
	if len(s) == 0 {
		return true
	}
	for _, f := range s {
		if f.match(typ, data) {
			return true
		}
	}
	return false
}

// add is s with f added; a filter equal to one in s is not added twice.
func (s filterSet) add(f filters) (filterSet, error) {
	if !f.withinLimits() {
		return s, errFilterLimits
	}
	if slices.ContainsFunc(s, f.equal) {
		return s, nil
	}
	if len(s) >= maxFilters {
		return s, errSetFull
	}
	return append(slices.Clone(s), f.normalised()), nil
}

// remove is s without the filter equal to f; when none is equal, f's values
// are removed from every filter, and a filter left without a restriction it
// had is dropped.
func (s filterSet) remove(f filters) filterSet {
	if i := slices.IndexFunc(s, f.equal); i >= 0 {
		return slices.Delete(slices.Clone(s), i, i+1)
	}
	var out filterSet
	for _, g := range s {
		if rest, ok := g.without(f); ok {
			out = append(out, rest.normalised())
		}
	}
	return out
}

// view is the set as the ack writes it: always an array.
func (s filterSet) view() []filters {
	if s == nil {
		return []filters{}
	}
	return s
}
