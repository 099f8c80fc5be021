package device

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
)

func actuatorItem(gpio int, typ string) contract.ActuatorConfigItem {
	return contract.ActuatorConfigItem{
		GPIO:         gpio,
		ActuatorType: typ,
		ActuatorName: "an output with a name long enough to fill packets",
		Active:       true,
		AuxGPIO:      255,
	}
}

// results collects what OnPushResult reports.
type results struct {
	mu  sync.Mutex
	got []PushResult
}

func (r *results) add(p PushResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, p)
}

func (r *results) all() []PushResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// A full push lists the actuators; a push caused by sensor changes alone
// sends `actuators:[]`, so running outputs are not re-created (P1, C5);
// a removed actuator is sent inactive once (P1).
func TestPushActuatorSection(t *testing.T) {
	h := newHarness(t, Config{})
	var res results
	h.svc.OnPushResult(res.add)
	h.source.setActuators(testID, actuatorItem(5, "pump"), actuatorItem(12, "valve"))
	h.pushedOnline(sensorItem(4, "soil"))

	first := h.configs()
	if len(first) != 1 || len(first[0].Actuators) != 2 || len(first[0].Sensors) != 1 {
		t.Fatalf("the first push carries both sections: %+v", first)
	}
	for _, r := range []reply{ok("sensor"), ok("actuator")} {
		if err := h.respond(r); err != nil {
			t.Fatal(err)
		}
	}
	if got := res.all(); len(got) != 1 || got[0].Status != PushApplied || got[0].Sections["actuator"] != PushApplied ||
		len(got[0].Actuators) != 2 || got[0].EspID != testID {
		t.Fatalf("push result %+v", got)
	}

	ctx := context.Background()
	if _, err := h.svc.PushConfig(ctx, testID, TriggerSensorChange); err != nil {
		t.Fatal(err)
	}
	sensorOnly := h.configs()
	if len(sensorOnly) != 1 || len(sensorOnly[0].Actuators) != 0 || len(sensorOnly[0].Sensors) != 1 {
		t.Fatalf("a sensor change re-created actuators: %+v", sensorOnly)
	}
	if p := h.svc.LastPush(testID); p.Expected["actuator"] != 0 || len(p.Actuators) != 2 {
		t.Fatalf("the sensor push keeps what the device has: %+v", p)
	}
	if err := h.respond(ok("sensor")); err != nil {
		t.Fatal(err)
	}

	h.source.setActuators(testID, actuatorItem(5, "pump"))
	if _, err := h.svc.PushConfig(ctx, testID, TriggerActuatorChange); err != nil {
		t.Fatal(err)
	}
	removal := h.configs()[0].Actuators
	gone := actuatorItem(12, "valve")
	gone.Active = false
	if want := []contract.ActuatorConfigItem{actuatorItem(5, "pump"), gone}; !slices.Equal(removal, want) {
		t.Fatalf("actuators %+v, want the kept pump and the valve's removal", removal)
	}
	if p := h.svc.LastPush(testID); len(p.Actuators) != 1 || len(p.SentActuators) != 2 {
		t.Fatalf("recorded actuators %+v / sent %+v", p.Actuators, p.SentActuators)
	}
}

// A sensor change while the device has not confirmed its actuators must
// not drop them: the push then carries them again.
func TestSensorPushKeepsUnconfirmedActuators(t *testing.T) {
	h := newHarness(t, Config{})
	h.source.setActuators(testID, actuatorItem(5, "pump"))
	h.pushedOnline(sensorItem(4, "soil"))
	h.configs()

	if _, err := h.svc.PushConfig(context.Background(), testID, TriggerSensorChange); err != nil {
		t.Fatal(err)
	}
	if c := h.configs(); len(c) != 1 || len(c[0].Actuators) != 1 {
		t.Fatalf("the unconfirmed actuator section was dropped: %+v", c)
	}
}

// Actuators go first when a config must be split (P5); every item is
// carried once.
func TestPushSplitsActuatorsFirst(t *testing.T) {
	h := newHarness(t, Config{})
	var acts []contract.ActuatorConfigItem
	for g := range 6 {
		acts = append(acts, actuatorItem(13+g, "relay"))
	}
	var sens []contract.SensorConfigItem
	for g := range 8 {
		sens = append(sens, sensorItem(25+g, "a sensor with a rather long name "+strings.Repeat("x", g)))
	}
	h.source.setActuators(testID, acts...)
	h.pushedOnline(sens...)

	parts := h.configs()
	if len(parts) < 2 {
		t.Fatalf("%d parts, want a split", len(parts))
	}
	var gotA []contract.ActuatorConfigItem
	var gotS []contract.SensorConfigItem
	sawSensor := false
	for i, p := range parts {
		if len(p.Actuators) > 0 && sawSensor {
			t.Errorf("part %d has actuators after a part with sensors", i)
		}
		sawSensor = sawSensor || len(p.Sensors) > 0
		gotA, gotS = append(gotA, p.Actuators...), append(gotS, p.Sensors...)
	}
	if !slices.Equal(gotA, acts) || !slices.Equal(gotS, sens) {
		t.Fatalf("items not carried once each, in order")
	}
}

// A push with valves not confirmed closed is published only after their
// travel time (P4); its timeout runs from the publish. Without actuators
// the valves are not asked.
func TestPushWaitsForValveTravel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{HeartbeatTimeout: time.Hour})
		h.source.travel = 5 * time.Second
		h.source.setActuators(testID, actuatorItem(12, "valve"))
		h.source.set(testID, sensorItem(4, "soil"))
		h.online()

		p := h.svc.LastPush(testID)
		if p == nil || p.Status != PushPending {
			t.Fatalf("push %+v", p)
		}
		if sent := h.configs(); len(sent) != 0 {
			t.Fatalf("published before the valve closed: %+v", sent)
		}

		time.Sleep(5*time.Second - time.Millisecond)
		synctest.Wait()
		if sent := h.configs(); len(sent) != 0 {
			t.Fatalf("published before the travel time: %+v", sent)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		sent := h.configs()
		if len(sent) != 1 || sent[0].CorrelationID != p.CorrelationID || len(sent[0].Actuators) != 1 {
			t.Fatalf("after the travel: %+v", sent)
		}

		time.Sleep(pushTimeout - time.Millisecond)
		synctest.Wait()
		if st := h.svc.LastPush(testID).Status; st != PushPending {
			t.Fatalf("timed out %s before 15 s after the publish", st)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if st := h.svc.LastPush(testID).Status; st != PushTimedOut {
			t.Fatalf("status %s 15 s after the publish", st)
		}

		before := h.source.closed
		if _, err := h.svc.PushConfig(context.Background(), testID, TriggerSensorChange); err != nil {
			t.Fatal(err)
		}
		if h.source.closed != before+1 {
			// the timed-out actuator section is unconfirmed, so it goes again and waits again
			t.Fatalf("valves asked %d times", h.source.closed-before)
		}
	})
}

// A deferred push is dropped when the device goes offline meanwhile.
func TestDeferredPushNeedsTheDeviceOnline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{HeartbeatTimeout: time.Hour})
		h.source.travel = 5 * time.Second
		h.source.setActuators(testID, actuatorItem(12, "valve"))
		h.online()

		if err := h.svc.HandleWill(context.Background(), h.message(testID, "system/will", map[string]any{
			"status": "offline", "reason": "unexpected_disconnect", "timestamp": 0,
		})); err != nil {
			t.Fatal(err)
		}
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if sent := h.configs(); len(sent) != 0 {
			t.Fatalf("published to an offline device: %+v", sent)
		}
		if st := h.svc.LastPush(testID).Status; st != PushTimedOut {
			t.Fatalf("status %s", st)
		}
	})
}
