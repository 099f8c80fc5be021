package sim

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const broadcast = "kaiser/broadcast/emergency"

var allGPIOs = []int{5, 16, 18, 25}

// stopped is what a stop publishes: one alert per actuator, and on newer
// firmware one status each with emergency "active".
func (r *rig) stopped() []string {
	types := map[int]string{
		5:  "pump",
		16: "relay",
		18: "pwm",
		25: "valve",
	}
	var out []string
	for _, g := range allGPIOs {
		out = append(out, r.alert(g, "emergency_stop", "Actuator stopped"))
		if r.node.cfg.Quirks.Seq {
			out = append(out, r.status(g, types[g], false, 0, r.state(g).RuntimeMS, "active"))
		}
	}
	return out
}

// onAndOpening switches the pump on and starts the valve, and waits one
// valve step: the valve is half open.
func onAndOpening(r *rig) {
	onePerType(r)
	r.command(5, "ON", 1, 0, "")
	r.command(25, "ON", 1, 0, "")
	r.wait(valveStep)
	r.take()
}

// docs/protocol.md §3.2.9: the baseline stops on any JSON value that fits its 256-byte pool
// and checks no token; newer firmware checks command, timestamp type and
// broadcast token, and stops fail-safe when command or token is no string.
func TestBroadcastEmergency(t *testing.T) {
	long := strings.Repeat("x", 240)
	cases := []struct {
		name, quirks, token, payload string
		stops                        bool
	}{
		{"baseline object", "default", "", `{"command":"emergency_stop","reason":"operator_stop"}`, true},
		{"baseline any value", "default", "", `1`, true},
		{"baseline a string", "default", "", `"x"`, true},
		{"baseline other command", "default", "", `{"command":"resume"}`, true},
		{"baseline ignores the token", "default", "tok", `{"command":"emergency_stop","auth_token":"bad"}`, true},
		{"baseline invalid JSON", "default", "", `{"command":`, false},
		{"baseline too large for the pool", "default", "", `{"command":"emergency_stop","reason":"` + long + `"}`, false},
		{"newer stop", "none", "", `{"command":"emergency_stop","timestamp":"2026-01-05T08:15:30Z"}`, true},
		{"newer stop_all", "none", "", `{"command":"stop_all"}`, true},
		{"newer action alias", "none", "", `{"action":"emergency_stop"}`, true},
		{"newer other command", "none", "", `{"command":"resume"}`, false},
		{"newer numeric timestamp", "none", "", `{"command":"emergency_stop","timestamp":1767600930}`, false},
		{"newer wrong token", "none", "tok", `{"command":"emergency_stop","auth_token":"bad"}`, false},
		{"newer right token", "none", "tok", `{"command":"emergency_stop","auth_token":"tok"}`, true},
		{"newer token not a string", "none", "tok", `{"command":"emergency_stop","auth_token":7}`, true},
		{"newer command not a string", "none", "tok", `{"command":1,"auth_token":"bad"}`, true},
		{"newer larger pool", "none", "", `{"command":"emergency_stop","reason":"` + long + `"}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, c.quirks, func(cfg *NodeConfig) { cfg.BroadcastToken = c.token })
				onAndOpening(r)
				r.hub(broadcast, c.payload)
				if !c.stops {
					r.expect()
					if s := r.state(5); !s.On || s.Latched {
						t.Fatalf("pump after an ignored stop: %+v", s)
					}
					return
				}
				r.expect(r.stopped()...)
				for _, g := range allGPIOs {
					if s := r.state(g); s.On || !s.Latched || (g != 25 && s.Energised) {
						t.Fatalf("gpio %d after the stop: %+v", g, s)
					}
				}
				if s := r.state(25); s.Opening != 0.5 || s.Moving {
					t.Fatalf("valve after the stop: %+v, want it left half open (Q14)", s)
				}
				r.command(5, "OFF", 0, 0, "")
				msg := "Command failed"
				if c.quirks == "none" {
					msg = "Actuator in emergency stop state. Clear emergency first."
				}
				r.expect(r.response(5, "OFF", "0.000", 0, false, msg, ""))
			})
		})
	}
}

// The latch survives until a re-configuration (C5) or, on newer firmware,
// a clear; there is no broadcast clear.
func TestBroadcastLatchClearedByConfig(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "default")
		onAndOpening(r)
		r.hub(broadcast, `{"command":"emergency_stop"}`)
		r.wait(time.Hour)
		if !r.state(5).Latched {
			t.Fatal("the latch went away by itself")
		}
		r.configure(item(5, "pump"))
		r.take()
		r.command(5, "ON", 1, 0, "")
		if s := r.state(5); !s.On || s.Latched {
			t.Fatalf("after the re-configuration: %+v", s)
		}
	})
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Q5: the baseline takes the device emergency topic for an invalid
// command, logs it and does nothing.
func TestDeviceEmergencyBaseline(t *testing.T) {
	for _, payload := range []string{
		`{"command":"emergency_stop","auth_token":"` + testID + `"}`,
		`{"command":"clear_emergency","auth_token":"` + testID + `"}`,
	} {
		synctest.Test(t, func(t *testing.T) {
			log := &syncBuf{}
			r := boot(t, "default", func(cfg *NodeConfig) { cfg.BootLog = log })
			onAndOpening(r)
			r.hub(dev("actuator/emergency"), payload)
			r.expect()
			if s := r.state(5); !s.On || s.Latched {
				t.Fatalf("pump after a baseline device stop: %+v", s)
			}
			want := "[ERROR   ] Invalid actuator command topic: " + dev("actuator/emergency")
			if !strings.Contains(log.String(), want) {
				t.Fatalf("log lacks %q", want)
			}
		})
	}
}

func uptimeMS() int64 { return time.Now().UnixMilli() - t0*1000 }

func emergencyError(kind, message string) string {
	return fmt.Sprintf(`actuator/emergency/error {"error":"%s","message":"%s","seq":N}`, kind, message)
}

func emergencyCleared() string {
	return fmt.Sprintf(`actuator/emergency/response {"status":"emergency_cleared","timestamp":%d,"seq":N}`, uptimeMS())
}

func emergencyAck(correlation string) string {
	return fmt.Sprintf(`actuator/emergency/ack {"ts":%d,"esp_id":"%s","correlation_id":"%s","command":"emergency_stop",`+
		`"gpio_count":4,"outcome":"executed","seq":N}`, now(), testID, correlation)
}

// docs/protocol.md §3.2.8 on newer firmware: a stop latches with alerts, statuses and an
// ack; a clear within 5 s of the last stop is refused with the gpio-255
// alert and clear_failed; an accepted clear unlatches, blocks the device
// for 2 s, then answers; no status follows until the 30-s cycle.
func TestDeviceEmergencyNewer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "none", func(cfg *NodeConfig) { cfg.StatusEvery = 24 * time.Hour })
		onAndOpening(r)

		r.hub(dev("actuator/emergency"), `{"command":"emergency_stop","auth_token":"any","correlation_id":"em-1"}`)
		r.expect(append(r.stopped(), emergencyAck("em-1"))...)

		r.wait(clearGuard - time.Millisecond)
		r.hub(dev("actuator/emergency"), `{"command":"clear_emergency","auth_token":"any"}`)
		r.expect(
			r.alert(255, "verification_failed", "clear_emergency"),
			emergencyError("clear_failed", "Safety verification failed"),
		)
		if !r.state(5).Latched {
			t.Fatal("a refused clear unlatched")
		}

		r.wait(time.Millisecond)
		r.hub(dev("actuator/emergency"), `{"command":"clear_emergency","auth_token":"any"}`)
		r.hub(dev("actuator/5/command"), `{"command":"ON","value":1.0,"duration":0}`)
		r.expect() // blocked
		for _, g := range allGPIOs {
			if s := r.state(g); s.Latched || s.On {
				t.Fatalf("gpio %d during the block: %+v", g, s)
			}
		}
		r.wait(clearBlocks - 100*time.Millisecond)
		r.expect()
		r.wait(100 * time.Millisecond)
		r.expect(
			emergencyCleared(),
			r.status(5, "pump", true, 255, r.state(5).RuntimeMS, "normal"),
			r.response(5, "ON", "1.000", 0, true, "Command executed", ""),
		)
	})
}

// A clear with no stop before it skips the 5-s rule but still blocks 2 s.
func TestDeviceClearWithoutStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "none")
		onePerType(r)
		r.hub(dev("actuator/emergency"), `{"command":"clear_emergency","auth_token":"x"}`)
		r.expect()
		r.wait(clearBlocks)
		r.expect(emergencyCleared())
	})
}

// Tokens: empty accepts anything; a stored one must match, a missing
// token reads "null"; set_emergency_token replaces either token.
func TestEmergencyTokens(t *testing.T) {
	cases := []struct {
		name, stored, payload string
		accepted              bool
	}{
		{"no stored token", "", `{"command":"emergency_stop","auth_token":"whatever"}`, true},
		{"matching", "Kq7f3a91c2Bd04e6", `{"command":"emergency_stop","auth_token":"Kq7f3a91c2Bd04e6"}`, true},
		{"wrong", "Kq7f3a91c2Bd04e6", `{"command":"emergency_stop","auth_token":"` + testID + `"}`, false},
		{"missing", "Kq7f3a91c2Bd04e6", `{"command":"emergency_stop"}`, false},
		{"wrong token, clear", "Kq7f3a91c2Bd04e6", `{"command":"clear_emergency","auth_token":"x"}`, false},
		{"not an object", "Kq7f3a91c2Bd04e6", `1`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, "none", func(cfg *NodeConfig) { cfg.EmergencyToken = c.stored })
				onAndOpening(r)
				r.hub(dev("actuator/emergency"), c.payload)
				if !c.accepted {
					r.expect(emergencyError("unauthorized", "Invalid auth_token"))
					if r.state(5).Latched {
						t.Fatal("latched by a refused stop")
					}
					return
				}
				r.expect(append(r.stopped(), emergencyAck(""))...)
			})
		})
	}
}

func tokenResponse(success bool, rest string) string {
	return fmt.Sprintf(`system/command/response {"command":"set_emergency_token","esp_id":"%s",`+
		`"success":%t,%s,"ts":%d,"seq":N}`, testID, success, rest, now())
}

// S4: the tokens the hub provisions are answered and enforced; the
// baseline ignores the command.
func TestSetEmergencyToken(t *testing.T) {
	set := func(r *rig, kind, token string) {
		r.hub(dev("system/command"), `{"command":"set_emergency_token","token_type":"`+kind+`","token":"`+token+`"}`)
	}
	t.Run("newer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := boot(t, "none")
			onePerType(r)
			set(r, "esp", "devtoken")
			set(r, "broadcast", "hubtoken")
			set(r, "esp", "")
			set(r, "esp", strings.Repeat("t", maxEmergencyToken+1))
			r.expect(
				tokenResponse(true, `"token_type":"esp","message":"ESP emergency token updated"`),
				tokenResponse(true, `"token_type":"broadcast","message":"Broadcast emergency token updated"`),
				tokenResponse(false, `"error":"Token must be 1-64 characters"`),
				tokenResponse(false, `"error":"Token must be 1-64 characters"`),
			)
			r.hub(dev("actuator/emergency"), `{"command":"emergency_stop","auth_token":"other"}`)
			r.expect(emergencyError("unauthorized", "Invalid auth_token"))
			r.hub(broadcast, `{"command":"emergency_stop","auth_token":"other"}`)
			r.expect()
			r.hub(broadcast, `{"command":"emergency_stop","auth_token":"hubtoken"}`)
			r.expect(r.stopped()...)
		})
	})
	t.Run("baseline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := boot(t, "default")
			set(r, "esp", "devtoken")
			r.expect()
		})
	})
}

// The device emergency topic's 256-byte pool: a payload that overflows it
// is not executed.
func TestDeviceEmergencyPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "none")
		onAndOpening(r)
		r.hub(dev("actuator/emergency"), `{"command":"emergency_stop","reason":"`+strings.Repeat("r", 220)+`"}`)
		r.expect()
		if r.state(5).Latched {
			t.Fatal("an oversize stop latched")
		}
	})
}

// Q13 in an emergency: the baseline's forced stop returns early for an
// active-low relay believed off, which stays energised; newer firmware
// rewrites the pin.
func TestEmergencyStopOfActiveLowRelay(t *testing.T) {
	for _, c := range []struct {
		quirks    string
		energised bool
	}{{"default", true}, {"none", false}} {
		t.Run(c.quirks, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, c.quirks)
				relay := item(16, "relay")
				relay.InvertedLogic = true
				r.configure(relay)
				r.hub(broadcast, `{"command":"emergency_stop"}`)
				if s := r.state(16); s.Energised != c.energised || s.On {
					t.Fatalf("active-low relay after the stop: %+v, want energised %t", s, c.energised)
				}
			})
		})
	}
}
