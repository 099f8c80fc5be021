package rule

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/kaiserhub/kaiser/internal/sensor/processor"
)

// Trigger kinds (docs/domain.md §6.2).
const (
	TriggerSensor     = "sensor"
	TriggerTimer      = "timer"
	TriggerReconnect  = "reconnect"
	TriggerRuleUpdate = "rule_update"
	TriggerTest       = "test"
)

// Trigger is what started an evaluation. For a sensor trigger the reading
// fields are set; SensorType is the normalised type.
type Trigger struct {
	Kind        string     `json:"type"`
	Reason      string     `json:"reason,omitempty"`
	EspID       string     `json:"esp_id,omitempty"`
	GPIO        *int       `json:"gpio,omitempty"`
	SensorType  string     `json:"sensor_type,omitempty"`
	Value       *float64   `json:"value,omitempty"`
	ReadingTime *time.Time `json:"reading_time,omitempty"`
}

// SensorTrigger is the trigger of one stored reading.
func SensorTrigger(espID string, gpio int, sensorType string, value float64, at time.Time) Trigger {
	key, _ := processor.NormaliseType(sensorType)
	return Trigger{
		Kind:        TriggerSensor,
		EspID:       espID,
		GPIO:        &gpio,
		SensorType:  key,
		Value:       &value,
		ReadingTime: &at,
	}
}

// reads reports whether the trigger is a reading of the sensor ref names
// (docs/domain.md §6.6: same device, same pin, type absent or equal).
func (t Trigger) reads(ref SensorRef) bool {
	return t.Kind == TriggerSensor && t.GPIO != nil && t.Value != nil &&
		t.EspID == ref.EspID && *t.GPIO == ref.GPIO &&
		(ref.SensorType == "" || ref.SensorType == t.SensorType)
}

// Reading is a sensor's latest usable stored reading.
type Reading struct {
	Value float64
	At    time.Time
	// MaxAge is the sensor's default freshness: 300 s, or the measurement
	// freshness of an on-demand sensor (docs/domain.md §6.3.1).
	MaxAge time.Duration
}

// Data is what leaves read beyond the trigger.
type Data interface {
	// Latest is the latest usable stored reading of the sensor.
	Latest(ref SensorRef) (Reading, bool)
	// Online reports a device in state online.
	Online(espID string) bool
}

// HysteresisState is one hysteresis leaf's state (docs/domain.md §6.3.3);
// the zero value is the initial, inactive state.
type HysteresisState struct {
	Active           bool       `json:"is_active"`
	LastValue        *float64   `json:"last_value"`
	LastActivation   *time.Time `json:"last_activation"`
	LastDeactivation *time.Time `json:"last_deactivation"`
}

// States holds the evaluated rule's hysteresis states by leaf path.
type States interface {
	Hysteresis(path string) HysteresisState
}

// Context is one evaluation's input (docs/domain.md §6.2). Everything is
// passed in, so a replay clock and in-memory states evaluate exactly like
// the live engine.
type Context struct {
	Now     time.Time
	Trigger Trigger
	// Zone is the hub's configured zone for time leaves without their own
	// (nil: UTC).
	Zone   *time.Location
	Data   Data
	States States
	// MockTime replaces the local time of day of every time leaf, in
	// minutes (the dry-run's mock_time, docs/domain.md §6.12).
	MockTime *int
	// Mock supplies sensor values ahead of Data; a mocked value is used
	// like the triggering reading (the dry-run's mock_sensor_values).
	Mock func(SensorRef) (float64, bool)
}

// Details of a false or unusual leaf result.
const (
	DetailNoData    = "no_data"
	DetailStale     = "stale"
	DetailOffline   = "offline"
	DetailOutside   = "outside_window"
	DetailWrongDay  = "wrong_day"
	DetailBadLeaf   = "bad_parameters"
	DetailKept      = "state_kept"
	DetailActivated = "activated"
	DetailReleased  = "deactivated"
)

// LeafResult is one leaf's outcome (docs/domain.md §6.11 condition_results).
type LeafResult struct {
	Path   string   `json:"path"`
	Type   string   `json:"type"`
	Result bool     `json:"result"`
	Actual *float64 `json:"actual_value"`
	Detail string   `json:"details,omitempty"`
}

// Edge is a hysteresis transition.
type Edge int

// Hysteresis edges.
const (
	EdgeNone Edge = iota
	EdgeActivated
	EdgeDeactivated
)

// Change is a hysteresis leaf whose state moved; the caller persists After.
type Change struct {
	Path   string
	Sensor SensorRef
	Before HysteresisState
	After  HysteresisState
}

// Edge is the transition from Before to After.
func (c Change) Edge() Edge {
	switch {
	case !c.Before.Active && c.After.Active:
		return EdgeActivated
	case c.Before.Active && !c.After.Active:
		return EdgeDeactivated
	}
	return EdgeNone
}

// Result is an evaluation's outcome.
type Result struct {
	Matched bool
	Leaves  []LeafResult
	Changes []Change
}

// Deactivated reports a hysteresis deactivation edge in this evaluation.
func (r Result) Deactivated() bool {
	return slices.ContainsFunc(r.Changes, func(c Change) bool { return c.Edge() == EdgeDeactivated })
}

// Evaluate computes the rule's conditions (docs/domain.md §6.3). Every
// leaf is evaluated, without short-circuit, so hysteresis states always
// see their readings.
func Evaluate(r *Rule, c Context) Result {
	e := evaluation{ctx: c}
	var ok bool
	if len(r.Conditions) == 1 {
		ok = e.node("0", r.Conditions[0])
	} else {
		ok = e.combine("", r.LogicOperator, r.Conditions)
	}
	return Result{Matched: ok, Leaves: e.leaves, Changes: e.changes}
}

type evaluation struct {
	ctx     Context
	leaves  []LeafResult
	changes []Change
}

func (e *evaluation) combine(prefix, logic string, cs []Condition) bool {
	all, some := true, false
	for i, c := range cs {
		v := e.node(prefix+strconv.Itoa(i), c)
		all = all && v
		some = some || v
	}
	if logic == "OR" {
		return some
	}
	return all && len(cs) > 0
}

func (e *evaluation) node(path string, c Condition) bool {
	var res LeafResult
	switch {
	case c.Compound != nil:
		return e.combine(path+".", c.Compound.Logic, c.Compound.Conditions)
	case c.Threshold != nil:
		res = e.threshold(c.Threshold)
	case c.Window != nil:
		res = e.window(c.Window)
	case c.Hysteresis != nil:
		res = e.hysteresis(path, c.Hysteresis)
	default:
		res = LeafResult{Detail: DetailBadLeaf}
	}
	res.Path, res.Type = path, c.Kind()
	e.leaves = append(e.leaves, res)
	return res.Result
}

// fresh returns a value given with the evaluation: the triggering
// reading's, or a mock.
func (e *evaluation) fresh(ref SensorRef) (float64, bool) {
	if e.ctx.Trigger.reads(ref) {
		return *e.ctx.Trigger.Value, true
	}
	if e.ctx.Mock != nil {
		return e.ctx.Mock(ref)
	}
	return 0, false
}

// stored returns the latest stored reading within maxAge (nil: the
// sensor's default), or why there is none.
func (e *evaluation) stored(ref SensorRef, maxAge *int) (float64, string) {
	if e.ctx.Data == nil {
		return 0, DetailNoData
	}
	rd, ok := e.ctx.Data.Latest(ref)
	if !ok {
		return 0, DetailNoData
	}
	if !e.ctx.Data.Online(ref.EspID) {
		return rd.Value, DetailOffline
	}
	limit := rd.MaxAge
	if maxAge != nil {
		limit = time.Duration(*maxAge) * time.Second
	}
	if limit <= 0 {
		limit = DefaultMaxAge
	}
	if e.ctx.Now.Sub(rd.At) > limit {
		return rd.Value, DetailStale
	}
	return rd.Value, ""
}

// DefaultMaxAge is a sensor leaf's freshness when neither the leaf nor the
// sensor says otherwise (docs/domain.md §6.3.1).
const DefaultMaxAge = 300 * time.Second

func (e *evaluation) threshold(t *Threshold) LeafResult {
	v, ok := e.fresh(t.SensorRef)
	if !ok {
		var why string
		v, why = e.stored(t.SensorRef, t.MaxAgeSeconds)
		if why == DetailNoData {
			return LeafResult{Detail: why}
		}
		if why != "" {
			return LeafResult{Actual: &v, Detail: why}
		}
	}
	res, ok := compare(t, v)
	if !ok {
		return LeafResult{Actual: &v, Detail: DetailBadLeaf}
	}
	return LeafResult{Result: res, Actual: &v}
}

func compare(t *Threshold, v float64) (result, ok bool) {
	if t.Operator == "between" {
		if t.Min == nil || t.Max == nil {
			return false, false
		}
		lo, hi := *t.Min, *t.Max
		if lo > hi {
			lo, hi = hi, lo
		}
		return lo <= v && v <= hi, true
	}
	if t.Value == nil {
		return false, false
	}
	x := *t.Value
	switch t.Operator {
	case ">":
		return v > x, true
	case ">=":
		return v >= x, true
	case "<":
		return v < x, true
	case "<=":
		return v <= x, true
	case "==":
		return v == x, true
	case "!=":
		return v != x, true
	}
	return false, false
}

// window checks a time window in its zone (docs/domain.md §6.3.2).
func (e *evaluation) window(w *Window) LeafResult {
	loc := w.loc
	if loc == nil && w.Timezone != "" {
		return LeafResult{Detail: DetailBadLeaf}
	}
	if loc == nil {
		loc = e.ctx.Zone
	}
	if loc == nil {
		loc = time.UTC
	}
	local := e.ctx.Now.In(loc)
	minute := local.Hour()*60 + local.Minute()
	if e.ctx.MockTime != nil {
		minute = *e.ctx.MockTime
	}
	actual := float64(minute)
	day := (int(local.Weekday()) + 6) % 7 // 0 = Monday
	detail := fmt.Sprintf("%s %s", clock(minute), local.Weekday().String()[:3])

	if w.Days != nil && !slices.Contains(w.Days, day) {
		return LeafResult{Actual: &actual, Detail: DetailWrongDay + " " + detail}
	}
	var in bool
	if w.Start <= w.End {
		in = w.Start <= minute && minute < w.End
	} else {
		in = minute >= w.Start || minute < w.End
	}
	if !in {
		return LeafResult{Actual: &actual, Detail: DetailOutside + " " + detail}
	}
	return LeafResult{Result: true, Actual: &actual, Detail: detail}
}

// hysteresis computes the leaf's next state (docs/domain.md §6.3.3): its
// own sensor's reading moves it; any other trigger reads the stored state,
// or false while the source device is not online.
func (e *evaluation) hysteresis(path string, h *Hysteresis) LeafResult {
	var before HysteresisState
	if e.ctx.States != nil {
		before = e.ctx.States.Hysteresis(path)
	}
	v, ok := e.fresh(h.SensorRef)
	if !ok {
		if e.ctx.Data == nil || !e.ctx.Data.Online(h.EspID) {
			return LeafResult{Actual: before.LastValue, Detail: DetailOffline}
		}
		return LeafResult{Result: before.Active, Actual: before.LastValue, Detail: DetailKept}
	}

	after, edge := step(h, before, v, e.ctx.Now)
	res := LeafResult{Result: after.Active, Actual: &v, Detail: DetailKept}
	switch edge {
	case EdgeActivated:
		res.Detail = DetailActivated
	case EdgeDeactivated:
		res.Detail = DetailReleased
	}
	if edge != EdgeNone {
		e.changes = append(e.changes, Change{
			Path:   path,
			Sensor: h.SensorRef,
			Before: before,
			After:  after,
		})
	}
	return res
}

// step is the hysteresis transition for value v.
func step(h *Hysteresis, s HysteresisState, v float64, now time.Time) (HysteresisState, Edge) {
	var activate, release bool
	switch {
	case h.ActivateAbove != nil && h.DeactivateBelow != nil:
		activate, release = v > *h.ActivateAbove, v < *h.DeactivateBelow
	case h.ActivateBelow != nil && h.DeactivateAbove != nil:
		activate, release = v < *h.ActivateBelow, v > *h.DeactivateAbove
	default:
		return s, EdgeNone
	}
	switch {
	case !s.Active && activate:
		s.Active, s.LastValue, s.LastActivation = true, &v, &now
		return s, EdgeActivated
	case s.Active && release:
		s.Active, s.LastValue, s.LastDeactivation = false, &v, &now
		return s, EdgeDeactivated
	}
	return s, EdgeNone
}
