package sim

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
)

var profiles = []struct{ name, quirks string }{
	{"baseline", "default"},
	{"newer", "none"},
}

// Each type starts as the firmware starts it: default_state only for the
// pump driver (Q17), one status per actuator before the section's success.
func TestConfigureCreatesActuators(t *testing.T) {
	cases := []struct {
		name     string
		item     contract.ActuatorConfigItem
		on       bool
		pwm      int
		wantType string
	}{
		{"pump", item(5, "pump"), false, 0, "pump"},
		{"relay with default_state", withDefault(item(16, "relay")), true, 255, "relay"},
		{"pump with default_state", withDefault(item(17, "pump")), true, 255, "pump"},
		{"pwm ignores default_state", withDefault(item(18, "pwm")), false, 0, "pwm"},
		{"valve ignores default_state", withDefault(item(25, "valve")), false, 0, "valve"},
	}
	for _, p := range profiles {
		for _, c := range cases {
			t.Run(p.name+"/"+c.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					r := boot(t, p.quirks)
					r.configure(c.item)
					r.expect(
						r.noSensors(),
						r.status(c.item.GPIO, c.wantType, c.on, c.pwm, 0, "normal"),
						r.configured(1),
					)
					s := r.state(c.item.GPIO)
					if s.On != c.on || s.Energised != c.on || s.Latched {
						t.Fatalf("state %+v", s)
					}
				})
			})
		}
	}
}

func withDefault(it contract.ActuatorConfigItem) contract.ActuatorConfigItem {
	it.DefaultState = true
	return it
}

// Item errors carry the firmware's code and message and never failed_item
// (Q15); the good items of the section are still applied (C4).
func TestConfigureItemErrors(t *testing.T) {
	cases := []struct {
		name, item, code, message string
	}{
		{"missing gpio", `{"actuator_type":"pump","actuator_name":"p"}`,
			"MISSING_FIELD", "Actuator config missing required field 'gpio'"},
		{"fractional gpio", `{"gpio":5.5,"actuator_type":"pump","actuator_name":"p"}`,
			"TYPE_MISMATCH", "Actuator field 'gpio' must be an integer"},
		{"missing type", `{"gpio":5,"actuator_name":"p"}`,
			"MISSING_FIELD", "Actuator config missing required field 'actuator_type'"},
		{"type not a string", `{"gpio":5,"actuator_type":1,"actuator_name":"p"}`,
			"TYPE_MISMATCH", "Actuator field 'actuator_type' must be a string"},
		{"alias type not a string", `{"gpio":5,"type":true,"actuator_name":"p"}`,
			"TYPE_MISMATCH", "Actuator field 'type' must be a string"},
		{"empty type", `{"gpio":5,"actuator_type":"","actuator_name":"p"}`,
			"VALIDATION_FAILED", "Actuator type cannot be empty"},
		{"missing name", `{"gpio":5,"actuator_type":"pump"}`,
			"MISSING_FIELD", "Actuator config missing required field 'actuator_name'"},
		{"name not a string", `{"gpio":5,"actuator_type":"pump","name":3}`,
			"TYPE_MISMATCH", "Actuator field 'name' must be a string"},
		{"upper-case type", `{"gpio":5,"actuator_type":"PUMP","actuator_name":"p"}`,
			"UNKNOWN_ERROR", "Failed to configure actuator on GPIO 5"},
		{"servo is not a device type", `{"gpio":5,"actuator_type":"servo","actuator_name":"p"}`,
			"UNKNOWN_ERROR", "Failed to configure actuator on GPIO 5"},
		{"input-only pin", `{"gpio":34,"actuator_type":"relay","actuator_name":"p"}`,
			"UNKNOWN_ERROR", "Failed to configure actuator on GPIO 34"},
		{"sensor pin", `{"gpio":32,"actuator_type":"relay","actuator_name":"p"}`,
			"UNKNOWN_ERROR", "Failed to configure actuator on GPIO 32"},
		{"valve enable pin on the good item", `{"gpio":26,"actuator_type":"valve","actuator_name":"v"}`,
			"UNKNOWN_ERROR", "Failed to configure actuator on GPIO 26"},
	}
	for _, p := range profiles {
		for _, c := range cases {
			t.Run(p.name+"/"+c.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					r := boot(t, p.quirks, func(cfg *NodeConfig) {
						cfg.Sensors = []SensorSpec{{GPIO: 32, Type: "ph", Base: 2048}}
					})
					r.hub(dev("config"), `{"sensors":[],"actuators":[{"gpio":27,"actuator_type":"relay",`+
						`"actuator_name":"good"},`+c.item+`],"correlation_id":"cfg-1"}`)
					r.expect(
						r.noSensors(),
						r.status(27, "relay", false, 0, 0, "normal"),
						r.configResponse("actuator", 0, c.message, c.code),
					)
					if got := len(r.node.Actuators()); got != 1 {
						t.Fatalf("%d actuators, want the good one only", got)
					}
				})
			})
		}
	}
}

// C6: the esp32_dev board has 12 actuator slots.
func TestConfigureSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "default")
		pins := []int{4, 5, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 25}
		var items []contract.ActuatorConfigItem
		want := []string{r.noSensors()}
		for i, g := range pins {
			items = append(items, item(g, "relay"))
			if i < maxActuators {
				want = append(want, r.status(g, "relay", false, 0, 0, "normal"))
			}
		}
		want = append(want, r.configResponse("actuator", 0, "Failed to configure actuator on GPIO 25", "UNKNOWN_ERROR"))
		r.configure(items...)
		r.expect(want...)
	})
}

// The C2 errors for a missing or empty section, the parse error for both
// passes, and the correlation id echoed only by newer firmware.
func TestConfigureSectionErrors(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, p.quirks)
				r.hub(dev("config"), `{"sensors":[],"correlation_id":"cfg-1"}`)
				r.expect(
					r.noSensors(),
					r.configResponse("actuator", 0, "Actuator config missing 'actuators' array", "MISSING_FIELD"),
				)
				r.hub(dev("config"), `{"sensors":[],"actuators":[],"correlation_id":"cfg-1"}`)
				r.expect(
					r.noSensors(),
					r.configResponse("actuator", 0, "Actuator config array is empty", "MISSING_FIELD"),
				)
				r.hub(dev("config"), `{"sensors":[`)
				parseError := func(section string) string {
					line := r.configResponse(section, 0, "Failed to parse "+section+" config JSON: NoMemory", "JSON_PARSE_ERROR")
					return strings.Replace(line, `,"correlation_id":"cfg-1"`, "", 1)
				}
				r.expect(parseError("sensor"), parseError("actuator"))
			})
		})
	}
}

// C5 with Q13, Q14 and Q17: a re-push switches a running pump off and
// re-applies default_state, clears the latch, leaves an open valve open
// while the firmware believes it closed (so a later OFF does nothing), and
// leaves an active-low relay energised until an ON→OFF pair.
func TestReconfiguration(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, p.quirks)
				inverted := withDefault(item(16, "relay"))
				inverted.DefaultState, inverted.InvertedLogic = false, true
				pump, valve := item(5, "pump"), item(25, "valve")
				r.configure(pump, valve, inverted)
				r.wait(time.Second)
				r.command(5, "ON", 1, 60, "c1")
				r.command(25, "ON", 1, 60, "c2")
				r.wait(valveStep) // one of the two steps
				r.hub("kaiser/broadcast/emergency", `{"command":"emergency_stop"}`)
				r.wait(10 * time.Second)
				if s := r.state(25); s.On || s.Opening != 0.5 || !s.Latched {
					t.Fatalf("valve after the stop: %+v (cut half-way, believed closed)", s)
				}
				r.command(25, "ON", 1, 0, "c3") // refused while latched
				r.take()

				r.configure(withDefault(pump), valve, inverted)
				r.expect(
					r.noSensors(),
					r.status(5, "pump", true, 255, 0, "normal"),
					r.status(25, "valve", false, 0, 0, "normal"),
					r.status(16, "relay", false, 0, 0, "normal"),
					r.configured(3),
				)
				if s := r.state(16); !s.Energised || s.On {
					t.Fatalf("active-low relay after configuration: %+v, want energised while reported off (Q13)", s)
				}
				r.command(25, "OFF", 0, 0, "c4")
				r.wait(10 * time.Second)
				if s := r.state(25); s.Opening != 0.5 || s.Moving {
					t.Fatalf("valve after OFF: %+v, want it left half open (Q14)", s)
				}
				r.command(16, "OFF", 0, 0, "c5")
				if s := r.state(16); !s.Energised {
					t.Fatalf("an OFF to an active-low relay believed off de-energised it: %+v", s)
				}
				r.command(16, "ON", 1, 60, "c6")
				r.command(16, "OFF", 0, 0, "c7")
				if s := r.state(16); s.Energised {
					t.Fatalf("after ON→OFF the active-low relay is still energised: %+v", s)
				}
			})
		})
	}
}

// The baseline's heartbeat loses one actuator per re-configuration
// (docs/protocol.md §3.1.2); newer firmware counts right.
func TestHeartbeatActuatorCount(t *testing.T) {
	cases := []struct {
		quirks string
		want   int
	}{
		{"default", 1},
		{"none", 2},
	}
	for _, c := range cases {
		t.Run(c.quirks, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, c.quirks)
				r.configure(item(5, "pump"), item(16, "relay"))
				r.configure(item(5, "pump"))
				hb, _ := r.node.HeartbeatNow()
				if hb["actuator_count"] != c.want {
					t.Fatalf("actuator_count %v, want %d", hb["actuator_count"], c.want)
				}
			})
		})
	}
}

// An `active:false` item switches the output off and removes the actuator
// without a status.
func TestConfigureRemoval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "default")
		r.configure(item(5, "pump"))
		r.command(5, "ON", 1, 0, "")
		r.take()
		removal := item(5, "pump")
		removal.Active = false
		r.configure(removal)
		r.expect(r.noSensors(), r.configured(1))
		if got := r.node.Actuators(); len(got) != 0 {
			t.Fatalf("actuators after removal: %+v", got)
		}
		r.command(5, "ON", 1, 0, "")
		r.expect(r.response(5, "ON", "1.000", 0, false, "Command failed", ""))
	})
}

// A sensor item on an actuator's pin (also a valve's enable pin) is refused.
func TestSensorOnActuatorPin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "default")
		r.configure(item(25, "valve"))
		r.take()
		r.hub(dev("config"), `{"sensors":[{"gpio":26,"sensor_type":"ph","sensor_name":"x"}],"actuators":[]}`)
		r.expect(
			r.configResponse("sensor", 0, fmt.Sprintf("Failed to configure sensor on GPIO %d", 26), "UNKNOWN_ERROR"),
			r.configResponse("actuator", 0, "Actuator config array is empty", "MISSING_FIELD"),
		)
	})
}
