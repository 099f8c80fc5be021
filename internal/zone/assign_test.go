package zone

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
)

func TestAssignRefusals(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(h *harness)
		espID   string
		wantErr error
	}{
		{"unknown device", nil, "ESP_NOPE", device.ErrNotFound},
		{"pending device", func(h *harness) { h.devices.setStatus(testID, device.StatusPending) }, testID,
			device.ErrNotApproved},
		{"rejected device", func(h *harness) { h.devices.setStatus(testID, device.StatusRejected) }, testID,
			device.ErrNotApproved},
		{"archived zone", func(h *harness) {
			if _, err := h.svc.CreateZone(context.Background(), NewZone{ZoneID: "bed", Name: "Bed"}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.svc.Archive(context.Background(), "bed"); err != nil {
				t.Fatal(err)
			}
		}, testID, ErrInvalidState},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.setup != nil {
				tc.setup(h)
			}
			_, err := h.svc.Assign(context.Background(), tc.espID, Assignment{ZoneID: "BED"})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("assign: %v, want %v", err, tc.wantErr)
			}
			if len(h.bus.sent("zone/assign")) != 0 {
				t.Fatal("a refused assignment was published")
			}
			if d, _ := h.devices.Get(testID); d.ZoneID != "" {
				t.Fatalf("a refused assignment was stored: %q", d.ZoneID)
			}
		})
	}
}

func TestAssignCreatesUnknownZonesOnTheFly(t *testing.T) {
	tests := []struct {
		name     string
		a        Assignment
		wantName string
	}{
		{"named after zone_name", Assignment{ZoneID: "Greenhouse_1", ZoneName: "Greenhouse 1"}, "Greenhouse 1"},
		{"named after the id", Assignment{ZoneID: "Greenhouse_1"}, "greenhouse_1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			res, err := h.svc.Assign(context.Background(), testID, tc.a)
			if err != nil {
				t.Fatal(err)
			}
			z, err := h.svc.Zone("greenhouse_1")
			if err != nil || z.Status != StatusActive || z.Name != tc.wantName {
				t.Fatalf("zone created on the fly: %+v %v", z, err)
			}
			if res.ZoneID != "greenhouse_1" || res.ZoneName != tc.wantName {
				t.Fatalf("result %+v", res)
			}
		})
	}
}

// docs/domain.md §7.2 steps 2–4: stored (and committed) before it is
// published, published on the recorded root with every key, confirmed by the ack.
func TestAssignPublishesAndTheAckConfirms(t *testing.T) {
	h := newHarness(t)
	var storedFirst bool
	h.bus.onPublish = func(topic string) {
		d, _ := h.devices.Get(testID)
		storedFirst = d.ZoneID == "greenhouse_1" && pendingOf(d) != nil
	}

	res, err := h.svc.Assign(context.Background(), testID, Assignment{
		ZoneID:       "Greenhouse_1",
		MasterZoneID: "GreenHouse",
		ZoneName:     `Green "house" 1`,
		Actor:        "op",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !storedFirst {
		t.Fatal("published before the zone fields and the pending assignment were stored")
	}
	if !res.Sent || res.RebootRequired || res.Topic != "kaiser/god/esp/"+testID+"/zone/assign" {
		t.Fatalf("result %+v", res)
	}

	msgs := h.bus.sent("zone/assign")
	if len(msgs) != 1 {
		t.Fatalf("%d zone/assign messages", len(msgs))
	}
	p := msgs[0].payload
	if p["zone_id"] != "greenhouse_1" || p["master_zone_id"] != "greenhouse" || p["zone_name"] != "Green house 1" ||
		p["kaiser_id"] != "god" || p["correlation_id"] != res.CorrelationID {
		t.Fatalf("payload %s", msgs[0].raw)
	}

	d := h.device(testID)
	pend := pendingOf(d)
	if d.ZoneID != "greenhouse_1" || d.MasterZoneID != "greenhouse" || pend == nil || pend.SentAt == nil {
		t.Fatalf("stored %q %q pending %+v", d.ZoneID, d.MasterZoneID, pend)
	}
	if len(h.store.changes) != 1 || h.store.changes[0].ToZoneID != "greenhouse_1" || h.store.changes[0].Actor != "op" {
		t.Fatalf("history %+v", h.store.changes)
	}

	h.mustAck("god", "zone/ack",
		`{"esp_id":"ESP_A1B2C3","status":"zone_assigned","zone_id":"greenhouse_1","master_zone_id":"greenhouse","ts":1767600940}`)
	d = h.device(testID)
	if pendingOf(d) != nil || viewOf(d).ConfirmedAt == nil {
		t.Fatalf("not confirmed: %v", d.Metadata)
	}
	evs := h.emitted()
	if len(evs) != 1 {
		t.Fatalf("events %+v", evs)
	}
	if z, ok := evs[0].(event.ZoneAssignment); !ok || z.Status != "zone_assigned" || z.ZoneID != "greenhouse_1" ||
		z.EspID != testID {
		t.Fatalf("event %+v", evs[0])
	}
}

func TestZoneAckMatching(t *testing.T) {
	tests := []struct {
		name        string
		ack         string
		wantPending bool
	}{
		{"same zone, no correlation id (baseline)",
			`{"status":"zone_assigned","zone_id":"BED","ts":0}`, false},
		{"other zone", `{"status":"zone_assigned","zone_id":"other","ts":0}`, true},
		{"refusal keeps it pending", `{"status":"error","ts":0,"message":"Failed to save zone config"}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.assign("bed")
			h.mustAck("god", "zone/ack", tc.ack)
			if got := pendingOf(h.device(testID)) != nil; got != tc.wantPending {
				t.Fatalf("pending after ack = %v, want %v", got, tc.wantPending)
			}
			if len(h.emitted()) != 1 {
				t.Fatal("a live zone ack did not reach the event feed")
			}
		})
	}
}

func TestZoneAckByCorrelationID(t *testing.T) {
	h := newHarness(t)
	res := h.assign("bed")
	h.mustAck("god", "zone/ack", `{"status":"zone_assigned","zone_id":"","ts":0,"correlation_id":"`+
		res.CorrelationID+`","seq":7}`)
	if pendingOf(h.device(testID)) != nil {
		t.Fatal("ack with the assignment's correlation id did not confirm it")
	}
}

func TestZoneRefusalIsRecordedAndAlerted(t *testing.T) {
	h := newHarness(t)
	h.assign("bed")
	h.mustAck("god", "zone/ack", `{"status":"error","ts":0,"message":"Failed to save zone config"}`)

	v := viewOf(h.device(testID))
	if v.Pending == nil || v.Error == nil || v.Error.Message != "Failed to save zone config" {
		t.Fatalf("view %+v", v)
	}
	evs := h.emitted()
	if z, ok := evs[0].(event.ZoneAssignment); !ok || z.Status != "error" || z.ZoneID != "bed" ||
		z.Message != "Failed to save zone config" {
		t.Fatalf("event %+v", evs)
	}
	if !slices.Contains(h.alerts.keys(), "zone:error:"+testID) {
		t.Fatalf("no warning alert: %v", h.alerts.keys())
	}

	h.mustAck("god", "zone/ack", `{"status":"zone_assigned","zone_id":"bed","ts":0}`)
	if v := viewOf(h.device(testID)); v.Error != nil || v.Pending != nil {
		t.Fatalf("success after a refusal: %+v", v)
	}
	if !slices.Contains(h.alerts.cleared, "zone:error:"+testID) {
		t.Fatal("alert not cleared by the confirmation")
	}
}

func TestZoneAckReplaysAndStrangersChangeNothing(t *testing.T) {
	h := newHarness(t)
	h.assign("bed")
	tp := contractTopic(t, "god", testID, "zone/ack")
	replay := ingest.Message{Topic: tp, Payload: []byte(`{"status":"zone_assigned","zone_id":"bed","ts":0}`), Replay: true}

	var de *ingest.DropError
	if err := h.svc.HandleZoneAck(context.Background(), replay); !errors.As(err, &de) || de.Reason != "replay" {
		t.Fatalf("replay: %v", err)
	}
	stranger := ingest.Message{Topic: contractTopic(t, "god", "ESP_OTHER", "zone/ack"), Payload: replay.Payload}
	if err := h.svc.HandleZoneAck(context.Background(), stranger); !errors.As(err, &de) || de.Reason != "unknown_device" {
		t.Fatalf("unknown device: %v", err)
	}
	bad := ingest.Message{Topic: tp, Payload: []byte(`{"status":"zone_assigned","ts":0}`)}
	if err := h.svc.HandleZoneAck(context.Background(), bad); err == nil {
		t.Fatal("ack without zone_id accepted")
	}
	if pendingOf(h.device(testID)) == nil || len(h.emitted()) != 0 {
		t.Fatal("a dropped ack changed the assignment")
	}
}

// docs/domain.md §7.2 step 5: no ack within 15 s leaves it pending, and says so.
func TestZoneAckTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.assign("bed")

		time.Sleep(15*time.Second - time.Millisecond)
		synctest.Wait()
		if p := pendingOf(h.device(testID)); p == nil || p.AckTimeoutAt != nil {
			t.Fatalf("timed out early: %+v", p)
		}

		time.Sleep(time.Millisecond)
		synctest.Wait()
		p := pendingOf(h.device(testID))
		if p == nil || p.AckTimeoutAt == nil {
			t.Fatalf("after 15 s: %+v", p)
		}

		// A late ack still confirms it.
		h.mustAck("god", "zone/ack", `{"status":"zone_assigned","zone_id":"bed","ts":0}`)
		if pendingOf(h.device(testID)) != nil {
			t.Fatal("late ack did not confirm")
		}
	})
}

func TestAssignWhileOfflineIsSentOnReconnect(t *testing.T) {
	h := newHarness(t)
	h.devices.setStatus(testID, device.StatusOffline)
	res := h.assign("bed")
	if res.Sent || len(h.bus.sent("zone/assign")) != 0 {
		t.Fatal("published to an offline device (docs/protocol.md A5)")
	}
	if p := pendingOf(h.device(testID)); p == nil || p.SentAt != nil {
		t.Fatalf("pending %+v", p)
	}

	h.devices.setStatus(testID, device.StatusOnline)
	h.svc.onDeviceEvent(event.Event{Data: event.DeviceStatus{EspID: testID, Status: device.StatusOnline}})
	h.heartbeat()
	msgs := h.bus.sent("zone/assign")
	if len(msgs) != 1 || msgs[0].payload["zone_id"] != "bed" || msgs[0].payload["correlation_id"] != res.CorrelationID {
		t.Fatalf("after reconnect: %+v", msgs)
	}
	if p := pendingOf(h.device(testID)); p == nil || p.SentAt == nil {
		t.Fatalf("send not recorded: %+v", p)
	}
}

func TestPublishFailureLeavesTheAssignmentToSend(t *testing.T) {
	h := newHarness(t)
	h.bus.err = errBroker
	res := h.assign("bed")
	if res.Sent {
		t.Fatal("reported sent")
	}
	h.bus.err = nil
	h.heartbeat()
	if len(h.bus.sent("zone/assign")) != 1 {
		t.Fatal("unsent assignment not sent with the next heartbeat")
	}
}

// docs/protocol.md A3, A4: a device without a kaiser id hears zone/assign on
// kaiser/god, the message moves its root, and the hub reports the deafness.
func TestAssignToADeviceWithoutKaiserID(t *testing.T) {
	h := newHarness(t)
	h.addDevice(testID, device.StatusOnline, "")
	res := h.assign("bed")

	if !res.RebootRequired || res.Topic != "kaiser/god/esp/"+testID+"/zone/assign" {
		t.Fatalf("result %+v", res)
	}
	msgs := h.bus.sent("zone/assign")
	if len(msgs) != 1 || msgs[0].topic != res.Topic || msgs[0].payload["kaiser_id"] != "god" {
		t.Fatalf("published %+v", msgs)
	}
	d := h.device(testID)
	if !d.RebootRequired {
		t.Fatal("reboot_required not set on the device")
	}
	if !slices.Contains(h.alerts.keys(), "zone:reboot_required:"+testID) {
		t.Fatalf("deafness not alerted: %v", h.alerts.keys())
	}

	// The ack comes on the new root; the record follows it.
	h.mustAck("god", "zone/ack", `{"status":"zone_assigned","zone_id":"bed","ts":0}`)
	if d := h.device(testID); d.KaiserID != "god" || pendingOf(d) != nil {
		t.Fatalf("after the ack: root %q pending %v", d.KaiserID, pendingOf(d))
	}
}

// docs/protocol.md A4: a recorded root is kept, so the device's root never moves.
func TestAssignKeepsARecordedRoot(t *testing.T) {
	h := newHarness(t)
	h.addDevice(testID, device.StatusOnline, "farm2")
	res := h.assign("bed")
	msgs := h.bus.sent("zone/assign")
	if res.RebootRequired || msgs[0].topic != "kaiser/farm2/esp/"+testID+"/zone/assign" ||
		msgs[0].payload["kaiser_id"] != "farm2" {
		t.Fatalf("published %+v", msgs)
	}
}

// docs/domain.md §7.2 (removal) and docs/protocol.md Z2: subzone/remove for
// each subzone, then the empty assignment; nothing waits for the baseline.
func TestUnassignRemovesSubzonesThenZone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.assignedZone("bed")
		h.mustSubzone("north", 4)
		h.mustSubzone("south", 5)
		h.bus.reset()
		h.emitted()

		res, err := h.svc.Unassign(context.Background(), testID, "op")
		if err != nil {
			t.Fatal(err)
		}
		if !res.Sent || res.Topic != "kaiser/god/esp/"+testID+"/zone/assign" {
			t.Fatalf("result %+v", res)
		}
		want := []string{
			"kaiser/god/esp/" + testID + "/subzone/remove",
			"kaiser/god/esp/" + testID + "/subzone/remove",
			"kaiser/god/esp/" + testID + "/zone/assign",
		}
		if got := h.bus.topics(); !slices.Equal(got, want) {
			t.Fatalf("published %v, want %v", got, want)
		}
		empty := h.bus.sent("zone/assign")[0].payload
		if empty["zone_id"] != "" || empty["master_zone_id"] != "" || empty["zone_name"] != "" || empty["kaiser_id"] != "god" {
			t.Fatalf("removal payload %+v", empty)
		}

		d := h.device(testID)
		if d.ZoneID != "" || d.ZoneName != "" || viewOf(d).ConfirmedAt != nil {
			t.Fatalf("zone fields not cleared: %+v", viewOf(d))
		}
		if _, ok := h.store.subzone(testID, "north"); ok || h.subzoneStatus("south") != "absent" {
			t.Fatal("subzones kept")
		}
		if r := removalOf(d); r == nil || r.Status != RemovalWaiting {
			t.Fatalf("removal %+v", r)
		}
		if n := len(h.emitted()); n != 2 {
			t.Fatalf("%d subzone events for two removed subzones", n)
		}

		time.Sleep(15 * time.Second)
		synctest.Wait()
		if r := removalOf(h.device(testID)); r.Status != RemovalUnconfirmed {
			t.Fatalf("after 15 s: %+v", r)
		}
		if n := len(h.bus.sent("zone/assign")); n != 1 {
			t.Fatalf("removal sent %d times; it is never re-sent", n)
		}
	})
}

func TestUnassignConfirmedByNewerFirmware(t *testing.T) {
	h := newHarness(t)
	h.assignedZone("bed")
	if _, err := h.svc.Unassign(context.Background(), testID, "op"); err != nil {
		t.Fatal(err)
	}
	h.emitted()
	h.mustAck("god", "zone/ack", `{"status":"zone_removed","ts":0,"seq":3}`)
	if r := removalOf(h.device(testID)); r.Status != RemovalConfirmed {
		t.Fatalf("removal %+v", r)
	}
	if evs := h.emitted(); len(evs) != 1 || evs[0].(event.ZoneAssignment).Status != "zone_removed" {
		t.Fatalf("events %+v", evs)
	}
}

func TestUnassignOfflineDevice(t *testing.T) {
	h := newHarness(t)
	h.assignedZone("bed")
	h.devices.setStatus(testID, device.StatusOffline)
	h.bus.reset()

	res, err := h.svc.Unassign(context.Background(), testID, "op")
	if err != nil || res.Sent {
		t.Fatalf("result %+v %v", res, err)
	}
	if len(h.bus.topics()) != 0 {
		t.Fatal("published to an offline device")
	}
	if d := h.device(testID); d.ZoneID != "" || removalOf(d).Status != RemovalNotPublished {
		t.Fatalf("offline removal not recorded: %+v", viewOf(d))
	}

	// Never re-sent (docs/protocol.md Z6), and the old zone the device still
	// reports is not authoritative.
	h.devices.setStatus(testID, device.StatusOnline)
	h.devices.setMeta(testID, map[string]any{"reported_zone_id": "bed", "zone_assigned": true})
	h.svc.onDeviceEvent(event.Event{Data: event.DeviceStatus{EspID: testID, Status: device.StatusOnline}})
	h.heartbeat()
	if len(h.bus.topics()) != 0 {
		t.Fatalf("removal re-sent: %v", h.bus.topics())
	}
}

// docs/domain.md §7.2 step 6: a heartbeat reporting another zone while
// nothing is pending sends the configured one again, at most every 10 min.
func TestHeartbeatMismatchResyncsAtMostEveryTenMinutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.assignedZone("bed")
		h.bus.reset()

		h.devices.setMeta(testID, map[string]any{"reported_zone_id": "bed", "zone_assigned": true})
		h.heartbeat()
		if n := len(h.bus.sent("zone/assign")); n != 0 {
			t.Fatalf("matching heartbeat re-sent %d times", n)
		}

		time.Sleep(10 * time.Minute) // the confirmed send is 10 min old
		h.devices.setMeta(testID, map[string]any{"reported_zone_id": "", "zone_assigned": false})
		h.heartbeat()
		if n := len(h.bus.sent("zone/assign")); n != 1 {
			t.Fatalf("mismatch re-sent %d times, want 1", n)
		}
		h.mustAck("god", "zone/ack", `{"status":"zone_assigned","zone_id":"bed","ts":0}`)

		time.Sleep(5 * time.Minute)
		h.heartbeat()
		if n := len(h.bus.sent("zone/assign")); n != 1 {
			t.Fatalf("re-sent again within 10 min (%d)", n)
		}
		time.Sleep(5 * time.Minute)
		h.heartbeat()
		if n := len(h.bus.sent("zone/assign")); n != 2 {
			t.Fatalf("not re-sent after 10 min (%d)", n)
		}
	})
}

func TestReportedZoneWithoutHubZoneIsOnlyLogged(t *testing.T) {
	h := newHarness(t)
	h.devices.setMeta(testID, map[string]any{"reported_zone_id": "somewhere", "zone_assigned": true})
	h.heartbeat()
	if len(h.bus.topics()) != 0 {
		t.Fatalf("published %v", h.bus.topics())
	}
}

func TestWatchFollowsDeviceEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.svc.Start()
		defer h.svc.Stop()
		h.devices.setStatus(testID, device.StatusOffline)
		h.assign("bed")
		h.mustSubzoneOffline()

		h.devices.setStatus(testID, device.StatusOnline)
		h.events.Publish(event.Event{Data: event.DeviceStatus{EspID: testID, Status: device.StatusOnline}})
		h.events.Publish(event.Event{Data: event.EspHealth{EspID: testID, Status: device.StatusOnline, Source: "heartbeat"}})
		synctest.Wait()
		if len(h.bus.sent("zone/assign")) != 1 {
			t.Fatal("heartbeat event did not send the pending assignment")
		}

		h.events.Publish(event.Event{Data: event.DeviceStatus{EspID: testID, Status: device.StatusDeleted}})
		synctest.Wait()
		if _, ok := h.store.subzone(testID, "north"); ok {
			t.Fatal("subzones of a deleted device kept")
		}
	})
}

// heartbeat delivers the effect of a live heartbeat of testID.
func (h *harness) heartbeat() {
	h.svc.onDeviceEvent(event.Event{Data: event.EspHealth{EspID: testID, Status: device.StatusOnline, Source: "heartbeat"}})
}

// mustSubzoneOffline stores a subzone for a device that is offline now, as
// one assigned while it was online.
func (h *harness) mustSubzoneOffline() {
	h.t.Helper()
	h.svc.mu.Lock()
	defer h.svc.mu.Unlock()
	sz := subzoneRecord(testID, "north", 4)
	if err := h.svc.saveSubzone(context.Background(), sz); err != nil {
		h.t.Fatal(err)
	}
}
