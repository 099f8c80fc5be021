package sequence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/event"
)

// fertigation is docs/domain.md §6.13's third example.
const fertigation = `{"name": "Morning fertigation", "enabled": true, "priority": 30,
 "conditions": [{"type": "sensor_threshold", "esp_id": "ESP_A1B2C3", "gpio": 34,
    "sensor_type": "moisture", "operator": "<", "value": 35.0}],
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

const (
	valve = "ESP_A1B2C3:27"
	pump  = "ESP_A1B2C3:32"
)

// The example runs through: valve ON, 5 s later the pump at 60 % for
// 120 s, 125 s later the valve OFF, then the report; every command is the
// rule's, carries the sequence id, and the progress and events follow.
func TestFertigationCompletes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		defer w.close()
		t0 := time.Now()
		id := w.start(fertigation)
		if !strings.HasPrefix(id, "seq-rule-1-") {
			t.Fatalf("default id %q", id)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()

		cmds := w.acts.issued()
		if len(cmds) != 3 {
			t.Fatalf("commands %+v", cmds)
		}
		on, pwm, off := cmds[0], cmds[1], cmds[2]
		if on.target() != valve || on.req.Command != "ON" || pwm.target() != pump || pwm.req.Command != "PWM" ||
			*pwm.req.Value != 0.6 || *pwm.req.Duration != 120 || off.target() != valve || off.req.Command != "OFF" {
			t.Fatalf("commands %+v", cmds)
		}
		if d := pwm.at.Sub(on.at); d != 5*time.Second {
			t.Errorf("pump %s after the valve, want 5 s (delay_after_seconds)", d)
		}
		if d := off.at.Sub(pwm.at); d != 125*time.Second {
			t.Errorf("valve closed %s after the pump, want 125 s", d)
		}
		for _, c := range cmds {
			if c.req.IssuedBy != "logic:rule-1" || c.req.Metadata["sequence_id"] != id {
				t.Errorf("command %+v", c.req)
			}
		}
		if len(w.engine.sent) != 1 || *w.engine.sent[0].trig.Value != 31.2 || w.engine.sent[0].rule.Name != "Morning fertigation" ||
			w.engine.sent[0].md["sequence_id"] != id {
			t.Fatalf("notifications %+v", w.engine.sent)
		}

		v := w.view(id)
		if v.Status != StatusCompleted || len(v.Steps) != 5 || v.Percent() != 100 || v.Error != "" ||
			len(v.CleanupOffs) != 0 || len(w.acts.offs()) != 0 {
			t.Fatalf("progress %+v", v)
		}
		for i, r := range v.Steps {
			if !r.Success || r.Index != i || r.Retries != 0 {
				t.Errorf("step %d: %+v", i, r)
			}
		}
		// A step's result is known when its action is; its delay_after follows.
		if d := v.Steps[1].StartedAt.Sub(v.Steps[0].CompletedAt); d != 5*time.Second || v.Steps[2].DurationMS() != 125000 {
			t.Errorf("the pump step began %s after the valve's result, want its delay_after (5 s)", d)
		}
		if v.CompletedAt.Sub(t0) != 130*time.Second {
			t.Errorf("completed after %s", v.CompletedAt.Sub(t0))
		}
		if row := w.stored(id); row.Status != StatusCompleted || row.FinishedAt == nil {
			t.Fatalf("stored %+v", row)
		}

		var kinds []string
		for _, e := range w.events() {
			switch x := e.(type) {
			case event.SequenceStep:
				kinds = append(kinds, fmt.Sprintf("%d:%s", x.Step, x.Status))
			case event.SequenceCompleted:
				if !x.Success || x.StepsCompleted != 5 || x.Status != StatusCompleted || x.DurationSeconds != 130 {
					t.Errorf("completed event %+v", x)
				}
				kinds = append(kinds, "completed")
			default:
				kinds = append(kinds, string(e.EventType()))
			}
		}
		want := []string{"sequence_started", "0:starting", "0:completed", "1:starting", "1:completed", "2:starting",
			"2:completed", "3:starting", "3:completed", "4:starting", "4:completed", "completed"}
		if !slices.Equal(kinds, want) {
			t.Fatalf("events %v", kinds)
		}
	})
}

// The pump's attempts are not acknowledged in time: one retry after
// retry_delay_seconds, then the sequence fails (abort_on_failure) and
// switches off both the valve and the pump, which it may have switched on.
func TestRetryThenAbortSwitchesOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		defer w.close()
		w.acts.answers(pump, actuator.StatusTimeout, "")
		id := w.start(fertigation)
		time.Sleep(10 * time.Minute)
		synctest.Wait()

		v := w.view(id)
		if v.Status != StatusFailed || v.ErrorCode != codeStepTimeout || len(v.Steps) != 2 {
			t.Fatalf("progress %+v", v)
		}
		if r := v.Steps[1]; r.Success || r.Retries != 1 || r.ErrorCode != codeStepTimeout {
			t.Fatalf("pump step %+v", r)
		}
		cmds := w.acts.issued()
		if len(cmds) != 5 || cmds[1].target() != pump || cmds[2].target() != pump {
			t.Fatalf("commands %+v", cmds)
		}
		// The first attempt timed out at once; the second came retry_delay_seconds (1 s) later.
		if d := cmds[2].at.Sub(cmds[1].at); d != time.Second {
			t.Errorf("retry after %s", d)
		}
		offs := w.acts.offs()
		slices.Sort(offs)
		if !slices.Equal(offs, []string{valve, pump}) || cmds[3].off.IssuedBy != "logic:rule-1" ||
			cmds[3].off.Metadata["reason"] != "sequence_abort" || len(v.CleanupOffs) != 2 {
			t.Fatalf("cleanup %v %+v", offs, v.CleanupOffs)
		}
		// The second attempt waited its timeout_seconds (30 s).
		if d := cmds[3].at.Sub(cmds[2].at); d != 30*time.Second {
			t.Errorf("gave up %s after the second attempt", d)
		}
		if len(w.engine.sent) != 0 {
			t.Fatal("the report ran after an abort")
		}
		var codes []string
		for _, e := range w.events() {
			if x, ok := e.(event.SequenceError); ok {
				codes = append(codes, x.ErrorCode)
			}
			if x, ok := e.(event.SequenceCompleted); ok && (x.Success || x.StepsFailed != 1 || *x.ErrorCode != codeStepTimeout) {
				t.Errorf("completed event %+v", x)
			}
		}
		if !slices.Equal(codes, []string{codeStepTimeout}) {
			t.Fatalf("sequence_error codes %v", codes)
		}
	})
}

// on_failure continue wins over abort_on_failure; abort on a step wins
// over abort_on_failure false; a refused command fails its step with the
// rejection's code, without a cleanup OFF for it.
func TestOnFailure(t *testing.T) {
	steps := `"steps":[
	  {"name":"Open","action":{"type":"actuator","esp_id":"ESP_A1B2C3","gpio":27}},
	  {"name":"Pump","on_failure":"%s","action":{"type":"actuator","esp_id":"ESP_A1B2C3","gpio":32,"command":"PWM","value":0.5}},
	  {"name":"Close","action":{"type":"actuator","esp_id":"ESP_A1B2C3","gpio":27,"command":"OFF"}}]`
	doc := func(abort bool, onFailure string) string {
		return fmt.Sprintf(`{"name":"Steps","conditions":[{"type":"time","start_time":"00:00","end_time":"24:00"}],
			"actions":[{"type":"sequence","abort_on_failure":%v,`+steps+`}]}`, abort, onFailure)
	}
	cases := []struct {
		name      string
		doc       string
		status    string
		steps     int
		cleanup   []string
		completed bool
	}{
		{"continue beats abort_on_failure", doc(true, "continue"), StatusCompleted, 3, nil, true},
		{"abort beats abort_on_failure false", doc(false, "abort"), StatusFailed, 2, []string{valve}, false},
		{"abort_on_failure true decides", strings.Replace(doc(true, "x"), `"on_failure":"x",`, "", 1), StatusFailed, 2,
			[]string{valve}, false},
		{"abort_on_failure false decides", strings.Replace(doc(false, "x"), `"on_failure":"x",`, "", 1), StatusCompleted, 3,
			nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				defer w.close()
				w.acts.reject[pump] = actuator.CodeCooldown
				id := w.start(tc.doc)
				time.Sleep(time.Hour)
				synctest.Wait()
				v := w.view(id)
				if v.Status != tc.status || len(v.Steps) != tc.steps || v.Steps[1].ErrorCode != actuator.CodeCooldown ||
					v.Steps[1].Retries != 0 {
					t.Fatalf("progress %+v", v)
				}
				if offs := w.acts.offs(); !slices.Equal(offs, tc.cleanup) {
					t.Fatalf("cleanup OFFs %v, want %v", offs, tc.cleanup)
				}
			})
		})
	}
}

// A step whose device has no tokens left, or whose rules are paused after
// an emergency stop, fails without a command.
func TestStepGates(t *testing.T) {
	one := `{"name":"One","conditions":[{"type":"time","start_time":"00:00","end_time":"24:00"}],
		"actions":[{"type":"sequence","steps":[{"action":{"type":"actuator","esp_id":"ESP_A1B2C3","gpio":27}}]}]}`
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		defer w.close()
		w.engine.noTokens = true
		id := w.start(one)
		synctest.Wait()
		if v := w.view(id); v.Status != StatusFailed || v.ErrorCode != codeRateLimited || len(w.acts.issued()) != 0 {
			t.Fatalf("without tokens %+v", v)
		}
		w.engine.noTokens = false
		w.svc.d.Pauses = pauses{"ESP_A1B2C3": true}
		time.Sleep(time.Second)
		id = w.start(one)
		synctest.Wait()
		if v := w.view(id); v.Status != StatusFailed || v.ErrorCode != actuator.CodeEmergencyStop || len(w.acts.issued()) != 0 {
			t.Fatalf("paused %+v", v)
		}
	})
}

type pauses map[string]bool

func (p pauses) RulesPaused(esp string) bool { return p[esp] }

// A notification step fails with the engine's code; a long wait ends at
// max_duration_seconds as a timeout with the cleanup OFF.
func TestNotificationFailureAndOverallTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		defer w.close()
		w.engine.fail = codedErr{"no_recipients"}
		id := w.start(`{"name":"Note","conditions":[{"type":"time","start_time":"00:00","end_time":"24:00"}],
			"actions":[{"type":"sequence","steps":[{"action":{"type":"notification","channel":"websocket",
			"target":"nobody","message_template":"x"}}]}]}`)
		synctest.Wait()
		if v := w.view(id); v.Status != StatusFailed || v.ErrorCode != "no_recipients" {
			t.Fatalf("notification %+v", v)
		}

		t0 := time.Now()
		id = w.start(`{"name":"Long","conditions":[{"type":"time","start_time":"00:00","end_time":"24:00"}],
			"actions":[{"type":"sequence","sequence_id":"long","max_duration_seconds":60,"steps":[
			{"action":{"type":"actuator","esp_id":"ESP_A1B2C3","gpio":27}},{"delay_seconds":600}]}]}`)
		time.Sleep(time.Hour)
		synctest.Wait()
		v := w.view(id)
		if v.Status != StatusTimeout || v.ErrorCode != codeTimeout || v.CompletedAt.Sub(t0) != time.Minute ||
			len(v.Steps) != 2 || v.Steps[1].Success {
			t.Fatalf("timeout %+v", v)
		}
		if offs := w.acts.offs(); !slices.Equal(offs, []string{valve}) {
			t.Fatalf("cleanup %v", offs)
		}
	})
}

// Cancel ends a running sequence with its cleanup OFFs once stored; a
// finished one cannot be cancelled.
func TestCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		defer w.close()
		id := w.start(fertigation)
		time.Sleep(60 * time.Second) // inside the Wait step
		synctest.Wait()
		w.events()
		v, err := w.svc.Cancel(context.Background(), id, "User cancelled", "user:olga")
		if err != nil || v.Status != StatusCancelled || v.Error != "User cancelled" || v.CancelledBy != "user:olga" {
			t.Fatalf("cancel: %+v %v", v, err)
		}
		offs := w.acts.offs()
		slices.Sort(offs)
		if !slices.Equal(offs, []string{valve, pump}) {
			t.Fatalf("cleanup %v", offs)
		}
		if row := w.stored(id); row.Status != StatusCancelled {
			t.Fatalf("stored %+v", row)
		}
		if last := v.Steps[len(v.Steps)-1]; last.Index != 2 || last.Success || last.ErrorCode != codeCancelled {
			t.Fatalf("the interrupted step %+v", last)
		}
		evs := w.events()
		if len(evs) != 2 || evs[0].(event.SequenceCancelled).CancelledBy != "user:olga" ||
			evs[1].(event.SequenceCompleted).Status != StatusCancelled {
			t.Fatalf("events %+v", evs)
		}
		if _, err := w.svc.Cancel(context.Background(), id, "again", "user:olga"); !errors.Is(err, ErrInvalidState) {
			t.Fatalf("second cancel: %v", err)
		}
		if _, err := w.svc.Cancel(context.Background(), "nope", "x", "user:olga"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown: %v", err)
		}
	})
}

// An emergency stop cancels the sequences touching its device, only them.
func TestEmergencyStopCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		defer w.close()
		id := w.start(fertigation)
		other := w.start(`{"name":"Other","conditions":[{"type":"time","start_time":"00:00","end_time":"24:00"}],
			"actions":[{"type":"sequence","sequence_id":"other","steps":[
			{"action":{"type":"actuator","esp_id":"ESP_OTHER1","gpio":5}},{"delay_seconds":600}]}]}`)
		time.Sleep(60 * time.Second)
		synctest.Wait()
		esp := "ESP_A1B2C3"
		w.bus.Publish(event.Event{Data: event.Emergency{Action: "stop", Scope: "device", EspID: &esp,
			IssuedBy: "emergency:olga"}})
		synctest.Wait()
		if v := w.view(id); v.Status != StatusCancelled || v.Error != "emergency_stop" || v.CancelledBy != "emergency:olga" {
			t.Fatalf("stopped device's sequence %+v", v)
		}
		if v := w.view(other); v.Status != StatusRunning {
			t.Fatalf("the other device's sequence %+v", v)
		}
		w.bus.Publish(event.Event{Data: event.Emergency{Action: "stop", Scope: "global"}})
		synctest.Wait()
		if v := w.view(other); v.Status != StatusCancelled {
			t.Fatalf("after a global stop %+v", v)
		}
	})
}

// At most 20 run at once, and a running id is not started twice; CanStart
// tells the same without taking a place.
func TestLimitAndDuplicate(t *testing.T) {
	long := func(id string) string {
		return `{"name":"Long","conditions":[{"type":"time","start_time":"00:00","end_time":"24:00"}],
			"actions":[{"type":"sequence","sequence_id":"` + id + `","steps":[{"delay_seconds":600}]}]}`
	}
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		defer w.close()
		w.start(long("dup"))
		if _, err := w.svc.Start(context.Background(), ruleOf(t, long("dup")), seqOf(t, long("dup")), trigger()); codeOf(err) != CodeDuplicate {
			t.Fatalf("duplicate: %v", err)
		}
		for i := 1; i < MaxRunning; i++ {
			w.start(long(fmt.Sprint("s", i)))
		}
		if err := w.svc.CanStart(ruleOf(t, long("x")), seqOf(t, long("x"))); codeOf(err) != CodeLimitExceeded {
			t.Fatalf("CanStart at the limit: %v", err)
		}
		if _, err := w.svc.Start(context.Background(), ruleOf(t, long("x")), seqOf(t, long("x")), trigger()); codeOf(err) != CodeLimitExceeded {
			t.Fatalf("21st: %v", err)
		}
		if _, err := w.svc.Cancel(context.Background(), "s1", "room", "user:olga"); err != nil {
			t.Fatal(err)
		}
		if err := w.svc.CanStart(ruleOf(t, long("x")), seqOf(t, long("x"))); err != nil {
			t.Fatalf("CanStart with a free place: %v", err)
		}
		w.start(long("x"))
		_, total, running, _, _ := w.svc.List(false, 0)
		if total != MaxRunning+1 || running != MaxRunning {
			t.Fatalf("total %d running %d", total, running)
		}
		// A finished id may be taken again.
		if _, err := w.svc.Cancel(context.Background(), "dup", "room", "user:olga"); err != nil {
			t.Fatal(err)
		}
		w.start(strings.Replace(long("s1"), `{"delay_seconds":600}`, `{"delay_seconds":1}`, 1))
	})
}

func codeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return fmt.Sprint(err)
}

// A restart during a wait resumes the sequence where it was; a restart
// after a long stop ends it cancelled (hub_restart) with its cleanup OFFs.
func TestRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		id := w.start(fertigation)
		time.Sleep(60 * time.Second) // inside the Wait step
		synctest.Wait()
		w.close()
		time.Sleep(30 * time.Second)
		w.open()
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		v := w.view(id)
		if v.Status != StatusCompleted || len(v.Steps) != 5 || len(w.acts.offs()) != 0 {
			t.Fatalf("resumed %+v", v)
		}
		cmds := w.acts.issued()
		if len(cmds) != 3 || cmds[2].req.Command != "OFF" || cmds[2].at.Sub(cmds[1].at) != 125*time.Second {
			t.Fatalf("commands after the restart %+v", cmds)
		}
		w.close()
	})
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		id := w.start(fertigation)
		time.Sleep(60 * time.Second)
		synctest.Wait()
		w.close()
		time.Sleep(time.Hour)
		w.open()
		defer w.close()
		synctest.Wait()
		v := w.view(id)
		if v.Status != StatusCancelled || v.Error != codeInterrupted {
			t.Fatalf("after a long stop %+v", v)
		}
		offs := w.acts.offs()
		slices.Sort(offs)
		if !slices.Equal(offs, []string{valve, pump}) {
			t.Fatalf("cleanup %v", offs)
		}
	})
}

// A restart while a step's command waits for its answer picks the answer
// up from the command's record.
func TestRestartDuringAnAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		w.acts.answers(valve, "")
		id := w.start(fertigation)
		synctest.Wait()
		w.close()
		first := w.acts.issued()[0]
		w.acts.mu.Lock()
		r := w.acts.recs[first.id]
		r.Status = actuator.StatusAcknowledged
		w.acts.recs[first.id] = r
		w.acts.mu.Unlock()
		w.open()
		defer w.close()
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		v := w.view(id)
		if v.Status != StatusCompleted || !v.Steps[0].Success {
			t.Fatalf("progress %+v", v)
		}
		if cmds := w.acts.issued(); len(cmds) != 3 || cmds[0].target() != valve || cmds[1].target() != pump {
			t.Fatalf("the valve's command was repeated: %+v", cmds)
		}
	})
}

// Finished progress stays an hour, then the sweep drops it from memory and
// the store; running sequences stay.
func TestSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		defer w.close()
		done := w.start(`{"name":"Short","conditions":[{"type":"time","start_time":"00:00","end_time":"24:00"}],
			"actions":[{"type":"sequence","sequence_id":"short","steps":[{"delay_seconds":1}]}]}`)
		time.Sleep(30 * time.Minute)
		long := w.start(`{"name":"Long","conditions":[{"type":"time","start_time":"00:00","end_time":"24:00"}],
			"actions":[{"type":"sequence","sequence_id":"long","steps":[{"delay_seconds":3600}]}]}`)
		synctest.Wait()
		if err := w.svc.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := w.svc.Get(done); err != nil {
			t.Fatalf("swept before its hour: %v", err)
		}
		time.Sleep(31 * time.Minute)
		if err := w.svc.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := w.svc.Get(done); !errors.Is(err, ErrNotFound) {
			t.Fatalf("kept after its hour: %v", err)
		}
		rows, _ := w.st.LoadSequences(context.Background())
		if len(rows) != 1 || rows[0].ID != long {
			t.Fatalf("stored after the sweep %+v", rows)
		}
		st := w.svc.Stats()
		if st.Total != 1 || st.Running != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}
