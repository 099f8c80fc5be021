package logic

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/store"
)

// heatAndVent switches the fan on and notifies the operators when it is hot
// and the heating hysteresis is active.
const heatAndVent = `{"name":"Heat and vent","priority":30,"cooldown_seconds":600,"max_executions_per_hour":1,
	"conditions":[
	  {"type":"sensor","esp_id":"ESP_12AB34","gpio":21,"sensor_type":"sht31_temp","operator":">","value":30},
	  {"type":"hysteresis","esp_id":"ESP_12AB34","gpio":4,"sensor_type":"ds18b20","activate_below":18,"deactivate_above":21}],
	"actions":[
	  {"type":"actuator","esp_id":"ESP_12AB34","gpio":25,"command":"ON","duration_seconds":600},
	  {"type":"delay","seconds":30},
	  {"type":"notification","channel":"websocket","target":"operators","message_template":"{rule_name}"}]}`

func mocks(t *testing.T, kv map[string]float64) []MockValue {
	t.Helper()
	var out []MockValue
	for k, v := range kv {
		ref, err := ParseMockKey(k)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		out = append(out, MockValue{Sensor: ref, Value: v})
	}
	return out
}

// A dry-run with mocks evaluates like a reading would, tells what each
// action would do, and changes nothing: no command, notification, record,
// hysteresis state, cooldown or token.
func TestDryRunChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(heatAndVent)
		synctest.Wait()
		w.logicEvents()

		got, err := w.eng.Test(context.Background(), id, TestInput{Mocks: mocks(t, map[string]float64{
			"ESP_12AB34:21":        31,
			"ESP_12AB34:4:DS18B20": 17, // the type is normalised like a leaf's
		})})
		if err != nil {
			t.Fatal(err)
		}
		if !got.WouldTrigger || len(got.Conditions) != 2 || got.Conditions[1].Detail != rule.DetailActivated ||
			*got.Conditions[0].Actual != 31 {
			t.Fatalf("conditions %+v", got)
		}
		if got.Gates.CooldownRemainingSeconds != 0 || got.Gates.RateLimited || !got.Gates.Enabled {
			t.Fatalf("gates %+v", got.Gates)
		}
		cmd, delay, note := got.Actions[0], got.Actions[1], got.Actions[2]
		if !cmd.WouldExecute || cmd.Lock != LockAcquired || cmd.Safety == nil || !cmd.Safety.Allowed ||
			cmd.Safety.Command != "ON" {
			t.Fatalf("command %+v", cmd)
		}
		if !delay.WouldExecute || !note.WouldExecute || note.Details != "would notify 2 users" {
			t.Fatalf("delay %+v, notification %+v", delay, note)
		}

		// Nothing happened.
		synctest.Wait()
		if n := len(w.acts.issued()); n != 0 || w.acts.checked != 1 {
			t.Fatalf("%d commands issued, %d checks", n, w.acts.checked)
		}
		if len(w.alerts.sent)+len(w.alerts.raised) != 0 || len(w.logicEvents()) != 0 {
			t.Fatalf("notifications %+v %+v", w.alerts.sent, w.alerts.raised)
		}
		if xs := w.history(id); len(xs) != 0 {
			t.Fatalf("history %+v", xs)
		}
		if hs, _ := w.st.LoadHysteresis(context.Background()); len(hs) != 0 {
			t.Fatalf("hysteresis stored %+v", hs)
		}
		if r, _ := w.eng.Get(context.Background(), id); r.LastTriggered != nil {
			t.Fatalf("last_triggered %v", r.LastTriggered)
		}
		// The hysteresis state is still the stored one: without mocks, no data
		// and an inactive leaf.
		again, _ := w.eng.Test(context.Background(), id, TestInput{})
		if again.WouldTrigger || again.Conditions[0].Detail != rule.DetailNoData || again.Conditions[0].Result ||
			again.Conditions[1].Result || again.Actions[0].WouldExecute {
			t.Fatalf("without mocks %+v", again)
		}

		// The real run follows: it finds its tokens and cooldown untouched.
		w.sensors.mu.Lock()
		w.sensors.latest["ESP_12AB34:4:ds18b20"] = store.Reading{Processed: ptr(17.0), Quality: "good", TS: time.Now().UnixMilli()}
		w.sensors.mu.Unlock()
		w.reading(4, "ds18b20", 17)
		w.reading(21, "sht31_temp", 31)
		synctest.Wait()
		if n := len(w.acts.issued()); n != 1 {
			t.Fatalf("%d commands after the dry-run, want the real run's 1", n)
		}
		after, _ := w.eng.Test(context.Background(), id, TestInput{Mocks: mocks(t, map[string]float64{"ESP_12AB34:21": 31})})
		if !after.WouldTrigger || after.Gates.CooldownRemainingSeconds != 600 || !after.Gates.RateLimited ||
			!after.Gates.AlreadyRunning || after.Actions[0].WouldExecute {
			t.Fatalf("after the run %+v", after)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// mock_time replaces each time leaf's local time of day in its own zone.
func TestDryRunMockTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(`{"name":"Morning","conditions":[{"type":"time","start_time":"06:00","end_time":"10:00",
			"timezone":"Europe/Berlin"}],"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":26}]}`)
		synctest.Wait()
		for clock, want := range map[int]bool{7*60 + 15: true, 11 * 60: false, 5*60 + 59: false} {
			got, err := w.eng.Test(context.Background(), id, TestInput{MockTime: &clock})
			if err != nil {
				t.Fatal(err)
			}
			if got.WouldTrigger != want || *got.Conditions[0].Actual != float64(clock) {
				t.Errorf("at %d min: %+v", clock, got.Conditions)
			}
		}
	})
}

// A command the actuator checks would refuse is reported with its code and
// would not execute; an unknown rule is ErrNotFound.
func TestDryRunSafetyVerdict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(fanRule(""))
		synctest.Wait()
		w.acts.refuse(devESP+":25", actuator.CodeEmergencyStop)
		got, _ := w.eng.Test(context.Background(), id, TestInput{Mocks: mocks(t, map[string]float64{"ESP_12AB34:21": 35})})
		a := got.Actions[0]
		if !got.WouldTrigger || a.WouldExecute || a.Safety.Allowed || a.Safety.Code != actuator.CodeEmergencyStop {
			t.Fatalf("refused command %+v %+v", got, a.Safety)
		}
		if _, err := w.eng.Test(context.Background(), "00000000-0000-4000-8000-000000000000", TestInput{}); err != ErrNotFound {
			t.Fatalf("unknown rule: %v", err)
		}
	})
}

func TestParseMockKey(t *testing.T) {
	for k, ok := range map[string]bool{
		"ESP_12AB34:21":            true,
		"ESP_12AB34:21:sht31_temp": true,
		"ESP_12AB34":               false,
		"ESP_12AB34:x":             false,
		":21":                      false,
		"ESP_12AB34:21:":           false,
		"ESP_12AB34:21:a:b":        false,
		"ESP_12AB34:-1":            false,
	} {
		if _, err := ParseMockKey(k); (err == nil) != ok {
			t.Errorf("%q: %v", k, err)
		}
	}
}
