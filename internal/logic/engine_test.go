package logic

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
)

// Each test runs in a synctest bubble: time is the bubble's, and
// synctest.Wait returns once every goroutine (the engine's workers, the
// store's writer) waits for something that only the test can give.

func fanRule(extra string) string {
	return `{"name":"Vent fan","priority":40,
	"conditions":[{"type":"sensor","esp_id":"ESP_12AB34","gpio":21,"sensor_type":"sht31_temp","operator":">","value":30}],
	"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":25,"command":"ON","duration_seconds":600}]` + extra + `}`
}

func TestCooldownThenRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(fanRule(`,"cooldown_seconds":60,"max_executions_per_hour":2`))
		synctest.Wait()

		fire := func() {
			w.reading(21, "sht31_temp", 31)
			synctest.Wait()
		}
		fire()
		fire() // inside the cooldown: nothing
		if got := len(w.acts.issued()); got != 1 {
			t.Fatalf("%d commands after a reading inside the cooldown, want 1", got)
		}
		time.Sleep(61 * time.Second)
		fire()
		time.Sleep(61 * time.Second)
		fire() // the third within the hour: rate limited, recorded
		time.Sleep(30 * time.Second)
		fire() // rate limited again within the minute: not recorded again
		if got := len(w.acts.issued()); got != 2 {
			t.Fatalf("%d commands, want 2 (max_executions_per_hour)", got)
		}
		xs := w.history(id)
		if len(xs) != 3 || xs[0].TerminalReason != codeRateLimited || xs[0].Success || len(xs[0].Actions) != 0 {
			t.Fatalf("history %+v", xs)
		}
		// An hour after the first run, the rule may run again.
		time.Sleep(time.Hour)
		fire()
		if got := len(w.acts.issued()); got != 3 {
			t.Fatalf("%d commands after the hour, want 3", got)
		}
	})
}

func TestCommandOutcomeFinalisesTheRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(fanRule(""))
		w.reading(21, "sht31_temp", 31)
		synctest.Wait()
		cmds := w.acts.issued()
		if len(cmds) != 1 || cmds[0].req.IssuedBy != "logic:"+id || *cmds[0].req.Duration != 600 ||
			cmds[0].req.Metadata["rule_id"] != id {
			t.Fatalf("commands %+v", cmds)
		}
		xs := w.history(id)
		if len(xs) != 1 || xs[0].FinishedAt != nil || xs[0].Actions[0].Status != StatusPending {
			t.Fatalf("before the answer: %+v", xs)
		}
		w.acts.finish(cmds[0].id, actuator.StatusTimeout)
		synctest.Wait()
		xs = w.history(id)
		if xs[0].FinishedAt == nil || xs[0].Success || xs[0].TerminalReason != codeCommandTimeout ||
			xs[0].Actions[0].Status != StatusFailed {
			t.Fatalf("after the timeout: %+v", xs[0])
		}
		ev := w.logicEvents()
		if len(ev) != 1 || ev[0].Action.Status != StatusFailed || ev[0].Success || ev[0].Action.CommandID != cmds[0].id {
			t.Fatalf("logic_execution events %+v", ev)
		}
	})
}

func TestMissedCommandEventIsPolled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(fanRule(""))
		w.reading(21, "sht31_temp", 31)
		synctest.Wait()
		cmd := w.acts.issued()[0]
		// The record changes without an event reaching the engine.
		w.acts.mu.Lock()
		r := w.acts.recs[cmd.id]
		r.Status = actuator.StatusAcknowledged
		w.acts.recs[cmd.id] = r
		w.acts.mu.Unlock()
		time.Sleep(pollAfter)
		synctest.Wait()
		if xs := w.history(id); !xs[0].Success || xs[0].TerminalReason != codeCompleted {
			t.Fatalf("after the poll: %+v", xs[0])
		}
	})
}

func TestSafetyRejectionIsBlockedSafety(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		w.acts.refuse(devESP+":25", actuator.CodeEmergencyStop)
		id := w.rule(fanRule(""))
		w.reading(21, "sht31_temp", 31)
		synctest.Wait()
		xs := w.history(id)
		if len(xs) != 1 || xs[0].Success || xs[0].TerminalReason != actuator.CodeEmergencyStop ||
			xs[0].Actions[0].Status != StatusBlockedSafety {
			t.Fatalf("history %+v", xs)
		}
	})
}

func TestPausedRulesDoNotSwitchOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		w.eng.d.Pauses = fakePauses{devESP: true}
		id := w.rule(fanRule(""))
		w.reading(21, "sht31_temp", 31)
		synctest.Wait()
		if n := len(w.acts.issued()); n != 0 {
			t.Fatalf("%d commands while paused", n)
		}
		if xs := w.history(id); xs[0].Actions[0].Code != actuator.CodeEmergencyStop {
			t.Fatalf("history %+v", xs[0])
		}
	})
}

func TestConflictLowerPriorityNumberWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		high := w.rule(strings.Replace(fanRule(`,"cooldown_seconds":0`), `"priority":40`, `"priority":10`, 1))
		low := w.rule(strings.Replace(strings.Replace(fanRule(`,"cooldown_seconds":0`), `"priority":40`, `"priority":20`, 1),
			"Vent fan", "Other fan", 1))
		synctest.Wait()
		w.reading(21, "sht31_temp", 31)
		synctest.Wait()
		cmds := w.acts.issued()
		if len(cmds) != 1 || cmds[0].req.IssuedBy != "logic:"+high {
			t.Fatalf("commands %+v", cmds)
		}
		xs := w.history(low)
		if len(xs) != 1 || xs[0].TerminalReason != codeConflict || xs[0].Actions[0].Status != StatusBlockedConflict {
			t.Fatalf("the losing rule's history %+v", xs)
		}
		if len(w.alerts.raised) != 1 || w.alerts.raised[0].Key != "conflict_"+low {
			t.Fatalf("conflict alerts %+v", w.alerts.raised)
		}
		if cs := w.eng.Conflicts(); len(cs) != 1 || cs[0].HolderRule != high {
			t.Fatalf("conflicts %+v", cs)
		}
	})
}

func TestConflictContest(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		holder holder
		comer  holder
		wins   bool
	}{
		{"free after expiry", holder{ruleID: "a", priority: 1, at: t0}, holder{ruleID: "b", priority: 99, at: t0.Add(61 * time.Second)}, true},
		{"lower number wins", holder{ruleID: "b", priority: 20, at: t0}, holder{ruleID: "a", priority: 10, at: t0}, true},
		{"higher number blocked", holder{ruleID: "a", priority: 10, at: t0}, holder{ruleID: "b", priority: 20, at: t0}, false},
		{"tie: smaller id wins", holder{ruleID: "b", priority: 10, at: t0}, holder{ruleID: "a", priority: 10, at: t0}, true},
		{"tie: larger id blocked", holder{ruleID: "a", priority: 10, at: t0}, holder{ruleID: "b", priority: 10, at: t0}, false},
		{"holder renews", holder{ruleID: "a", priority: 90, at: t0}, holder{ruleID: "a", priority: 90, at: t0}, true},
		{"safety beats priority", holder{ruleID: "a", priority: 1, at: t0}, holder{ruleID: "b", priority: 99, safety: true, at: t0}, true},
		{"safety holder keeps it", holder{ruleID: "b", priority: 99, safety: true, at: t0}, holder{ruleID: "a", priority: 1, at: t0}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newConflicts()
			if ok, _ := c.take("k", tc.holder); !ok {
				t.Fatal("first take failed")
			}
			// The dry-run's peek agrees and leaves no trace.
			if by := c.peek("k", tc.comer); (by == "") != tc.wins || len(c.Recent()) != 0 {
				t.Errorf("peek = %q with %d conflicts kept, want wins %v", by, len(c.Recent()), tc.wins)
			}
			ok, lost := c.take("k", tc.comer)
			if ok != tc.wins || (lost == nil) == !ok {
				t.Errorf("take = %v %+v, want %v", ok, lost, tc.wins)
			}
		})
	}
}

func TestTokenBuckets(t *testing.T) {
	l := newLimiter()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	for l.wouldTake(now, []string{"D"}) && l.take(now, []string{"D"}) {
		n++
	}
	if n != 30 || l.wouldTake(now, []string{"D"}) {
		t.Fatalf("device burst %d, want 30, then an empty bucket", n)
	}
	if l.take(now.Add(40*time.Millisecond), []string{"D"}) {
		t.Fatal("a token after 40 ms at 20/s")
	}
	if !l.take(now.Add(50*time.Millisecond), []string{"D"}) {
		t.Fatal("no token after 50 ms at 20/s")
	}
	// The hub bucket (150, 100/s) is shared by every device: it had 150,
	// lost 31 to device D and gained 5 in the 50 ms.
	m := 0
	for i := 0; l.take(now.Add(50*time.Millisecond), []string{"E" + string(rune('a'+i/25))}); i++ {
		m++
	}
	if m != 124 {
		t.Fatalf("the hub bucket gave %d more, want 124", m)
	}
}

// A rule with a delay: the rest runs after it, the rule is running in
// between, and a restart resumes the continuation from the store.
func TestDelayContinuationSurvivesARestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		id := w.rule(`{"name":"Flush","cooldown_seconds":0,
			"conditions":[{"type":"sensor","esp_id":"ESP_12AB34","gpio":21,"operator":">","value":30}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":25},{"type":"delay","seconds":120},
			{"type":"actuator","esp_id":"ESP_12AB34","gpio":25,"command":"OFF"}]}`)
		w.reading(21, "sht31_temp", 31)
		synctest.Wait()
		on := w.acts.issued()
		if len(on) != 1 || on[0].req.Command != "ON" {
			t.Fatalf("commands %+v", on)
		}
		w.acts.finish(on[0].id, actuator.StatusAcknowledged)
		w.reading(21, "sht31_temp", 32) // already running: skipped
		synctest.Wait()
		if n := len(w.acts.issued()); n != 1 {
			t.Fatalf("%d commands while the rule runs", n)
		}

		time.Sleep(60 * time.Second)
		w.close()
		w.open()
		synctest.Wait()
		if n := len(w.acts.issued()); n != 1 {
			t.Fatalf("the continuation ran early after the restart: %d", n)
		}
		time.Sleep(61 * time.Second)
		synctest.Wait()
		cmds := w.acts.issued()
		if len(cmds) != 2 || cmds[1].req.Command != "OFF" || cmds[1].req.IssuedBy != "logic:"+id {
			t.Fatalf("after the delay: %+v", cmds)
		}
		w.acts.finish(cmds[1].id, actuator.StatusAcknowledged)
		synctest.Wait()
		xs := w.history(id)
		if len(xs) != 1 || !xs[0].Success || len(xs[0].Actions) != 3 || xs[0].Actions[1].Status != StatusSucceeded {
			t.Fatalf("history %+v", xs)
		}
		w.close()
	})
}

// A continuation whose command is refused ends failed: the actuator the
// run switched on gets its cleanup OFF (docs/domain.md §6.5).
func TestFailedContinuationSendsCleanupOffs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(`{"name":"Two step","cooldown_seconds":0,
			"conditions":[{"type":"sensor","esp_id":"ESP_12AB34","gpio":21,"operator":">","value":30}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":25},{"type":"delay","seconds":5},
			{"type":"actuator","esp_id":"ESP_12AB34","gpio":26}]}`)
		w.reading(21, "sht31_temp", 31)
		synctest.Wait()
		w.acts.refuse(devESP+":26", actuator.CodeEmergencyStop)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		cmds := w.acts.issued()
		if len(cmds) != 2 || cmds[1].off == nil || cmds[1].off.GPIO != 25 || cmds[1].off.Metadata["reason"] != "sequence_abort" {
			t.Fatalf("commands %+v", cmds)
		}
		for _, c := range cmds {
			w.acts.finish(c.id, actuator.StatusAcknowledged)
		}
		synctest.Wait()
		xs := w.history(id)
		if xs[0].Success || xs[0].TerminalReason != actuator.CodeEmergencyStop {
			t.Fatalf("history %+v", xs[0])
		}
	})
}

func TestEmergencyStopCancelsContinuations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(`{"name":"Long","cooldown_seconds":0,
			"conditions":[{"type":"sensor","esp_id":"ESP_12AB34","gpio":21,"operator":">","value":30}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":25},{"type":"delay","seconds":600},
			{"type":"actuator","esp_id":"ESP_12AB34","gpio":26}]}`)
		w.reading(21, "sht31_temp", 31)
		synctest.Wait()
		esp := devESP
		w.bus.Publish(event.Event{Data: event.Emergency{Action: "stop", Scope: "device", EspID: &esp}})
		synctest.Wait()
		time.Sleep(601 * time.Second)
		synctest.Wait()
		cmds := w.acts.issued()
		if len(cmds) != 2 || cmds[1].off == nil || cmds[1].off.GPIO != 25 {
			t.Fatalf("commands %+v (want the ON and its cleanup OFF, no second ON)", cmds)
		}
		xs := w.history(id)
		if xs[0].Actions[1].Code != codeCancelled || !strings.Contains(xs[0].Actions[1].Message, "emergency_stop") {
			t.Fatalf("history %+v", xs[0])
		}
	})
}

func TestHysteresisSourceOffline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(`{"name":"Heater","cooldown_seconds":300,
			"conditions":[{"type":"hysteresis","esp_id":"ESP_12AB34","gpio":4,"activate_below":18,"deactivate_above":21}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":26}]}`)
		synctest.Wait()
		w.reading(4, "ds18b20", 17)
		synctest.Wait()
		time.Sleep(time.Second) // the history orders by time
		w.devices.set(devESP, device.StatusOffline)
		w.bus.Publish(event.Event{Data: event.DeviceStatus{EspID: devESP, Status: device.StatusOffline,
			PreviousStatus: device.StatusOnline}})
		synctest.Wait()
		cmds := w.acts.issued()
		if len(cmds) != 2 || cmds[1].off == nil || cmds[1].off.Metadata["reason"] != "source_offline" {
			t.Fatalf("commands %+v", cmds)
		}
		xs := w.history(id)
		if xs[0].Trigger.Reason != "source_offline" {
			t.Fatalf("history %+v", xs[0])
		}
		if err := w.st.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		hs, _ := w.st.LoadHysteresis(context.Background())
		if len(hs) != 1 || hs[0].Active {
			t.Fatalf("stored state %+v", hs)
		}
	})
}

func TestTimerSkipsUnchangedAndRenewsNearTheBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(`{"name":"Lights","cooldown_seconds":0,
			"conditions":[{"type":"time","start_time":"00:00","end_time":"24:00"}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":27}]}`)
		synctest.Wait() // the rule_update run switches it on
		if n := len(w.acts.issued()); n != 1 {
			t.Fatalf("%d commands after creation", n)
		}
		time.Sleep(time.Second)
		far := time.Now().Add(time.Hour)
		w.acts.setState(devESP+":27", actuator.StateView{State: "on", Value: 1, AutoOffAt: &far})
		_ = w.eng.Tick(context.Background())
		synctest.Wait()
		if n := len(w.acts.issued()); n != 1 {
			t.Fatalf("an output already on was switched again: %d", n)
		}
		xs := w.history(id)
		if xs[0].Actions[0].Status != StatusNoChange || !xs[0].Success {
			t.Fatalf("history %+v", xs[0])
		}
		near := time.Now().Add(119 * time.Second)
		w.acts.setState(devESP+":27", actuator.StateView{State: "on", Value: 0.996, AutoOffAt: &near})
		_ = w.eng.Tick(context.Background())
		synctest.Wait()
		if n := len(w.acts.issued()); n != 2 {
			t.Fatalf("less than two timer intervals left, but no renewal: %d", n)
		}
	})
}

func TestDisablingAnActiveHysteresisRuleSendsOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(`{"name":"Heater",
			"conditions":[{"type":"hysteresis","esp_id":"ESP_12AB34","gpio":4,"activate_below":18,"deactivate_above":21}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":26}]}`)
		synctest.Wait()
		w.reading(4, "ds18b20", 17)
		synctest.Wait()
		if _, prev, err := w.eng.Toggle(context.Background(), id, false); err != nil || !prev {
			t.Fatalf("toggle: %v %v", prev, err)
		}
		synctest.Wait()
		cmds := w.acts.issued()
		if len(cmds) != 2 || cmds[1].off == nil || cmds[1].off.GPIO != 26 {
			t.Fatalf("commands %+v", cmds)
		}
		w.reading(4, "ds18b20", 17) // a disabled rule is not evaluated
		synctest.Wait()
		if n := len(w.acts.issued()); n != 2 {
			t.Fatalf("a disabled rule acted: %d", n)
		}
	})
}

func TestWebsocketNotificationToRoles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		id := w.rule(`{"name":"Hot alert",
			"conditions":[{"type":"sensor","esp_id":"ESP_12AB34","gpio":21,"sensor_type":"sht31_temp","operator":">","value":30}],
			"actions":[{"type":"notification","channel":"websocket","target":"operators","severity":"warning",
			"message_template":"{rule_name}: {esp_id}/{gpio} {sensor_type} is {sensor_value} {unknown}"}]}`)
		w.reading(21, "sht31_temp", 31.5)
		synctest.Wait()
		if len(w.alerts.sent) != 1 {
			t.Fatalf("sent %+v", w.alerts.sent)
		}
		s := w.alerts.sent[0]
		if s.spec.Body != "Hot alert: ESP_12AB34/21 sht31_temp is 31.5 {unknown}" || s.spec.Source != "logic_engine" ||
			s.spec.Severity != "warning" {
			t.Fatalf("spec %+v", s.spec)
		}
		if len(s.users) != 2 || s.users[0] != 1 || s.users[1] != 3 {
			t.Fatalf("recipients %v, want the active operator and admin", s.users)
		}
		if xs := w.history(id); !xs[0].Success {
			t.Fatalf("history %+v", xs[0])
		}
	})
}

func TestCreateChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{WebhookHosts: []string{"hooks.example"}})
		defer w.close()
		ctx := context.Background()
		_, _, err := w.eng.Create(ctx, []byte(`{"name":"Bad","conditions":[{"type":"actuator_state"}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":30},
			{"type":"notification","channel":"webhook","target":"https://elsewhere.example/x","message_template":"m"}]}`))
		var inv *InvalidError
		if !errors.As(err, &inv) {
			t.Fatalf("err = %v", err)
		}
		paths := map[string]bool{}
		for _, i := range inv.Errors {
			paths[i.Path()] = true
		}
		if !paths["conditions.0.type"] {
			t.Errorf("errors %v", inv.Errors)
		}
		// Document errors stop before the existence checks; a valid
		// document with a missing target and a foreign webhook host:
		_, _, err = w.eng.Create(ctx, []byte(`{"name":"Bad","conditions":[{"type":"time","start_time":"01:00"}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":30},
			{"type":"notification","channel":"webhook","target":"https://elsewhere.example/x","message_template":"m"}]}`))
		if !errors.As(err, &inv) {
			t.Fatalf("err = %v", err)
		}
		paths = map[string]bool{}
		for _, i := range inv.Errors {
			paths[i.Path()] = true
		}
		if !paths["actions.0"] || !paths["actions.1.target"] {
			t.Errorf("errors %v", inv.Errors)
		}

		w.rule(fanRule(""))
		if _, _, err := w.eng.Create(ctx, []byte(strings.Replace(fanRule(""), "Vent fan", "VENT FAN", 1))); !errors.Is(err, ErrDuplicate) {
			t.Errorf("duplicate name: %v", err)
		}
	})
}

func TestUpdateMergesAndResetsChangedHysteresis(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		ctx := context.Background()
		id := w.rule(`{"name":"Heater","description":"old",
			"conditions":[{"type":"hysteresis","esp_id":"ESP_12AB34","gpio":4,"activate_below":18,"deactivate_above":21}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":26}]}`)
		synctest.Wait()
		w.reading(4, "ds18b20", 17)
		synctest.Wait()

		// A change that leaves the leaf alone keeps the state: the update's
		// run (rule_update, without cooldown) finds it active and repeats the ON.
		r, _, err := w.eng.Update(ctx, id, []byte(`{"description":null,"priority":7}`))
		if err != nil || r.Description != nil || r.Priority != 7 || r.Name != "Heater" {
			t.Fatalf("update: %+v %v", r, err)
		}
		synctest.Wait()
		if cmds := w.acts.issued(); len(cmds) != 2 || cmds[1].req.Command != "ON" {
			t.Fatalf("commands after an update that kept the leaf: %+v", cmds)
		}
		// A changed leaf resets the active state: OFF.
		_, _, err = w.eng.Update(ctx, id, []byte(`{"conditions":[{"type":"hysteresis","esp_id":"ESP_12AB34","gpio":4,
			"activate_below":16,"deactivate_above":21}]}`))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		cmds := w.acts.issued()
		if len(cmds) != 3 || cmds[2].off == nil {
			t.Fatalf("commands %+v", cmds)
		}
		if _, _, err := w.eng.Update(ctx, id, []byte(`{"priority":0}`)); err == nil {
			t.Fatal("an out-of-range merge was accepted")
		}
	})
}

// logicEvents drains the logic_execution events seen so far.
func (w *world) logicEvents() []event.LogicExecution {
	var out []event.LogicExecution
	for {
		select {
		case e := <-w.sub.C:
			out = append(out, e.Data.(event.LogicExecution))
		default:
			return out
		}
	}
}

// The heater of docs/domain.md §6.13 across a hub restart: the active
// state comes back from the store, so a reading between the thresholds
// sends nothing and the first one above 21 °C sends exactly one OFF.
func TestHysteresisStateSurvivesARestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		id := w.rule(`{"name":"Heater","cooldown_seconds":300,
			"conditions":[{"type":"hysteresis","esp_id":"ESP_12AB34","gpio":4,"sensor_type":"ds18b20",
			"activate_below":18,"deactivate_above":21}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":26,"command":"ON","value":1}]}`)
		synctest.Wait()
		w.reading(4, "ds18b20", 17.5)
		synctest.Wait()
		on := w.acts.issued()
		if len(on) != 1 || on[0].req.Command != "ON" || on[0].req.GPIO != 26 {
			t.Fatalf("before the restart: %+v", on)
		}
		w.acts.finish(on[0].id, actuator.StatusAcknowledged)
		w.acts.setState(devESP+":26", actuator.StateView{State: "on", Value: 1})
		synctest.Wait()

		time.Sleep(time.Minute)
		w.close()
		w.open()
		defer w.close()
		synctest.Wait()
		if n := len(w.acts.issued()); n != 1 {
			t.Fatalf("the restart itself sent %d commands", n-1)
		}

		w.reading(4, "ds18b20", 19.9)
		synctest.Wait()
		if cmds := w.acts.issued(); len(cmds) != 1 {
			t.Fatalf("a reading between the thresholds after the restart sent %+v", cmds[1:])
		}
		time.Sleep(time.Minute)
		w.reading(4, "ds18b20", 21.3)
		synctest.Wait()
		time.Sleep(time.Minute)
		w.reading(4, "ds18b20", 21.5) // inactive now: nothing more
		synctest.Wait()
		cmds := w.acts.issued()
		if len(cmds) != 2 || cmds[1].off == nil || cmds[1].off.GPIO != 26 ||
			cmds[1].off.IssuedBy != "logic:"+id {
			t.Fatalf("after the restart, want exactly one OFF: %+v", cmds)
		}
	})
}

// Issue 10 acceptance: a rule waiting in a 10-minute delay neither blocks
// other rules nor holds a lock on what it switched: a lower-priority rule on
// the same actuator commands it during the delay, the waiting rule's own new
// trigger is skipped (already running), and the continuation still runs.
func TestLongDelayNeitherBlocksNorHoldsALock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		defer w.close()
		long := w.rule(`{"name":"Long","priority":10,"cooldown_seconds":0,
			"conditions":[{"type":"sensor","esp_id":"ESP_12AB34","gpio":21,"operator":">","value":30}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":25},{"type":"delay","seconds":600},
			{"type":"actuator","esp_id":"ESP_12AB34","gpio":26}]}`)
		other := w.rule(`{"name":"Other","priority":50,"cooldown_seconds":0,
			"conditions":[{"type":"sensor","esp_id":"ESP_12AB34","gpio":4,"operator":"<","value":18}],
			"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":25,"command":"OFF"}]}`)
		synctest.Wait()

		w.reading(21, "sht31_temp", 31)
		synctest.Wait()
		time.Sleep(time.Minute) // a minute into the delay
		w.reading(4, "ds18b20", 17)
		w.reading(21, "sht31_temp", 32)
		synctest.Wait()

		cmds := w.acts.issued()
		if len(cmds) != 2 || cmds[0].req.IssuedBy != "logic:"+long || cmds[0].req.GPIO != 25 ||
			cmds[1].req.IssuedBy != "logic:"+other || cmds[1].req.GPIO != 25 {
			t.Fatalf("during the delay %+v (want Long's ON, then Other's command on the same pin)", cmds)
		}
		if xs := w.history(other); len(xs) != 1 || xs[0].TerminalReason == codeConflict {
			t.Fatalf("the other rule was blocked: %+v", xs)
		}

		time.Sleep(10 * time.Minute)
		synctest.Wait()
		cmds = w.acts.issued()
		if len(cmds) != 3 || cmds[2].req.IssuedBy != "logic:"+long || cmds[2].req.GPIO != 26 {
			t.Fatalf("after the delay %+v (want the continuation's ON on 26, once)", cmds)
		}
	})
}
