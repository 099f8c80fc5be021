package rule

import (
	"fmt"
	"testing"
	"time"
)

// world is an in-memory hub for the evaluator: readings, online devices
// and hysteresis states.
type world struct {
	readings map[SensorRef]Reading
	offline  map[string]bool
	states   map[string]HysteresisState
}

func newWorld() *world {
	return &world{
		readings: map[SensorRef]Reading{},
		offline:  map[string]bool{},
		states:   map[string]HysteresisState{},
	}
}

func (w *world) Latest(ref SensorRef) (Reading, bool) {
	r, ok := w.readings[ref]
	return r, ok
}
func (w *world) Online(espID string) bool               { return !w.offline[espID] }
func (w *world) Hysteresis(path string) HysteresisState { return w.states[path] }

// apply persists an evaluation's changes, as the engine does.
func (w *world) apply(res Result) {
	for _, c := range res.Changes {
		w.states[c.Path] = c.After
	}
}

func (w *world) ctx(now time.Time, trig Trigger) Context {
	return Context{Now: now, Trigger: trig, Data: w, States: w}
}

var t0 = time.Date(2026, 1, 7, 6, 15, 0, 0, time.UTC) // Wednesday, 07:15 in Berlin

func leafResult(t *testing.T, res Result, path string) LeafResult {
	t.Helper()
	for _, l := range res.Leaves {
		if l.Path == path {
			return l
		}
	}
	t.Fatalf("no leaf %s in %+v", path, res.Leaves)
	return LeafResult{}
}

func TestThresholdOperators(t *testing.T) {
	cases := []struct {
		op    string
		value float64
		v     float64
		want  bool
	}{
		{">", 30, 30.4, true}, {">", 30, 30, false},
		{">=", 30, 30, true}, {">=", 30, 29.9, false},
		{"<", 35, 31.2, true}, {"<", 35, 35, false},
		{"<=", 35, 35, true}, {"<=", 35, 35.1, false},
		{"==", 1, 1, true}, {"==", 1, 1.1, false},
		{"!=", 1, 1.1, true}, {"!=", 1, 1, false},
	}
	w := newWorld()
	for _, tc := range cases {
		r := mustDecode(t, fmt.Sprintf(`{"name":"abc","conditions":[{"type":"sensor","esp_id":"E","gpio":1,"operator":%q,"value":%g}],
			"actions":[{"type":"delay","seconds":1}]}`, tc.op, tc.value))
		res := Evaluate(&r, w.ctx(t0, SensorTrigger("E", 1, "ds18b20", tc.v, t0)))
		if res.Matched != tc.want {
			t.Errorf("%g %s %g = %v, want %v", tc.v, tc.op, tc.value, res.Matched, tc.want)
		}
		if l := leafResult(t, res, "0"); *l.Actual != tc.v || l.Type != TypeThreshold {
			t.Errorf("leaf = %+v", l)
		}
	}
}

func TestBetweenInclusiveAndSwapped(t *testing.T) {
	w := newWorld()
	r := mustDecode(t, `{"name":"abc","conditions":[{"type":"sensor","esp_id":"E","gpio":1,"operator":"between","min":1800,"max":800}],
		"actions":[{"type":"delay","seconds":1}]}`)
	for v, want := range map[float64]bool{800: true, 1800: true, 1250: true, 799.9: false, 1800.1: false} {
		if got := Evaluate(&r, w.ctx(t0, SensorTrigger("E", 1, "ec", v, t0))).Matched; got != want {
			t.Errorf("between 800 and 1800 (given swapped) of %g = %v", v, got)
		}
	}
}

func TestSensorLeafFreshness(t *testing.T) {
	ec := SensorRef{EspID: "ESP_A1B2C3", GPIO: 35, SensorType: "ec"}
	doc := func(maxAge string) Rule {
		return mustDecode(t, `{"name":"abc","conditions":[{"type":"sensor","esp_id":"ESP_A1B2C3","gpio":35,"sensor_type":"ec",
			"operator":">","value":1`+maxAge+`}],"actions":[{"type":"delay","seconds":1}]}`)
	}
	timer := Trigger{Kind: TriggerTimer}
	cases := []struct {
		name    string
		maxAge  string
		age     time.Duration
		def     time.Duration
		offline bool
		want    bool
		detail  string
	}{
		{"fresh by default 300 s", "", 299 * time.Second, 0, false, true, ""},
		{"stale by default 300 s", "", 301 * time.Second, 0, false, false, DetailStale},
		{"on-demand sensor's own freshness", "", 23 * time.Hour, 24 * time.Hour, false, true, ""},
		{"leaf max age wins", `,"max_age_seconds":600`, 599 * time.Second, 0, false, true, ""},
		{"leaf max age passed", `,"max_age_seconds":600`, 601 * time.Second, 24 * time.Hour, false, false, DetailStale},
		{"device offline", "", time.Second, 0, true, false, DetailOffline},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.readings[ec] = Reading{Value: 1250, At: t0.Add(-tc.age), MaxAge: tc.def}
			w.offline["ESP_A1B2C3"] = tc.offline
			r := doc(tc.maxAge)
			res := Evaluate(&r, w.ctx(t0, timer))
			l := leafResult(t, res, "0")
			if res.Matched != tc.want || l.Detail != tc.detail || *l.Actual != 1250 {
				t.Errorf("matched %v, leaf %+v; want %v %q", res.Matched, l, tc.want, tc.detail)
			}
		})
	}
	t.Run("no data", func(t *testing.T) {
		r := doc("")
		res := Evaluate(&r, newWorld().ctx(t0, timer))
		if l := leafResult(t, res, "0"); res.Matched || l.Detail != DetailNoData || l.Actual != nil {
			t.Errorf("leaf %+v", l)
		}
	})
}

func TestTriggerMatchesLeafByTypeFilter(t *testing.T) {
	w := newWorld()
	w.readings[SensorRef{EspID: "E", GPIO: 21, SensorType: "sht31_temp"}] = Reading{Value: 10, At: t0}
	r := mustDecode(t, `{"name":"abc","conditions":[{"type":"sensor","esp_id":"E","gpio":"21","sensor_type":"SHT31_TEMP","operator":">","value":30}],
		"actions":[{"type":"delay","seconds":1}]}`)
	// The humidity reading on the same pin is not this leaf's: it reads the stored temperature.
	if res := Evaluate(&r, w.ctx(t0, SensorTrigger("E", 21, "sht31_humidity", 80, t0))); res.Matched {
		t.Errorf("another type on the pin matched: %+v", res.Leaves)
	}
	if res := Evaluate(&r, w.ctx(t0, SensorTrigger("E", 21, "temperature_sht31", 31, t0))); !res.Matched {
		t.Errorf("the triggering temperature (an alias) was not used: %+v", res.Leaves)
	}
}

func TestTwoSensorsAND(t *testing.T) {
	// docs/domain.md §6.3.1: a leaf on another sensor reads its stored value,
	// so an AND of two sensors can be true.
	w := newWorld()
	w.readings[SensorRef{EspID: "E", GPIO: 2}] = Reading{Value: 5, At: t0.Add(-time.Minute)}
	r := mustDecode(t, `{"name":"abc","conditions":[
		{"type":"sensor","esp_id":"E","gpio":1,"operator":">","value":1},
		{"type":"sensor","esp_id":"E","gpio":2,"operator":">","value":4}],
		"actions":[{"type":"delay","seconds":1}]}`)
	if res := Evaluate(&r, w.ctx(t0, SensorTrigger("E", 1, "flow", 2, t0))); !res.Matched {
		t.Errorf("AND of two sensors: %+v", res.Leaves)
	}
}

// Issue 10 acceptance: an AND of two sensors on two devices fires only
// when both are true and the other one's stored reading is fresh (younger
// than max_age_seconds) and its device online.
func TestTwoDevicesANDNeedsBothFreshAndTrue(t *testing.T) {
	r := mustDecode(t, `{"name":"abc","conditions":[
		{"type":"sensor","esp_id":"ESP_A1B2C3","gpio":34,"sensor_type":"moisture","operator":"<","value":35},
		{"type":"sensor","esp_id":"ESP_12AB34","gpio":21,"sensor_type":"sht31_temp","operator":">","value":25,
		 "max_age_seconds":600}],
		"actions":[{"type":"delay","seconds":1}]}`)
	other := SensorRef{EspID: "ESP_12AB34", GPIO: 21, SensorType: "sht31_temp"}
	cases := []struct {
		name    string
		value   float64       // the other device's stored value
		age     time.Duration // how old it is
		offline bool
		trigger float64 // the triggering moisture reading
		want    bool
	}{
		{"both true and fresh", 27, 9 * time.Minute, false, 31.2, true},
		{"the other one stale", 27, 11 * time.Minute, false, 31.2, false},
		{"the other one false", 24, time.Minute, false, 31.2, false},
		{"the trigger false", 27, time.Minute, false, 36, false},
		{"the other device offline", 27, time.Minute, true, 31.2, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.readings[other] = Reading{Value: tc.value, At: t0.Add(-tc.age)}
			w.offline["ESP_12AB34"] = tc.offline
			res := Evaluate(&r, w.ctx(t0, SensorTrigger("ESP_A1B2C3", 34, "moisture", tc.trigger, t0)))
			if res.Matched != tc.want {
				t.Errorf("matched %v, want %v: %+v", res.Matched, tc.want, res.Leaves)
			}
		})
	}
}

func TestTimeWindows(t *testing.T) {
	day := time.Date(2026, 1, 7, 0, 0, 0, 0, time.UTC) // Wednesday
	cases := []struct {
		name   string
		window string
		at     time.Time
		zone   *time.Location
		want   bool
	}{
		{"inside", `"start_time":"06:00","end_time":"10:00"`, day.Add(7 * time.Hour), nil, true},
		{"start inclusive", `"start_time":"06:00","end_time":"10:00"`, day.Add(6 * time.Hour), nil, true},
		{"end exclusive", `"start_time":"06:00","end_time":"10:00"`, day.Add(10 * time.Hour), nil, false},
		{"minutes count", `"start_hour":6,"start_minute":30,"end_hour":7`, day.Add(6*time.Hour + 29*time.Minute), nil, false},
		{"minutes count inside", `"start_hour":6,"start_minute":30,"end_hour":7`, day.Add(6*time.Hour + 30*time.Minute), nil, true},
		{"wrap late", `"start_time":"22:00","end_time":"06:00"`, day.Add(23 * time.Hour), nil, true},
		{"wrap early", `"start_time":"22:00","end_time":"06:00"`, day.Add(5*time.Hour + 59*time.Minute), nil, true},
		{"wrap outside", `"start_time":"22:00","end_time":"06:00"`, day.Add(12 * time.Hour), nil, false},
		{"default end 24:00", `"start_time":"23:00"`, day.Add(23*time.Hour + 59*time.Minute), nil, true},
		{"leaf zone", `"start_time":"06:00","end_time":"10:00","timezone":"Europe/Berlin"`, day.Add(5*time.Hour + 30*time.Minute), nil, true},
		{"leaf zone outside", `"start_time":"06:00","end_time":"10:00","timezone":"Europe/Berlin"`, day.Add(9*time.Hour + 30*time.Minute), nil, false},
		{"hub zone", `"start_time":"06:00","end_time":"10:00"`, day.Add(5*time.Hour + 30*time.Minute), berlin(t), true},
		{"leaf zone beats hub zone", `"start_time":"06:00","end_time":"10:00","timezone":"UTC"`, day.Add(5*time.Hour + 30*time.Minute), berlin(t), false},
		{"weekday", `"start_time":"00:00","days_of_week":[2]`, day.Add(time.Hour), nil, true},
		{"other weekday", `"start_time":"00:00","days_of_week":[0,1,3,4,5,6]`, day.Add(time.Hour), nil, false},
		{"sunday is 6", `"start_time":"00:00","days_of_week":[6]`, day.Add(4*24*time.Hour + time.Hour), nil, true},
		// 23:30 UTC on Wednesday is 00:30 Thursday in Berlin: the local date decides.
		{"local date", `"start_time":"00:00","end_time":"01:00","timezone":"Europe/Berlin","days_of_week":[3]`, day.Add(23*time.Hour + 30*time.Minute), nil, true},
		// Summer time: 06:00 Berlin is 04:00 UTC in July.
		{"daylight saving", `"start_time":"06:00","end_time":"06:30","timezone":"Europe/Berlin"`, time.Date(2026, 7, 1, 4, 10, 0, 0, time.UTC), nil, true},
		// 29 March 2026, Berlin springs from 02:00 CET to 03:00 CEST: a
		// 01:30–03:30 window is one wall-clock hour long that night.
		{"spring forward before", `"start_time":"01:30","end_time":"03:30","timezone":"Europe/Berlin"`, time.Date(2026, 3, 29, 0, 45, 0, 0, time.UTC), nil, true},
		{"spring forward after", `"start_time":"01:30","end_time":"03:30","timezone":"Europe/Berlin"`, time.Date(2026, 3, 29, 1, 15, 0, 0, time.UTC), nil, true},
		{"spring forward past the end", `"start_time":"01:30","end_time":"03:30","timezone":"Europe/Berlin"`, time.Date(2026, 3, 29, 1, 45, 0, 0, time.UTC), nil, false},
		// 25 October 2026, Berlin falls back from 03:00 CEST to 02:00 CET; a
		// window across midnight that ends at 02:00 ends at the first 02:00.
		{"fall back across midnight inside", `"start_time":"22:00","end_time":"02:00","timezone":"Europe/Berlin"`, time.Date(2026, 10, 24, 23, 30, 0, 0, time.UTC), nil, true},
		{"fall back across midnight after the end", `"start_time":"22:00","end_time":"02:00","timezone":"Europe/Berlin"`, time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), nil, false},
		{"fall back repeated hour", `"start_time":"22:00","end_time":"02:00","timezone":"Europe/Berlin"`, time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), nil, false},
		{"fall back evening", `"start_time":"22:00","end_time":"02:00","timezone":"Europe/Berlin"`, time.Date(2026, 10, 25, 21, 5, 0, 0, time.UTC), nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := mustDecode(t, `{"name":"abc","conditions":[{"type":"time",`+tc.window+`}],"actions":[{"type":"delay","seconds":1}]}`)
			c := newWorld().ctx(tc.at, Trigger{Kind: TriggerTimer})
			c.Zone = tc.zone
			res := Evaluate(&r, c)
			if res.Matched != tc.want {
				t.Errorf("at %s: %v, want %v (%+v)", tc.at, res.Matched, tc.want, res.Leaves)
			}
		})
	}
}

func berlin(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestMockTime(t *testing.T) {
	r := mustDecode(t, `{"name":"abc","conditions":[{"type":"time","start_time":"06:00","end_time":"10:00","timezone":"Europe/Berlin","days_of_week":[2]}],
		"actions":[{"type":"delay","seconds":1}]}`)
	c := newWorld().ctx(time.Date(2026, 1, 7, 20, 0, 0, 0, time.UTC), Trigger{Kind: TriggerTest})
	m := 7*60 + 15
	c.MockTime = &m
	if res := Evaluate(&r, c); !res.Matched {
		t.Errorf("mock 07:15 on Wednesday: %+v", res.Leaves)
	}
}

// heaterReadings walks docs/domain.md §6.13's heater example.
func TestHysteresisHeating(t *testing.T) {
	w := newWorld()
	r := mustDecode(t, heater)
	steps := []struct {
		v          float64
		want       bool
		edge       Edge
		wantDetail string
	}{
		{19.0, false, EdgeNone, DetailKept},
		{17.5, true, EdgeActivated, DetailActivated},
		{19.9, true, EdgeNone, DetailKept},
		{21.0, true, EdgeNone, DetailKept}, // equal is not above
		{21.3, false, EdgeDeactivated, DetailReleased},
		{19.0, false, EdgeNone, DetailKept},
	}
	at := t0
	for i, s := range steps {
		at = at.Add(time.Minute)
		res := Evaluate(&r, w.ctx(at, SensorTrigger("ESP_12AB34", 4, "ds18b20", s.v, at)))
		edge := EdgeNone
		if len(res.Changes) == 1 {
			edge = res.Changes[0].Edge()
		}
		l := leafResult(t, res, "0")
		if res.Matched != s.want || edge != s.edge || l.Detail != s.wantDetail || res.Deactivated() != (s.edge == EdgeDeactivated) {
			t.Errorf("step %d (%g): matched %v edge %v leaf %+v", i, s.v, res.Matched, edge, l)
		}
		w.apply(res)
	}
	st := w.states["0"]
	if st.Active || st.LastActivation == nil || st.LastDeactivation == nil || *st.LastValue != 21.3 {
		t.Errorf("final state = %+v", st)
	}
}

func TestHysteresisCooling(t *testing.T) {
	w := newWorld()
	r := mustDecode(t, `{"name":"abc","conditions":[{"type":"hysteresis","esp_id":"E","gpio":1,"activate_above":30,"deactivate_below":25}],
		"actions":[{"type":"delay","seconds":1}]}`)
	for i, s := range []struct {
		v    float64
		want bool
	}{{30, false}, {30.1, true}, {25, true}, {24.9, false}, {26, false}} {
		res := Evaluate(&r, w.ctx(t0, SensorTrigger("E", 1, "", s.v, t0)))
		if res.Matched != s.want {
			t.Errorf("step %d (%g) = %v", i, s.v, res.Matched)
		}
		w.apply(res)
	}
}

func TestHysteresisOtherTriggers(t *testing.T) {
	r := mustDecode(t, `{"name":"abc","conditions":[{"type":"hysteresis","esp_id":"E","gpio":1,"activate_above":30,"deactivate_below":25}],
		"actions":[{"type":"delay","seconds":1}]}`)
	w := newWorld()
	v := 31.0
	w.states["0"] = HysteresisState{Active: true, LastValue: &v}
	// Another sensor's reading, and a timer, read the stored state and move nothing.
	for _, trig := range []Trigger{SensorTrigger("E", 2, "", 10, t0), {Kind: TriggerTimer}, {Kind: TriggerReconnect}} {
		res := Evaluate(&r, w.ctx(t0, trig))
		if !res.Matched || len(res.Changes) != 0 || *leafResult(t, res, "0").Actual != 31 {
			t.Errorf("%s trigger: %+v", trig.Kind, res)
		}
	}
	w.offline["E"] = true
	res := Evaluate(&r, w.ctx(t0, Trigger{Kind: TriggerTimer}))
	if l := leafResult(t, res, "0"); res.Matched || l.Detail != DetailOffline || len(res.Changes) != 0 {
		t.Errorf("source offline: %+v", res)
	}
}

func TestNoShortCircuit(t *testing.T) {
	// The first leaf is false, yet the hysteresis leaf behind it still
	// activates (docs/domain.md §6.3.4), and each leaf has its own path.
	r := mustDecode(t, `{"name":"abc","conditions":[
		{"type":"sensor","esp_id":"E","gpio":9,"operator":">","value":100},
		{"logic":"OR","conditions":[
			{"type":"hysteresis","esp_id":"E","gpio":1,"activate_above":30,"deactivate_below":25},
			{"type":"hysteresis","esp_id":"E","gpio":1,"activate_above":40,"deactivate_below":35}]}],
		"actions":[{"type":"delay","seconds":1}]}`)
	w := newWorld()
	res := Evaluate(&r, w.ctx(t0, SensorTrigger("E", 1, "", 45, t0)))
	if res.Matched || len(res.Leaves) != 3 || len(res.Changes) != 2 {
		t.Fatalf("res = %+v", res)
	}
	if res.Changes[0].Path != "1.0" || res.Changes[1].Path != "1.1" {
		t.Errorf("hysteresis leaves share a state: %+v", res.Changes)
	}
	if l := leafResult(t, res, "0"); l.Detail != DetailNoData {
		t.Errorf("leaf 0 = %+v", l)
	}
}

func TestOROperator(t *testing.T) {
	r := mustDecode(t, `{"name":"abc","logic_operator":"OR","conditions":[
		{"type":"sensor","esp_id":"E","gpio":9,"operator":">","value":100},
		{"type":"sensor","esp_id":"E","gpio":1,"operator":">","value":1}],
		"actions":[{"type":"delay","seconds":1}]}`)
	if res := Evaluate(&r, newWorld().ctx(t0, SensorTrigger("E", 1, "", 2, t0))); !res.Matched {
		t.Errorf("OR: %+v", res)
	}
}

func TestMockValues(t *testing.T) {
	r := mustDecode(t, heater)
	w := newWorld()
	c := w.ctx(t0, Trigger{Kind: TriggerTest})
	c.Mock = func(ref SensorRef) (float64, bool) { return 17, ref.GPIO == 4 }
	res := Evaluate(&r, c)
	if !res.Matched || len(res.Changes) != 1 || res.Changes[0].Edge() != EdgeActivated {
		t.Errorf("mocked reading moves the would-be state: %+v", res)
	}
	if len(w.states) != 0 {
		t.Errorf("Evaluate wrote state: %+v", w.states)
	}
}

// The docs/domain.md §6.13 fertigation conditions: Wednesday 07:15 Berlin with a 31.2
// moisture reading and an EC of 1250 stored 4 minutes earlier trigger it;
// a Saturday, or an EC 11 minutes old, do not.
func TestFertigationExample(t *testing.T) {
	r := mustDecode(t, fertigation)
	ec := SensorRef{EspID: "ESP_A1B2C3", GPIO: 35, SensorType: "ec"}
	run := func(now time.Time, ecAge time.Duration) Result {
		w := newWorld()
		w.readings[ec] = Reading{Value: 1250, At: now.Add(-ecAge), MaxAge: 24 * time.Hour}
		return Evaluate(&r, w.ctx(now, SensorTrigger("ESP_A1B2C3", 34, "moisture", 31.2, now)))
	}
	wednesday := time.Date(2026, 1, 7, 6, 15, 0, 0, time.UTC)
	if res := run(wednesday, 4*time.Minute); !res.Matched {
		t.Errorf("Wednesday 07:15 with fresh EC: %+v", res.Leaves)
	}
	if res := run(wednesday.Add(3*24*time.Hour), 4*time.Minute); res.Matched ||
		leafResult(t, res, "0").Result {
		t.Errorf("Saturday: %+v", res.Leaves)
	}
	res := run(wednesday, 11*time.Minute)
	if l := leafResult(t, res, "2"); res.Matched || l.Detail != DetailStale {
		t.Errorf("EC 11 minutes old: %+v", res.Leaves)
	}
}

func TestVentFanExample(t *testing.T) {
	r := mustDecode(t, ventFan)
	w := newWorld()
	if res := Evaluate(&r, w.ctx(t0, SensorTrigger("ESP_12AB34", 21, "sht31_temp", 30.4, t0))); !res.Matched {
		t.Errorf("30.4 °C: %+v", res.Leaves)
	}
	if res := Evaluate(&r, w.ctx(t0, SensorTrigger("ESP_12AB34", 21, "sht31_temp", 29.9, t0))); res.Matched {
		t.Errorf("29.9 °C: %+v", res.Leaves)
	}
}
