package emergency

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
)

func (r *rig) statusEvent(espID, status string) {
	r.events.Publish(event.Event{Time: time.Now(), Data: event.DeviceStatus{EspID: espID, Status: status}})
}

func (r *rig) heartbeatEvent(espID string) {
	r.events.Publish(event.Event{Time: time.Now(), Data: event.EspHealth{
		EspID:  espID,
		Status: device.StatusOnline,
		Source: "heartbeat",
	}})
}

// resafeEntries are the journal entries of OFFs and device stops for espID
// after mark.
func (r *rig) resafeEntries(espID string, mark int) []string {
	var out []string
	for _, e := range r.j.all()[mark:] {
		if strings.HasPrefix(e, "off "+espID) || strings.Contains(e, espID+"/actuator/emergency") {
			out = append(out, e)
		}
	}
	return out
}

// A latched device that was offline during the stop gets, when it is back,
// its OFFs and then the device stop after its valve's travel time
// (docs/protocol.md E3); never a broadcast.
func TestReconnectResafeOrdering(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5), valve(12, 4*time.Second))
		r.devices.setStatus(espA, device.StatusOffline)
		r.stop(espA, nil)
		if len(r.acts.offsFor(espA)) != 0 || len(r.broker.on("/actuator/emergency")) != 0 {
			t.Fatal("published to an offline device")
		}

		mark := len(r.j.all())
		r.devices.setStatus(espA, device.StatusOnline)
		r.statusEvent(espA, device.StatusOnline)
		synctest.Wait()
		if got := r.resafeEntries(espA, mark); len(got) != 2 || got[0] != "off "+espA+"/5" || got[1] != "off "+espA+"/12" {
			t.Fatalf("right after coming online: %v", got)
		}
		time.Sleep(4 * time.Second)
		synctest.Wait()
		got := r.resafeEntries(espA, mark)
		if len(got) != 3 || !strings.HasSuffix(got[2], "emergency_stop") {
			t.Fatalf("after the valve travel: %v", got)
		}
		if len(r.broker.on("kaiser/broadcast/emergency")) != 0 {
			t.Fatal("re-safing re-broadcast")
		}
		offs := r.acts.offsFor(espA)
		if offs[0].IssuedBy != "emergency:olga" || offs[0].Metadata["resafe"] != "reconnect" {
			t.Errorf("re-safing OFF %+v", offs[0])
		}

		// The heartbeat after the re-safing does not repeat it.
		r.heartbeatEvent(espA)
		synctest.Wait()
		if n := len(r.acts.offsFor(espA)); n != 2 {
			t.Fatalf("%d OFFs after a heartbeat, want the 2 of the re-safing", n)
		}
	})
}

// After a reboot the config push comes first and the re-safing right after
// it; the online event of the same reconnect does not repeat it (B2).
func TestRebootPushThenResafe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		r.stop(espA, nil)
		mark := len(r.j.all())

		r.svc.HandlePushPublished(device.PushResult{EspID: espA, CorrelationID: "cfg-r", Trigger: "reboot"})
		r.statusEvent(espA, device.StatusOnline)
		synctest.Wait()

		got := r.resafeEntries(espA, mark)
		if len(got) != 2 || got[0] != "off "+espA+"/5" || !strings.HasSuffix(got[1], "emergency_stop") {
			t.Fatalf("after the reboot push: %v", got)
		}

		// An operator's push to a latched device is followed by E3 too.
		r.svc.HandlePushPublished(device.PushResult{EspID: espA, CorrelationID: "cfg-o", Trigger: "manual"})
		synctest.Wait()
		if n := len(r.acts.offsFor(espA)); n != 3 {
			t.Fatalf("%d OFFs, want a re-safing after the operator's push", n)
		}

		// A device that is not latched is left alone.
		r.device(espB, pump(5))
		r.svc.HandlePushPublished(device.PushResult{EspID: espB, Trigger: "reboot"})
		r.statusEvent(espB, device.StatusOnline)
		synctest.Wait()
		if len(r.acts.offsFor(espB)) != 0 {
			t.Fatal("an unlatched device was re-safed")
		}
	})
}

// A latch survives a restart: restored at Load, blocking, reported, and the
// device is re-safed at its first heartbeat, since a stop message in flight
// at the restart may have been lost.
func TestRestartRestoresLatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		r.device(espB, pump(5))
		res := r.stop("", nil)
		r.svc.Close()

		r.start()
		if !r.svc.Latched(espA) || !r.svc.Latched("ESP_NEWONE") {
			t.Fatal("latches lost over the restart")
		}
		st := r.svc.Status()
		if !st.Active || st.Global == nil || st.Global.IncidentCorrelationID != res.IncidentCorrelationID ||
			len(st.Devices) != 2 {
			t.Fatalf("status after restart %+v", st)
		}
		if st.Global.StopPublishedAt == nil {
			t.Error("the broadcast time was not kept (the guard would restart)")
		}

		before := len(r.acts.offsFor(espA))
		r.heartbeatEvent(espA)
		synctest.Wait()
		if len(r.acts.offsFor(espA)) != before+1 || len(r.broker.on(espA+"/actuator/emergency")) != 1 {
			t.Fatalf("no re-safing at the first heartbeat after the restart: %v", r.j.all())
		}
	})
}

// An offline transition marks a latched device, so that its next
// heartbeat re-safes it even if the online event was missed.
func TestOfflineMarksForResafe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		r.stop(espA, nil)
		r.statusEvent(espA, device.StatusOffline)
		synctest.Wait()
		before := len(r.acts.offsFor(espA))

		r.heartbeatEvent(espA)
		synctest.Wait()
		if len(r.acts.offsFor(espA)) != before+1 {
			t.Fatal("no re-safing at the heartbeat after an offline transition")
		}
	})
}

// Newer firmware gets its token and the broadcast token when it comes
// online; the token is committed before it is sent, the provisioning is
// confirmed by two answers, and later emergency messages carry it.
func TestTokenProvisioning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		dev, _ := r.devices.Get(espA)
		dev.Metadata = map[string]any{"firmware_generation": "newer"}
		r.devices.set(dev)
		r.broker.answer = func(p published) {
			if p.payload["command"] == "set_emergency_token" {
				m := message(t, espA, "system/command/response", `{"command":"set_emergency_token","success":true}`)
				if err := r.svc.HandleSystemCommandResponse(context.Background(), m); err != nil {
					t.Error(err)
				}
			}
		}

		r.statusEvent(espA, device.StatusOnline)
		synctest.Wait()

		sets := r.broker.on(espA + "/system/command")
		if len(sets) != 2 || sets[0].payload["token_type"] != "esp" || sets[1].payload["token_type"] != "broadcast" {
			t.Fatalf("token commands %+v", sets)
		}
		token, _ := sets[0].payload["token"].(string)
		if len(token) != tokenLength || sets[1].payload["token"] != r.svc.broadcastToken() {
			t.Fatalf("tokens %v / %v", sets[0].payload, sets[1].payload)
		}
		c, p := r.j.index("token-commit "+deviceScope(espA)), r.j.index("publish kaiser/god/esp/"+espA+"/system")
		if c < 0 || c > p {
			t.Fatalf("token sent before it was committed: %v", r.j.all())
		}
		r.store.mu.Lock()
		stored := r.store.tokens[deviceScope(espA)]
		r.store.mu.Unlock()
		if stored.Token != token || stored.ConfirmedAt == nil {
			t.Fatalf("stored token %+v", stored)
		}

		r.stop(espA, nil)
		if stops := r.broker.on(espA + "/actuator/emergency"); len(stops) != 1 || stops[0].payload["auth_token"] != token {
			t.Fatalf("device stop without the provisioned token: %+v", stops)
		}
		r.heartbeatEvent(espA)
		synctest.Wait()
		if n := len(r.broker.on(espA + "/system/command")); n != 2 {
			t.Fatalf("a confirmed device was offered its tokens again (%d commands)", n)
		}
	})
}

// A provisioning nobody answers is reported; baseline firmware gets no tokens.
func TestTokenProvisioningUnanswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.device(espA, pump(5))
		r.device(espB, pump(5))
		dev, _ := r.devices.Get(espA)
		dev.Metadata = map[string]any{"firmware_generation": "newer"}
		r.devices.set(dev)

		r.statusEvent(espA, device.StatusOnline)
		r.statusEvent(espB, device.StatusOnline)
		time.Sleep(tokenWait)
		synctest.Wait()

		if a, ok := r.alerts.raisedKey(tokenAlertKey(espA)); !ok || a.Severity != "warning" {
			t.Fatalf("unanswered provisioning not reported: %+v", r.alerts.raised)
		}
		if n := len(r.broker.on(espB + "/system/command")); n != 0 {
			t.Fatalf("baseline device got %d token commands", n)
		}
		if tok := r.svc.deviceToken(espB); tok != espB {
			t.Fatalf("baseline token %q, want the esp_id", tok)
		}
		if tok := r.svc.deviceToken(espA); tok == espA {
			t.Fatal("a device that was sent its token is still addressed with its esp_id")
		}
	})
}

// The system command answer handler gates like the other kinds.
func TestSystemCommandResponseGate(t *testing.T) {
	r := newRig(t)
	r.device(espA)
	ok := message(t, espA, "system/command/response", `{"status":"factory_reset_initiated","esp_id":"`+espA+`"}`)
	if err := r.svc.HandleSystemCommandResponse(context.Background(), ok); err != nil {
		t.Fatalf("factory reset answer: %v", err)
	}
	replay := ok
	replay.Replay = true
	if err := r.svc.HandleSystemCommandResponse(context.Background(), replay); err == nil {
		t.Error("replay accepted")
	}
	bad := message(t, espA, "system/command/response", `{"success":true}`)
	if err := r.svc.HandleSystemCommandResponse(context.Background(), bad); err == nil {
		t.Error("answer without status or command accepted")
	}
	unknown := message(t, "ESP_NOPE01", "system/command/response", `{"status":"factory_reset_initiated"}`)
	if err := r.svc.HandleSystemCommandResponse(context.Background(), unknown); err == nil {
		t.Error("unknown device accepted")
	}
}

// A latched newer-firmware device that comes back is re-safed before it is
// offered its tokens (docs/protocol.md E3: only OFFs precede the device
// stop), after a reconnect and after a reboot's push; a device stop sent
// with a token the device had not confirmed is sent again once it confirms.
func TestResafeGoesBeforeTheTokens(t *testing.T) {
	const (
		off   = "off " + espA + "/5"
		stop  = "publish kaiser/god/esp/" + espA + "/actuator/emergency emergency_stop"
		token = "publish kaiser/god/esp/" + espA + "/system/command set_emergency_token"
	)
	tests := []struct {
		name      string
		confirmed bool // the device confirmed its token before the stop
		reboot    bool
		want      []string
	}{
		{name: "reconnect, token confirmed", confirmed: true, want: []string{off, stop, token, token}},
		{name: "reboot, token confirmed", confirmed: true, reboot: true, want: []string{off, stop, token, token}},
		{name: "reconnect, token unconfirmed", want: []string{off, stop, token, token, stop}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t)
				r.device(espA, pump(5))
				dev, _ := r.devices.Get(espA)
				dev.Metadata = map[string]any{"firmware_generation": "newer"}
				r.devices.set(dev)
				answer := func(p published) {
					if p.payload["command"] == "set_emergency_token" {
						m := message(t, espA, "system/command/response", `{"command":"set_emergency_token","success":true}`)
						if err := r.svc.HandleSystemCommandResponse(context.Background(), m); err != nil {
							t.Error(err)
						}
					}
				}
				if tt.confirmed {
					r.broker.answer = answer
				}
				r.statusEvent(espA, device.StatusOnline)
				time.Sleep(tokenWait)
				synctest.Wait()
				r.broker.mu.Lock()
				r.broker.answer = answer
				r.broker.mu.Unlock()

				r.devices.setStatus(espA, device.StatusOffline)
				r.statusEvent(espA, device.StatusOffline)
				r.stop(espA, nil)
				mark := len(r.j.all())
				r.devices.setStatus(espA, device.StatusOnline)
				if tt.reboot {
					r.svc.HandlePushPublished(device.PushResult{EspID: espA, CorrelationID: "cfg-r", Trigger: "reboot"})
				}
				r.statusEvent(espA, device.StatusOnline)
				synctest.Wait()

				var got []string
				for _, e := range r.j.all()[mark:] {
					if e == off || e == stop || e == token {
						got = append(got, e)
					}
				}
				if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Fatalf("after coming back:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
				}
				stops := r.broker.on(espA + "/actuator/emergency")
				if last := stops[len(stops)-1]; last.payload["auth_token"] != r.svc.deviceToken(espA) {
					t.Fatalf("the last device stop carries %v, want the device's token", last.payload["auth_token"])
				}
			})
		})
	}
}
