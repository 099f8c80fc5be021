package actuatorapi

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/ingest"
)

// statusWith answers a status like the device, with extra fields.
func (f *fixture) statusWith(gpio int, on bool, extra string) {
	f.t.Helper()
	tp, _ := contract.ParseTopic(fmt.Sprintf("kaiser/god/esp/%s/actuator/%d/status", esp, gpio))
	p := fmt.Sprintf(`{"ts":0,"gpio":%d,"type":"pump","state":%t,"pwm":%d,%s}`, gpio, on, map[bool]int{true: 255}[on],
		extra)
	m := ingest.Message{Topic: tp, Payload: []byte(p), ReceivedAt: time.Now()}
	if err := f.svc.HandleStatus(context.Background(), m); err != nil {
		f.t.Fatal(err)
	}
}

// setDevice replaces the fake registry's device with edits applied.
func setDevice(status string, edit func(*device.Device)) {
	devs.set(esp, status)
	devs.mu.Lock()
	defer devs.mu.Unlock()
	d := devs.devs[esp]
	edit(&d)
	devs.devs[esp] = d
}

// The checks of docs/domain.md §4.4 answer over HTTP in their order
// (docs/api.md §8.3 "Checks, in order"): every case fails two checks, and
// the earlier one's status and code must win; OFF passes what only blocks
// non-OFF commands.
func TestCommandRejectionsInOrder(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(f *fixture)
		dev    string
		gpio   int
		body   map[string]any
		status int
		code   string
		detail string
	}{
		{name: "unknown command beats an unknown device", dev: "ESP_NOPE01", gpio: 5,
			body: map[string]any{"command": "BLINK"}, status: 422, code: "VALIDATION_ERROR", detail: "command"},
		{name: "a 0-255 value beats an unknown device", dev: "ESP_NOPE01", gpio: 5,
			body: map[string]any{"command": "PWM", "value": 200}, status: 422, code: "VALIDATION_ERROR", detail: "0.0-1.0"},
		{name: "a duration beyond a day beats a missing actuator", gpio: 6,
			body: map[string]any{"command": "ON", "duration": 86401}, status: 422, code: "VALIDATION_ERROR",
			detail: "duration"},
		{name: "unknown device", dev: "ESP_NOPE01", gpio: 5, body: map[string]any{"command": "ON"},
			status: 404, code: "ESP_NOT_FOUND"},
		{name: "a missing actuator beats the latch", gpio: 6, setup: func(f *fixture) { f.latches.on = true },
			body: map[string]any{"command": "ON"}, status: 404, code: "ACTUATOR_NOT_FOUND"},
		{name: "an unknown state beats the latch", gpio: 5, setup: func(f *fixture) { f.latches.on = true },
			body: map[string]any{"command": "TOGGLE"}, status: 409, code: "STATE_UNKNOWN"},
		{name: "a hub latch beats offline", gpio: 5,
			setup: func(f *fixture) {
				f.latches.on = true
				devs.set(esp, device.StatusOffline)
			},
			body: map[string]any{"command": "ON"}, status: 409, code: "EMERGENCY_STOP_ACTIVE", detail: `"latch":"hub"`},
		{name: "a device latch beats not approved", gpio: 5,
			setup: func(f *fixture) {
				f.statusWith(5, false, `"emergency":"active"`)
				devs.set(esp, device.StatusPending)
			},
			body: map[string]any{"command": "ON"}, status: 409, code: "EMERGENCY_STOP_ACTIVE", detail: `"latch":"device"`},
		{name: "not approved beats disabled", gpio: 13, setup: func(*fixture) { devs.set(esp, device.StatusRejected) },
			body: map[string]any{"command": "ON"}, status: 409, code: "DEVICE_NOT_APPROVED"},
		{name: "offline beats disabled", gpio: 13, setup: func(*fixture) { devs.set(esp, device.StatusOffline) },
			body: map[string]any{"command": "ON"}, status: 409, code: "DEVICE_OFFLINE"},
		{name: "lost subscriptions beat disabled", gpio: 13,
			setup: func(*fixture) {
				setDevice(device.StatusOnline, func(d *device.Device) { d.SubscriptionsLost = true })
			},
			body: map[string]any{"command": "ON"}, status: 409, code: "DEVICE_UNREACHABLE",
			detail: `"reason":"subscriptions_lost"`},
		{name: "disabled beats an unsupported command", gpio: 13, body: map[string]any{"command": "PWM", "value": 0.5},
			status: 409, code: "ACTUATOR_DISABLED"},
		{name: "an unsupported command beats the range", gpio: 16, body: map[string]any{"command": "PWM", "value": 0.7},
			status: 400, code: "COMMAND_NOT_SUPPORTED"},
		{name: "the range beats the cooldown", gpio: 16,
			setup: func(f *fixture) { f.status(16, true); f.status(16, false) },
			body:  map[string]any{"command": "ON"}, status: 400, code: "SAFETY_CONSTRAINT_VIOLATION"},
		{name: "cooldown", gpio: 15, setup: func(f *fixture) { f.status(15, true); f.status(15, false) },
			body: map[string]any{"command": "ON"}, status: 409, code: "COOLDOWN_ACTIVE"},
		{name: "OFF passes a latch but not offline", gpio: 5,
			setup: func(f *fixture) {
				f.latches.on = true
				devs.set(esp, device.StatusOffline)
			},
			body: map[string]any{"command": "OFF"}, status: 409, code: "DEVICE_OFFLINE"},
		{name: "OFF passes the latches, disabled, range and cooldown", gpio: 16,
			setup: func(f *fixture) {
				f.status(16, true)
				f.status(16, false)
				f.statusWith(16, false, `"emergency":"active"`)
				f.latches.on = true
				f.do("POST", "/api/v1/actuators/"+esp+"/16", map[string]any{"actuator_type": "relay", "max_value": 0.5,
					"cooldown_seconds": 60, "enabled": false})
			},
			body: map[string]any{"command": "OFF"}, status: 200, detail: `"status":"sent"`},
		{name: "a clamped duration is only a warning", gpio: 5, body: map[string]any{"command": "ON", "duration": 7200},
			status: 200, detail: `"safety_warnings":["duration_clamped"]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.do("POST", "/api/v1/actuators/"+esp+"/5", map[string]any{"actuator_type": "pump"})
			f.do("POST", "/api/v1/actuators/"+esp+"/13", map[string]any{"actuator_type": "pump", "enabled": false})
			f.do("POST", "/api/v1/actuators/"+esp+"/15", map[string]any{"actuator_type": "pump", "cooldown_seconds": 60})
			f.do("POST", "/api/v1/actuators/"+esp+"/16", map[string]any{"actuator_type": "relay", "max_value": 0.5,
				"cooldown_seconds": 60})
			if tc.setup != nil {
				tc.setup(f)
			}
			dev := esp
			if tc.dev != "" {
				dev = tc.dev
			}
			r := f.do("POST", fmt.Sprintf("/api/v1/actuators/%s/%d/command", dev, tc.gpio), tc.body)
			if r.status != tc.status || code(r) != tc.code || !strings.Contains(r.raw, tc.detail) {
				t.Fatalf("got %d %s, want %d %s with %s", r.status, r.raw, tc.status, tc.code, tc.detail)
			}
		})
	}
}
