package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/store"
)

// action is one thing that happens to testID in a transition scenario.
type action func(h *harness) error

func beatAt(uptime int64) action {
	return func(h *harness) error {
		return h.svc.HandleHeartbeat(context.Background(), h.heartbeat(testID, uptime))
	}
}

func retainedBeat() action {
	return func(h *harness) error {
		m := h.heartbeat(testID, 10)
		m.Retain, m.Replay = true, true
		return h.svc.HandleHeartbeat(context.Background(), m)
	}
}

func approve() action {
	return func(h *harness) error {
		_, err := h.svc.Approve(context.Background(), testID, "admin", "")
		return err
	}
}

func reject() action {
	return func(h *harness) error {
		_, err := h.svc.Reject(context.Background(), testID, "admin", "unknown board")
		return err
	}
}

func setPending() action {
	return func(h *harness) error {
		_, err := h.svc.SetPending(context.Background(), testID, "admin", "re-check")
		return err
	}
}

func remove() action {
	return func(h *harness) error { return h.svc.Delete(context.Background(), testID, "admin") }
}

func lastWill() action {
	return func(h *harness) error { return h.svc.HandleWill(context.Background(), h.will(testID)) }
}

func retainedWill() action {
	return func(h *harness) error {
		m := h.will(testID)
		m.Retain, m.Replay = true, true
		return h.svc.HandleWill(context.Background(), m)
	}
}

// hubStopping makes the following wills the hub's own disconnects.
func hubStopping() action {
	return func(h *harness) error {
		h.stopping.Store(true)
		return nil
	}
}

// after lets fake time pass, then runs the liveness check.
func after(d time.Duration) action {
	return func(h *harness) error {
		time.Sleep(d)
		return h.svc.CheckLiveness(context.Background())
	}
}

func TestTransitions(t *testing.T) {
	const timeout = 180 * time.Second
	toOnline := []action{beatAt(10), approve(), beatAt(20)}
	then := func(base []action, more ...action) []action { return append(slices.Clone(base), more...) }
	discovered := "→pending_approval (discovered)"
	approved := "pending_approval→approved (approved)"
	cameOnline := "approved→online (heartbeat)"
	onlineSteps := []string{discovered, approved, cameOnline}
	with := func(base []string, more ...string) []string { return append(slices.Clone(base), more...) }

	cases := []struct {
		name        string
		steps       []action
		wantStatus  string // "" → not found
		wantChanges []string
		wantDrop    string // drop reason of the last step
		wantErr     error  // error of the last step
		wantAck     string // status of the last heartbeat ack, if one was sent
	}{
		{
			name:        "an unknown device's heartbeat registers it pending",
			steps:       []action{beatAt(10)},
			wantStatus:  StatusPending,
			wantChanges: []string{discovered},
			wantAck:     "pending_approval",
		},
		{
			name:        "a pending device stays pending on heartbeats",
			steps:       []action{beatAt(10), beatAt(20), beatAt(30)},
			wantStatus:  StatusPending,
			wantChanges: []string{discovered},
			wantAck:     "pending_approval",
		},
		{
			name:        "approval of a pending device",
			steps:       []action{beatAt(10), approve()},
			wantStatus:  StatusApproved,
			wantChanges: []string{discovered, approved},
		},
		{
			name:        "an approved device goes online with its next heartbeat",
			steps:       toOnline,
			wantStatus:  StatusOnline,
			wantChanges: onlineSteps,
			wantAck:     "online",
		},
		{
			name:        "online stays online while heartbeats arrive",
			steps:       then(toOnline, after(timeout/2), beatAt(30), after(timeout/2), beatAt(40)),
			wantStatus:  StatusOnline,
			wantChanges: onlineSteps,
			wantAck:     "online",
		},
		{
			name:        "a heartbeat exactly one timeout old is still live",
			steps:       then(toOnline, after(timeout)),
			wantStatus:  StatusOnline,
			wantChanges: onlineSteps,
		},
		{
			name:        "online goes offline by heartbeat timeout",
			steps:       then(toOnline, after(timeout+time.Second)),
			wantStatus:  StatusOffline,
			wantChanges: with(onlineSteps, "online→offline (heartbeat_timeout)"),
		},
		{
			name:        "the timeout takes an offline device offline only once",
			steps:       then(toOnline, after(timeout+time.Second), after(timeout+time.Second)),
			wantStatus:  StatusOffline,
			wantChanges: with(onlineSteps, "online→offline (heartbeat_timeout)"),
		},
		{
			name:        "online goes offline by its last will",
			steps:       then(toOnline, lastWill()),
			wantStatus:  StatusOffline,
			wantChanges: with(onlineSteps, "online→offline (lwt)"),
		},
		{
			name:        "offline comes back online with a heartbeat",
			steps:       then(toOnline, lastWill(), beatAt(30)),
			wantStatus:  StatusOnline,
			wantChanges: with(onlineSteps, "online→offline (lwt)", "offline→online (heartbeat)"),
			wantAck:     "online",
		},
		{
			name:        "a retained last will is ignored",
			steps:       then(toOnline, retainedWill()),
			wantStatus:  StatusOnline,
			wantChanges: onlineSteps,
			wantDrop:    contract.ReasonReplay,
		},
		{
			name:        "wills caused by the hub's own disconnects are ignored",
			steps:       then(toOnline, hubStopping(), lastWill()),
			wantStatus:  StatusOnline,
			wantChanges: onlineSteps,
		},
		{
			name:        "a last will of an unknown device is dropped",
			steps:       []action{lastWill()},
			wantDrop:    contract.ReasonUnknownDevice,
			wantChanges: nil,
		},
		{
			name:        "a retained heartbeat is not liveness and registers nothing",
			steps:       []action{retainedBeat()},
			wantDrop:    contract.ReasonReplay,
			wantChanges: nil,
		},
		{
			name:        "rejection of a pending device",
			steps:       []action{beatAt(10), reject()},
			wantStatus:  StatusRejected,
			wantChanges: []string{discovered, "pending_approval→rejected (rejected)"},
		},
		{
			name:        "a rejected device stays rejected on heartbeats",
			steps:       []action{beatAt(10), reject(), beatAt(20)},
			wantStatus:  StatusRejected,
			wantChanges: []string{discovered, "pending_approval→rejected (rejected)"},
			wantAck:     "rejected",
		},
		{
			name:        "a rejected device can be approved",
			steps:       []action{beatAt(10), reject(), approve()},
			wantStatus:  StatusApproved,
			wantChanges: []string{discovered, "pending_approval→rejected (rejected)", "rejected→approved (approved)"},
		},
		{
			name:        "only a pending device can be rejected",
			steps:       then(toOnline, reject()),
			wantStatus:  StatusOnline,
			wantChanges: onlineSteps,
			wantErr:     ErrInvalidState,
		},
		{
			name:        "an online device cannot be approved again",
			steps:       then(toOnline, approve()),
			wantStatus:  StatusOnline,
			wantChanges: onlineSteps,
			wantErr:     ErrInvalidState,
		},
		{
			name:        "set-pending returns an online device to pending",
			steps:       then(toOnline, setPending()),
			wantStatus:  StatusPending,
			wantChanges: with(onlineSteps, "online→pending_approval (set_pending)"),
		},
		{
			name:        "set-pending of a pending device is refused",
			steps:       []action{beatAt(10), setPending()},
			wantStatus:  StatusPending,
			wantChanges: []string{discovered},
			wantErr:     ErrInvalidState,
		},
		{
			name:        "a deleted device is gone",
			steps:       []action{beatAt(10), remove()},
			wantChanges: []string{discovered, "pending_approval→deleted (deleted)"},
		},
		{
			name:        "a deleted device is rediscovered by a later heartbeat",
			steps:       then(toOnline, remove(), after(defaultDiscoveryPerID), beatAt(30)),
			wantStatus:  StatusPending,
			wantChanges: with(onlineSteps, "online→deleted (deleted)", discovered),
			wantAck:     "pending_approval",
		},
		{
			name:        "rediscovery within the per-device spacing waits",
			steps:       []action{beatAt(10), remove(), beatAt(20)},
			wantChanges: []string{discovered, "pending_approval→deleted (deleted)"},
			wantDrop:    contract.ReasonDiscoveryRateLimited,
			wantAck:     "pending_approval",
		},
		{
			name:     "operations on an unknown device",
			steps:    []action{approve()},
			wantErr:  ErrNotFound,
			wantDrop: "",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Config{HeartbeatTimeout: timeout})

				var err error
				for i, step := range tc.steps {
					if err != nil {
						t.Fatalf("step %d failed: %v", i-1, err)
					}
					err = step(h)
				}

				switch {
				case tc.wantDrop != "":
					if got := dropReason(err); got != tc.wantDrop {
						t.Errorf("last step: err %v, want drop %s", err, tc.wantDrop)
					}
				case tc.wantErr != nil:
					if !errors.Is(err, tc.wantErr) {
						t.Errorf("last step: err %v, want %v", err, tc.wantErr)
					}
				case err != nil:
					t.Errorf("last step: %v", err)
				}

				d, getErr := h.svc.Get(testID)
				switch {
				case tc.wantStatus == "" && !errors.Is(getErr, ErrNotFound):
					t.Errorf("Get: %+v, %v; want not found", d.Status, getErr)
				case tc.wantStatus != "" && (getErr != nil || d.Status != tc.wantStatus):
					t.Errorf("status %q (%v), want %q", d.Status, getErr, tc.wantStatus)
				}

				if got := changes(h.events()); !slices.Equal(got, tc.wantChanges) {
					t.Errorf("status events\n got %q\nwant %q", got, tc.wantChanges)
				}
				if got := storedChanges(h.store); !slices.Equal(got, tc.wantChanges) {
					t.Errorf("stored transitions\n got %q\nwant %q", got, tc.wantChanges)
				}

				acks := h.acks()
				if tc.wantAck != "" {
					if len(acks) == 0 || acks[len(acks)-1].Status != tc.wantAck {
						t.Errorf("acks %+v, want the last one %s", acks, tc.wantAck)
					}
				}
			})
		})
	}
}

func storedChanges(st *fakeStore) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	for _, tr := range st.transitions {
		out = append(out, tr.From+"→"+tr.To+" ("+tr.Cause+")")
	}
	return out
}

func TestDiscoveryEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{})
		h.beat(10)

		evs := h.events()
		found := ofType(evs, "device_discovered")
		if len(found) != 1 {
			t.Fatalf("device_discovered events: %d, want 1 (all: %v)", len(found), evs)
		}
		if d := dataOf(found[0]); d["esp_id"] != testID || d["heap_free"] != float64(120000) {
			t.Errorf("discovery payload %v", d)
		}
		if n := len(ofType(evs, "esp_health")); n != 0 {
			t.Errorf("a pending device emitted %d health events", n)
		}

		first, _ := h.svc.Get(testID)
		if err := h.svc.Delete(context.Background(), testID, "admin"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(defaultDiscoveryPerID)
		h.beat(20)

		evs = h.events()
		if n := len(ofType(evs, "device_rediscovered")); n != 1 {
			t.Errorf("device_rediscovered events: %d, want 1", n)
		}
		again, _ := h.svc.Get(testID)
		if again.ID != first.ID || !again.CreatedAt.Equal(first.CreatedAt) {
			t.Errorf("rediscovery changed the identity: %s/%v, was %s/%v", again.ID, again.CreatedAt, first.ID, first.CreatedAt)
		}
		if again.Metadata["deleted_by"] != nil {
			t.Errorf("rediscovered record kept the deleted metadata: %v", again.Metadata)
		}
	})
}

func TestDiscoveryRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{DiscoveryPerMin: 2})
		ctx := context.Background()
		for i := range 2 {
			if err := h.svc.HandleHeartbeat(ctx, h.heartbeat(fmt.Sprintf("ESP_N%d", i), 1)); err != nil {
				t.Fatal(err)
			}
		}

		err := h.svc.HandleHeartbeat(ctx, h.heartbeat("ESP_N2", 1))
		if dropReason(err) != contract.ReasonDiscoveryRateLimited {
			t.Fatalf("third discovery in a minute: %v, want a rate-limit drop", err)
		}
		if _, err := h.svc.Get("ESP_N2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("rate-limited device was registered: %v", err)
		}
		if acks := h.acks(); len(acks) != 3 || acks[2].Status != "pending_approval" {
			t.Errorf("acks %+v, want a pending ack for the refused device too", acks)
		}

		time.Sleep(time.Minute)
		if err := h.svc.HandleHeartbeat(ctx, h.heartbeat("ESP_N2", 2)); dropReason(err) == "" {
			t.Errorf("discovery at the minute's end was allowed")
		}
		time.Sleep(time.Second)
		if err := h.svc.HandleHeartbeat(ctx, h.heartbeat("ESP_N2", 3)); err != nil {
			t.Errorf("discovery after the minute: %v", err)
		}
		h.mustStatus("ESP_N2", StatusPending)
	})
}

func TestHeartbeatAck(t *testing.T) {
	h := newHarness(t, Config{})
	m := h.heartbeat(testID, 10)
	m.Payload = []byte(`{"ts":0,"uptime":10,"heap_free":1,"wifi_rssi":-50,"active_handover_epoch":7}`)
	if err := h.svc.HandleHeartbeat(context.Background(), m); err != nil {
		t.Fatal(err)
	}

	sent := h.bus.take("system/heartbeat/ack")
	if len(sent) != 1 || sent[0].topic != "kaiser/god/esp/"+testID+"/system/heartbeat/ack" {
		t.Fatalf("acks %+v", sent)
	}
	var ack contract.HeartbeatAck
	if err := json.Unmarshal(sent[0].payload, &ack); err != nil {
		t.Fatal(err)
	}
	if ack.HandoverEpoch != 7 || ack.AckType != "heartbeat" || ack.ConfigAvailable {
		t.Errorf("ack %+v", ack)
	}
}

func TestHeartbeatInvalidPayload(t *testing.T) {
	h := newHarness(t, Config{})
	m := h.heartbeat(testID, 10)
	m.Payload = []byte(`{"ts":0}`)

	err := h.svc.HandleHeartbeat(context.Background(), m)
	var de *contract.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("err %v, want a decode error", err)
	}
	if _, err := h.svc.Get(testID); !errors.Is(err, ErrNotFound) {
		t.Errorf("an invalid heartbeat registered the device: %v", err)
	}
	if acks := h.acks(); len(acks) != 0 {
		t.Errorf("an invalid heartbeat was acked: %+v", acks)
	}
}

func TestHeartbeatMetadata(t *testing.T) {
	h := newHarness(t, Config{})
	h.online()

	m := h.message(testID, "system/heartbeat", map[string]any{
		"ts":               1_750_000_000,
		"uptime":           30,
		"heap_free":        99000,
		"wifi_rssi":        -71,
		"sensor_count":     3,
		"actuator_count":   1,
		"seq":              5,
		"zone_id":          "greenhouse",
		"master_zone_id":   "main",
		"zone_assigned":    true,
		"system_state":     "OPERATIONAL",
		"boot_sequence_id": "boot-1",
		"reset_reason":     "POWERON",
		"firmware_version": "2.1.0",
		"wifi_ip":          "10.0.0.7",
		"hardware_type":    "ESP32_WROOM",
		"time_valid":       true,
	})
	m.Topic = topic(t, "", testID, "system/heartbeat")
	m.Retain = true
	if err := h.svc.HandleHeartbeat(context.Background(), m); err != nil {
		t.Fatal(err)
	}

	d, _ := h.svc.Get(testID)
	if d.IPAddress != "10.0.0.7" || d.HardwareType != "ESP32_WROOM" || d.FirmwareVersion != "2.1.0" {
		t.Errorf("record %+v", d.Device)
	}
	if d.KaiserID != "" {
		t.Errorf("kaiser id %q, want the root of the last live message", d.KaiserID)
	}
	if d.LastHeartbeatAt == nil || !d.LastHeartbeatAt.Equal(m.ReceivedAt) {
		t.Errorf("last heartbeat %v, want %v", d.LastHeartbeatAt, m.ReceivedAt)
	}

	want := map[string]any{
		"last_heap_free":          int64(99000),
		"last_wifi_rssi":          int64(-71),
		"last_uptime":             int64(30),
		"last_sensor_count":       int64(3),
		"last_actuator_count":     int64(1),
		"reported_zone_id":        "greenhouse",
		"reported_master_zone_id": "main",
		"zone_assigned":           true,
		"system_state":            "OPERATIONAL",
		"boot_sequence_id":        "boot-1",
		"reset_reason":            "POWERON",
		"firmware_version":        "2.1.0",
		"time_valid":              true,
		"firmware_generation":     "newer",
	}
	for k, v := range want {
		if d.Metadata[k] != v {
			t.Errorf("metadata %s = %#v, want %#v", k, d.Metadata[k], v)
		}
	}
	quirks, _ := d.Metadata["quirks_seen"].(map[string]any)
	if quirks["empty_kaiser_id"] != true || quirks["retain_bit"] != true || quirks["ntp_unsynced"] != true {
		t.Errorf("quirks %v; the earlier ts=0 heartbeats count too", quirks)
	}
	if _, ok := d.Metadata["clock_skew_seconds"].(float64); !ok {
		t.Errorf("clock skew missing for a device time: %v", d.Metadata)
	}

	// A later heartbeat without a device time drops the skew; the hardware type stays.
	m2 := h.heartbeat(testID, 40)
	m2.Payload = []byte(`{"ts":0,"uptime":40,"heap_free":1,"wifi_rssi":-50,"hardware_type":"OTHER"}`)
	if err := h.svc.HandleHeartbeat(context.Background(), m2); err != nil {
		t.Fatal(err)
	}
	d, _ = h.svc.Get(testID)
	if _, ok := d.Metadata["clock_skew_seconds"]; ok {
		t.Errorf("clock skew kept without a device time")
	}
	if d.HardwareType != "ESP32_WROOM" || d.Metadata["firmware_generation"] != "baseline" {
		t.Errorf("hardware %s, generation %v", d.HardwareType, d.Metadata["firmware_generation"])
	}

	hbs := h.store.heartbeats
	last := hbs[len(hbs)-1]
	if last.DeviceID != testID || last.Uptime != 40 || last.TimeSource != string(contract.SourceHub) {
		t.Errorf("stored heartbeat %+v", last)
	}
	if first := hbs[len(hbs)-2]; first.TimeSource != string(contract.SourceDevice) || first.Seq == nil || *first.Seq != 5 {
		t.Errorf("stored heartbeat with device time %+v", first)
	}
}

func TestHealthEvents(t *testing.T) {
	h := newHarness(t, Config{})
	h.online()
	h.events()

	h.beat(30)
	health := ofType(h.events(), "esp_health")
	if len(health) != 1 {
		t.Fatalf("health events %d, want 1", len(health))
	}
	if d := dataOf(health[0]); d["status"] != StatusOnline || d["source"] != "heartbeat" || d["uptime"] != float64(30) {
		t.Errorf("health %v", d)
	}

	if err := h.svc.HandleWill(context.Background(), h.will(testID)); err != nil {
		t.Fatal(err)
	}
	health = ofType(h.events(), "esp_health")
	if len(health) != 1 {
		t.Fatalf("health events after the will %d, want 1", len(health))
	}
	if d := dataOf(health[0]); d["status"] != StatusOffline || d["source"] != "lwt" || d["uptime"] != float64(30) {
		t.Errorf("offline health %v", d)
	}
	d, _ := h.svc.Get(testID)
	if d.Metadata["offline_reason"] != "lwt" || d.Metadata["went_offline_at"] == nil {
		t.Errorf("offline metadata %v", d.Metadata)
	}
}

func TestReboot(t *testing.T) {
	h := newHarness(t, Config{})
	h.online()
	h.configs()

	h.beat(5) // uptime went backwards
	d, _ := h.svc.Get(testID)
	if d.Metadata["reboot_count"] != int64(1) || d.Metadata["last_reboot_at"] == nil {
		t.Errorf("reboot metadata %v", d.Metadata)
	}

	h.beat(50)
	d, _ = h.svc.Get(testID)
	if d.Metadata["reboot_count"] != int64(1) {
		t.Errorf("rising uptime counted as reboot: %v", d.Metadata["reboot_count"])
	}
}

func TestFlapping(t *testing.T) {
	cases := []struct {
		name string
		gap  time.Duration
		want bool
	}{
		{"two wills within the window", flapWindow - time.Second, true},
		{"wills further apart", flapWindow, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Config{HeartbeatTimeout: time.Hour})
				h.online()
				ctx := context.Background()

				if err := h.svc.HandleWill(ctx, h.will(testID)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tc.gap)
				if err := h.svc.HandleWill(ctx, h.will(testID)); err != nil {
					t.Fatal(err)
				}

				d, _ := h.svc.Get(testID)
				if got := d.Metadata["flapping"] == true; got != tc.want {
					t.Errorf("flapping %v, want %v", got, tc.want)
				}
				if saved := h.store.saved[testID]; (saved.Metadata["flapping"] == true) != tc.want {
					t.Errorf("the will of an offline device was not saved: %v", saved.Metadata)
				}
			})
		})
	}
}

func TestGate(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	data := func(id, kaiser string) ingest.Message {
		m := h.message(id, "sensor/4/data", map[string]any{
			"sensor_type": "ds18b20",
			"raw":         400,
			"ts":          0,
		})
		m.Topic = topic(t, kaiser, id, "sensor/4/data")
		return m
	}

	if _, err := h.svc.Gate(ctx, data("ESP_X", "god")); dropReason(err) != contract.ReasonUnknownDevice {
		t.Errorf("unknown device: %v", err)
	}
	if got := h.svc.UnknownIDs(); !slices.Equal(got, []string{"ESP_X"}) {
		t.Errorf("unknown ids %v", got)
	}

	if err := h.svc.HandleHeartbeat(ctx, h.message(testID, "system/heartbeat", map[string]any{
		"esp_id":        testID,
		"ts":            0,
		"uptime":        10,
		"heap_free":     120000,
		"wifi_rssi":     -60,
		"hardware_type": "ESP32_WROOM",
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Gate(ctx, data(testID, "god")); dropReason(err) != contract.ReasonNotApproved {
		t.Errorf("pending device: %v", err)
	}
	if _, ok := h.svc.Root(testID); ok {
		t.Errorf("a pending device has a root")
	}

	if _, err := h.svc.Approve(ctx, testID, "admin", "Bench"); err != nil {
		t.Fatal(err)
	}
	d, err := h.svc.Gate(ctx, data(testID, "other"))
	if err != nil || d.Name != "Bench" {
		t.Fatalf("approved device: %+v, %v", d, err)
	}
	if root, ok := h.svc.Root(testID); !ok || root != "other" {
		t.Errorf("root %q %v, want the root of the last live message", root, ok)
	}

	// The reading path's admission: the same check, the hardware type
	// instead of a copy of the device.
	if _, err := h.svc.AdmitType(data("ESP_Y", "god")); dropReason(err) != contract.ReasonUnknownDevice {
		t.Errorf("AdmitType, unknown device: %v", err)
	}
	if hw, err := h.svc.AdmitType(data(testID, "third")); err != nil || hw != "ESP32_WROOM" {
		t.Errorf("AdmitType, approved device: %q %v, want ESP32_WROOM", hw, err)
	}
	if root, _ := h.svc.Root(testID); root != "third" {
		t.Errorf("root %q after AdmitType, want third", root)
	}

	replay := data(testID, "god")
	replay.Replay = true
	if err := h.svc.HandleGated()(ctx, replay); dropReason(err) != contract.ReasonReplay {
		t.Errorf("replay: %v", err)
	}
	bad := data(testID, "god")
	bad.Payload = []byte(`{"raw":1}`)
	var de *contract.DecodeError
	if _, err := h.svc.Gate(ctx, bad); !errors.As(err, &de) {
		t.Errorf("invalid payload: %v, want a decode error", err)
	}
}

func TestLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		st.loaded = []store.Device{
			{
				ID:       "u1",
				DeviceID: "ESP_ON",
				Status:   StatusOnline,
				Metadata: map[string]any{"last_uptime": float64(1000)},
			},
			{ID: "u2", DeviceID: "ESP_PEND", Status: StatusPending},
		}
		h := newHarnessWith(t, Config{HeartbeatTimeout: time.Minute}, st)

		if got := h.svc.Counts(); got[StatusOnline] != 1 || got[StatusPending] != 1 {
			t.Errorf("counts %v", got)
		}
		if list := h.svc.List(); len(list) != 2 || list[0].DeviceID != "ESP_ON" {
			t.Errorf("list %+v", list)
		}

		// Liveness restarts from the load: a full timeout before going offline.
		time.Sleep(time.Minute)
		if err := h.svc.CheckLiveness(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.mustStatus("ESP_ON", StatusOnline)
		time.Sleep(time.Second)
		if err := h.svc.CheckLiveness(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.mustStatus("ESP_ON", StatusOffline)

		// The stored uptime survives the restart, so a reboot is still seen.
		if err := h.svc.HandleHeartbeat(context.Background(), h.heartbeat("ESP_ON", 5)); err != nil {
			t.Fatal(err)
		}
		d, _ := h.svc.Get("ESP_ON")
		if d.Metadata["reboot_count"] != int64(1) {
			t.Errorf("reboot after restart not seen: %v", d.Metadata)
		}
	})
}

func TestRegister(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	reg := Registration{
		DeviceID:     "ESP_REG",
		Name:         "Pump house",
		ZoneID:       "z1",
		MACAddress:   "AA:BB",
		HardwareType: "ESP32_WROOM",
		Capabilities: map[string]any{"max_sensors": 20},
	}

	d, err := h.svc.Register(ctx, reg, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != StatusApproved || d.KaiserID != "god" || d.ApprovedBy != "admin" ||
		d.Metadata["mac_address"] != "AA:BB" {
		t.Errorf("registered %+v", d.Device)
	}
	if got := changes(h.events()); !slices.Equal(got, []string{"→approved (registered)"}) {
		t.Errorf("events %q", got)
	}
	if _, err := h.svc.Register(ctx, reg, "admin"); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second registration: %v", err)
	}

	if err := h.svc.Delete(ctx, "ESP_REG", "admin"); err != nil {
		t.Fatal(err)
	}
	again, err := h.svc.Register(ctx, reg, "admin")
	if err != nil || again.ID != d.ID {
		t.Errorf("registration of a deleted device: %+v %v, want identity %s kept", again.Device, err, d.ID)
	}
}

func TestUpdate(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	h.beat(10)
	name, zone, master := "Bench", "z2", true

	d, err := h.svc.Update(ctx, testID, Patch{
		Name:            &name,
		ZoneID:          &zone,
		IsZoneMaster:    &master,
		Capabilities:    map[string]any{"pwm": true},
		SetCapabilities: true,
		Metadata:        map[string]any{"note": "x", "heartbeat_count": nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != name || d.ZoneID != zone || d.Metadata["is_zone_master"] != true || d.Metadata["note"] != "x" {
		t.Errorf("updated %+v", d.Device)
	}
	if _, ok := d.Metadata["heartbeat_count"]; ok {
		t.Errorf("a nil metadata value did not delete the key")
	}
	if h.store.committed[testID].Name != name {
		t.Errorf("update not committed: %+v", h.store.committed[testID])
	}

	if _, err := h.svc.Update(ctx, "ESP_NONE", Patch{Name: &name}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of an unknown device: %v", err)
	}
}

func TestFactoryReset(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()

	if err := h.svc.FactoryReset(ctx, testID); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	h.beat(10)
	if err := h.svc.FactoryReset(ctx, testID); !errors.Is(err, ErrNotApproved) {
		t.Errorf("pending: %v", err)
	}
	if _, err := h.svc.Approve(ctx, testID, "admin", ""); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.FactoryReset(ctx, testID); !errors.Is(err, ErrOffline) {
		t.Errorf("approved, not yet online: %v", err)
	}

	h.beat(20)
	if err := h.svc.FactoryReset(ctx, testID); err != nil {
		t.Fatal(err)
	}
	cmds := h.bus.take("system/command")
	if len(cmds) != 1 {
		t.Fatalf("commands %+v", cmds)
	}
	var cmd contract.SystemCommand
	if err := json.Unmarshal(cmds[0].payload, &cmd); err != nil {
		t.Fatal(err)
	}
	if cmd.Command != "factory_reset" || !cmd.Confirm || cmd.CorrelationID == "" {
		t.Errorf("command %+v", cmd)
	}
}

func TestStorageErrorAfterAck(t *testing.T) {
	h := newHarness(t, Config{})
	h.store.saveErr = errors.New("disk full")

	err := h.svc.HandleHeartbeat(context.Background(), h.heartbeat(testID, 10))
	if err == nil || !errors.Is(err, h.store.saveErr) {
		t.Fatalf("err %v, want the storage error wrapped", err)
	}
	// The ack goes out before any storage work (G2).
	if acks := h.acks(); len(acks) != 1 {
		t.Errorf("acks %+v, want one before the failed save", acks)
	}
	if n := len(h.events()); n != 0 {
		t.Errorf("%d events published for a heartbeat that was not stored", n)
	}
}

func TestSnapshotFlags(t *testing.T) {
	h := newHarness(t, Config{})
	h.beat(10)
	if d, _ := h.svc.Get(testID); d.SubscriptionsLost || d.RebootRequired || d.LastHeartbeatAt == nil {
		t.Errorf("snapshot %+v", d)
	}

	_, err := h.svc.Update(context.Background(), testID, Patch{
		Metadata: map[string]any{"subscriptions_lost": true, "reboot_required": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := h.svc.Get(testID); !d.SubscriptionsLost || !d.RebootRequired {
		t.Errorf("flags not read from metadata: %+v", d)
	}

	// A reboot clears the lost subscriptions.
	h.beat(1)
	if d, _ := h.svc.Get(testID); d.SubscriptionsLost {
		t.Errorf("subscriptions still lost after a reboot")
	}
}

// Every registered status is known to the broker's door; a deleted or
// never-seen id is not (docs/protocol.md M5).
func TestKnownDevices(t *testing.T) {
	st := newFakeStore()
	for i, s := range []string{StatusPending, StatusApproved, StatusOnline, StatusOffline, StatusRejected, StatusDeleted} {
		st.loaded = append(st.loaded, store.Device{ID: fmt.Sprint("u", i), DeviceID: "ESP_" + s, Status: s})
	}
	h := newHarnessWith(t, Config{}, st)
	for _, s := range []string{StatusPending, StatusApproved, StatusOnline, StatusOffline, StatusRejected} {
		if !h.svc.Known("ESP_" + s) {
			t.Errorf("a %s device is not known", s)
		}
	}
	if h.svc.Known("ESP_"+StatusDeleted) || h.svc.Known("ESP_NEVER") {
		t.Error("a deleted or unseen id is known")
	}
	if n := h.svc.Registered(); n != 5 {
		t.Errorf("registered %d, want 5", n)
	}
}
