package actuator

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
)

// Statuses set the confirmed state in arrival order: bool → on/off, 0–255
// → 0–1 rounded to 3 places, a mock's fraction as is; a pwm output between
// off and full is `pwm`; an event only on a real change (≥ 0.99 counts as 1).
func TestStatusMapping(t *testing.T) {
	cases := []struct {
		name      string
		typ       string
		payload   map[string]any
		state     string
		value     float64
		wantEvent bool
	}{
		{"pump on", "pump", map[string]any{"state": true, "pwm": 255}, "on", 1, true},
		{"valve half", "valve", map[string]any{"state": true, "pwm": 127}, "on", 0.498, true},
		{"pwm duty", "pwm", map[string]any{"state": true, "pwm": 64}, "pwm", 0.251, true},
		{"mock fraction", "pwm", map[string]any{"state": "on", "value": 0.5}, "pwm", 0.5, true},
		{"off", "pump", map[string]any{"state": false, "pwm": 0}, "off", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.configure(Config{GPIO: 16, Type: tc.typ})
			f.drain()
			f.status(16, false, tc.payload)
			st, _ := f.svc.State(esp, 16)
			if st.State != tc.state || st.Value != tc.value || st.Stale {
				t.Fatalf("state %+v", st)
			}
			var evs int
			for _, e := range f.drain() {
				if d, ok := e.Data.(event.ActuatorStatus); ok && d.State == tc.state && d.Value == tc.value {
					evs++
				}
			}
			if evs != 1 {
				t.Fatalf("%d status events", evs)
			}

			// The same state again is no change; an open valve's 254 is still 1.0.
			f.status(16, false, tc.payload)
			if n := len(f.drain()); n != 0 {
				t.Fatalf("%d events for an unchanged state", n)
			}
		})
	}

	t.Run("254 counts as open", func(t *testing.T) {
		f := newFixture(t)
		f.configure(Config{GPIO: 16, Type: "valve"})
		f.status(16, true)
		f.drain()
		f.status(16, true, map[string]any{"pwm": 254})
		if n := len(f.drain()); n != 0 {
			t.Fatalf("%d events for 254 after 255", n)
		}
	})
}

// A replayed status initialises only a state never learned live and never
// overwrites live state; replayed answers and alerts confirm nothing
// (docs/protocol.md §5.6).
func TestReplays(t *testing.T) {
	f := newFixture(t)
	f.pump(60)
	replay := func(suffix string, p map[string]any) error {
		m := f.message(suffix, p)
		m.Replay = true
		switch suffix {
		case "actuator/5/status":
			return f.svc.HandleStatus(context.Background(), m)
		case "actuator/5/response":
			return f.svc.HandleResponse(context.Background(), m)
		}
		return f.svc.HandleAlert(context.Background(), m)
	}
	isReplay := func(err error) bool {
		var de *ingest.DropError
		return errors.As(err, &de) && de.Reason == contract.ReasonReplay
	}

	on := map[string]any{"ts": 0, "gpio": 5, "type": "pump", "state": true, "pwm": 255}
	if err := replay("actuator/5/status", on); !isReplay(err) {
		t.Fatalf("replay counted as %v", err)
	}
	if st, _ := f.svc.State(esp, pump); st.State != "on" || !st.Stale {
		t.Fatalf("seeded %+v", st)
	}
	f.status(pump, false)
	if err := replay("actuator/5/status", on); !isReplay(err) {
		t.Fatal(err)
	}
	if st, _ := f.svc.State(esp, pump); st.State != "off" {
		t.Fatalf("a replay overwrote live state: %+v", st)
	}

	r := f.mustCommand("ON", nil, nil)
	resp := map[string]any{"esp_id": esp, "ts": 0, "gpio": 5, "command": "ON", "success": true}
	if err := replay("actuator/5/response", resp); !isReplay(err) {
		t.Fatal(err)
	}
	if c := f.cmd(r.CommandID); c.Status != StatusSent {
		t.Fatalf("a replayed answer completed %+v", c)
	}
	if err := replay("actuator/5/alert", map[string]any{"esp_id": esp, "ts": 0, "gpio": 5,
		"alert_type": "emergency_stop"}); !isReplay(err) {
		t.Fatal(err)
	}
	if len(f.alerts.all()) != 0 || len(f.svc.DeviceLatched(esp)) != 0 {
		t.Fatal("a replayed alert raised an alarm")
	}
}

// Device alerts (docs/domain.md §4.7): history, an alert with the table's
// severity, WebSocket actuator_alert; emergency_stop forces off and latches
// the actuator on the device until a status with emergency normal.
func TestDeviceAlerts(t *testing.T) {
	cases := []struct {
		typ, severity, category string
		forcesOff, latches      bool
	}{
		{"emergency_stop", "critical", "system", true, true},
		{"safety_violation", "critical", "security", true, false},
		{"hardware_error", "warning", "infrastructure", false, false},
		{"verification_failed", "warning", "system", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			f := newFixture(t)
			f.pump(60)
			f.status(pump, true)
			f.drain()
			f.alert(pump, tc.typ)

			rows := f.commands(issuedBy("esp32_alert"))
			if len(rows) != 1 || rows[0].CommandType != "ALERT_"+upper(tc.typ) || rows[0].Success == nil || *rows[0].Success {
				t.Fatalf("history %+v", rows)
			}
			a := f.alerts.all()
			if len(a) != 1 || a[0].Severity != tc.severity || a[0].Category != tc.category ||
				a[0].Key != "actuator_"+esp+"_5_"+tc.typ {
				t.Fatalf("alerts %+v", a)
			}
			var ws int
			for _, e := range f.drain() {
				if d, ok := e.Data.(event.ActuatorAlert); ok && d.Severity == tc.severity {
					ws++
				}
			}
			if ws != 1 {
				t.Fatalf("%d actuator_alert events", ws)
			}
			st, _ := f.svc.State(esp, pump)
			if (st.State == "off") != tc.forcesOff {
				t.Fatalf("state %+v", st)
			}
			if got := slices.Equal(f.svc.DeviceLatched(esp), []int{pump}); got != tc.latches {
				t.Fatalf("device latched %v", f.svc.DeviceLatched(esp))
			}
			if !tc.latches {
				return
			}
			if _, err := f.command("ON", nil, nil); rejection(err) == nil || rejection(err).Code != CodeLatched {
				t.Fatalf("ON while device-latched: %v", err)
			}
			f.status(pump, false, map[string]any{"emergency": "normal"})
			if len(f.svc.DeviceLatched(esp)) != 0 {
				t.Fatal("a status with emergency normal must clear the device latch")
			}
		})
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

// An alert_config with alerts off suppresses the alert (docs/domain.md §3.5).
func TestAlertSuppression(t *testing.T) {
	f := newFixture(t)
	c := f.pump(60)
	if _, err := f.svc.SetAlertConfig(context.Background(), c.ID, map[string]any{"alerts_enabled": false}); err != nil {
		t.Fatal(err)
	}
	f.alert(pump, "hardware_error")
	if a := f.alerts.all(); len(a) != 1 || !a[0].Suppressed {
		t.Fatalf("alerts %+v", a)
	}
}

// A status showing an output on while the hub latch holds raises a
// critical inconsistency alarm (docs/protocol.md §5.7).
func TestOnWhileLatched(t *testing.T) {
	f := newFixture(t)
	f.pump(60)
	f.latches.latch(esp)
	f.status(pump, true)
	if a := f.alerts.all(); len(a) != 1 || a[0].Severity != "critical" {
		t.Fatalf("alerts %+v", a)
	}
}

// A device going offline marks its actuators stale with a history row,
// expires queued commands but keeps hub OFFs (docs/domain.md §1.3); a
// deleted device loses its actuators.
func TestDeviceTransitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.configure(Config{GPIO: pump, Type: "pwm", MaxRuntimeSeconds: 60})
		f.status(pump, true)
		f.mustCommand("PWM", val(0.5), dur(30))
		queued := f.mustCommand("PWM", val(0.6), dur(30))

		f.devices.set(esp, device.StatusOffline)
		f.events.Publish(event.Event{Data: event.DeviceStatus{EspID: esp, Status: device.StatusOffline,
			Reason: "heartbeat_timeout"}})
		synctest.Wait()
		if c := f.cmd(queued.CommandID); c.Status != StatusExpired || c.Error != "device offline" {
			t.Fatalf("queued at offline: %+v", c)
		}
		if rows := f.commands(issuedBy("system:heartbeat_timeout")); len(rows) != 1 {
			t.Fatalf("offline history %+v", rows)
		}
		st, _ := f.svc.State(esp, pump)
		if !st.Stale || st.State != "on" {
			t.Fatalf("offline keeps the last state, stale: %+v", st)
		}
		views := f.svc.ForDevice(esp)
		if len(views) != 1 || views[0].On || !views[0].Stale || views[0].ConfirmedState != "on" {
			t.Fatalf("views %+v", views)
		}

		f.events.Publish(event.Event{Data: event.DeviceStatus{EspID: esp, Status: device.StatusDeleted}})
		synctest.Wait()
		if len(f.svc.Outputs(esp)) != 0 || len(f.store.configs) != 0 {
			t.Fatalf("a deleted device keeps %d actuators", len(f.svc.Outputs(esp)))
		}
	})
}

// A successful actuator section clears device latches and counts an applied
// default_state:true as an ON (docs/domain.md §4.2, §4.7).
func TestPushResult(t *testing.T) {
	f := newFixture(t)
	f.configure(Config{GPIO: 13, Type: "relay", DefaultState: true})
	f.configure(Config{GPIO: 14, Type: "relay"})
	f.alert(13, "emergency_stop")
	f.alert(14, "emergency_stop")

	f.svc.PushResult(device.PushResult{
		EspID:    esp,
		Status:   device.PushFailed,
		Sections: map[string]string{"actuator": device.PushFailed},
	})
	if len(f.svc.DeviceLatched(esp)) != 2 {
		t.Fatal("a failed section cleared latches")
	}
	items := f.svc.ActuatorItems(esp)
	f.svc.PushResult(device.PushResult{
		EspID:     esp,
		Status:    device.PushApplied,
		Sections:  map[string]string{"actuator": device.PushApplied},
		Actuators: items,
	})
	if len(f.svc.DeviceLatched(esp)) != 0 {
		t.Fatalf("latched after re-creation: %v", f.svc.DeviceLatched(esp))
	}
	if st, _ := f.svc.State(esp, 13); st.OnSince == nil {
		t.Fatalf("default_state ON not counted: %+v", st)
	}
	if rows := f.commands(issuedBy("system:default_state")); len(rows) != 1 || rows[0].GPIO != 13 {
		t.Fatalf("history %+v", rows)
	}
}

// The seams of the emergency part: outputs with the valves' travel,
// expiring queued commands, clearing device latches.
func TestEmergencySeams(t *testing.T) {
	f := newFixture(t)
	f.configure(Config{GPIO: 13, Type: "pwm"})
	f.configure(Config{GPIO: 16, Type: "valve", ValveTravelSeconds: 7})
	outs := f.svc.Outputs(esp)
	if len(outs) != 2 || outs[0] != (Output{EspID: esp, GPIO: 13, Type: "pwm"}) ||
		outs[1] != (Output{EspID: esp, GPIO: 16, Type: "valve", ValveTravel: 7 * time.Second}) {
		t.Fatalf("outputs %+v", outs)
	}

	ctx := context.Background()
	req := func(v float64) Request {
		return Request{EspID: esp, GPIO: 13, Command: "PWM", Value: val(v), IssuedBy: "logic:r1"}
	}
	if _, err := f.svc.Command(ctx, req(0.2)); err != nil {
		t.Fatal(err)
	}
	q, err := f.svc.Command(ctx, req(0.4))
	if err != nil || q.Status != StatusQueued {
		t.Fatalf("%+v %v", q, err)
	}
	f.svc.ExpireQueued(ctx, esp, "emergency_stop")
	if c := f.cmd(q.CommandID); c.Status != StatusExpired || c.Error != "emergency_stop" {
		t.Fatalf("queued after the stop: %+v", c)
	}

	f.alert(16, "emergency_stop")
	f.svc.ClearDeviceLatches(ctx, esp)
	if len(f.svc.DeviceLatched(esp)) != 0 {
		t.Fatal("device latches not cleared")
	}
	if _, err := f.svc.Off(ctx, OffRequest{EspID: esp, GPIO: 99}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OFF to no actuator: %v", err)
	}
}

// A status, answer or alert for a pin without an actuator is only logged:
// the device's config is out of sync (docs/domain.md §8.3).
func TestUnknownActuatorMessages(t *testing.T) {
	f := newFixture(t)
	f.status(7, true)
	f.respond(7, "ON", true, "")
	if _, err := f.svc.State(esp, 7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an unknown actuator got a state: %v", err)
	}
}

// History lists newest first; a command's record is found in memory and in
// the store; old rows are cleaned up.
func TestHistoryAndLookup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.pump(60)
		r := f.mustCommand("ON", nil, nil)
		f.respond(pump, "ON", true, "")
		f.status(pump, false) // the auto-off at 60 s then needs no retries
		rows, total, err := f.svc.History(context.Background(), esp, pump, 10)
		if err != nil || total != 1 || rows[0].ID != r.CommandID {
			t.Fatalf("history %+v %d %v", rows, total, err)
		}
		if c, err := f.svc.CommandByID(context.Background(), r.CommandID); err != nil || c.Status != StatusAcknowledged {
			t.Fatalf("lookup %+v %v", c, err)
		}
		if _, err := f.svc.CommandByID(context.Background(), "nope"); !errors.Is(err, ErrCommandNotFound) {
			t.Fatal(err)
		}
		time.Sleep(91 * 24 * time.Hour)
		if err := f.svc.CleanupHistory(context.Background()); err != nil {
			t.Fatal(err)
		}
		if rows, total, _ := f.svc.History(context.Background(), esp, pump, 10); total != 0 {
			t.Fatalf("%d rows after 91 days: %+v", total, rows)
		}
	})
}

// A device may answer before the publish call returns: the embedded broker
// delivers inline and the answer is ingested on another goroutine. The
// answer still completes its command (K6), found by correlation id or by
// its command, and the command reads sent before acknowledged.
func TestAnswerBeforePublishReturns(t *testing.T) {
	cases := []struct {
		name string
		cmd  string
		echo bool // newer firmware echoes the correlation id
	}{
		{"baseline ON", "ON", false},
		{"newer ON", "ON", true},
		{"baseline OFF", "OFF", false},
		{"newer OFF", "OFF", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t)
				f.pump(60)
				f.status(pump, false)
				f.bus.answer = func(p published) {
					payload := map[string]any{"esp_id": esp, "ts": 0, "gpio": pump, "command": p.cmd.Command,
						"value": p.cmd.Value.V, "duration": p.cmd.Duration, "success": true, "message": "Command executed"}
					if tc.echo {
						payload["correlation_id"] = p.cmd.CorrelationID
					}
					m := f.message("actuator/5/response", payload)
					go func() {
						if err := f.svc.HandleResponse(context.Background(), m); err != nil {
							t.Errorf("response: %v", err)
						}
					}()
					synctest.Wait() // the answer is handled, or waits, before Publish returns
				}
				f.drain()

				res := f.mustCommand(tc.cmd, nil, dur(20))
				synctest.Wait()
				if got := f.cmd(res.CommandID); got.Status != StatusAcknowledged || got.Metadata["late_ack"] != nil {
					t.Fatalf("the answer during the publish left the command %s (late_ack %v)", got.Status,
						got.Metadata["late_ack"])
				}
				if got := commandStatuses(f.drain(), res.CommandID); !slices.Equal(got, []string{StatusSent,
					StatusAcknowledged}) {
					t.Fatalf("lifecycle events %v", got)
				}
			})
		})
	}
}
