package actuator

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
)

// ON with duration 20 for a pump with max runtime 60: the device gets ON,
// value 1, duration 20 and the command's correlation id; the answer
// acknowledges it, but only a status changes the state (K7, Q16).
func TestCommandLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.pump(60)
		f.status(pump, false)
		f.drain()

		r := f.mustCommand("on", nil, dur(20))
		sent := f.bus.take()
		if len(sent) != 1 || sent[0].topic != "kaiser/god/esp/"+esp+"/actuator/5/command" {
			t.Fatalf("published %+v", sent)
		}
		if c := sent[0].cmd; c.Command != "ON" || c.Value.V != 1 || c.Duration != 20 || c.CorrelationID != r.CorrelationID ||
			r.CommandID != r.CorrelationID || r.Status != StatusSent || !r.Published {
			t.Fatalf("command %+v, result %+v", c, r)
		}
		if st, _ := f.svc.State(esp, pump); st.State != "off" {
			t.Fatalf("issuing a command changed the confirmed state: %+v", st)
		}

		f.status(pump, true) // baseline: status before the response (Q16)
		f.respond(pump, "ON", true, "")
		f.status(pump, true)
		if c := f.cmd(r.CommandID); c.Status != StatusAcknowledged || c.Success == nil || !*c.Success ||
			c.ResponseMessage != "Command executed" || c.IssuedBy != "user:op" || c.SentAt == nil || c.CompletedAt == nil {
			t.Fatalf("record %+v", c)
		}
		if st, _ := f.svc.State(esp, pump); st.State != "on" || st.Value != 1 || st.OnSince == nil {
			t.Fatalf("state %+v", st)
		}
		evs := f.drain()
		if got := commandStatuses(evs, r.CommandID); !slices.Equal(got, []string{StatusSent, StatusAcknowledged}) {
			t.Fatalf("command_status events %v", got)
		}
		var statusEvents, responses int
		for _, e := range evs {
			switch d := e.Data.(type) {
			case event.ActuatorStatus:
				statusEvents++
			case event.ActuatorResponse:
				if d.CommandID == nil || *d.CommandID != r.CommandID {
					t.Fatalf("response event %+v", d)
				}
				responses++
			}
		}
		if statusEvents != 1 || responses != 1 {
			t.Fatalf("%d status events (only real changes), %d responses", statusEvents, responses)
		}

		// After 20 s the hub itself switches off (K4).
		time.Sleep(20*time.Second - time.Millisecond)
		synctest.Wait()
		if off := offs(f.bus.take()); len(off) != 0 {
			t.Fatalf("OFF before the duration ended: %+v", off)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		off := offs(f.bus.take())
		if len(off) != 1 || off[0].cmd.Duration != 0 {
			t.Fatalf("auto-off %+v", off)
		}
		auto := f.commands(issuedBy("system:duration"))
		if len(auto) != 1 || auto[0].Status != StatusSent || auto[0].CorrelationID != off[0].cmd.CorrelationID {
			t.Fatalf("auto-off record %+v", auto)
		}
		f.respond(pump, "OFF", true, "")
		f.status(pump, false)
		if st, _ := f.svc.State(esp, pump); st.State != "off" || st.PendingOff != "" {
			t.Fatalf("after the auto-off: %+v", st)
		}
	})
}

// A device that never answers: the command ends timeout after 10 s; an
// answer after that is kept as late_ack and changes nothing (docs/domain.md §4.5).
func TestTimeoutAndLateAck(t *testing.T) {
	for _, echo := range []bool{false, true} {
		name := map[bool]string{false: "baseline without correlation id", true: "newer firmware echoing it"}[echo]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t)
				f.pump(60)
				r := f.mustCommand("ON", nil, dur(20))

				time.Sleep(10*time.Second - time.Millisecond)
				synctest.Wait()
				if c := f.cmd(r.CommandID); c.Status != StatusSent {
					t.Fatalf("status %s before 10 s", c.Status)
				}
				time.Sleep(time.Millisecond)
				synctest.Wait()
				if c := f.cmd(r.CommandID); c.Status != StatusTimeout || c.Error == "" {
					t.Fatalf("status %s (%s) at 10 s", c.Status, c.Error)
				}

				corr := ""
				if echo {
					corr = r.CorrelationID
				}
				f.respond(pump, "ON", true, corr)
				c := f.cmd(r.CommandID)
				late, _ := c.Metadata["late_ack"].(map[string]any)
				if c.Status != StatusTimeout || late == nil || late["success"] != true {
					t.Fatalf("late answer: %+v", c)
				}
				if st, _ := f.svc.State(esp, pump); st.OnSince != nil {
					t.Fatalf("a late answer set the on-time: %+v", st)
				}
				if rows := f.commands(issuedBy("esp32_response")); len(rows) != 0 {
					t.Fatalf("a late answer was recorded as unmatched: %+v", rows)
				}

				// A second answer matches nothing any more: device history.
				f.respond(pump, "ON", true, "")
				if rows := f.commands(issuedBy("esp32_response")); len(rows) != 1 {
					t.Fatalf("unmatched answer rows %+v", rows)
				}
			})
		})
	}
}

// At most one non-OFF command per actuator is in flight; a newer request
// replaces a queued one (expired, superseded); an OFF goes out at once and
// supersedes the queued one; the queued one goes out when the one in flight
// ends, and expires after 30 s (K5, docs/domain.md §4.5).
func TestOneInFlightAndSuperseding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.configure(Config{GPIO: pump, Type: "pwm", MaxRuntimeSeconds: 600})

		first := f.mustCommand("PWM", val(0.3), dur(60))
		second := f.mustCommand("PWM", val(0.5), dur(60))
		third := f.mustCommand("PWM", val(0.7), dur(60))
		if second.Status != StatusQueued || third.Status != StatusQueued || second.Published {
			t.Fatalf("queued: %+v %+v", second, third)
		}
		if c := f.cmd(second.CommandID); c.Status != StatusExpired || c.Error != "superseded" {
			t.Fatalf("the replaced request: %+v", c)
		}
		if sent := f.bus.take(); len(sent) != 1 || sent[0].cmd.CorrelationID != first.CorrelationID {
			t.Fatalf("published while one is in flight: %+v", sent)
		}

		// The first one's answer lets the queued one go.
		f.respond(pump, "PWM", true, "")
		sent := f.bus.take()
		if len(sent) != 1 || sent[0].cmd.CorrelationID != third.CorrelationID || sent[0].cmd.Value.V != 0.7 {
			t.Fatalf("after the first answer: %+v", sent)
		}

		// An OFF does not wait and supersedes the queued request.
		fourth := f.mustCommand("PWM", val(0.9), dur(60))
		off := f.mustCommand("OFF", nil, nil)
		if off.Status != StatusSent {
			t.Fatalf("OFF %+v", off)
		}
		if c := f.cmd(fourth.CommandID); c.Status != StatusExpired || c.Error != "superseded" {
			t.Fatalf("queued behind an OFF: %+v", c)
		}
		if sent := f.bus.take(); len(sent) != 1 || sent[0].cmd.Command != "OFF" {
			t.Fatalf("the OFF went out: %+v", sent)
		}

		// A queued request goes out when the one in flight times out.
		fifth := f.mustCommand("PWM", val(0.2), dur(60))
		if fifth.Status != StatusQueued {
			t.Fatalf("still one in flight: %+v", fifth)
		}
		time.Sleep(10 * time.Second) // the one in flight times out and lets the queued one go
		synctest.Wait()
		if c := f.cmd(fifth.CommandID); c.Status != StatusSent {
			t.Fatalf("after the timeout of the one in flight: %+v", c)
		}
	})
}

// A queued command expires after 30 s when the one before it is still in
// flight (here its timeout is stopped, standing in for a hub whose answer
// wait is longer than the queue's).
func TestQueuedCommandExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.configure(Config{GPIO: pump, Type: "pwm", MaxRuntimeSeconds: 600})
		f.mustCommand("PWM", val(0.3), dur(60))
		q := f.mustCommand("PWM", val(0.5), dur(60))
		f.svc.mu.Lock()
		u := f.svc.units[key{esp, pump}]
		s := f.svc
		s.stopTimerLocked(&u.sent[0].timer) // the one in flight never times out
		f.svc.mu.Unlock()

		time.Sleep(30*time.Second - time.Millisecond)
		synctest.Wait()
		if c := f.cmd(q.CommandID); c.Status != StatusQueued {
			t.Fatalf("before 30 s: %+v", c)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if c := f.cmd(q.CommandID); c.Status != StatusExpired {
			t.Fatalf("at 30 s: %+v", c)
		}
	})
}

// A failed answer fails the command with the device's message.
func TestFailedAnswer(t *testing.T) {
	f := newFixture(t)
	f.pump(60)
	r := f.mustCommand("ON", nil, nil)
	f.respond(pump, "ON", false, r.CorrelationID)
	if c := f.cmd(r.CommandID); c.Status != StatusFailed || c.ResponseMessage != "Command failed" ||
		c.Success == nil || *c.Success {
		t.Fatalf("record %+v", c)
	}
}

// A publish the broker refuses fails the command; for an ON the earlier
// auto-off deadline is restored, since this one was never published.
func TestPublishFailure(t *testing.T) {
	f := newFixture(t)
	f.pump(60)
	f.bus.err = errors.New("broker down")
	r, err := f.command("ON", nil, dur(30))
	if err != nil || r.Status != StatusFailed || r.Published {
		t.Fatalf("result %+v %v", r, err)
	}
	if st := f.store.state(t, esp, pump); st.AutoOff != nil {
		t.Fatalf("a deadline of an ON never published stays: %+v", st.AutoOff)
	}
}

// A device may answer before the hub's publish has returned: a fast node on
// a loaded hub, whose answer is handled while the publishing goroutine waits
// to run. The answer still acknowledges its command, matched by correlation
// id (newer firmware) or by command (the baseline echoes none), and the
// command is not left in flight, where it would queue the next ON and time out.
func TestAnswerBeforePublishReturns(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  string
		echo bool
	}{
		{"ON, baseline", "ON", false},
		{"ON, newer firmware", "ON", true},
		{"OFF, baseline", "OFF", false},
		{"OFF, newer firmware", "OFF", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.pump(60)
			f.status(pump, tc.cmd == "OFF")
			f.bus.onPublish = func(_ string, payload []byte) {
				corr := ""
				if tc.echo {
					var c contract.ActuatorCommand
					_ = json.Unmarshal(payload, &c)
					corr = c.CorrelationID
				}
				f.status(pump, tc.cmd == "ON")
				f.respond(pump, tc.cmd, true, corr)
			}
			r := f.mustCommand(tc.cmd, nil, dur(20))
			f.bus.onPublish = nil

			if c := f.cmd(r.CommandID); c.Status != StatusAcknowledged || c.Metadata["late_ack"] != nil {
				t.Fatalf("answered before the publish returned: %s %v", c.Status, c.Metadata)
			}
			if tc.cmd == "ON" {
				if next := f.mustCommand("ON", nil, dur(20)); next.Status != StatusSent {
					t.Fatalf("the next ON is %s: the answered one is still in flight", next.Status)
				}
			}
		})
	}
}

// The auto-off deadline and the on-time candidate are committed before the
// ON is published; without the commit nothing is published (docs/domain.md §4.8).
func TestDeadlineCommittedBeforePublish(t *testing.T) {
	f := newFixture(t)
	f.pump(60)
	var seen *State
	f.bus.onPublish = func(string, []byte) {
		st := f.store.state(t, esp, pump)
		seen = &st
	}
	r := f.mustCommand("ON", nil, dur(20))
	if seen == nil || seen.AutoOff == nil || seen.AutoOff.CommandID != r.CommandID ||
		seen.OnCandidate == nil || seen.OnCandidate.CommandID != r.CommandID {
		t.Fatalf("state at publish time %+v", seen)
	}
	if stored := f.cmd(r.CommandID); stored.CorrelationID != r.CorrelationID {
		t.Fatalf("the command record was not stored before the publish: %+v", stored)
	}

	f.bus.onPublish = nil
	f.respond(pump, "ON", true, "")
	f.bus.take()
	f.store.stateErr = errors.New("disk full")
	if _, err := f.command("ON", nil, dur(20)); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("err %v", err)
	}
	if sent := f.bus.take(); len(sent) != 0 {
		t.Fatalf("published without its deadline: %+v", sent)
	}
}

// A newer ON that reached sent replaces the auto-off (K4).
func TestNewerOnReplacesTheAutoOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.pump(600)
		f.mustCommand("ON", nil, dur(20))
		f.respond(pump, "ON", true, "")
		time.Sleep(10 * time.Second)
		f.mustCommand("ON", nil, dur(30))
		f.respond(pump, "ON", true, "")
		f.bus.take()

		time.Sleep(20 * time.Second) // 30 s after the first ON, 20 s after the second
		synctest.Wait()
		if off := offs(f.bus.take()); len(off) != 0 {
			t.Fatalf("the replaced auto-off fired: %+v", off)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if off := offs(f.bus.take()); len(off) != 1 {
			t.Fatalf("the second ON's auto-off: %+v", off)
		}
	})
}

// After a restart a future deadline is re-armed and fires at its original
// time; commands found sent end timeout (a later answer is late_ack), queued
// ones expired (docs/domain.md §4.8).
func TestRestartRearmsTheAutoOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.configure(Config{GPIO: pump, Type: "pwm", MaxRuntimeSeconds: 600})
		on := f.mustCommand("PWM", val(0.5), dur(20))
		queued := f.mustCommand("PWM", val(0.6), dur(20))
		time.Sleep(5 * time.Second)

		f.start() // the hub restarts 5 s into the 20 s
		f.bus.take()
		if c := f.cmd(on.CommandID); c.Status != StatusTimeout {
			t.Fatalf("sent at restart: %+v", c)
		}
		if c := f.cmd(queued.CommandID); c.Status != StatusExpired {
			t.Fatalf("queued at restart: %+v", c)
		}
		f.respond(pump, "PWM", true, on.CorrelationID)
		if c := f.cmd(on.CommandID); c.Metadata["late_ack"] == nil || c.Status != StatusTimeout {
			t.Fatalf("answer after the restart: %+v", c)
		}

		time.Sleep(15*time.Second - time.Millisecond)
		synctest.Wait()
		if off := offs(f.bus.take()); len(off) != 0 {
			t.Fatalf("OFF before the original deadline: %+v", off)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if off := offs(f.bus.take()); len(off) != 1 {
			t.Fatalf("OFF at the original deadline: %+v", off)
		}
	})
}

// A deadline that passed while the hub was down fires as soon as the device
// is heard, before any other command (K5, K8).
func TestRestartFiresAPassedAutoOffFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.pump(600)
		f.mustCommand("ON", nil, dur(20))
		f.respond(pump, "ON", true, "")
		f.bus.take()
		f.svc.Stop()
		time.Sleep(60 * time.Second) // the hub is down past the deadline

		f.start()
		if sent := f.bus.take(); len(sent) != 0 {
			t.Fatalf("published while the broker is not yet open: %+v", sent)
		}
		r, err := f.command("ON", nil, dur(30))
		if err != nil {
			t.Fatal(err)
		}
		sent := f.bus.take()
		if len(sent) != 2 || sent[0].cmd.Command != "OFF" || sent[1].cmd.CorrelationID != r.CorrelationID {
			t.Fatalf("the pending OFF goes before the new command: %+v", sent)
		}
		if rows := f.commands(issuedBy("system:duration")); len(rows) != 1 || rows[0].Status != StatusSent {
			t.Fatalf("auto-off record %+v", rows)
		}
	})
}

// A hub OFF without an answer is retried with a new correlation id every
// 10 s while the state is not off, kept while the device is offline and
// sent first when it is back (K8).
func TestHubOffRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.pump(60)
		f.status(pump, true)
		f.bus.take()

		r, err := f.svc.Off(context.Background(), OffRequest{EspID: esp, GPIO: pump, IssuedBy: "system:max_runtime"})
		if err != nil || r.Status != StatusSent {
			t.Fatalf("off %+v %v", r, err)
		}
		first := f.bus.take()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		second := f.bus.take()
		if len(first) != 1 || len(second) != 1 || second[0].cmd.Command != "OFF" ||
			second[0].cmd.CorrelationID == first[0].cmd.CorrelationID {
			t.Fatalf("retry %+v after %+v", second, first)
		}

		f.devices.set(esp, device.StatusOffline)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if sent := f.bus.take(); len(sent) != 0 {
			t.Fatalf("published to an offline device: %+v", sent)
		}
		f.devices.set(esp, device.StatusOnline)
		f.events.Publish(event.Event{Data: event.DeviceStatus{EspID: esp, Status: device.StatusOnline}})
		synctest.Wait()
		back := f.bus.take()
		if len(back) != 1 || back[0].cmd.Command != "OFF" {
			t.Fatalf("when the device is back: %+v", back)
		}

		f.status(pump, false) // confirmed off: no more retries
		time.Sleep(60 * time.Second)
		synctest.Wait()
		if sent := f.bus.take(); len(sent) != 0 {
			t.Fatalf("retried after the confirmed off: %+v", sent)
		}
	})
}

// A hub OFF to an offline device is committed and waits; it is never
// expired, and it goes out with the device's first message.
func TestHubOffWaitsForTheDevice(t *testing.T) {
	f := newFixture(t)
	f.pump(60)
	f.devices.set(esp, device.StatusOffline)
	r, err := f.svc.Off(context.Background(), OffRequest{EspID: esp, GPIO: pump, IssuedBy: "emergency:admin",
		CommandType: "EMERGENCY_STOP", Metadata: map[string]any{"incident_correlation_id": "inc-1"}})
	if err != nil || r.Status != StatusQueued || r.Published {
		t.Fatalf("off %+v %v", r, err)
	}
	rec := f.cmd(r.CommandID)
	if rec.CommandType != "EMERGENCY_STOP" || rec.Metadata["incident_correlation_id"] != "inc-1" {
		t.Fatalf("record %+v", rec)
	}
	f.svc.ExpireQueued(context.Background(), esp, "emergency_stop")
	f.devices.set(esp, device.StatusOnline)
	f.status(pump, true)
	if sent := f.bus.take(); len(sent) != 1 || sent[0].cmd.CorrelationID != r.CorrelationID {
		t.Fatalf("on the device's first message: %+v", sent)
	}
	if c := f.cmd(r.CommandID); c.Status != StatusSent {
		t.Fatalf("record %+v", c)
	}
}

// The watchdog switches off an output on for longer than its max runtime
// + 10 s and raises a warning; not earlier (docs/domain.md §4.8).
func TestWatchdog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.pump(60)
		f.status(pump, true) // on without a command: bounded from this status
		f.bus.take()

		time.Sleep(70 * time.Second)
		if err := f.svc.Watchdog(context.Background()); err != nil {
			t.Fatal(err)
		}
		if sent := f.bus.take(); len(sent) != 0 {
			t.Fatalf("watchdog at max runtime + 10 s: %+v", sent)
		}
		time.Sleep(time.Second)
		if err := f.svc.Watchdog(context.Background()); err != nil {
			t.Fatal(err)
		}
		if off := offs(f.bus.take()); len(off) != 1 {
			t.Fatalf("watchdog OFF %+v", off)
		}
		if rows := f.commands(issuedBy("system:max_runtime")); len(rows) != 1 {
			t.Fatalf("records %+v", rows)
		}
		alerts := f.alerts.all()
		if len(alerts) != 1 || alerts[0].Severity != "warning" || alerts[0].Key != "actuator_"+esp+"_5_max_runtime" {
			t.Fatalf("alerts %+v", alerts)
		}
		// Not again while its OFF is pending.
		if err := f.svc.Watchdog(context.Background()); err != nil {
			t.Fatal(err)
		}
		if sent := f.bus.take(); len(sent) != 0 {
			t.Fatalf("a second watchdog OFF: %+v", sent)
		}
	})
}

// An acknowledged ON makes its publish time the on-time (a repeated ON
// restarts the bound).
func TestOnTimeFromTheAcknowledgedOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.pump(60)
		start := time.Now()
		r := f.mustCommand("ON", nil, dur(60))
		time.Sleep(2 * time.Second)
		f.status(pump, true)
		f.respond(pump, "ON", true, r.CorrelationID)
		if st, _ := f.svc.State(esp, pump); st.OnSince == nil || !st.OnSince.Equal(start) {
			t.Fatalf("on since %v, want the publish time %v", st.OnSince, start)
		}
	})
}

// The cooldown counts from the confirmed transition to off.
func TestCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.configure(Config{GPIO: pump, Type: "pump", CooldownSeconds: 30})
		f.status(pump, true)
		f.status(pump, false)
		time.Sleep(29 * time.Second)
		if _, err := f.command("ON", nil, nil); rejection(err) == nil || rejection(err).Code != CodeCooldown {
			t.Fatalf("inside the cooldown: %v", err)
		}
		time.Sleep(time.Second)
		if _, err := f.command("ON", nil, nil); err != nil {
			t.Fatalf("after the cooldown: %v", err)
		}
	})
}
