package actuator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
)

func intp(n int) *int { return &n }

// The types and classes of docs/domain.md §4.1: aliases are stored as the
// device type, which is what the device gets; unknown types are refused.
func TestTypesAndClasses(t *testing.T) {
	cases := []struct {
		in, stored, class string
		ok                bool
	}{
		{"relay", "relay", ClassDigital, true},
		{"Digital", "relay", ClassDigital, true},
		{"binary", "relay", ClassDigital, true},
		{"switch", "relay", ClassDigital, true},
		{"pump", "pump", ClassDigital, true},
		{"valve", "valve", ClassDigital, true},
		{"pwm", "pwm", ClassPWM, true},
		{"servo", "servo", ClassServo, true},
		{"heater", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := NormaliseType(tc.in)
			if got != tc.stored || ok != tc.ok || (ok && ClassOf(got) != tc.class) {
				t.Fatalf("NormaliseType(%q) = %q %v", tc.in, got, ok)
			}
		})
	}

	commands := map[string][]string{
		ClassDigital: {"ON", "OFF", "TOGGLE"},
		ClassPWM:     {"ON", "OFF", "TOGGLE", "PWM"},
		ClassServo:   {"ON", "OFF", "PWM"},
	}
	for class, ok := range commands {
		for _, cmd := range []string{"ON", "OFF", "TOGGLE", "PWM"} {
			want := strings.Contains(strings.Join(ok, ","), cmd)
			if allows(class, cmd) != want {
				t.Errorf("%s allows %s = %v", class, cmd, !want)
			}
		}
	}
}

// The field rules of docs/domain.md §4.2; inverted_logic and default_state
// outside relays are refused with the firmware's reason.
func TestCheckFields(t *testing.T) {
	base := Config{GPIO: 5, Type: "pump", MaxValue: 1, MaxRuntimeSeconds: 3600}
	cases := []struct {
		name  string
		mut   func(c *Config)
		field string // "" = valid
		why   string
	}{
		{"valid", func(*Config) {}, "", ""},
		{"unknown type", func(c *Config) { c.Type = "heater" }, "actuator_type", ""},
		{"inverted logic", func(c *Config) { c.InvertedLogic = true }, "inverted_logic", "configure time"},
		{"default_state on a pump", func(c *Config) { c.DefaultState = true }, "default_state", "relays"},
		{"default_state on a valve", func(c *Config) { c.Type, c.DefaultState = "valve", true }, "default_state", ""},
		{"default_state on pwm", func(c *Config) { c.Type, c.DefaultState = "pwm", true }, "default_state", ""},
		{"default_state on servo", func(c *Config) { c.Type, c.DefaultState = "servo", true }, "default_state", ""},
		{"default_state on a relay", func(c *Config) { c.Type, c.DefaultState = "switch", true }, "", ""},
		{"max below min", func(c *Config) { c.MinValue, c.MaxValue = 0.6, 0.4 }, "max_value", ""},
		{"value beyond 1", func(c *Config) { c.MaxValue = 255 }, "max_value", ""},
		{"runtime beyond a day", func(c *Config) { c.MaxRuntimeSeconds = 86401 }, "max_runtime_seconds", ""},
		{"cooldown beyond an hour", func(c *Config) { c.CooldownSeconds = 3601 }, "cooldown_seconds", ""},
		{"default_pwm beyond 255", func(c *Config) { c.DefaultPWM = 256 }, "default_pwm", ""},
		{"valve travel beyond 60", func(c *Config) { c.Type, c.ValveTravelSeconds = "valve", 61 }, "valve_travel_seconds", ""},
		{"pwm frequency", func(c *Config) { c.PWMFrequency = intp(40001) }, "pwm_frequency", ""},
		{"servo pulses", func(c *Config) { c.ServoMinPulse, c.ServoMaxPulse = intp(2000), intp(1000) }, "servo_max_pulse", ""},
		{"aux on a pump", func(c *Config) { c.AuxGPIO = intp(6) }, "aux_gpio", "valves"},
		{"aux equal to gpio", func(c *Config) { c.Type, c.AuxGPIO, c.ValveTravelSeconds = "valve", intp(5), 5 }, "aux_gpio", ""},
		{"quote in the name", func(c *Config) { c.Name = `say "hi"` }, "name", ""},
		{"subzone pattern", func(c *Config) { c.SubzoneID = "bed north" }, "subzone_id", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mut(&c)
			if c.Type == "valve" && c.ValveTravelSeconds == 0 {
				c.ValveTravelSeconds = 5
			}
			errs := CheckFields(c)
			if tc.field == "" {
				if len(errs) != 0 {
					t.Fatalf("refused: %+v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.field || !strings.Contains(errs[0].Msg, tc.why) {
				t.Fatalf("errors %+v, want one on %s", errs, tc.field)
			}
		})
	}
}

// Pins follow docs/domain.md §8.2 with the board rules shared with
// sensors; a valve's enable pin is owned like its main pin.
func TestPins(t *testing.T) {
	cases := []struct {
		name     string
		cfg      Config
		conflict bool   // 409 rather than 400
		typ      string // conflict_type
		msg      string
	}{
		{"reserved", Config{GPIO: 6, Type: "relay"}, false, "system", "reserved"},
		{"input-only", Config{GPIO: 34, Type: "relay"}, false, "system", "input-only"},
		{"I2C bus", Config{GPIO: 21, Type: "relay"}, false, "system", "I2C"},
		{"sensor on the pin", Config{GPIO: 4, Type: "relay"}, true, "sensor", "sensor"},
		{"the implicit enable pin of a valve", Config{GPIO: 17, Type: "relay"}, true, "actuator", "enable pin"},
		{"a valve on a reserved pin", Config{GPIO: 3, Type: "valve"}, false, "system", "reserved"},
		{"a valve whose gpio+1 is input-only", Config{GPIO: 33, Type: "valve"}, false, "system", "set aux_gpio"},
		{"a valve whose gpio+1 holds a sensor", Config{GPIO: 25, Type: "valve"}, true, "sensor", "sensor"},
		{"a valve whose gpio+1 is another valve", Config{GPIO: 15, Type: "valve"}, true, "actuator", "valve on GPIO 16"},
		{"aux on another actuator", Config{GPIO: 18, Type: "valve", AuxGPIO: intp(13)}, true, "actuator", "actuator pump"},
		{"aux on a sensor", Config{GPIO: 18, Type: "valve", AuxGPIO: intp(4)}, true, "sensor", "sensor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.sensors[esp] = []sensor.Config{
				{EspID: esp, GPIO: 4, SensorType: "ds18b20"},
				{EspID: esp, GPIO: 26, SensorType: "flow"},
			}
			f.configure(Config{GPIO: 13, Type: "pump"})
			f.configure(Config{GPIO: 16, Type: "valve"}) // enable pin 17

			c := tc.cfg
			c.EspID, c.MaxValue = esp, 1
			_, err := f.svc.Upsert(context.Background(), c)
			var pe *sensor.PinError
			if !errors.As(err, &pe) || pe.Conflict != tc.conflict || pe.Type != tc.typ || !strings.Contains(pe.Msg, tc.msg) {
				t.Fatalf("err %v (%+v)", err, pe)
			}
		})
	}

	t.Run("a valve with a free aux pin", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.svc.Upsert(context.Background(), Config{EspID: esp, GPIO: 33, Type: "valve", MaxValue: 1,
			AuxGPIO: intp(25)}); err != nil {
			t.Fatal(err)
		}
		if owner, ok := f.svc.PinClaim(esp, 25); !ok || !strings.Contains(owner, "enable pin") {
			t.Fatalf("claim of the aux pin: %q %v", owner, ok)
		}
		if _, ok := f.svc.PinClaim(esp, 26); ok {
			t.Fatal("a free pin is claimed")
		}
	})
}

// A board takes 12 actuators, a XIAO 6 (docs/domain.md §1.5); replacing
// one on its pin does not count.
func TestLimit(t *testing.T) {
	f := newFixture(t)
	f.devices.set(esp, device.StatusOnline, func(d *device.Device) { d.HardwareType = "XIAO_ESP32_C3" })
	for _, g := range []int{6, 7, 8, 9, 10, 20} {
		f.configure(Config{GPIO: g, Type: "relay"})
	}
	if _, err := f.svc.Upsert(context.Background(), Config{EspID: esp, GPIO: 21, Type: "relay", MaxValue: 1}); !errors.Is(err, ErrLimit) {
		t.Fatalf("seventh actuator: %v", err)
	}
	f.configure(Config{GPIO: 6, Type: "pump", Name: "replaced"})
	if c, _ := f.svc.Get(esp, 6); c.Type != "pump" || c.Name != "replaced" {
		t.Fatalf("replacement %+v", c)
	}
}

// The actuator section of a push (P4, docs/domain.md §4.1, §5.3): the
// stored device type (servo as pwm), inverted_logic false, aux 255 without
// an enable pin, default_state only for relays and not while hub-latched.
func TestActuatorItems(t *testing.T) {
	f := newFixture(t)
	f.configure(Config{GPIO: 13, Type: "switch", DefaultState: true, DefaultPWM: 200, Name: `Lamp`})
	f.configure(Config{GPIO: 14, Type: "servo"})
	f.configure(Config{GPIO: 16, Type: "valve", AuxGPIO: intp(26), Critical: true, SubzoneID: "bed"})
	f.configure(Config{GPIO: 18, Type: "pump", Name: strings.Repeat("é", 20)})

	items := f.svc.ActuatorItems(esp)
	want := []contract.ActuatorConfigItem{
		{GPIO: 13, ActuatorType: "relay", ActuatorName: "Lamp", Active: true, AuxGPIO: 255, DefaultState: true, DefaultPWM: 200},
		{GPIO: 14, ActuatorType: "pwm", Active: true, AuxGPIO: 255},
		{GPIO: 16, ActuatorType: "valve", SubzoneID: "bed", Active: true, AuxGPIO: 26, Critical: true},
		{GPIO: 18, ActuatorType: "pump", ActuatorName: strings.Repeat("é", 16), Active: true, AuxGPIO: 255},
	}
	if len(items) != len(want) {
		t.Fatalf("items %+v", items)
	}
	for i := range want {
		if items[i] != want[i] {
			t.Errorf("item %d = %+v, want %+v", i, items[i], want[i])
		}
	}

	f.latches.latch(esp)
	if it := f.svc.ActuatorItems(esp)[0]; it.DefaultState || it.DefaultPWM != 0 {
		t.Fatalf("while hub-latched: %+v", it)
	}
}

// Deleting sends OFF first, then removes the config and its state; the
// push afterwards carries the removal (docs/api.md §8.2).
func TestDelete(t *testing.T) {
	f := newFixture(t)
	f.pump(60)
	f.status(pump, true)
	f.bus.take()

	c, err := f.svc.Delete(context.Background(), esp, pump, "user:op")
	if err != nil || c.GPIO != pump {
		t.Fatalf("delete %+v %v", c, err)
	}
	if off := offs(f.bus.take()); len(off) != 1 {
		t.Fatalf("OFF before the delete: %+v", off)
	}
	if _, err := f.svc.Get(esp, pump); !errors.Is(err, ErrNotFound) {
		t.Fatalf("still configured: %v", err)
	}
	if len(f.store.configs) != 0 || len(f.store.states) != 0 {
		t.Fatalf("store keeps %d configs, %d states", len(f.store.configs), len(f.store.states))
	}
	if sent, err := f.svc.Push(context.Background(), esp); err != nil || !sent || len(f.devices.pushes) != 1 ||
		f.devices.pushes[0] != esp+"/"+device.TriggerActuatorChange {
		t.Fatalf("push %v %v %v", sent, err, f.devices.pushes)
	}
	if _, err := f.svc.Delete(context.Background(), esp, pump, "user:op"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// Before a push a valve not confirmed closed gets its OFF, and the push
// waits its travel (P4); a closed one needs nothing; a valve whose OFF
// went out recently is not sent another.
func TestCloseValves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.configure(Config{GPIO: 16, Type: "valve", ValveTravelSeconds: 8})
		f.configure(Config{GPIO: 18, Type: "valve", ValveTravelSeconds: 20})
		f.status(18, false)

		if wait := f.svc.CloseValves(context.Background(), esp); wait != 8*time.Second {
			t.Fatalf("wait %v", wait)
		}
		if off := offs(f.bus.take()); len(off) != 1 || !strings.HasSuffix(off[0].topic, "/actuator/16/command") {
			t.Fatalf("OFFs %+v", off)
		}
		time.Sleep(3 * time.Second)
		if wait := f.svc.CloseValves(context.Background(), esp); wait != 5*time.Second {
			t.Fatalf("wait %v while the valve travels", wait)
		}
		if sent := f.bus.take(); len(sent) != 0 {
			t.Fatalf("a second OFF %+v", sent)
		}
	})
}

// An alert_config patch merges keys, null deletes one.
func TestSetAlertConfig(t *testing.T) {
	f := newFixture(t)
	c := f.pump(60)
	ac, err := f.svc.SetAlertConfig(context.Background(), c.ID, map[string]any{"alerts_enabled": false, "note": "x"})
	if err != nil || ac["alerts_enabled"] != false {
		t.Fatalf("%v %v", ac, err)
	}
	ac, _ = f.svc.SetAlertConfig(context.Background(), c.ID, map[string]any{"note": nil})
	if _, ok := ac["note"]; ok || len(ac) != 1 {
		t.Fatalf("after deleting a key: %v", ac)
	}
	if _, err := f.svc.SetAlertConfig(context.Background(), "nope", nil); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}
