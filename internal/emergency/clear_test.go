package emergency

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
)

// A clear is refused with guard until 6 s after the stop message was
// published, also while the message still waits for a valve; after it the
// device is asked with its token.
func TestClearGuard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5), valve(12, 3*time.Second))
		r.answerClear("response", `{"status":"emergency_cleared","timestamp":3725114}`)
		r.stop(espA, nil)

		res := r.clear(ClearRequest{EspID: espA})
		if d := res.Details[0]; d.Outcome != OutcomeGuard || !strings.Contains(d.Message, "not published yet") {
			t.Fatalf("clear during the valve wait: %+v", d)
		}
		time.Sleep(3 * time.Second) // the stop message goes out now
		synctest.Wait()

		time.Sleep(ClearGuard - time.Millisecond)
		res = r.clear(ClearRequest{EspID: espA})
		if res.Details[0].Outcome != OutcomeGuard || !res.StillActive || res.Success {
			t.Fatalf("clear just before the guard: %+v", res)
		}
		if n := r.j.count("publish kaiser/god/esp/" + espA + "/actuator/emergency clear_emergency"); n != 0 {
			t.Fatalf("a guarded clear was published %d times", n)
		}

		time.Sleep(time.Millisecond)
		res = r.clear(ClearRequest{EspID: espA})
		if res.Details[0].Outcome != OutcomeCleared || res.DevicesCleared != 1 || !res.Success || res.StillActive {
			t.Fatalf("clear after the guard: %+v", res)
		}
		if r.svc.Latched(espA) {
			t.Fatal("still latched after the device's answer")
		}
	})
}

// Each answer of the device, or its silence, gives its outcome; only
// cleared and reconfigured unlatch.
func TestClearOutcomes(t *testing.T) {
	tests := []struct {
		name        string
		suffix      string // emergency reply topic; "" = no answer
		payload     string
		reconfigure bool
		offline     bool
		push        func(r *rig) func(espID, trigger string) (string, error)
		want        string
		unlatched   bool
	}{
		{name: "cleared", suffix: "response", payload: `{"status":"emergency_cleared","timestamp":1}`,
			want: OutcomeCleared, unlatched: true},
		{name: "token mismatch", suffix: "error", payload: `{"error":"unauthorized","message":"Invalid auth_token"}`,
			want: OutcomeRejected},
		{name: "too early for the device", suffix: "error",
			payload: `{"error":"clear_failed","message":"Safety verification failed"}`, want: OutcomeRejected},
		{name: "no answer", want: OutcomeTimeout},
		{name: "offline", offline: true, want: OutcomeOffline},
		{name: "reconfigured", reconfigure: true, push: settles(device.PushApplied),
			want: OutcomeReconfigured, unlatched: true},
		{name: "reconfiguration failed", reconfigure: true, push: settles(device.PushFailed), want: OutcomeTimeout},
		{name: "reconfiguration unanswered", reconfigure: true, want: OutcomeTimeout},
		{name: "reconfiguration not pushed", reconfigure: true, push: func(*rig) func(string, string) (string, error) {
			return func(string, string) (string, error) { return "", device.ErrOffline }
		}, want: OutcomeTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t)
				r.device(espA, pump(5))
				if tt.suffix != "" {
					r.answerClear(tt.suffix, tt.payload)
				}
				if tt.push != nil {
					r.devices.push = tt.push(r)
				}
				r.stop(espA, nil)
				time.Sleep(ClearGuard)
				if tt.offline {
					r.devices.setStatus(espA, device.StatusOffline)
				}

				start := time.Now()
				res := r.clear(ClearRequest{EspID: espA, Reconfigure: tt.reconfigure})
				d := res.Details[0]
				if d.Outcome != tt.want {
					t.Fatalf("outcome %q (%s), want %q", d.Outcome, d.Message, tt.want)
				}
				if r.svc.Latched(espA) == tt.unlatched || res.Success != tt.unlatched {
					t.Fatalf("latched %v, success %v", r.svc.Latched(espA), res.Success)
				}
				if tt.want == OutcomeTimeout && tt.push == nil && time.Since(start) < ClearWait {
					t.Fatalf("timed out after %s, before the 10 s wait", time.Since(start))
				}

				l := r.svc.snapshot(deviceScope(espA))
				last := l.ClearAttempts[len(l.ClearAttempts)-1]
				if last.Outcome != tt.want || last.User != "olga" {
					t.Errorf("recorded attempt %+v", last)
				}
				if got := r.audit.of("emergency_cleared"); len(got) != 1 || got[0].Details["outcome"] != tt.want {
					t.Errorf("audit %+v", got)
				}
			})
		})
	}
}

// settles is a PushConfig that publishes a clear-by-reconfiguration push and
// settles it with the actuator section in state, as the device registry's
// hooks do.
func settles(state string) func(r *rig) func(espID, trigger string) (string, error) {
	return func(r *rig) func(string, string) (string, error) {
		return func(espID, trigger string) (string, error) {
			p := device.PushResult{
				EspID:         espID,
				CorrelationID: "cfg-e7",
				Trigger:       trigger,
				Status:        device.PushPending,
				Sections:      map[string]string{"actuator": device.PushPending},
			}
			r.svc.HandlePushPublished(p)
			p.Status, p.Sections = state, map[string]string{"actuator": state}
			r.svc.HandlePushResult(device.PushResult{EspID: espID, CorrelationID: "cfg-other", Trigger: trigger})
			r.svc.HandlePushResult(p)
			return p.CorrelationID, nil
		}
	}
}

// The clear by re-configuration pushes with its own trigger, is not
// followed by a re-safing, and unlatches when the actuator section applies.
func TestClearByReconfiguration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		r.devices.push = settles(device.PushApplied)(r)
		r.stop(espA, nil)
		time.Sleep(ClearGuard)
		offs := len(r.acts.offsFor(espA))

		res := r.clear(ClearRequest{EspID: espA, Reconfigure: true, ResumeRules: true})
		synctest.Wait()

		if res.Details[0].Outcome != OutcomeReconfigured || r.svc.Latched(espA) {
			t.Fatalf("result %+v", res)
		}
		if r.j.index("push "+espA+" "+TriggerClear) < r.j.index("publish kaiser/god/esp/"+espA+"/actuator/emergency clear") {
			t.Fatalf("pushed before asking the device: %v", r.j.all())
		}
		if got := len(r.acts.offsFor(espA)); got != offs {
			t.Fatalf("the E7 push was followed by a re-safing: %d OFFs, want %d", got, offs)
		}
		if r.svc.RulesPaused(espA) {
			t.Error("rules paused although resume_rules was set")
		}
	})
}

// Rules of a cleared device stay paused until a clear says resume_rules,
// also one made when nothing is latched any more.
func TestRulesStayPausedUntilResumed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		r.answerClear("response", `{"status":"emergency_cleared","timestamp":1}`)
		r.stop(espA, nil)
		if !r.svc.RulesPaused(espA) {
			t.Fatal("rules run while latched")
		}
		time.Sleep(ClearGuard)

		r.clear(ClearRequest{EspID: espA})
		if r.svc.Latched(espA) || !r.svc.RulesPaused(espA) {
			t.Fatalf("after a clear without resume: latched %v paused %v", r.svc.Latched(espA), r.svc.RulesPaused(espA))
		}
		if st := r.svc.Status(); len(st.RulesPaused) != 1 || st.RulesPaused[0] != espA || st.Active {
			t.Fatalf("status %+v", st)
		}

		res := r.clear(ClearRequest{EspID: espA, ResumeRules: true})
		if res.DevicesCleared != 0 || !res.Success || r.svc.RulesPaused(espA) {
			t.Fatalf("resume without a latch: %+v, paused %v", res, r.svc.RulesPaused(espA))
		}
		if l, _ := r.store.latch(deviceScope(espA)); l.RulesPaused {
			t.Error("resumed rules not stored")
		}
	})
}

// A global clear removes the global latch once its guard has passed and
// clears every latched device on its own: a device that does not answer
// stays latched.
func TestGlobalClear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		r.device(espB, pump(5))
		r.broker.answer = func(p published) {
			if strings.Contains(p.topic, espA) && p.payload["command"] == "clear_emergency" {
				m := message(t, espA, "actuator/emergency/response", `{"status":"emergency_cleared","timestamp":1}`)
				if err := r.svc.HandleEmergencyResponse(context.Background(), m); err != nil {
					t.Error(err)
				}
			}
		}
		r.stop("", nil)

		res := r.clear(ClearRequest{})
		if !r.svc.Latched("ESP_OTHER1") || res.Success {
			t.Fatalf("global latch removed inside its guard: %+v", res)
		}
		time.Sleep(ClearGuard)

		res = r.clear(ClearRequest{})
		if r.svc.Latched("ESP_OTHER1") {
			t.Fatal("global latch still active after the guard")
		}
		if r.svc.Latched(espA) || !r.svc.Latched(espB) {
			t.Fatalf("A latched %v (answered), B latched %v (silent)", r.svc.Latched(espA), r.svc.Latched(espB))
		}
		if res.DevicesCleared != 1 || res.Success || !res.StillActive || len(res.Details) != 2 {
			t.Fatalf("result %+v", res)
		}
		if n := len(r.audit.of("emergency_cleared")); n != 2*(2+1) {
			t.Errorf("%d audit entries, want one per device and one for the global latch in each of the 2 clears", n)
		}
	})
}

// A device the device itself latched, with no hub latch, is a clear target.
func TestClearDeviceLatchedActuators(t *testing.T) {
	r := newRig(t)
	r.device(espA, pump(5))
	r.acts.latched[espA] = []int{5}
	r.answerClear("response", `{"status":"emergency_cleared","timestamp":1}`)

	res := r.clear(ClearRequest{})
	if len(res.Details) != 1 || res.Details[0].Outcome != OutcomeCleared || !res.Success {
		t.Fatalf("result %+v", res)
	}
}

// Nothing latched: 200 with nothing cleared; broker down and unknown
// devices are errors before anything is attempted.
func TestClearRefusals(t *testing.T) {
	r := newRig(t)
	r.device(espA, pump(5))

	if res := r.clear(ClearRequest{}); res.DevicesCleared != 0 || !res.Success || len(res.Details) != 0 {
		t.Fatalf("nothing latched: %+v", res)
	}
	if _, err := r.svc.Clear(context.Background(), ClearRequest{EspID: "ESP_NOPE01"}); !errors.Is(err, ErrDeviceNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
	r.stop(espA, nil)
	r.broker.down = true
	before := len(r.j.all())
	if _, err := r.svc.Clear(context.Background(), ClearRequest{EspID: espA}); !errors.Is(err, ErrBrokerDown) {
		t.Fatalf("broker down: %v", err)
	}
	if len(r.j.all()) != before || !r.svc.Latched(espA) {
		t.Fatal("a clear with the broker down attempted something")
	}
}

// Replies are gated; an unauthorized answer nobody waits for is a refused
// stop and raises a critical alert.
func TestEmergencyReplies(t *testing.T) {
	r := newRig(t)
	r.device(espA, pump(5))

	m := message(t, espA, "actuator/emergency/response", `{"status":"emergency_cleared","timestamp":1}`)
	m.Replay = true
	if err := r.svc.HandleEmergencyResponse(context.Background(), m); err == nil {
		t.Error("a replayed reply was accepted")
	}
	if err := r.svc.HandleEmergencyError(context.Background(),
		message(t, "ESP_NOPE01", "actuator/emergency/error", `{"error":"unauthorized"}`)); err == nil {
		t.Error("a reply from an unknown device was accepted")
	}
	if err := r.svc.HandleEmergencyError(context.Background(),
		message(t, espA, "actuator/emergency/error", `{"error":"unauthorized","message":"Invalid auth_token"}`)); err != nil {
		t.Fatal(err)
	}
	if a, ok := r.alerts.raisedKey("emergency_refused:" + espA); !ok || a.Severity != "critical" {
		t.Fatalf("alerts %+v", r.alerts.raised)
	}
	if err := r.svc.HandleEmergencyResponse(context.Background(),
		message(t, espA, "actuator/emergency/response", `{"timestamp":1}`)); err == nil {
		t.Error("a reply without status was accepted")
	}
}

// The alert of an incident is resolved once none of its latches is active.
func TestClearResolvesTheIncidentAlert(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		r.answerClear("response", `{"status":"emergency_cleared","timestamp":1}`)
		res := r.stop(espA, nil)
		time.Sleep(ClearGuard)
		r.clear(ClearRequest{EspID: espA})
		if !r.alerts.wasCleared("emergency_stop:" + res.IncidentCorrelationID) {
			t.Fatalf("incident alert not resolved: %v", r.alerts.cleared)
		}
		if l, _ := r.store.latch(deviceScope(espA)); l.Active || l.ClearedBy != "olga" || l.ClearedAt == nil {
			t.Fatalf("stored latch after the clear %+v", l)
		}
		st := r.svc.Status()
		if st.Active || st.Global != nil || len(st.Devices) != 0 {
			t.Fatalf("status %+v", st)
		}
	})
}

// A stop made while a clear waits for the device is not undone by the
// device's answer to the older stop.
func TestNewerStopSurvivesAPendingClear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		r.stop(espA, nil)
		time.Sleep(ClearGuard)

		var newer StopResult
		r.broker.answer = func(p published) {
			if p.payload["command"] != "clear_emergency" {
				return
			}
			r.broker.answer = nil
			newer = r.stop(espA, nil)
			m := message(t, espA, "actuator/emergency/response", `{"status":"emergency_cleared","timestamp":1}`)
			if err := r.svc.HandleEmergencyResponse(context.Background(), m); err != nil {
				t.Error(err)
			}
		}
		res := r.clear(ClearRequest{EspID: espA})
		if !r.svc.Latched(espA) || res.Success || res.Details[0].Outcome != OutcomeGuard {
			t.Fatalf("the newer stop was cleared: %+v", res)
		}
		if l := r.svc.snapshot(deviceScope(espA)); l.IncidentCorrelationID != newer.IncidentCorrelationID {
			t.Fatalf("latch %+v", l)
		}
	})
}

// With a hub second of 100 ms (Deps.Second, as the hub's ActuatorSecond)
// the 6 s guard, the 10 s clear wait, the 10 s confirmation wait and the
// 10 s token wait are 600 ms, 1 s, 1 s and 1 s.
func TestHubSecondsScaleTheWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const second = 100 * time.Millisecond
		r := newRig(t)
		r.svc.Close()
		r.second = second
		r.start()
		r.device(espA, pump(5))
		r.device(espB)
		dev, _ := r.devices.Get(espB)
		dev.Metadata = map[string]any{"firmware_generation": "newer"}
		r.devices.set(dev)
		r.statusEvent(espB, device.StatusOnline)

		stopped := time.Now()
		res := r.stop("", nil)
		time.Sleep(6*second - time.Millisecond)
		if d := r.clear(ClearRequest{EspID: espA}).Details[0]; d.Outcome != OutcomeGuard ||
			!strings.Contains(d.Message, "allowed 6 s after it") {
			t.Fatalf("clear just before 6 hub seconds: %+v", d)
		}
		if _, ok := r.alerts.raisedKey(tokenAlertKey(espB)); ok {
			t.Fatal("token provisioning reported before 10 hub seconds")
		}

		time.Sleep(time.Millisecond)
		start := time.Now()
		d := r.clear(ClearRequest{EspID: espA}).Details[0]
		if waited := time.Since(start); d.Outcome != OutcomeTimeout || waited != 10*second {
			t.Fatalf("clear after the guard: %+v after %s, want timeout after %s", d, waited, 10*second)
		}
		if !r.svc.Latched(espA) {
			t.Fatal("a clear without an answer unlatched")
		}
		synctest.Wait()
		if _, ok := r.alerts.raisedKey(tokenAlertKey(espB)); !ok {
			t.Error("unanswered token provisioning not reported after 10 hub seconds")
		}
		if _, ok := r.alerts.raisedKey("emergency_unconfirmed:" + res.IncidentCorrelationID); !ok ||
			time.Since(stopped) < 10*second {
			t.Error("unconfirmed stop not reported after 10 hub seconds")
		}
	})
}
