package emergency

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// Devices that do not report every actuator stopped within 10 s of the
// broadcast are reported; confirmed ones and devices without actuators
// are not (docs/protocol.md E2).
func TestUnconfirmedStopIsReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5), relay(6))
		r.device(espB, pump(5))
		r.device("ESP_NOACTS")

		res := r.stop("", nil)
		r.svc.Confirm(espA, 5)
		r.svc.Confirm(espA, 6)
		r.svc.Confirm(espB, 9) // not one of its actuators

		time.Sleep(ConfirmWait - time.Millisecond)
		synctest.Wait()
		if _, ok := r.alerts.raisedKey("emergency_unconfirmed:"); ok {
			t.Fatal("reported before 10 s")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		a, ok := r.alerts.raisedKey("emergency_unconfirmed:" + res.IncidentCorrelationID)
		if !ok {
			t.Fatal("unconfirmed device not reported")
		}
		if got := a.Metadata["esp_ids"].([]string); !slices.Equal(got, []string{espB}) {
			t.Fatalf("reported %v, want only %s", got, espB)
		}
	})
}

// A device stop on baseline firmware, which never executes it, expects no
// confirmation.
func TestBaselineDeviceStopExpectsNoConfirmation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		r.stop(espA, nil)
		time.Sleep(ConfirmWait)
		synctest.Wait()
		if _, ok := r.alerts.raisedKey("emergency_unconfirmed:"); ok {
			t.Fatal("a baseline device stop was reported unconfirmed")
		}
	})
}
