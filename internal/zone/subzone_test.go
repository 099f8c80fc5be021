package zone

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
)

func TestSubzonePinRules(t *testing.T) {
	tests := []struct {
		name         string
		hardware     string
		gpios        []int
		wantConflict bool
		wantGPIO     int
		wantHolder   string
		ok           bool
	}{
		{"free pins", "", []int{4, 5}, false, 0, "", true},
		{"repeated pin counts once", "", []int{4, 4}, false, 0, "", true},
		{"pin 0 never", "", []int{0}, false, 0, "", false},
		{"outside the WROOM range", "", []int{40}, false, 40, "", false},
		{"not bonded on WROOM", "", []int{20}, false, 20, "", false},
		{"flash pin reserved", "", []int{6}, false, 6, "", false},
		{"outside the C3 range", "XIAO_ESP32_C3", []int{22}, false, 22, "", false},
		{"USB pin of the C3", "XIAO_ESP32_C3", []int{18}, false, 18, "", false},
		{"pin of another subzone", "", []int{5, 13}, true, 13, "bed_a", false},
		{"too many pins", "", []int{4, 5, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 25, 26, 27, 32, 33, 34, 35, 36, 39},
			false, 0, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.devices.mu.Lock()
			d := h.devices.devices[testID]
			d.HardwareType = tc.hardware
			h.devices.devices[testID] = d
			h.devices.mu.Unlock()
			h.assignedZone("bed")
			h.mustSubzone("bed_a", 13)
			h.bus.reset()

			_, err := h.subzone("bed_b", tc.gpios...)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var pe *PinError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want a PinError", err)
			}
			if pe.Conflict != tc.wantConflict || pe.GPIO != tc.wantGPIO || pe.Holder != tc.wantHolder {
				t.Fatalf("pin error %+v", pe)
			}
			if len(h.bus.topics()) != 0 || h.subzoneStatus("bed_b") != "absent" {
				t.Fatal("a refused subzone was published or stored")
			}
		})
	}
}

func TestReassigningASubzoneKeepsItsOwnPins(t *testing.T) {
	h := newHarness(t)
	h.assignedZone("bed")
	h.mustSubzone("north", 4, 5)
	if _, err := h.subzone("north", 5, 13); err != nil {
		t.Fatalf("update conflicted with itself: %v", err)
	}
	if _, err := h.subzone("south", 4); err != nil {
		t.Fatalf("pin released by the update still held: %v", err)
	}
}

func TestSubzonePreconditions(t *testing.T) {
	other := "elsewhere"
	same := "BED"
	tests := []struct {
		name    string
		zoned   bool
		status  string
		parent  *string
		busErr  error
		wantErr error
	}{
		{"device without zone", false, device.StatusOnline, nil, nil, ErrNoZone},
		{"parent of another zone", true, device.StatusOnline, &other, nil, ErrZoneMismatch},
		{"offline device", true, device.StatusOffline, nil, nil, device.ErrOffline},
		{"pending device", true, device.StatusPending, nil, nil, device.ErrNotApproved},
		{"broker refuses", true, device.StatusOnline, nil, errBroker, ErrUnavailable},
		{"parent equal to the zone in any case", true, device.StatusOnline, &same, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.zoned {
				h.assignedZone("bed")
			}
			h.devices.setStatus(testID, tc.status)
			h.bus.err = tc.busErr

			_, err := h.svc.AssignSubzone(context.Background(), testID, SubzoneRequest{
				SubzoneID:    "North",
				ParentZoneID: tc.parent,
				GPIOs:        []int{4},
			})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("assign: %v, want %v", err, tc.wantErr)
			}
			if _, stored := h.store.subzone(testID, "north"); stored != (tc.wantErr == nil) {
				t.Fatalf("stored = %v after %v", stored, err)
			}
		})
	}
}

// docs/domain.md §7.3: published with every key, pending once published,
// active on the device's ack.
func TestSubzoneAssignAndAck(t *testing.T) {
	h := newHarness(t)
	h.assignedZone("bed")
	h.emitted()

	res, err := h.svc.AssignSubzone(context.Background(), testID, SubzoneRequest{
		SubzoneID: "Bed_North",
		Name:      "Bed north",
		GPIOs:     []int{34, 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.SubzoneID != "bed_north" || !res.Sent || res.Topic != "kaiser/god/esp/"+testID+"/subzone/assign" {
		t.Fatalf("result %+v", res)
	}
	msgs := h.bus.sent("subzone/assign")
	want := `{"subzone_id":"bed_north","subzone_name":"Bed north","parent_zone_id":"bed","assigned_gpios":[34,5],` +
		`"safe_mode_active":false,"timestamp":`
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0].raw, want) {
		t.Fatalf("published %+v", msgs)
	}
	if h.subzoneStatus("bed_north") != SubzonePending {
		t.Fatalf("status %s", h.subzoneStatus("bed_north"))
	}

	h.mustAck("god", "subzone/ack", `{"esp_id":"ESP_A1B2C3","status":"subzone_assigned","subzone_id":"bed_north","timestamp":3712}`)
	info, err := h.svc.Subzone(testID, "BED_NORTH")
	if err != nil || info.Status != SubzoneActive || info.LastAckAt == nil {
		t.Fatalf("after ack: %+v %v", info, err)
	}
	if info.SensorCount != 1 || info.ActuatorCount != 1 {
		t.Fatalf("counts %d sensors %d actuators, want 1 and 1", info.SensorCount, info.ActuatorCount)
	}
	evs := h.emitted()
	if len(evs) != 1 || evs[0].(event.SubzoneAssignment).Status != "subzone_assigned" {
		t.Fatalf("events %+v", evs)
	}
}

func TestSubzoneRefusals(t *testing.T) {
	tests := []struct {
		name, ack  string
		wantStatus string
	}{
		{"baseline error code 2506 with the reason",
			`{"esp_id":"ESP_A1B2C3","status":"error","subzone_id":"north","timestamp":5,"error_code":2506,` +
				`"message":"GPIO assignment failed"}`,
			SubzoneError},
		{"parse failure names no subzone: the only open operation",
			`{"esp_id":"ESP_A1B2C3","status":"error","subzone_id":"","timestamp":5,"error_code":2506,"message":"JSON parse failed"}`,
			SubzoneError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.assignedZone("bed")
			h.mustSubzone("north", 4)
			h.emitted()

			h.mustAck("god", "subzone/ack", tc.ack)
			info, _ := h.svc.Subzone(testID, "north")
			if info.Status != tc.wantStatus || info.ErrorCode == nil || *info.ErrorCode != 2506 || info.ErrorMessage == "" {
				t.Fatalf("after refusal: %+v", info)
			}
			ev := h.emitted()[0].(event.SubzoneAssignment)
			if ev.Status != "error" || ev.SubzoneID != "north" || ev.ErrorCode == nil || *ev.ErrorCode != 2506 {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

// docs/protocol.md Z3: no ack within 15 s leaves the subzone pending; a
// later heartbeat sends it again.
func TestSubzoneAckTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.assignedZone("bed")
		h.mustSubzone("north", 4)
		h.bus.reset()

		time.Sleep(15 * time.Second)
		synctest.Wait()
		if got := h.subzoneStatus("north"); got != SubzonePending {
			t.Fatalf("after 15 s: %s", got)
		}

		h.devices.setMeta(testID, map[string]any{"reported_zone_id": "bed", "zone_assigned": true})
		h.heartbeat()
		if n := len(h.bus.sent("subzone/assign")); n != 1 {
			t.Fatalf("unconfirmed subzone sent %d times", n)
		}
		h.heartbeat()
		if n := len(h.bus.sent("subzone/assign")); n != 1 {
			t.Fatalf("re-sent before 10 min (%d)", n)
		}
	})
}

func TestRemoveSubzone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.assignedZone("bed")
		h.mustSubzone("north", 4)
		h.mustSubzone("south", 5)
		h.emitted()

		// Baseline: deleted at once, it never acks (docs/protocol.md Z4).
		res, err := h.svc.RemoveSubzone(context.Background(), testID, "north")
		if err != nil || !res.Sent || len(h.bus.sent("subzone/remove")) != 1 {
			t.Fatalf("remove: %+v %v", res, err)
		}
		if h.subzoneStatus("north") != "absent" {
			t.Fatal("baseline subzone kept after its removal")
		}
		if evs := h.emitted(); len(evs) != 1 || evs[0].(event.SubzoneAssignment).Status != "subzone_removed" {
			t.Fatalf("events %+v", evs)
		}
		if _, err := h.svc.RemoveSubzone(context.Background(), testID, "north"); !errors.Is(err, ErrSubzoneNotFound) {
			t.Fatalf("second removal: %v", err)
		}

		// Newer firmware: removing until it confirms; no answer in 15 s → error.
		h.devices.setMeta(testID, map[string]any{"firmware_generation": "newer"})
		if _, err := h.svc.RemoveSubzone(context.Background(), testID, "south"); err != nil {
			t.Fatal(err)
		}
		if got := h.subzoneStatus("south"); got != SubzoneRemoving {
			t.Fatalf("newer firmware: %s", got)
		}
		if _, err := h.svc.SetSafeMode(context.Background(), testID, "south", true, ""); !errors.Is(err, ErrInvalidState) {
			t.Fatalf("safe mode while removing: %v", err)
		}
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if got := h.subzoneStatus("south"); got != SubzoneError {
			t.Fatalf("removal without confirmation: %s", got)
		}
	})
}

func TestRemoveSubzoneConfirmedByNewerFirmware(t *testing.T) {
	h := newHarness(t)
	h.devices.setMeta(testID, map[string]any{"firmware_generation": "newer"})
	h.assignedZone("bed")
	h.mustSubzone("north", 4)
	if _, err := h.svc.RemoveSubzone(context.Background(), testID, "north"); err != nil {
		t.Fatal(err)
	}
	cid := h.bus.sent("subzone/remove")[0].payload["correlation_id"].(string)
	h.mustAck("god", "subzone/ack", `{"esp_id":"ESP_A1B2C3","status":"subzone_removed","subzone_id":"north",`+
		`"timestamp":1767600940,"correlation_id":"`+cid+`","seq":9}`)
	if h.subzoneStatus("north") != "absent" {
		t.Fatal("confirmed removal kept the subzone")
	}
}

func TestRemoveSubzoneRefusals(t *testing.T) {
	h := newHarness(t)
	h.assignedZone("bed")
	h.mustSubzone("north", 4)

	h.devices.setStatus(testID, device.StatusOffline)
	if _, err := h.svc.RemoveSubzone(context.Background(), testID, "north"); !errors.Is(err, device.ErrOffline) {
		t.Fatalf("offline: %v", err)
	}
	h.devices.setStatus(testID, device.StatusOnline)
	h.bus.err = errBroker
	if _, err := h.svc.RemoveSubzone(context.Background(), testID, "north"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("broker down: %v", err)
	}
	if h.subzoneStatus("north") == "absent" {
		t.Fatal("subzone deleted although the removal was not published")
	}
}

// docs/protocol.md Z5: the baseline has no safe mode; nothing is published
// or stored, so the hub never claims isolated pins.
func TestSafeModeRefusedForBaseline(t *testing.T) {
	h := newHarness(t)
	h.assignedZone("bed")
	h.mustSubzone("north", 4)
	h.bus.reset()

	_, err := h.svc.SetSafeMode(context.Background(), testID, "north", true, "maintenance")
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("baseline safe mode: %v", err)
	}
	if len(h.bus.topics()) != 0 {
		t.Fatalf("published %v", h.bus.topics())
	}
	if sz, _ := h.store.subzone(testID, "north"); sz.SafeMode {
		t.Fatal("safe mode stored for a baseline device")
	}
	if _, err := h.svc.SetSafeMode(context.Background(), testID, "nope", true, ""); !errors.Is(err, ErrSubzoneNotFound) {
		t.Fatalf("unknown subzone: %v", err)
	}
}

func TestSafeModeOnNewerFirmware(t *testing.T) {
	h := newHarness(t)
	h.devices.setMeta(testID, map[string]any{"firmware_generation": "newer"})
	h.assignedZone("bed")
	h.mustSubzone("north", 4)
	h.mustAck("god", "subzone/ack", `{"esp_id":"ESP_A1B2C3","status":"subzone_assigned","subzone_id":"north","timestamp":1,"seq":1}`)

	res, err := h.svc.SetSafeMode(context.Background(), testID, "north", true, "maintenance")
	if err != nil || !res.SafeMode || !res.Sent {
		t.Fatalf("enable: %+v %v", res, err)
	}
	msgs := h.bus.sent("subzone/safe")
	if len(msgs) != 1 || msgs[0].payload["action"] != "enable" || msgs[0].payload["reason"] != "maintenance" {
		t.Fatalf("published %+v", msgs)
	}
	if sz, _ := h.store.subzone(testID, "north"); !sz.SafeMode {
		t.Fatal("safe mode not stored")
	}

	// An error ack for the switch reverts it; the subzone stays active.
	h.mustAck("god", "subzone/ack", `{"esp_id":"ESP_A1B2C3","status":"error","subzone_id":"north","timestamp":1,`+
		`"error_code":2505,"message":"safe mode failed","reason_code":"SUBZONE_NOT_FOUND","seq":2}`)
	info, _ := h.svc.Subzone(testID, "north")
	if info.SafeMode || info.Status != SubzoneActive {
		t.Fatalf("after the refusal: %+v", info)
	}

	if _, err := h.svc.SetSafeMode(context.Background(), testID, "north", false, ""); err != nil {
		t.Fatal(err)
	}
	if got := h.bus.sent("subzone/safe"); len(got) != 2 || got[1].payload["action"] != "disable" {
		t.Fatalf("disable: %+v", got)
	}
}

// The 160-byte budget of subzone/remove and subzone/safe (docs/protocol.md §7.4)
// holds with the longest ids the hub sends.
func TestSmallSubzoneMessagesFitTheirPool(t *testing.T) {
	id := strings.Repeat("s", 32)
	for _, msg := range []any{
		contract.SubzoneSafe{
			SubzoneID:     id,
			Action:        "disable",
			Reason:        contract.DeviceText(strings.Repeat("r", 200), safeReasonBytes),
			Timestamp:     time.Now().Unix(),
			CorrelationID: correlationID("sz"),
		},
		contract.SubzoneRemove{
			SubzoneID:     id,
			Reason:        "zone_changed",
			Timestamp:     time.Now().Unix(),
			CorrelationID: correlationID("sz"),
		},
	} {
		b, err := contract.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 160 {
			t.Errorf("%d bytes: %s", len(b), b)
		}
	}
}

func TestStrategies(t *testing.T) {
	tests := []struct {
		strategy    string
		wantRemoves int
		wantIDs     func([]string) bool
	}{
		{StrategyTransfer, 0, func(ids []string) bool { return slices.Equal(ids, []string{"north", "south"}) }},
		{StrategyReset, 2, func(ids []string) bool { return len(ids) == 0 }},
		{StrategyCopy, 2, func(ids []string) bool {
			return len(ids) == 2 && strings.HasPrefix(ids[0], "north_") && strings.HasPrefix(ids[1], "south_")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.strategy, func(t *testing.T) {
			h := newHarness(t)
			h.assignedZone("bed")
			h.mustSubzone("north", 4)
			h.mustSubzone("south", 5)
			h.bus.reset()

			if _, err := h.svc.Assign(context.Background(), testID, Assignment{ZoneID: "tent", Strategy: tc.strategy}); err != nil {
				t.Fatal(err)
			}
			if n := len(h.bus.sent("subzone/remove")); n != tc.wantRemoves {
				t.Fatalf("%d removals published, want %d", n, tc.wantRemoves)
			}
			if got := h.bus.topics(); len(got) > 0 && !strings.HasSuffix(got[len(got)-1], "zone/assign") {
				t.Fatalf("zone/assign is not last: %v", got)
			}
			_, subs, _ := h.svc.Subzones(testID)
			var ids []string
			for _, sz := range subs {
				ids = append(ids, sz.SubzoneID)
				if sz.ParentZoneID != "tent" || sz.Status != SubzonePending {
					t.Fatalf("subzone %s: parent %q status %s", sz.SubzoneID, sz.ParentZoneID, sz.Status)
				}
			}
			if !tc.wantIDs(ids) {
				t.Fatalf("subzones %v", ids)
			}
			if n := len(h.bus.sent("subzone/assign")); n != 0 {
				t.Fatalf("subzones sent before the zone was confirmed (%d)", n)
			}

			// After the zone ack the device gets its subzones under the new parent.
			h.mustAck("god", "zone/ack", `{"status":"zone_assigned","zone_id":"tent","ts":0}`)
			sent := h.bus.sent("subzone/assign")
			if len(sent) != len(ids) {
				t.Fatalf("%d subzones sent after the ack, want %d", len(sent), len(ids))
			}
			for _, m := range sent {
				if m.payload["parent_zone_id"] != "tent" {
					t.Fatalf("sent %s", m.raw)
				}
			}
		})
	}
}

func TestSubzonesOfAMovedRootWaitForTheReboot(t *testing.T) {
	h := newHarness(t)
	h.addDevice(testID, device.StatusOnline, "")
	h.assign("bed")
	h.mustAck("god", "zone/ack", `{"status":"zone_assigned","zone_id":"bed","ts":0}`)
	if _, err := h.subzone("north", 4); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("subzone for a deaf device: %v", err)
	}
	h.devices.setMeta(testID, map[string]any{"reboot_required": false}) // it rebooted
	h.mustSubzone("north", 4)
	h.bus.reset()

	if _, err := h.svc.Assign(context.Background(), testID, Assignment{ZoneID: "tent"}); err != nil {
		t.Fatal(err)
	}
	h.devices.setMeta(testID, map[string]any{"reboot_required": true}) // deaf again, say by a newer root change
	h.mustAck("god", "zone/ack", `{"status":"zone_assigned","zone_id":"tent","ts":0}`)
	if n := len(h.bus.sent("subzone/assign")); n != 0 {
		t.Fatalf("subzones sent to a deaf device (%d)", n)
	}

	h.devices.setMeta(testID, map[string]any{"reboot_required": false, "reported_zone_id": "tent", "zone_assigned": true})
	h.heartbeat()
	if n := len(h.bus.sent("subzone/assign")); n != 1 {
		t.Fatalf("subzone not sent after the reboot (%d)", n)
	}
}

func TestSubzoneListing(t *testing.T) {
	h := newHarness(t)
	h.assignedZone("bed")
	h.mustSubzone("south", 5)
	h.mustSubzone("north", 4)

	zone, subs, err := h.svc.Subzones(testID)
	if err != nil || zone != "bed" || len(subs) != 2 || subs[0].SubzoneID != "north" {
		t.Fatalf("listing %q %+v %v", zone, subs, err)
	}
	if _, _, err := h.svc.Subzones("ESP_NOPE"); !errors.Is(err, device.ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
	if _, err := h.svc.Subzone(testID, "nope"); !errors.Is(err, ErrSubzoneNotFound) {
		t.Fatalf("unknown subzone: %v", err)
	}
}
