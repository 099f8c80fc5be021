package emergency

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/store"
)

// The latch is committed before the first OFF and before the stop message,
// and set inside the device's command fence (docs/domain.md §5.2 step 1).
func TestLatchCommittedBeforeAnythingIsPublished(t *testing.T) {
	for _, tt := range []struct {
		name    string
		esp     string
		message string // the stop message's journal entry
	}{
		{name: "device stop", esp: espA, message: "publish kaiser/god/esp/" + espA + "/actuator/emergency"},
		{name: "global stop", esp: "", message: "publish kaiser/broadcast/emergency"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.device(espA, pump(5), relay(6))

			res := r.stop(tt.esp, nil)

			fence, commit := r.j.index("fence "+espA), r.j.index("commit")
			off, msg := r.j.index("off "), r.j.index(tt.message)
			if fence < 0 || commit < 0 || off < 0 || msg < 0 {
				t.Fatalf("journal lacks a step: %v", r.j.all())
			}
			if !(fence < commit && commit < off && off < msg) {
				t.Fatalf("order fence→commit→off→stop message broken: %v", r.j.all())
			}
			if !res.LatchPersisted || res.ActuatorsStopped != 2 || res.DevicesStopped != 1 {
				t.Errorf("result %+v", res)
			}
			l, ok := r.store.latch(deviceScope(espA))
			if !ok || !l.Active || l.IncidentCorrelationID != res.IncidentCorrelationID || l.ActivatedBy != "olga" {
				t.Errorf("stored device latch %+v", l)
			}
		})
	}
}

// A failed commit does not hold the stop back: the OFFs and the stop
// message go out, the latch blocks from memory, the hub is not ready and a
// critical alert is open; the write is retried every second until it
// succeeds.
func TestCommitFailureStillStopsAndBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		var readiness []bool
		r.svc.OnReadiness(func(ok bool) { readiness = append(readiness, ok) })
		r.store.fail(3) // the stop's write, the stop message's and the first retry

		res := r.stop(espA, nil)
		synctest.Wait()

		if res.LatchPersisted {
			t.Error("latch_persisted true although the commit failed")
		}
		if len(r.acts.offsFor(espA)) != 1 || len(r.broker.on("/actuator/emergency")) != 1 {
			t.Fatalf("stop held back by the failed commit: %v", r.j.all())
		}
		if !r.svc.Latched(espA) || r.svc.Ready() || r.svc.Status().LatchPersisted {
			t.Fatalf("latched %v ready %v", r.svc.Latched(espA), r.svc.Ready())
		}
		if a, ok := r.alerts.raisedKey(unsavedAlertKey); !ok || a.Severity != "critical" {
			t.Fatalf("no critical alert: %+v", r.alerts.raised)
		}

		saves := func() int {
			r.store.mu.Lock()
			defer r.store.mu.Unlock()
			return r.store.saves
		}
		before := saves()
		time.Sleep(RetryEvery - time.Millisecond)
		synctest.Wait()
		if saves() != before {
			t.Fatalf("retried before a second passed")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if saves() != before+1 || r.svc.Ready() {
			t.Fatalf("after 1 s: %d saves (want %d), ready %v", saves(), before+1, r.svc.Ready())
		}

		time.Sleep(2 * RetryEvery)
		synctest.Wait()
		if !r.svc.Ready() || !r.svc.Latched(espA) {
			t.Fatalf("after the write succeeded: ready %v latched %v", r.svc.Ready(), r.svc.Latched(espA))
		}
		if l, ok := r.store.latch(deviceScope(espA)); !ok || !l.Active {
			t.Fatalf("latch not stored after the retries: %+v", l)
		}
		if !r.alerts.wasCleared(unsavedAlertKey) || !slices.Equal(readiness, []bool{false, true}) {
			t.Fatalf("alert cleared %v, readiness changes %v", r.alerts.wasCleared(unsavedAlertKey), readiness)
		}
		time.Sleep(5 * RetryEvery)
		synctest.Wait()
		if got := saves(); got != before+2 {
			t.Fatalf("retries go on after success: %d saves, want %d", got, before+2)
		}
	})
}

// A global stop latches the hub and every approved device, online or not;
// only online devices get OFFs now, the others are re-safed when back; the
// broadcast carries the hub's token and none of the operator's text.
func TestGlobalStopLatchesEveryApprovedDevice(t *testing.T) {
	r := newRig(t)
	r.device(espA, pump(5))
	r.device(espB, pump(7))
	r.devices.setStatus(espB, device.StatusOffline)
	r.device("ESP_PENDIN", pump(9))
	r.devices.setStatus("ESP_PENDIN", device.StatusPending)

	res := r.stop("", nil)

	if res.Scope != ScopeGlobal || res.DevicesStopped != 2 || res.ActuatorsStopped != 1 {
		t.Fatalf("result %+v", res)
	}
	for _, id := range []string{espA, espB} {
		if l, ok := r.store.latch(deviceScope(id)); !ok || !l.Active {
			t.Errorf("%s has no device latch", id)
		}
	}
	if _, ok := r.store.latch(deviceScope("ESP_PENDIN")); ok {
		t.Error("a pending device got a device latch")
	}
	if !r.svc.Latched("ESP_PENDIN") || !r.svc.Latched("ESP_NEWONE") {
		t.Error("the global latch does not block every device")
	}
	if len(r.acts.offsFor(espB)) != 0 || len(r.acts.offsFor("ESP_PENDIN")) != 0 {
		t.Error("OFF sent to a device that is not online")
	}
	if !r.svc.resafe[espB] {
		t.Error("the offline device is not marked for re-safing")
	}
	if d := res.Details[1]; d.EspID != espB || len(d.Actuators) != 1 || d.Actuators[0].Success {
		t.Errorf("offline device's details %+v", d)
	}

	b := r.broker.on("kaiser/broadcast/emergency")
	if len(b) != 1 {
		t.Fatalf("%d broadcasts", len(b))
	}
	p := b[0].payload
	if p["command"] != "emergency_stop" || p["reason"] != "operator_stop" || p["auth_token"] != r.svc.broadcastToken() {
		t.Errorf("broadcast %v", p)
	}
	if len(r.broker.on("/actuator/emergency")) != 0 {
		t.Error("a global stop sent device stop messages")
	}
}

// A device stop blocks that device only, and expires only its queued commands.
func TestDeviceLatchNeverBlocksAnother(t *testing.T) {
	r := newRig(t)
	r.device(espA, pump(5))
	r.device(espB, pump(5))

	r.stop(espA, nil)

	if !r.svc.Latched(espA) || r.svc.Latched(espB) {
		t.Fatalf("latched A %v, B %v", r.svc.Latched(espA), r.svc.Latched(espB))
	}
	if !slices.Equal(r.acts.expired, []string{espA + ":emergency_stop"}) {
		t.Errorf("expired %v", r.acts.expired)
	}
	if len(r.acts.offsFor(espB)) != 0 || len(r.broker.on("kaiser/broadcast/emergency")) != 0 {
		t.Error("the device stop reached another device")
	}
}

// The OFFs go out at once; the stop message waits for the largest valve
// travel time, and the reply does not wait for it. A gpio narrows the OFFs
// but never leaves a valve out.
func TestValveTravelDelaysTheStopMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5), relay(6), valve(12, 5*time.Second))
		r.device(espB, valve(14, 8*time.Second))

		gpio := 5
		res := r.stop(espA, &gpio)
		offs := r.acts.offsFor(espA)
		if len(offs) != 2 || offs[0].GPIO != 5 || offs[1].GPIO != 12 {
			t.Fatalf("OFFs with gpio 5: %+v", offs)
		}
		if offs[0].IssuedBy != "emergency:olga" || offs[0].CommandType != CommandType ||
			offs[0].Metadata["incident_correlation_id"] != res.IncidentCorrelationID {
			t.Errorf("OFF request %+v", offs[0])
		}
		if len(r.broker.on("/actuator/emergency")) != 0 {
			t.Fatal("device stop sent before the valve's travel time")
		}

		time.Sleep(5*time.Second - time.Millisecond)
		synctest.Wait()
		if len(r.broker.on("/actuator/emergency")) != 0 {
			t.Fatal("device stop sent before 5 s")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		stops := r.broker.on("/actuator/emergency")
		if len(stops) != 1 || stops[0].payload["command"] != "emergency_stop" || stops[0].payload["auth_token"] != espA {
			t.Fatalf("device stop after the travel time: %+v", stops)
		}

		// Global: the broadcast after the largest travel time of all valves.
		r.stop("", nil)
		time.Sleep(8*time.Second - time.Millisecond)
		synctest.Wait()
		if len(r.broker.on("kaiser/broadcast/emergency")) != 0 {
			t.Fatal("broadcast before the slowest valve closed")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if len(r.broker.on("kaiser/broadcast/emergency")) != 1 {
			t.Fatal("no broadcast after the slowest valve's travel time")
		}
		if i, j := r.j.index("off "+espB+"/14"), r.j.index("publish kaiser/broadcast"); i < 0 || i > j {
			t.Fatalf("valve OFF not before the broadcast: %v", r.j.all())
		}
	})
}

// A repeated stop refreshes reason, actor and time, and the guard counts
// from its own stop message.
func TestRepeatedStopRefreshesTheLatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		first := r.stop(espA, nil)
		time.Sleep(10 * time.Second)

		res, err := r.svc.Stop(context.Background(), StopRequest{EspID: espA, Reason: "again", Actor: Actor{User: "ben"}})
		if err != nil {
			t.Fatal(err)
		}
		l := r.svc.snapshot(deviceScope(espA))
		if l.Reason != "again" || l.ActivatedBy != "ben" || !l.ActivatedAt.After(first.Timestamp) ||
			l.IncidentCorrelationID != res.IncidentCorrelationID {
			t.Fatalf("latch after the second stop %+v", l)
		}
		r.answerClear("response", `{"status":"emergency_cleared","timestamp":3725114}`)
		if got := r.clear(ClearRequest{EspID: espA}); got.Details[0].Outcome != OutcomeGuard {
			t.Fatalf("clear right after the repeated stop: %+v", got.Details)
		}
	})
}

// The stop reports itself: a critical audit entry, the emergency event,
// one actuator_alert per OFF, a critical alert.
func TestStopIsReported(t *testing.T) {
	r := newRig(t)
	r.device(espA, pump(5), relay(6))

	res := r.stop(espA, nil)

	entries := r.audit.of("emergency_stop")
	if len(entries) != 1 || entries[0].Severity != "critical" || entries[0].SourceID != "olga" ||
		entries[0].Details["incident_correlation_id"] != res.IncidentCorrelationID || entries[0].CorrelationID != "req-1" {
		t.Fatalf("audit %+v", entries)
	}
	var emergencies, alerts int
	for _, e := range r.liveEvents() {
		switch p := e.Data.(type) {
		case event.Emergency:
			emergencies++
			if p.Action != "stop" || p.Scope != ScopeDevice || *p.EspID != espA || p.ActuatorsAffected != 2 {
				t.Errorf("emergency event %+v", p)
			}
		case event.ActuatorAlert:
			alerts++
			if p.AlertType != "emergency_stop" || p.Severity != "critical" || p.ZoneID != "zone_1" {
				t.Errorf("actuator alert %+v", p)
			}
		}
	}
	if emergencies != 1 || alerts != 2 {
		t.Fatalf("%d emergency events, %d actuator alerts", emergencies, alerts)
	}
	if a, ok := r.alerts.raisedKey("emergency_stop:" + res.IncidentCorrelationID); !ok || a.Severity != "critical" {
		t.Fatalf("alerts %+v", r.alerts.raised)
	}
}

// A stop never fails because of MQTT: the OFFs are reported failed, the
// latch holds, and the device is re-safed at its next heartbeat. An
// unknown device is a not-found error.
func TestStopWithoutBroker(t *testing.T) {
	r := newRig(t)
	r.device(espA, pump(5))
	r.acts.offError = errors.New("broker down")
	r.broker.down = true

	res := r.stop(espA, nil)
	if res.ActuatorsStopped != 0 || res.Details[0].Actuators[0].Success || !r.svc.Latched(espA) {
		t.Fatalf("result %+v", res)
	}
	if !r.svc.resafe[espA] {
		t.Error("a device whose stop message failed is not marked for re-safing")
	}
	_, err := r.svc.Stop(context.Background(), StopRequest{EspID: "ESP_NOPE01", Reason: "x"})
	if !errors.Is(err, ErrDeviceNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
}

// A global stop whose broadcast cannot be published marks its devices for
// re-safing; the guard stays closed until a stop message was published.
func TestFailedBroadcastMarksDevicesForResafing(t *testing.T) {
	r := newRig(t)
	r.device(espA, pump(5))
	r.broker.failTopic = "broadcast"

	r.stop("", nil)
	if !r.svc.resafe[espA] {
		t.Fatal("device not marked after a failed broadcast")
	}
	if g := r.svc.snapshot(store.LatchGlobal); g.StopPublishedAt != nil {
		t.Fatalf("a failed broadcast counts as published: %+v", g)
	}
}
