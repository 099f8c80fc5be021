package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
)

func sensorItem(gpio int, name string) contract.SensorConfigItem {
	return contract.SensorConfigItem{
		GPIO:       gpio,
		SensorType: "ds18b20",
		SensorName: name,
		Active:     true,
		RawMode:    true,
	}
}

// reply is a device's config_response.
type reply struct {
	status, section, code, message string
}

func ok(section string) reply {
	return reply{status: "success", section: section, message: "Configured"}
}

func failure(section, code, message string) reply {
	return reply{
		status:  "error",
		section: section,
		code:    code,
		message: message,
	}
}

func (h *harness) respond(r reply) error {
	payload := map[string]any{
		"status":  r.status,
		"type":    r.section,
		"count":   0,
		"message": r.message,
	}
	if r.code != "" {
		payload["error_code"] = r.code
	}
	return h.svc.HandleConfigResponse(context.Background(), h.message(testID, "config_response", payload))
}

// pushedOnline brings testID online with sensors configured, which pushes
// the config; it returns that push.
func (h *harness) pushedOnline(items ...contract.SensorConfigItem) *Push {
	h.t.Helper()
	h.source.set(testID, items...)
	h.online()
	p := h.svc.LastPush(testID)
	if p == nil || p.Status != PushPending || p.Trigger != "online" {
		h.t.Fatalf("push after coming online: %+v", p)
	}
	return p
}

func TestPushAnswers(t *testing.T) {
	const emptyActuators = "Actuator config array is empty"
	cases := []struct {
		name    string
		replies []reply
		gaps    time.Duration // fake time between replies
		// wantNow is the push status right after the replies, wantSettled
		// after the timeout has passed.
		wantNow, wantSettled string
		wantSections         map[string]string
		wantFailures         []string
		wantEvents           []string // config_response events as "section:status"
	}{
		{
			name:         "the section's success applies the push",
			replies:      []reply{ok("sensor")},
			wantNow:      PushApplied,
			wantSettled:  PushApplied,
			wantSections: map[string]string{"sensor": PushApplied},
			wantEvents:   []string{"sensor:success"},
		},
		{
			name:         "the notice of the empty actuator section is no failure",
			replies:      []reply{failure("actuator", "MISSING_FIELD", emptyActuators), ok("sensor")},
			wantNow:      PushApplied,
			wantSettled:  PushApplied,
			wantSections: map[string]string{"sensor": PushApplied},
			wantEvents:   []string{"sensor:success"},
		},
		{
			name: "the missing-array wording of the notice counts the same",
			replies: []reply{
				failure("actuator", "MISSING_FIELD", "Actuator config missing 'actuators' array"),
				ok("sensor"),
			},
			wantNow:      PushApplied,
			wantSettled:  PushApplied,
			wantSections: map[string]string{"sensor": PushApplied},
			wantEvents:   []string{"sensor:success"},
		},
		{
			name:         "the empty-section notice alone leaves the push pending until its timeout",
			replies:      []reply{failure("actuator", "MISSING_FIELD", emptyActuators)},
			wantNow:      PushPending,
			wantSettled:  PushTimedOut,
			wantSections: map[string]string{"sensor": PushTimedOut},
		},
		{
			name:         "MISSING_FIELD of a section with items is a failure",
			replies:      []reply{failure("sensor", "MISSING_FIELD", "Sensor config missing required field 'sensor_name'")},
			wantNow:      PushPending, // the grace for trailing errors
			wantSettled:  PushFailed,
			wantSections: map[string]string{"sensor": PushFailed},
			wantFailures: []string{"MISSING_FIELD"},
			wantEvents:   []string{"sensor:failed"},
		},
		{
			name: "trailing item errors within the grace are kept",
			replies: []reply{
				failure("sensor", "GPIO_CONFLICT", "GPIO 4 already in use"),
				failure("sensor", "VALIDATION_FAILED", "GPIO 40 out of range"),
			},
			gaps:         errorGrace / 2,
			wantNow:      PushPending,
			wantSettled:  PushFailed,
			wantSections: map[string]string{"sensor": PushFailed},
			wantFailures: []string{"GPIO_CONFLICT", "VALIDATION_FAILED"},
			wantEvents:   []string{"sensor:failed", "sensor:failed"},
		},
		{
			name:         "a success after an error does not apply the section",
			replies:      []reply{failure("sensor", "GPIO_CONFLICT", "GPIO 4 already in use"), ok("sensor")},
			wantNow:      PushPending,
			wantSettled:  PushFailed,
			wantSections: map[string]string{"sensor": PushFailed},
			wantFailures: []string{"GPIO_CONFLICT"},
			wantEvents:   []string{"sensor:failed", "sensor:success"},
		},
		{
			name:         "no answer times the push out",
			wantNow:      PushPending,
			wantSettled:  PushTimedOut,
			wantSections: map[string]string{"sensor": PushTimedOut},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Config{HeartbeatTimeout: time.Hour})
				push := h.pushedOnline(sensorItem(4, "soil"), sensorItem(5, "air"))
				h.events()

				for i, r := range tc.replies {
					if i > 0 {
						time.Sleep(tc.gaps)
					}
					if err := h.respond(r); err != nil {
						t.Fatalf("reply %d: %v", i, err)
					}
				}
				var events []string
				for _, e := range ofType(h.events(), "config_response") {
					d := dataOf(e)
					events = append(events, fmt.Sprint(d["config_type"], ":", d["status"]))
					if d["correlation_id"] != push.CorrelationID {
						t.Errorf("event correlation %v, want %s", d["correlation_id"], push.CorrelationID)
					}
				}
				if !slices.Equal(events, tc.wantEvents) {
					t.Errorf("events %q, want %q", events, tc.wantEvents)
				}

				synctest.Wait()
				if got := h.svc.LastPush(testID).Status; got != tc.wantNow {
					t.Errorf("status after the replies %s, want %s", got, tc.wantNow)
				}

				time.Sleep(pushTimeout)
				synctest.Wait()
				p := h.svc.LastPush(testID)
				if p.Status != tc.wantSettled {
					t.Errorf("settled status %s, want %s", p.Status, tc.wantSettled)
				}
				if !mapsEqual(p.Sections, tc.wantSections) {
					t.Errorf("sections %v, want %v", p.Sections, tc.wantSections)
				}
				var codes []string
				for _, f := range p.Failures {
					codes = append(codes, f.ErrorCode)
				}
				if !slices.Equal(codes, tc.wantFailures) {
					t.Errorf("failures %q, want %q", codes, tc.wantFailures)
				}
				if len(codes) > 0 && (p.ErrorCode() != codes[0] || p.ErrorMessage() == "") {
					t.Errorf("summary %q %q", p.ErrorCode(), p.ErrorMessage())
				}
				if got := h.store.savedPushStatus(testID); got != tc.wantSettled {
					t.Errorf("saved push status %s, want %s", got, tc.wantSettled)
				}
			})
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A device may answer before the publish call returns (the embedded
// broker delivers at once, and the answer is ingested concurrently): the
// push is tracked before it goes out, so that answer completes it.
func TestPushAnsweredBeforePublishReturns(t *testing.T) {
	h := newHarness(t, Config{HeartbeatTimeout: time.Hour})
	h.source.set(testID, sensorItem(4, "soil"))
	h.bus.answer = func(topic string) {
		if !strings.HasSuffix(topic, "/config") {
			return
		}
		for _, r := range []reply{ok("sensor"), failure("actuator", "MISSING_FIELD", "Actuator config array is empty")} {
			if err := h.respond(r); err != nil {
				t.Errorf("answer: %v", err)
			}
		}
	}
	h.online()
	applied := h.svc.LastPush(testID)
	if applied == nil || applied.Status != PushApplied {
		t.Fatalf("push answered during its publish: %+v", applied)
	}

	// A push that cannot be published leaves the device's last push in
	// place, so that the next one still removes what the device has.
	h.bus.answer = nil
	h.source.set(testID)
	h.source.setActuators(testID, contract.ActuatorConfigItem{GPIO: 5, ActuatorType: "pump", Active: true})
	h.bus.mu.Lock()
	h.bus.err = errors.New("broker down")
	h.bus.mu.Unlock()
	if _, err := h.svc.PushConfig(context.Background(), testID, "manual"); err == nil {
		t.Fatal("a failed publish reported success")
	}
	if p := h.svc.LastPush(testID); p == nil || p.CorrelationID != applied.CorrelationID || p.Status != PushApplied {
		t.Fatalf("after a failed publish the last push is %+v", p)
	}
	h.bus.mu.Lock()
	h.bus.err = nil
	h.bus.mu.Unlock()
	h.bus.take("/config")
	if _, err := h.svc.PushConfig(context.Background(), testID, "manual"); err != nil {
		t.Fatal(err)
	}
	cfgs := h.configs()
	if len(cfgs) != 1 || len(cfgs[0].Sensors) != 1 || cfgs[0].Sensors[0].GPIO != 4 || cfgs[0].Sensors[0].Active {
		t.Fatalf("the next push does not remove the sensor: %+v", cfgs)
	}
}

func TestPushErrorGraceTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{HeartbeatTimeout: time.Hour})
		h.pushedOnline(sensorItem(4, "soil"))

		if err := h.respond(failure("sensor", "GPIO_CONFLICT", "GPIO 4 already in use")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(errorGrace - time.Millisecond)
		synctest.Wait()
		if got := h.svc.LastPush(testID).Status; got != PushPending {
			t.Fatalf("status before the grace ended: %s", got)
		}

		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := h.svc.LastPush(testID).Status; got != PushFailed {
			t.Errorf("status when the grace ended: %s", got)
		}
	})
}

func TestPushTimeoutTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{HeartbeatTimeout: time.Hour})
		h.pushedOnline(sensorItem(4, "soil"))

		time.Sleep(pushTimeout - time.Millisecond)
		synctest.Wait()
		if got := h.svc.LastPush(testID).Status; got != PushPending {
			t.Fatalf("status before the timeout: %s", got)
		}

		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := h.svc.LastPush(testID).Status; got != PushTimedOut {
			t.Errorf("status at the timeout: %s", got)
		}
	})
}

func TestCombinedConfig(t *testing.T) {
	h := newHarness(t, Config{})
	items := []contract.SensorConfigItem{sensorItem(4, "soil"), sensorItem(5, "air")}
	push := h.pushedOnline(items...)

	sent := h.bus.take("/config")
	if len(sent) != 1 || sent[0].topic != "kaiser/god/esp/"+testID+"/config" {
		t.Fatalf("config messages %+v, want one on the device's config topic", sent)
	}
	var c contract.Config
	if err := json.Unmarshal(sent[0].payload, &c); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Sensors, items) || c.CorrelationID != push.CorrelationID || c.Timestamp == 0 {
		t.Errorf("config %+v", c)
	}
	if !strings.HasPrefix(c.CorrelationID, "cfg-") {
		t.Errorf("correlation id %q", c.CorrelationID)
	}
	if push.Parts != 1 || push.Expected["sensor"] != 1 || push.Expected["actuator"] != 0 {
		t.Errorf("push %+v", push)
	}

	// Both arrays are present on the wire (P2).
	var wire map[string]json.RawMessage
	if err := json.Unmarshal(sent[0].payload, &wire); err != nil {
		t.Fatal(err)
	}
	if string(wire["actuators"]) != "[]" {
		t.Errorf("actuators on the wire %s, want []", wire["actuators"])
	}
}

func TestPushSplitsToThePacketLimit(t *testing.T) {
	cases := []struct {
		hardware string
		limit    int
	}{
		{"", contract.MaxDevicePacket},
		{"ESP32_WROOM", wroomPacketLimit},
		{"MOCK_ESP32", mockPacketLimit},
	}
	var items []contract.SensorConfigItem
	for gpio := range 30 {
		items = append(items, sensorItem(gpio, "a sensor with a rather long name "+strings.Repeat("x", gpio)))
	}
	for _, tc := range cases {
		t.Run("hardware "+tc.hardware, func(t *testing.T) {
			h := newHarness(t, Config{})
			ctx := context.Background()
			reg := Registration{
				DeviceID:     testID,
				HardwareType: tc.hardware,
			}
			if _, err := h.svc.Register(ctx, reg, "admin"); err != nil {
				t.Fatal(err)
			}
			h.source.set(testID, items...)
			h.beat(10)

			push := h.svc.LastPush(testID)
			sent := h.bus.take("/config")
			if push == nil || push.Parts != len(sent) || push.Expected["sensor"] != len(sent) {
				t.Fatalf("push %+v for %d messages", push, len(sent))
			}

			var got []contract.SensorConfigItem
			var parts []contract.Config
			for i, s := range sent {
				if !contract.FitsPacket(s.topic, s.payload, tc.limit) || len(s.payload) > configParsePool {
					t.Errorf("part %d of %d bytes exceeds the limit %d", i, len(s.payload), tc.limit)
				}
				var c contract.Config
				if err := json.Unmarshal(s.payload, &c); err != nil {
					t.Fatal(err)
				}
				want := push.CorrelationID
				if i > 0 {
					want = fmt.Sprintf("%s-%d", push.CorrelationID, i)
				}
				if c.CorrelationID != want {
					t.Errorf("part %d correlation %q, want %q", i, c.CorrelationID, want)
				}
				got = append(got, c.Sensors...)
				parts = append(parts, c)
			}
			if !slices.Equal(got, items) {
				t.Errorf("the parts do not carry every item once, in order")
			}

			// As few parts as fit: no part could have taken the next one's first item.
			for i := 0; i+1 < len(parts); i++ {
				grown := parts[i]
				grown.Sensors = append(slices.Clone(grown.Sensors), parts[i+1].Sensors[0])
				b, _ := contract.MarshalConfig(grown)
				if contract.FitsPacket(sent[i].topic, b, tc.limit) && len(b) <= configParsePool {
					t.Errorf("part %d had room for the next item", i)
				}
			}

			// Applied only when every part's success has arrived.
			for i := range sent {
				if st := h.svc.LastPush(testID).Status; st != PushPending {
					t.Fatalf("status %s after %d of %d successes", st, i, len(sent))
				}
				if err := h.respond(ok("sensor")); err != nil {
					t.Fatal(err)
				}
			}
			if st := h.svc.LastPush(testID).Status; st != PushApplied {
				t.Errorf("status %s after all successes", st)
			}
		})
	}
}

func TestConfigTooLarge(t *testing.T) {
	huge := sensorItem(9, strings.Repeat("n", contract.MaxDevicePacket))
	cases := []struct {
		name  string
		items []contract.SensorConfigItem
	}{
		{"the first item alone does not fit", []contract.SensorConfigItem{huge}},
		{"a later item alone does not fit", []contract.SensorConfigItem{sensorItem(4, "soil"), huge}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.online()
			h.configs()
			h.source.set(testID, tc.items...)

			_, err := h.svc.PushConfig(context.Background(), testID, "manual")
			if !errors.Is(err, ErrConfigTooLarge) || !strings.Contains(err.Error(), "GPIO 9") {
				t.Errorf("err %v, want ErrConfigTooLarge naming GPIO 9", err)
			}
			if sent := h.bus.take("/config"); len(sent) != 0 {
				t.Errorf("%d config messages sent for a refused push", len(sent))
			}
			if p := h.svc.LastPush(testID); p != nil {
				t.Errorf("a refused push was recorded: %+v", p)
			}
		})
	}
}

func TestPushRemovals(t *testing.T) {
	h := newHarness(t, Config{})
	h.pushedOnline(sensorItem(4, "soil"), sensorItem(5, "air"))
	if err := h.respond(ok("sensor")); err != nil {
		t.Fatal(err)
	}
	h.configs()

	h.source.set(testID, sensorItem(5, "air"))
	if _, err := h.svc.PushConfig(context.Background(), testID, "manual"); err != nil {
		t.Fatal(err)
	}

	c := h.configs()[0]
	removed := sensorItem(4, "soil")
	removed.Active = false
	if want := []contract.SensorConfigItem{sensorItem(5, "air"), removed}; !slices.Equal(c.Sensors, want) {
		t.Errorf("sensors %+v, want the removal of GPIO 4 after the kept item", c.Sensors)
	}
	if p := h.svc.LastPush(testID); !slices.Equal(p.Sensors, []contract.SensorConfigItem{sensorItem(5, "air")}) {
		t.Errorf("recorded sensors %+v, want only the active ones", p.Sensors)
	}
}

func TestPushCorrelation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{HeartbeatTimeout: time.Hour})
		first := h.pushedOnline(sensorItem(4, "soil"))

		time.Sleep(pushTimeout - time.Second)
		second, err := h.svc.PushConfig(context.Background(), testID, "manual")
		if err != nil {
			t.Fatal(err)
		}
		if second == first.CorrelationID || second == "" {
			t.Fatalf("second push correlation %q, first %q", second, first.CorrelationID)
		}

		// The first push's timeout must not settle the second one.
		time.Sleep(2 * time.Second)
		synctest.Wait()
		p := h.svc.LastPush(testID)
		if p.CorrelationID != second || p.Status != PushPending || p.Trigger != "manual" {
			t.Fatalf("push after the first one's deadline: %+v", p)
		}

		h.events()
		if err := h.respond(ok("sensor")); err != nil {
			t.Fatal(err)
		}
		evs := ofType(h.events(), "config_response")
		if len(evs) != 1 || dataOf(evs[0])["correlation_id"] != second {
			t.Errorf("response events %v, want one for %s", evs, second)
		}
		if st := h.svc.LastPush(testID).Status; st != PushApplied {
			t.Errorf("status %s", st)
		}

		// A response with nothing pending is only logged.
		if err := h.respond(ok("sensor")); err != nil {
			t.Errorf("late response: %v", err)
		}
		if n := len(h.events()); n != 0 {
			t.Errorf("%d events for a response without a pending push", n)
		}
	})
}

func TestConfigResponseGate(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	msg := h.message(testID, "config_response", map[string]any{"status": "success", "type": "sensor"})

	if err := h.svc.HandleConfigResponse(ctx, msg); dropReason(err) != contract.ReasonUnknownDevice {
		t.Errorf("unknown device: %v", err)
	}
	replay := msg
	replay.Replay = true
	if err := h.svc.HandleConfigResponse(ctx, replay); dropReason(err) != contract.ReasonReplay {
		t.Errorf("replay: %v", err)
	}
	bad := msg
	bad.Payload = []byte(`{"status":"error","type":"sensor"}`)
	var de *contract.DecodeError
	if err := h.svc.HandleConfigResponse(ctx, bad); !errors.As(err, &de) {
		t.Errorf("error without error_code: %v, want a decode error", err)
	}
}

func TestPushTriggers(t *testing.T) {
	cases := []struct {
		name        string
		items       bool
		settle      func(h *harness) // what happens to the first push
		wantTrigger string           // of the push after offline → online; "" = none
	}{
		{
			name:        "back online with an unconfirmed push",
			items:       true,
			settle:      func(h *harness) {},
			wantTrigger: "online",
		},
		{
			name:  "back online with an applied push",
			items: true,
			settle: func(h *harness) {
				if err := h.respond(ok("sensor")); err != nil {
					h.t.Fatal(err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			first := h.pushedOnline(sensorItem(4, "soil"))
			tc.settle(h)
			if err := h.svc.HandleWill(context.Background(), h.will(testID)); err != nil {
				t.Fatal(err)
			}
			h.configs()

			h.beat(30)
			p := h.svc.LastPush(testID)
			pushed := p.CorrelationID != first.CorrelationID
			switch {
			case tc.wantTrigger == "" && pushed:
				t.Errorf("pushed again: %+v", p)
			case tc.wantTrigger != "" && (!pushed || p.Trigger != tc.wantTrigger):
				t.Errorf("push %+v, want a new one triggered by %s", p, tc.wantTrigger)
			}
		})
	}

	t.Run("reboot", func(t *testing.T) {
		h := newHarness(t, Config{})
		first := h.pushedOnline(sensorItem(4, "soil"))
		if err := h.respond(ok("sensor")); err != nil {
			t.Fatal(err)
		}

		h.beat(1)
		if p := h.svc.LastPush(testID); p.CorrelationID == first.CorrelationID || p.Trigger != "reboot" {
			t.Errorf("push after a reboot: %+v", p)
		}
	})

	t.Run("nothing to configure", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.online()
		if p := h.svc.LastPush(testID); p != nil {
			t.Errorf("a push without items: %+v", p)
		}
		if sent := h.bus.take("/config"); len(sent) != 0 {
			t.Errorf("%d config messages without items", len(sent))
		}
	})
}

func TestAckConfigAvailable(t *testing.T) {
	h := newHarness(t, Config{})
	h.pushedOnline(sensorItem(4, "soil"))
	h.acks()

	h.beat(30)
	if acks := h.acks(); len(acks) != 1 || !acks[0].ConfigAvailable {
		t.Errorf("ack with a pending push %+v, want config_available", acks)
	}

	if err := h.respond(ok("sensor")); err != nil {
		t.Fatal(err)
	}
	h.beat(40)
	if acks := h.acks(); len(acks) != 1 || acks[0].ConfigAvailable {
		t.Errorf("ack with an applied push %+v, want no config_available", acks)
	}
}

func TestPushConfigRefusals(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	h.source.set(testID, sensorItem(4, "soil"))

	if _, err := h.svc.PushConfig(ctx, testID, "manual"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	h.beat(10)
	if _, err := h.svc.PushConfig(ctx, testID, "manual"); !errors.Is(err, ErrNotApproved) {
		t.Errorf("pending: %v", err)
	}
	if _, err := h.svc.Approve(ctx, testID, "admin", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.PushConfig(ctx, testID, "manual"); !errors.Is(err, ErrOffline) {
		t.Errorf("approved, not online: %v", err)
	}

	h.bus.err = errors.New("broker down")
	h.beat(20)
	if _, err := h.svc.PushConfig(ctx, testID, "manual"); !errors.Is(err, h.bus.err) {
		t.Errorf("publish failure: %v", err)
	}
	if p := h.svc.LastPush(testID); p != nil {
		t.Errorf("an unsent push was recorded: %+v", p)
	}

	disabled := New(Config{}, newFakeStore(), &fakeBus{}, nil, nil)
	if _, err := disabled.PushConfig(ctx, testID, "manual"); err == nil {
		t.Errorf("push without EnablePush succeeded")
	}
	if disabled.LastPush(testID) != nil {
		t.Errorf("last push without EnablePush")
	}
	disabled.StopPush()
}

func TestEnablePushAfterRestart(t *testing.T) {
	st := newFakeStore()
	for id, status := range map[string]string{"ESP_A": PushPending, "ESP_B": PushApplied} {
		doc, err := json.Marshal(Push{CorrelationID: "cfg-" + id, Status: status})
		if err != nil {
			t.Fatal(err)
		}
		st.pushDocs[id] = doc
	}
	st.pushDocs["ESP_BAD"] = []byte("{")

	h := newHarnessWith(t, Config{}, st)
	if p := h.svc.LastPush("ESP_A"); p == nil || p.Status != PushTimedOut {
		t.Errorf("a push pending across a restart: %+v, want timed_out", p)
	}
	if p := h.svc.LastPush("ESP_B"); p == nil || p.Status != PushApplied {
		t.Errorf("an applied push: %+v", p)
	}
	if p := h.svc.LastPush("ESP_BAD"); p != nil {
		t.Errorf("an unreadable push document was loaded: %+v", p)
	}
}

func TestStopPush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{HeartbeatTimeout: time.Hour})
		h.pushedOnline(sensorItem(4, "soil"))

		h.svc.StopPush()
		time.Sleep(2 * pushTimeout)
		synctest.Wait()
		if st := h.svc.LastPush(testID).Status; st != PushPending {
			t.Errorf("a stopped push settled: %s", st)
		}

		// After the stop, pushes and error graces start no timers.
		if _, err := h.svc.PushConfig(context.Background(), testID, "manual"); err != nil {
			t.Fatal(err)
		}
		if err := h.respond(failure("sensor", "GPIO_CONFLICT", "GPIO 4 already in use")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * pushTimeout)
		synctest.Wait()
		if st := h.svc.LastPush(testID).Status; st != PushPending {
			t.Errorf("a push after the stop settled: %s", st)
		}
	})
}
