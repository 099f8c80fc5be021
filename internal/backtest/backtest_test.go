package backtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/logic"
	"github.com/kaiserhub/kaiser/internal/store"
)

const (
	heaterRule = `{"name": "Greenhouse heater", "enabled": true, "priority": 20,
 "conditions": [{"type": "hysteresis", "esp_id": "ESP_12AB34", "gpio": 4, "sensor_type": "ds18b20",
                 "activate_below": 18.0, "deactivate_above": 21.0}],
 "actions": [{"type": "actuator_command", "esp_id": "ESP_12AB34", "gpio": 26,
              "command": "ON", "value": 1.0, "duration_seconds": 0}],
 "cooldown_seconds": 300}`

	ventFanRule = `{"name": "Vent fan when hot",
 "description": "Run the roof fan for 10 minutes when air temperature exceeds 30 °C",
 "enabled": true, "priority": 40, "logic_operator": "AND",
 "conditions": [{"type": "sensor_threshold", "esp_id": "ESP_12AB34", "gpio": 21,
                 "sensor_type": "sht31_temp", "operator": ">", "value": 30.0}],
 "actions": [{"type": "actuator_command", "esp_id": "ESP_12AB34", "gpio": 25,
              "command": "ON", "value": 1.0, "duration_seconds": 600}],
 "cooldown_seconds": 900, "max_executions_per_hour": 4}`

	fertigationRule = `{"name": "Morning fertigation", "enabled": true, "priority": 30, "logic_operator": "AND",
 "conditions": [
   {"type": "time_window", "start_time": "06:00", "end_time": "10:00",
    "timezone": "Europe/Berlin", "days_of_week": [0, 1, 2, 3, 4]},
   {"type": "sensor_threshold", "esp_id": "ESP_A1B2C3", "gpio": 34,
    "sensor_type": "moisture", "operator": "<", "value": 35.0},
   {"type": "sensor_threshold", "esp_id": "ESP_A1B2C3", "gpio": 35, "sensor_type": "ec",
    "operator": "between", "min": 800, "max": 1800, "max_age_seconds": 600}],
 "actions": [
   {"type": "sequence", "description": "Open valve, pump 2 min, close valve",
    "abort_on_failure": true, "max_duration_seconds": 600,
    "steps": [
      {"name": "Open valve", "delay_after_seconds": 5,
       "action": {"type": "actuator_command", "esp_id": "ESP_A1B2C3", "gpio": 27, "command": "ON"}},
      {"name": "Pump 60 %", "retry_count": 1,
       "action": {"type": "actuator_command", "esp_id": "ESP_A1B2C3", "gpio": 32,
                  "command": "PWM", "value": 0.6, "duration_seconds": 120}},
      {"name": "Wait", "delay_seconds": 125},
      {"name": "Close valve", "on_failure": "continue",
       "action": {"type": "actuator_command", "esp_id": "ESP_A1B2C3", "gpio": 27, "command": "OFF"}},
      {"name": "Report",
       "action": {"type": "notification", "channel": "websocket", "target": "operators",
                  "message_template": "Fertigation done by {rule_name}, moisture was {sensor_value}"}}]}],
 "cooldown_seconds": 3600}`
)

// The heater of docs/domain.md §6.13 over a day of minute readings at the
// example's levels (19.0, 17.5, 19.9, 21.3), then a second cold spell whose
// sensor falls silent: every ON, every cooldown skip, both hysteresis OFFs,
// the bound that switches the heater off in the silence, and the on-time.
func TestHeaterDayReplay(t *testing.T) {
	f := newFixture(t)
	temp := f.series("ESP_12AB34", 4, "ds18b20")
	for m := range 24 * 60 {
		var v float64
		switch {
		case m < 4*60:
			v = 19.0 // inactive: nothing
		case m < 6*60:
			v = 17.5 // activates at 04:00
		case m < 8*60:
			v = 19.9 // still active
		case m < 12*60:
			v = 21.3 // deactivates at 08:00
		case m < 13*60:
			v = 17.0 // activates at 12:00
		case m < 16*60:
			continue // the sensor is silent 13:00–15:59
		default:
			v = 22.0 // deactivates at 16:00
		}
		f.write(temp, at(0, m, 0), v)
	}
	f.flush()
	heater := f.save("11111111-1111-1111-1111-111111111111", heaterRule)

	rep := f.run(Request{RuleID: heater.ID, Start: at(0, 0, 0), End: at(24, 0, 0)})

	// ON at 04:00, then every 6 minutes (a reading 300 s after the last ON
	// is still inside the cooldown) up to 07:54: 40; at 12:00 … 12:54: 10.
	s := rep.Summary
	if s.Samples != 1260 || s.SensorTriggers != 1260 || s.TimerTriggers != 0 || s.Matched != 300 ||
		s.Firings != 50 || s.HysteresisOffs != 2 || s.Cooldown != 250 || s.RateLimited != 0 {
		t.Fatalf("summary %+v", s)
	}
	if len(rep.Firings) != 52 || rep.FiringsTruncated {
		t.Fatalf("%d firings listed", len(rep.Firings))
	}
	first := rep.Firings[0]
	a := first.Actions[0]
	if !first.At.Equal(at(4, 0, 0)) || first.Kind != KindFired || *first.Trigger.Value != 17.5 ||
		first.Conditions[0].Detail != "activated" || a.Command != "ON" || a.Status != StatusSucceeded ||
		*a.DurationSeconds != 3600 || !a.AutoOffAt.Equal(at(5, 0, 0)) {
		t.Fatalf("first firing %+v %+v", first, a)
	}
	for i, want := range []time.Time{at(4, 6, 0), at(7, 54, 0)} {
		if got := rep.Firings[[]int{1, 39}[i]]; !got.At.Equal(want) || got.Kind != KindFired {
			t.Fatalf("firing %d at %s, want %s", []int{1, 39}[i], got.At, want)
		}
	}
	off := rep.Firings[40]
	if !off.At.Equal(at(8, 0, 0)) || off.Kind != KindHysteresisOff || off.Trigger.Reason != "hysteresis_off" ||
		off.Actions[0].Command != "OFF" || off.Actions[0].Target != "ESP_12AB34:26" {
		t.Fatalf("hysteresis OFF %+v", off)
	}
	if got := rep.Firings[41]; !got.At.Equal(at(12, 0, 0)) || *got.Trigger.Value != 17.0 {
		t.Fatalf("second activation %+v", got)
	}
	if got := rep.Firings[51]; !got.At.Equal(at(16, 0, 0)) || got.Kind != KindHysteresisOff {
		t.Fatalf("second hysteresis OFF %+v", got)
	}

	// On 04:00–08:00, then 12:00 until the bound of the 12:54 ON (13:54).
	h := actuatorOf(t, rep, "ESP_12AB34", 26)
	if h.OnSeconds != (4*time.Hour+114*time.Minute).Seconds() || h.SwitchOns != 2 || h.SwitchOffs != 2 ||
		h.SwitchCount != 4 || h.Commands != 52 || h.MaxRuntimeOffs != 1 || h.DurationOffs != 0 ||
		h.FinalState != "off" || h.MaxOnsPerHour != 1 || !h.Configured {
		t.Fatalf("heater %+v", h)
	}
	if w := warningOf(rep, WarnMaxRuntime); w == nil || w.Count != 1 || !w.FirstAt.Equal(at(13, 54, 0)) ||
		w.Target != "ESP_12AB34:26" {
		t.Fatalf("max-runtime warning %+v", w)
	}
	if w := warningOf(rep, WarnCooldown); w == nil || w.Count != 250 || !w.FirstAt.Equal(at(4, 1, 0)) {
		t.Fatalf("cooldown warning %+v", w)
	}
	if warningOf(rep, WarnChattering) != nil {
		t.Fatal("two switch-ons a day is no chattering")
	}
	if len(rep.Sensors) != 1 || rep.Sensors[0].Source != SourceRaw || rep.Sensors[0].Samples != 1260 ||
		!rep.Sensors[0].RawFrom.Equal(at(0, 0, 0)) {
		t.Fatalf("sensors %+v", rep.Sensors)
	}
}

// A range over 30 days, or not after its start, is refused; an unknown
// rule id is the engine's not-found.
func TestRangeLimitAndUnknownRule(t *testing.T) {
	f := newFixture(t)
	heater := f.save("11111111-1111-1111-1111-111111111111", heaterRule)
	ctx := context.Background()
	for _, end := range []time.Time{at(0, 0, 0).Add(MaxRange + time.Second), at(0, 0, 0)} {
		if _, err := f.svc.Run(ctx, Request{RuleID: heater.ID, Start: at(0, 0, 0), End: end}); !errors.Is(err, ErrRange) {
			t.Fatalf("end %s: %v", end, err)
		}
	}
	if _, err := f.svc.Run(ctx, Request{RuleID: heater.ID, Start: at(0, 0, 0), End: at(0, 0, 0).Add(MaxRange)}); err != nil {
		t.Fatalf("exactly 30 days: %v", err)
	}
	_, err := f.svc.Run(ctx, Request{RuleID: "22222222-2222-2222-2222-222222222222", Start: at(0, 0, 0), End: at(1, 0, 0)})
	if !errors.Is(err, logic.ErrNotFound) {
		t.Fatalf("unknown rule: %v", err)
	}
}

// Where the raw readings are gone, the minute averages are replayed, timed
// at their minute's last reading; raw readings where they are left. The
// vent fan of docs/domain.md §6.13 is hot 10:00–10:59 on two days (readings
// every 20 s from 09:00 to 11:59).
func TestRollupFallback(t *testing.T) {
	f := newFixture(t)
	air := f.series("ESP_12AB34", 21, "sht31_temp")
	day2 := at(0, 0, 0).Add(24 * time.Hour)
	for _, day := range []time.Time{at(0, 0, 0), day2} {
		for s := 9 * 3600; s < 12*3600; s += 20 {
			v := 25.0
			if s >= 10*3600 && s < 11*3600 {
				v = 31.0
			}
			f.write(air, day.Add(time.Duration(s)*time.Second), v)
		}
	}
	f.flush()
	// Retention took the first day's raw readings; its rollups stay.
	for {
		n, err := f.st.DeleteReadingsBatch(context.Background(), air, day2.UnixMilli(), 5000)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	fan := f.save("33333333-3333-3333-3333-333333333333", ventFanRule)

	rep := f.run(Request{RuleID: fan.ID, Start: at(0, 0, 0), End: day2.Add(24 * time.Hour)})

	src := rep.Sensors[0]
	if src.Source != SourceRollupRaw || !src.RawFrom.Equal(day2.Add(9*time.Hour)) || src.Samples != 180+540 {
		t.Fatalf("source %+v", src)
	}
	if warningOf(rep, WarnRollup) == nil {
		t.Fatal("no warning about the minute averages")
	}
	// Day 1 from averages at hh:mm:40: 10:00:40, then each 16 minutes (900 s
	// of cooldown plus a minute). Day 2 raw every 20 s: 10:00:00, 10:15:20, …
	want := []time.Time{
		at(10, 0, 40), at(10, 16, 40), at(10, 32, 40), at(10, 48, 40),
		day2.Add(10 * time.Hour), day2.Add(10*time.Hour + 920*time.Second),
		day2.Add(10*time.Hour + 1840*time.Second), day2.Add(10*time.Hour + 2760*time.Second),
	}
	if len(rep.Firings) != len(want) {
		t.Fatalf("%d firings, want %d: %v", len(rep.Firings), len(want), times(rep.Firings))
	}
	for i, w := range want {
		if !rep.Firings[i].At.Equal(w) {
			t.Fatalf("firing %d at %s, want %s", i, rep.Firings[i].At, w)
		}
	}
	if a := rep.Firings[0].Actions[0]; *a.DurationSeconds != 600 || !a.AutoOffAt.Equal(at(10, 10, 40)) {
		t.Fatalf("fan action %+v", a)
	}
	fanOut := actuatorOf(t, rep, "ESP_12AB34", 25)
	if fanOut.SwitchOns != 8 || fanOut.DurationOffs != 8 || fanOut.MaxRuntimeOffs != 0 || fanOut.OnSeconds != 8*600 {
		t.Fatalf("fan %+v", fanOut)
	}
	if rep.Summary.Cooldown != 60-4+180-4 {
		t.Fatalf("cooldown skips %d", rep.Summary.Cooldown)
	}
}

func times(fs []*Firing) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.At.Format(time.RFC3339))
	}
	return out
}

// A time-window-only rule runs on the timer every 60 s in the window's own
// zone and days: Europe/Berlin 06:00–07:00 on Wednesdays is 05:00–06:00 UTC
// on 2024-03-06 and nothing on the Thursday. The window's first tick
// switches on; the later firings find the output on (skipped_no_change),
// and with a 60 s cooldown every other tick is inside it.
func TestTimeWindowOnTimer(t *testing.T) {
	f := newFixture(t)
	doc := `{"name": "Morning light", "cooldown_seconds": 60,
 "conditions": [{"type": "time_window", "start_time": "06:00", "end_time": "07:00",
                 "timezone": "Europe/Berlin", "days_of_week": [2]}],
 "actions": [{"type": "actuator_command", "esp_id": "ESP_12AB34", "gpio": 25, "command": "ON"}]}`

	rep := f.run(Request{Document: []byte(doc), Start: at(0, 0, 0), End: at(48, 0, 0)})

	if rep.Saved || rep.Summary.TimerTriggers != 2*1440 || rep.Summary.Firings != 30 || rep.Summary.Cooldown != 30 {
		t.Fatalf("summary %+v", rep.Summary)
	}
	if !rep.Firings[0].At.Equal(at(5, 0, 0)) || rep.Firings[0].Actions[0].Status != StatusSucceeded ||
		!rep.Firings[29].At.Equal(at(5, 58, 0)) {
		t.Fatalf("firings %v", times(rep.Firings))
	}
	for _, fr := range rep.Firings[1:] {
		if a := fr.Actions[0]; a.Status != StatusNoChange || a.Message != "already on" {
			t.Fatalf("%s: %+v", fr.At, a)
		}
	}
	// 120 s of the bound left at 05:58 is not less than two intervals: the
	// ON is not renewed and the bound switches the output off at 06:00.
	o := actuatorOf(t, rep, "ESP_12AB34", 25)
	if o.SwitchOns != 1 || o.NoChange != 29 || o.MaxRuntimeOffs != 1 || o.OnSeconds != 3600 {
		t.Fatalf("output %+v", o)
	}
}

// The morning fertigation of docs/domain.md §6.13: a moisture reading of
// 31.2 at 07:15 Berlin time on a Wednesday with an EC reading 4 minutes
// older starts the sequence; its steps run on the replay clock. The same
// readings on the Saturday, or with the EC reading 20 minutes old, do not.
func TestFertigationSequence(t *testing.T) {
	f := newFixture(t)
	moisture := f.series("ESP_A1B2C3", 34, "moisture")
	ec := f.series("ESP_A1B2C3", 35, "ec")
	f.write(ec, at(6, 11, 0), 1250)
	f.write(moisture, at(6, 15, 0), 31.2)
	f.write(ec, at(8, 0, 0), 1250)
	f.write(moisture, at(8, 20, 0), 31.2) // EC is 20 minutes old: no trigger
	saturday := at(0, 0, 0).AddDate(0, 0, 3)
	f.write(ec, saturday.Add(6*time.Hour+11*time.Minute), 1250)
	f.write(moisture, saturday.Add(6*time.Hour+15*time.Minute), 31.2) // not a weekday of the window
	f.flush()

	rep := f.run(Request{Document: []byte(fertigationRule), Start: at(0, 0, 0), End: saturday.Add(24 * time.Hour)})

	if rep.Summary.Firings != 1 || rep.Summary.SequencesStarted != 1 {
		t.Fatalf("summary %+v", rep.Summary)
	}
	fr := rep.Firings[0]
	if id := fr.Actions[0].SequenceID; id != fmt.Sprintf("seq-unsaved-%d", at(6, 15, 0).Unix()) {
		t.Fatalf("sequence id %q", id)
	}
	steps := map[string]time.Time{}
	for _, a := range fr.Actions {
		if a.Status != StatusSucceeded && a.Status != StatusStarted {
			t.Fatalf("action %+v", a)
		}
		key := a.Type + " " + a.Target + " " + a.Command
		if a.Type == "sequence" {
			key = "sequence " + a.Message
		}
		steps[key] = a.At
	}
	want := map[string]time.Time{
		"sequence ":                          at(6, 15, 0),
		"actuator_command ESP_A1B2C3:27 ON":  at(6, 15, 0),
		"actuator_command ESP_A1B2C3:32 PWM": at(6, 15, 5),
		"actuator_command ESP_A1B2C3:27 OFF": at(6, 17, 10),
		"notification websocket:operators ":  at(6, 17, 10),
		"sequence sequence completed":        at(6, 17, 10),
	}
	if fmt.Sprint(steps) != fmt.Sprint(want) {
		t.Fatalf("steps\n got %v\nwant %v", steps, want)
	}
	valve, pump := actuatorOf(t, rep, "ESP_A1B2C3", 27), actuatorOf(t, rep, "ESP_A1B2C3", 32)
	if valve.OnSeconds != 130 || valve.SwitchOns != 1 || pump.OnSeconds != 120 || pump.DurationOffs != 1 {
		t.Fatalf("valve %+v pump %+v", valve, pump)
	}
}

// Readings of more series than the limit are refused before any is read.
func TestSeriesLimit(t *testing.T) {
	f := newFixture(t)
	for i := range MaxSeries + 1 {
		if _, err := f.st.EnsureSeries(context.Background(), storeKey(i)); err != nil {
			t.Fatal(err)
		}
	}
	doc := `{"name": "Any type on pin 4", "conditions": [{"type": "sensor", "esp_id": "ESP_12AB34", "gpio": 4,
 "operator": ">", "value": 1}], "actions": [{"type": "actuator", "esp_id": "ESP_12AB34", "gpio": 25}]}`
	var lim *LimitError
	if _, err := f.svc.Run(context.Background(), Request{Document: []byte(doc), Start: at(0, 0, 0),
		End: at(1, 0, 0)}); !errors.As(err, &lim) {
		t.Fatalf("%d series: %v", MaxSeries+1, err)
	}
}

// An unsaved document is checked like a save: every finding with its path.
func TestInlineDocumentValidation(t *testing.T) {
	f := newFixture(t)
	doc := `{"name": "Broken", "conditions": [{"type": "time_window", "start_time": "06:00", "end_time": "07:00",
 "timezone": "Mars/Olympus"}], "actions": [{"type": "actuator", "esp_id": "ESP_12AB34", "gpio": 99}]}`
	_, err := f.svc.Run(context.Background(), Request{Document: []byte(doc), Start: at(0, 0, 0), End: at(1, 0, 0)})
	var inv *logic.InvalidError
	if !errors.As(err, &inv) || len(inv.Errors) != 2 || inv.Errors[0].Path() != "conditions.0.timezone" ||
		inv.Errors[1].Path() != "actions.0.gpio" {
		t.Fatalf("decode findings: %v %+v", err, inv.Errors)
	}
	doc = `{"name": "Missing actuator", "conditions": [{"type": "time_window", "start_time": "06:00",
 "end_time": "07:00"}], "actions": [{"type": "actuator", "esp_id": "ESP_12AB34", "gpio": 33}]}`
	_, err = f.svc.Run(context.Background(), Request{Document: []byte(doc), Start: at(0, 0, 0), End: at(1, 0, 0)})
	if !errors.As(err, &inv) || len(inv.Errors) != 1 || inv.Errors[0].Path() != "actions.0" {
		t.Fatalf("save-time findings: %v %+v", err, inv)
	}
}

func storeKey(i int) store.SeriesKey {
	return store.SeriesKey{EspID: "ESP_12AB34", GPIO: 4, SensorType: "ds18b20", Address: fmt.Sprintf("28%014d", i)}
}

// A delay holds the rule running (already_running) until its continuation;
// a rule that cycles its output every 2 minutes chatters; a per-hour limit
// stops it after its fifth run.
func TestDelayChatterAndRateLimit(t *testing.T) {
	f := newFixture(t)
	air := f.series("ESP_12AB34", 21, "sht31_temp")
	for m := range 60 {
		f.write(air, at(0, m, 0), 31.0)
	}
	f.flush()
	doc := func(limit string) []byte {
		return []byte(`{"name": "Pulse the fan", "cooldown_seconds": 0, "max_executions_per_hour": ` + limit + `,
 "conditions": [{"type": "sensor", "esp_id": "ESP_12AB34", "gpio": 21, "operator": ">", "value": 30}],
 "actions": [{"type": "actuator", "esp_id": "ESP_12AB34", "gpio": 25, "command": "ON"},
             {"type": "delay", "seconds": 120},
             {"type": "actuator", "esp_id": "ESP_12AB34", "gpio": 25, "command": "OFF"}]}`)
	}

	rep := f.run(Request{Document: doc("null"), Start: at(0, 0, 0), End: at(1, 0, 0)})
	if s := rep.Summary; s.Firings != 30 || s.AlreadyRunning != 30 || s.Continuations != 29 || s.RateLimited != 0 {
		t.Fatalf("summary %+v", s)
	}
	if acts := rep.Firings[0].Actions; len(acts) != 3 || acts[1].Status != StatusSucceeded ||
		acts[2].Command != "OFF" || !acts[2].At.Equal(at(0, 2, 0)) {
		t.Fatalf("first firing's actions %+v", acts)
	}
	if last := rep.Firings[29].Actions; len(last) != 2 || last[1].Status != StatusPending {
		t.Fatalf("the last delay is still pending at the range end: %+v", last)
	}
	o := actuatorOf(t, rep, "ESP_12AB34", 25)
	if o.SwitchOns != 30 || o.SwitchOffs != 29 || o.OnSeconds != 3600 || o.FinalState != "on" || o.MaxOnsPerHour != 30 {
		t.Fatalf("fan %+v", o)
	}
	// Above 6 switch-ons an hour: the 7th (00:12) to the 30th.
	if w := warningOf(rep, WarnChattering); w == nil || w.Count != 24 || !w.FirstAt.Equal(at(0, 12, 0)) {
		t.Fatalf("chattering %+v", w)
	}
	if rep := f.run(Request{Document: doc("null"), Start: at(0, 0, 0), End: at(1, 0, 0), Chatter: 30}); warningOf(rep, WarnChattering) != nil {
		t.Fatal("30 switch-ons are not more than a threshold of 30")
	}

	rep = f.run(Request{Document: doc("5"), Start: at(0, 0, 0), End: at(1, 0, 0)})
	if s := rep.Summary; s.Firings != 5 || s.RateLimited != 50 || s.AlreadyRunning != 5 {
		t.Fatalf("with a limit of 5 an hour: %+v", s)
	}
	if w := warningOf(rep, WarnRateLimited); w == nil || !w.FirstAt.Equal(at(0, 10, 0)) {
		t.Fatalf("rate-limit warning %+v", w)
	}
}

// The actuator's own checks apply on the replayed state: its cooldown
// after each switch-off refuses the ONs until it has passed, and a disabled
// actuator refuses every ON.
func TestActuatorChecks(t *testing.T) {
	f := newFixture(t)
	air := f.series("ESP_12AB34", 21, "sht31_temp")
	for m := range 60 {
		f.write(air, at(0, m, 0), 31.0)
	}
	f.flush()
	doc := `{"name": "Pulse the vent", "cooldown_seconds": 0,
 "conditions": [{"type": "sensor", "esp_id": "ESP_12AB34", "gpio": 21, "operator": ">", "value": 30}],
 "actions": [{"type": "actuator", "esp_id": "ESP_12AB34", "gpio": 27, "command": "ON"},
             {"type": "actuator", "esp_id": "ESP_12AB34", "gpio": 14, "command": "ON"},
             {"type": "delay", "seconds": 120},
             {"type": "actuator", "esp_id": "ESP_12AB34", "gpio": 27, "command": "OFF"}]}`

	rep := f.run(Request{Document: []byte(doc), Start: at(0, 0, 0), End: at(1, 0, 0)})

	// Firings every 2 minutes; after each OFF the vent refuses ONs for 600 s:
	// on at 00:00, 00:12, 00:24, 00:36 and 00:48, refused at the 25 others.
	vent := actuatorOf(t, rep, "ESP_12AB34", 27)
	if rep.Summary.Firings != 30 || vent.SwitchOns != 5 || vent.SwitchOffs != 5 || vent.Blocked != 25 ||
		vent.OnSeconds != 600 {
		t.Fatalf("firings %d, vent %+v", rep.Summary.Firings, vent)
	}
	if a := rep.Firings[1].Actions[0]; a.Status != StatusBlocked || a.Code != "cooldown_active" {
		t.Fatalf("the ON at 00:02: %+v", a)
	}
	if w := warningOf(rep, WarnActCooldown); w == nil || w.Count != 25 || !w.FirstAt.Equal(at(0, 2, 0)) {
		t.Fatalf("cooldown warning %+v", w)
	}
	if off := actuatorOf(t, rep, "ESP_12AB34", 14); off.Blocked != 30 || off.SwitchOns != 0 {
		t.Fatalf("disabled actuator %+v", off)
	}
	if w := warningOf(rep, WarnBlocked); w == nil || w.Count != 30 || w.Target != "ESP_12AB34:14" {
		t.Fatalf("blocked warning %+v", w)
	}
}

// One backtest at a time: a second one is refused while the first runs.
func TestOneAtATime(t *testing.T) {
	f := newFixture(t)
	heater := f.save("11111111-1111-1111-1111-111111111111", heaterRule)
	f.svc.busy.Lock()
	_, err := f.svc.Run(context.Background(), Request{RuleID: heater.ID, Start: at(0, 0, 0), End: at(1, 0, 0)})
	f.svc.busy.Unlock()
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("while another runs: %v", err)
	}
	f.run(Request{RuleID: heater.ID, Start: at(0, 0, 0), End: at(1, 0, 0)})
}
