package sim

import (
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// onePerType configures a pump on 5, a relay on 16, a pwm output on 18 and
// a valve on 25 (enable pin 26).
func onePerType(r *rig) {
	r.configure(item(5, "pump"), item(16, "relay"), item(18, "pwm"), item(25, "valve"))
	r.take()
	r.wait(time.Second)
}

// after is what one accepted command publishes around its response.
type after int

const (
	statusResponseStatus after = iota // the baseline (Q16)
	statusResponse                    // newer firmware, the output changed
	responseStatus                    // newer firmware, a no-op
	responseOnly                      // a failure
)

// The baseline's reactions: status → response → status on success, a
// bare "Command failed" otherwise; duration and correlation id are not
// acted on or echoed; value and duration as the firmware parses them.
func TestBaselineCommands(t *testing.T) {
	cases := []struct {
		name    string
		gpio    int
		payload string
		// echoed command, value and duration; outcome and reported state
		cmd, value string
		duration   uint32
		ok         bool
		typ        string
		on         bool
		pwm        int
	}{
		{"pump ON", 5, `{"command":"ON","value":1.0,"duration":20,"timestamp":1,"correlation_id":"c"}`,
			"ON", "1.000", 20, true, "pump", true, 255},
		{"pump OFF while off", 5, `{"command":"OFF","value":0.0,"duration":0}`,
			"OFF", "0.000", 0, true, "pump", false, 0},
		{"lower-case name echoed as sent", 16, `{"command":"on","value":1.0,"duration":5}`,
			"on", "1.000", 5, true, "relay", true, 255},
		{"relay PWM at 0.5 is on", 16, `{"command":"PWM","value":0.5,"duration":5}`,
			"PWM", "0.500", 5, true, "relay", true, 255},
		{"relay PWM below 0.5 is off", 16, `{"command":"PWM","value":0.49,"duration":0}`,
			"PWM", "0.490", 0, true, "relay", false, 0},
		{"pump PWM above 1 fails", 5, `{"command":"PWM","value":1.5,"duration":0}`,
			"PWM", "1.500", 0, false, "", false, 0},
		{"pwm duty floored", 18, `{"command":"PWM","value":0.7,"duration":10}`,
			"PWM", "0.700", 10, true, "pwm", true, 178},
		{"pwm clamps above 1", 18, `{"command":"PWM","value":1.5,"duration":10}`,
			"PWM", "1.500", 10, true, "pwm", true, 255},
		{"pwm ON is full duty", 18, `{"command":"ON","value":1.0,"duration":10}`,
			"ON", "1.000", 10, true, "pwm", true, 255},
		{"TOGGLE switches on", 5, `{"command":"TOGGLE","value":0.0,"duration":0}`,
			"TOGGLE", "0.000", 0, true, "pump", true, 255},
		{"unknown command", 5, `{"command":"BLINK","value":1.0,"duration":0}`,
			"BLINK", "1.000", 0, false, "", false, 0},
		{"missing command", 5, `{"value":1.0}`,
			"", "1.000", 0, false, "", false, 0},
		{"negative duration read as uint32", 5, `{"command":"ON","value":1,"duration":-1}`,
			"ON", "1.000", 4294967295, true, "pump", true, 255},
		{"fractional duration truncated", 5, `{"command":"ON","value":1,"duration":20.9}`,
			"ON", "1.000", 20, true, "pump", true, 255},
		{"spaces after the colon", 5, `{"command": "ON", "value": 0.25, "duration": 7}`,
			"ON", "0.250", 7, true, "pump", true, 255},
		{"no actuator on the pin", 4, `{"command":"ON","value":1.0,"duration":0}`,
			"ON", "1.000", 0, false, "", false, 0},
		{"non-numeric gpio level is gpio 0", 0, `{"command":"ON","value":1.0,"duration":0}`,
			"ON", "1.000", 0, false, "", false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, "default")
				onePerType(r)
				level := strconv.Itoa(c.gpio)
				if strings.HasPrefix(c.name, "non-numeric") {
					level = "abc"
				}
				r.hub(dev("actuator/"+level+"/command"), c.payload)
				if !c.ok {
					r.expect(r.response(c.gpio, c.cmd, c.value, c.duration, false, "Command failed", ""))
					return
				}
				st := r.status(c.gpio, c.typ, c.on, c.pwm, 0, "normal")
				r.expect(st, r.response(c.gpio, c.cmd, c.value, c.duration, true, "Command executed", ""), st)
			})
		})
	}
}

// Newer firmware: one status, before the response when the output
// changed, after it for a no-op (Q16); correlation ids echoed; specific
// failure texts.
func TestNewerCommands(t *testing.T) {
	cases := []struct {
		name      string
		before    []string // commands sent first, on the same gpio
		gpio      int
		cmd       string
		value     float64
		valueText string
		order     after
		message   string
		on        bool
		pwm       int
		typ       string
	}{
		{"ON changes the output", nil, 5, "ON", 1, "1.000", statusResponse, "Command executed", true, 255, "pump"},
		{"OFF while off is a no-op", nil, 5, "OFF", 0, "0.000", responseStatus, "Command executed", false, 0, "pump"},
		{"ON while on is a no-op", []string{"ON"}, 5, "ON", 1, "1.000", responseStatus, "Command executed", true, 255, "pump"},
		{"OFF after ON", []string{"ON"}, 5, "OFF", 0, "0.000", statusResponse, "Command executed", false, 0, "pump"},
		{"PWM always reports first", nil, 18, "PWM", 0, "0.000", statusResponse, "Command executed", false, 0, "pwm"},
		{"PWM out of range on a relay", nil, 16, "PWM", 1.5, "1.500", responseOnly, "Failed to set PWM value", false, 0, ""},
		{"unknown command", nil, 16, "BLINK", 1, "1.000", responseOnly, "Unknown command: BLINK", false, 0, ""},
		{"no actuator", nil, 4, "ON", 1, "1.000", responseOnly,
			"Actuator not configured on GPIO 4. Configure via API first.", false, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, "none")
				onePerType(r)
				for _, b := range c.before {
					r.command(c.gpio, b, 1, 0, "pre")
				}
				r.take()
				r.command(c.gpio, c.cmd, c.value, 30, "cmd-42")
				resp := r.response(c.gpio, c.cmd, c.valueText, 30, c.order != responseOnly, c.message, "cmd-42")
				st := r.status(c.gpio, c.typ, c.on, c.pwm, 0, "normal")
				switch c.order {
				case statusResponse:
					r.expect(st, resp)
				case responseStatus:
					r.expect(resp, st)
				default:
					r.expect(resp)
				}
			})
		})
	}
}

// A command for gpio 255 gets no response at all.
func TestCommandForGPIO255(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, p.quirks)
				onePerType(r)
				r.hub(dev("actuator/255/command"), `{"command":"OFF","value":0.0,"duration":0}`)
				r.expect()
			})
		})
	}
}

// Q10 and Q12: the baseline ignores duration and has no runtime cut-off of
// its own; newer firmware switches an ON off when its duration ends, never
// a PWM, and a later command replaces the running duration.
func TestDurations(t *testing.T) {
	cases := []struct {
		name    string
		quirks  string
		cmds    []contract.ActuatorCommand
		gpio    int
		offAt   time.Duration // 0: still on after two hours
		statusA string        // the auto-off's status type
	}{
		{"baseline ON stays on", "default", []contract.ActuatorCommand{{Command: "ON", Duration: 20}}, 5, 0, ""},
		{"newer ON ends", "none", []contract.ActuatorCommand{{Command: "ON", Duration: 20}}, 5, 20 * time.Second, "pump"},
		{"newer PWM never ends", "none", []contract.ActuatorCommand{{Command: "PWM", Duration: 20}}, 18, 0, ""},
		{"newer ON without duration", "none", []contract.ActuatorCommand{{Command: "ON"}}, 16, 0, ""},
		{"newer PWM replaces the ON's duration", "none",
			[]contract.ActuatorCommand{{Command: "ON", Duration: 20}, {Command: "PWM", Duration: 5}}, 18, 0, ""},
		{"newer ON to a running pump re-arms", "none",
			[]contract.ActuatorCommand{{Command: "ON", Duration: 20}, {Command: "ON", Duration: 40}}, 5, 40 * time.Second, "pump"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, c.quirks, func(cfg *NodeConfig) { cfg.StatusEvery = 24 * time.Hour })
				onePerType(r)
				for _, cmd := range c.cmds {
					value := 1.0
					if cmd.Command == "PWM" {
						value = 0.6
					}
					r.command(c.gpio, cmd.Command, value, cmd.Duration, "d")
				}
				r.take()
				if c.offAt == 0 {
					r.wait(2 * time.Hour)
					r.expect()
					if !r.state(c.gpio).On {
						t.Fatal("the output went off by itself")
					}
					return
				}
				r.wait(c.offAt - 100*time.Millisecond)
				if s := r.state(c.gpio); !s.On || s.AutoOffIn != 100*time.Millisecond {
					t.Fatalf("before the end: %+v", s)
				}
				r.expect()
				r.wait(100 * time.Millisecond)
				r.expect(r.status(c.gpio, c.statusA, false, 0, c.offAt.Milliseconds(), "normal"))
				r.wait(time.Hour)
				r.expect()
			})
		})
	}
}

// docs/protocol.md §3.1.3 and Q14: a move takes 2.5 s per step; the statuses around the
// command show the old position, nothing is published when it ends, the
// next periodic status shows the new one.
func TestValveTravel(t *testing.T) {
	cases := []struct {
		name      string
		cmd       string
		value     float64
		valueText string
		steps     int
		pwm       int
		opening   float64
	}{
		{"ON opens in two steps", "ON", 1, "1.000", 2, 254, 1},
		{"PWM 0.5 half opens", "PWM", 0.5, "0.500", 1, 127, 0.5},
		{"PWM 0.66 opens", "PWM", 0.66, "0.660", 2, 254, 1},
		{"PWM 0.3 stays closed", "PWM", 0.3, "0.300", 0, 0, 0},
	}
	for _, p := range profiles {
		for _, c := range cases {
			t.Run(p.name+"/"+c.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					r := boot(t, p.quirks)
					onePerType(r) // 1 s of uptime; the first periodic status is at 30 s
					r.command(25, c.cmd, c.value, 60, "v")
					closed := r.status(25, "valve", false, 0, 0, "normal")
					resp := r.response(25, c.cmd, c.valueText, 60, true, "Command executed", "")
					if p.quirks == "default" {
						r.expect(closed, resp, closed)
					} else {
						r.expect(closed, strings.Replace(resp, "}", `,"correlation_id":"v"}`, 1))
					}
					travel := time.Duration(c.steps) * valveStep
					if c.steps > 0 {
						r.wait(travel - time.Millisecond)
						if s := r.state(25); !s.Moving || s.On || !s.Energised {
							t.Fatalf("during the move: %+v", s)
						}
					}
					r.wait(time.Millisecond)
					if s := r.state(25); s.Moving || s.Opening != c.opening || s.PWM != c.pwm {
						t.Fatalf("after %v: %+v", travel, s)
					}
					r.expect() // nothing when the move ends
					r.wait(30*time.Second - time.Second - travel)
					for _, line := range r.take() {
						if strings.HasPrefix(line, "actuator/25/status") {
							want := r.status(25, "valve", c.pwm > 0, c.pwm, 0, "normal")
							if line != want {
								t.Fatalf("periodic status %s, want %s", line, want)
							}
							return
						}
					}
					t.Fatal("no periodic status at 30 s")
				})
			})
		}
	}
}

// A reversal mid-move stops the valve where it is; the firmware believes
// it never left.
func TestValveReversal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "default")
		onePerType(r)
		r.command(25, "ON", 1, 60, "")
		r.wait(valveStep)
		r.command(25, "OFF", 0, 0, "")
		s := r.state(25)
		if s.Moving || s.On || s.Opening != 0.5 {
			t.Fatalf("after the reversal: %+v", s)
		}
	})
}

// docs/protocol.md §3.1.4 pump protection for pumps and relays: 60 activations per hour,
// not enforced below one hour of uptime, and once the accumulated runtime
// reaches an hour a 30-s cooldown after each stop; an ON to a running pump
// is checked too, and a re-configuration resets the counters.
func TestPumpProtection(t *testing.T) {
	t.Run("activations", func(t *testing.T) {
		for _, typ := range []string{"pump", "relay"} {
			t.Run(typ, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					r := boot(t, "default", func(cfg *NodeConfig) { cfg.StatusEvery = 24 * time.Hour })
					r.configure(item(5, typ))
					for range 70 { // below one hour: never refused
						r.command(5, "ON", 1, 0, "")
						r.command(5, "OFF", 0, 0, "")
					}
					r.wait(time.Hour)
					for range pumpMaxActivations {
						r.command(5, "ON", 1, 0, "")
						r.command(5, "OFF", 0, 0, "")
					}
					r.take()
					r.command(5, "ON", 1, 0, "")
					r.expect(r.response(5, "ON", "1.000", 0, false, "Command failed", ""))
					r.wait(time.Hour + time.Second)
					r.command(5, "ON", 1, 0, "")
					if !r.state(5).On {
						t.Fatal("still refused once the activations left the window")
					}
				})
			})
		}
	})
	t.Run("cooldown", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := boot(t, "default", func(cfg *NodeConfig) { cfg.StatusEvery = 24 * time.Hour })
			r.configure(item(5, "pump"))
			r.wait(time.Second)
			r.command(5, "ON", 1, 0, "")
			r.wait(time.Hour)
			r.command(5, "ON", 1, 0, "") // to the running pump: runtime not yet accumulated
			if !r.state(5).On {
				t.Fatal("ON to the running pump refused before any stop")
			}
			r.command(5, "OFF", 0, 0, "")
			r.take()
			r.wait(pumpCooldown - time.Second)
			r.command(5, "ON", 1, 0, "")
			r.expect(r.response(5, "ON", "1.000", 0, false, "Command failed", ""))
			r.wait(time.Second)
			r.command(5, "ON", 1, 0, "")
			if s := r.state(5); !s.On || s.RuntimeMS != time.Hour.Milliseconds() {
				t.Fatalf("after the cooldown: %+v", s)
			}
			r.command(5, "OFF", 0, 0, "")
			r.configure(item(5, "pump"))
			r.command(5, "ON", 1, 0, "")
			if s := r.state(5); !s.On || s.RuntimeMS != 0 {
				t.Fatalf("a re-configuration did not reset the counters: %+v", s)
			}
		})
	})
	t.Run("valves and pwm are not protected", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := boot(t, "default")
			onePerType(r)
			r.wait(time.Hour)
			for range pumpMaxActivations + 1 {
				r.command(18, "ON", 1, 0, "")
				r.command(18, "OFF", 0, 0, "")
			}
			r.take()
			r.command(18, "ON", 1, 0, "")
			if !r.state(18).On {
				t.Fatal("the pwm output was refused")
			}
		})
	})
}

// docs/protocol.md §6.2: each configured actuator's status every 30 s, the first after 30 s.
func TestPeriodicStatuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "default")
		r.configure(item(5, "pump"), item(16, "relay"))
		r.take()
		r.command(16, "ON", 1, 0, "")
		r.take()
		r.wait(30*time.Second - 200*time.Millisecond)
		r.expect()
		r.wait(200 * time.Millisecond)
		r.expect(r.status(5, "pump", false, 0, 0, "normal"), r.status(16, "relay", true, 255, 30000, "normal"))
		r.wait(30 * time.Second)
		r.expect(r.status(5, "pump", false, 0, 0, "normal"), r.status(16, "relay", true, 255, 60000, "normal"))
	})
}

// The retain quirk (Q1) covers every actuator publication of the baseline.
func TestActuatorPublicationsRetained(t *testing.T) {
	for _, c := range []struct {
		quirks string
		retain bool
	}{{"default", true}, {"none", false}} {
		t.Run(c.quirks, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, c.quirks)
				onePerType(r)
				r.command(5, "ON", 1, 0, "")
				r.net.mu.Lock()
				defer r.net.mu.Unlock()
				for _, p := range r.net.sent {
					if strings.Contains(p.topic, "/actuator/") && p.retain != c.retain {
						t.Fatalf("%s retain %t", p.topic, p.retain)
					}
				}
			})
		})
	}
}

// A command lost on the way (Lose) draws no answer and changes nothing;
// the same command delivered late (Inject) is answered as the firmware
// answers it then. Other messages pass.
func TestLostAndLateCommands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var lost []string
		r := boot(t, "default", func(c *NodeConfig) {
			c.Lose = func(topic string, payload []byte) bool {
				if !strings.HasSuffix(topic, "/command") {
					return false
				}
				lost = append(lost, string(payload)) // the rig delivers on the test's goroutine
				return true
			}
		})
		onePerType(r)

		r.command(5, "ON", 1, 20, "c-1")
		r.wait(time.Second)
		if got := r.take(); len(got) != 0 || len(lost) != 1 {
			t.Fatalf("a lost command was answered: %v (lost %d)", got, len(lost))
		}
		if r.state(5).On {
			t.Fatal("a lost command switched the pump on")
		}

		if !r.node.Inject(dev("actuator/5/command"), []byte(lost[0])) {
			t.Fatal("inject refused by a running node")
		}
		synctest.Wait()
		st := r.status(5, "pump", true, 255, 0, "normal")
		r.expect(st, r.response(5, "ON", "1.000", 20, true, "Command executed", ""), st)
	})
}
