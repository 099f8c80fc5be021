package actuator

import (
	"context"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
)

// Every check of docs/domain.md §4.4 rejects with its code, and a command
// failing several checks gets the earliest one: the table pairs each row
// with a later failure that must not win. Every rejection is recorded.
func TestChecksInOrder(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(f *fixture)
		cmd     string
		value   *float64
		dur     *int64
		gpio    int
		espID   string
		row     int
		code    string
		passing bool // the command is accepted
	}{
		{name: "unknown command beats an unknown device", cmd: "BLINK", espID: "ESP_NONE", row: 1, code: CodeInvalidCommand},
		{name: "value on the 0-255 scale", cmd: "PWM", value: val(128), row: 1, code: CodeValueOutOfRange},
		{name: "PWM without a value", cmd: "PWM", row: 1, code: CodeInvalidCommand},
		{name: "duration beyond a day", cmd: "ON", dur: dur(86401), row: 1, code: CodeValueOutOfRange},
		{name: "unknown device", cmd: "ON", espID: "ESP_NONE", row: 2, code: CodeDeviceNotFound},
		{name: "no actuator on the pin", cmd: "ON", gpio: 6, row: 2, code: CodeNotFound},
		{
			name: "toggle of an unknown state beats a latch",
			setup: func(f *fixture) {
				f.latches.latch(esp)
			},
			cmd: "TOGGLE", row: 3, code: CodeStateUnknown,
		},
		{
			name: "hub latch beats offline",
			setup: func(f *fixture) {
				f.latches.latch(esp)
				f.devices.set(esp, device.StatusOffline)
			},
			cmd: "ON", row: 4, code: CodeEmergencyStop,
		},
		{
			name: "global latch",
			setup: func(f *fixture) {
				f.latches.latch("*")
			},
			cmd: "PWM", value: val(0.5), row: 4, code: CodeEmergencyStop,
		},
		{
			name: "device latch beats not approved",
			setup: func(f *fixture) {
				f.alert(pump, "emergency_stop")
				f.devices.set(esp, device.StatusPending)
			},
			cmd: "ON", row: 5, code: CodeLatched,
		},
		{
			name: "not approved beats offline-like states",
			setup: func(f *fixture) {
				f.devices.set(esp, device.StatusRejected)
			},
			cmd: "ON", row: 6, code: CodeNotApproved,
		},
		{
			name: "offline beats disabled",
			setup: func(f *fixture) {
				f.disable()
				f.devices.set(esp, device.StatusOffline)
			},
			cmd: "ON", row: 7, code: CodeOffline,
		},
		{
			name: "OFF to an offline device",
			setup: func(f *fixture) {
				f.devices.set(esp, device.StatusOffline)
			},
			cmd: "OFF", row: 7, code: CodeOffline,
		},
		{
			name: "lost subscriptions",
			setup: func(f *fixture) {
				f.devices.set(esp, device.StatusOnline, func(d *device.Device) { d.SubscriptionsLost = true })
			},
			cmd: "ON", row: 7, code: CodeUnreachable,
		},
		{
			name: "disabled beats an unsupported command",
			setup: func(f *fixture) {
				f.disable()
			},
			cmd: "PWM", value: val(0.5), row: 8, code: CodeDisabled,
		},
		{name: "PWM on a pump", cmd: "PWM", value: val(0.5), row: 9, code: CodeNotSupported},
		{
			name: "out of the actuator's range beats the cooldown",
			setup: func(f *fixture) {
				f.configure(Config{GPIO: pump, Type: "pump", MaxValue: 0.8, CooldownSeconds: 60})
				f.status(pump, true)
				f.status(pump, false)
			},
			cmd: "ON", row: 10, code: CodeValueOutOfRange,
		},
		{
			name: "cooldown after a confirmed off",
			setup: func(f *fixture) {
				f.configure(Config{GPIO: pump, Type: "pump", CooldownSeconds: 60})
				f.status(pump, true)
				f.status(pump, false)
			},
			cmd: "ON", row: 11, code: CodeCooldown,
		},
		{
			name: "OFF passes latches, disabled, range and cooldown",
			setup: func(f *fixture) {
				f.configure(Config{GPIO: pump, Type: "pump", MaxValue: 0.5, CooldownSeconds: 60})
				f.disable()
				f.status(pump, true)
				f.status(pump, false)
				f.latches.latch(esp)
				f.alert(pump, "emergency_stop")
			},
			cmd: "OFF", passing: true,
		},
		{
			name: "a toggle that resolves to OFF passes the latch",
			setup: func(f *fixture) {
				f.status(pump, true)
				f.latches.latch(esp)
			},
			cmd: "toggle", passing: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.pump(60)
			if tc.setup != nil {
				tc.setup(f)
			}
			f.bus.take()
			gpio, id := pump, esp
			if tc.gpio != 0 {
				gpio = tc.gpio
			}
			if tc.espID != "" {
				id = tc.espID
			}

			req := Request{
				EspID:    id,
				GPIO:     gpio,
				Command:  tc.cmd,
				Value:    tc.value,
				Duration: tc.dur,
				IssuedBy: "user:op",
			}
			// Check gives the same verdict and leaves no trace.
			f.drain()
			before := len(f.commands(func(storeRow) bool { return true }))
			chk, cerr := f.svc.Check(req)
			if c := rejection(cerr); tc.passing != (cerr == nil) || (c != nil && (c.Row != tc.row || c.Code != tc.code)) {
				t.Fatalf("Check: %v, want row %d %s (passing %v)", cerr, tc.row, tc.code, tc.passing)
			}
			if n := len(f.commands(func(storeRow) bool { return true })); n != before || len(f.bus.take()) != 0 ||
				len(f.drain()) != 0 {
				t.Fatalf("Check left a trace: %d history rows (was %d)", n, before)
			}
			if tc.passing && chk.Command != "OFF" {
				t.Fatalf("Check resolved %q to %s, want OFF", tc.cmd, chk.Command)
			}

			res, err := f.svc.Command(context.Background(), req)
			if tc.passing {
				if err != nil || res.Status != StatusSent || len(f.bus.take()) != 1 {
					t.Fatalf("accepted command: %+v %v", res, err)
				}
				return
			}
			rej := rejection(err)
			if rej == nil || rej.Row != tc.row || rej.Code != tc.code {
				t.Fatalf("got %v (row %v), want row %d %s", err, rowOf(rej), tc.row, tc.code)
			}
			if sent := f.bus.take(); len(sent) != 0 {
				t.Fatalf("a rejected command was published: %+v", sent)
			}
			rows := f.commands(func(c storeRow) bool { return c.Status == StatusRejected })
			if len(rows) != 1 || rows[0].Success == nil || *rows[0].Success || !hasWord(rows[0].Error, tc.code) ||
				rows[0].IssuedBy != "user:op" {
				t.Fatalf("rejection history %+v", rows)
			}
		})
	}
}

func rowOf(r *Rejection) any {
	if r == nil {
		return nil
	}
	return r.Row
}

func (f *fixture) disable() {
	f.t.Helper()
	c, err := f.svc.Get(esp, pump)
	if err != nil {
		f.t.Fatal(err)
	}
	c.Enabled = false
	if _, err := f.svc.Upsert(context.Background(), c); err != nil {
		f.t.Fatal(err)
	}
}

// The latch set between a command's checks and its publish is seen: the
// latch check runs again under the device's gate that Fence holds.
func TestFenceOrdersLatchAndPublish(t *testing.T) {
	f := newFixture(t)
	f.pump(60)
	f.latches.asked = make(chan string, 1)
	done := make(chan error, 1)
	f.svc.Fence(esp, func() {
		go func() {
			_, err := f.command("ON", nil, nil)
			done <- err
		}()
		<-f.latches.asked // the command passed its latch check (row 4) and heads for the gate
		f.latches.latch(esp)
	})
	if rej := rejection(<-done); rej == nil || rej.Code != CodeEmergencyStop {
		t.Fatalf("ON after the fence: %v", rej)
	}
	if sent := f.bus.take(); len(sent) != 0 {
		t.Fatalf("published after the latch: %+v", sent)
	}
}

// TOGGLE follows the confirmed state and is refused when it is unknown,
// stale or while a command is in flight (docs/domain.md §4.3).
func TestToggle(t *testing.T) {
	f := newFixture(t)
	f.pump(60)

	f.status(pump, true)
	if r := f.mustCommand("TOGGLE", nil, nil); r.Command != "OFF" || r.Value != 0 {
		t.Fatalf("toggle of on: %+v", r)
	}
	if _, err := f.command("TOGGLE", nil, nil); rejection(err) == nil || rejection(err).Code != CodeStateUnknown {
		t.Fatalf("toggle while the OFF is in flight: %v", err)
	}
	f.respond(pump, "OFF", true, "")
	f.status(pump, false)
	r := f.mustCommand("TOGGLE", nil, dur(30))
	if r.Command != "ON" || r.Value != 1 || r.Duration != 30 {
		t.Fatalf("toggle of off: %+v", r)
	}
	sent := f.bus.take()
	if last := sent[len(sent)-1]; last.cmd.Command != "ON" {
		t.Fatalf("the device gets the resolved command, never TOGGLE: %+v", last.raw)
	}
	f.respond(pump, "ON", true, "")

	f.svc.deviceOffline(context.Background(), esp, "lwt", time.Now())
	f.status(pump, true) // a live status clears stale
	f.svc.deviceOffline(context.Background(), esp, "lwt", time.Now())
	if _, err := f.command("TOGGLE", nil, nil); rejection(err) == nil || rejection(err).Row != 3 {
		t.Fatalf("toggle of a stale state: %v", err)
	}
}

// ON is bounded by the max runtime (K3): 0 means the max runtime, more is
// clamped with a warning; OFF and PWM 0 carry 0.
func TestDurationClamp(t *testing.T) {
	cases := []struct {
		cmd     string
		value   *float64
		asked   *int64
		want    int64
		warning bool
	}{
		{"ON", nil, dur(20), 20, false},
		{"ON", nil, nil, 60, false},
		{"ON", nil, dur(0), 60, false},
		{"ON", nil, dur(61), 60, true},
		{"PWM", val(0.4), dur(600), 60, true},
		{"PWM", val(0), dur(30), 0, false},
		{"OFF", nil, dur(30), 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.cmd, func(t *testing.T) {
			f := newFixture(t)
			f.configure(Config{GPIO: pump, Type: "pwm", MaxRuntimeSeconds: 60})
			r := f.mustCommand(tc.cmd, tc.value, tc.asked)
			sent := f.bus.take()
			if r.Duration != tc.want || len(sent) != 1 || sent[0].cmd.Duration != tc.want {
				t.Fatalf("duration %d on the wire %+v, want %d", r.Duration, sent, tc.want)
			}
			if got := len(r.Warnings) == 1 && r.Warnings[0] == "duration_clamped"; got != tc.warning {
				t.Fatalf("warnings %v", r.Warnings)
			}
		})
	}
}
