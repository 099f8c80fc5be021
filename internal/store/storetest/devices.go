package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func deviceRecord(id string, version int64, status string) store.Device {
	seen := base.Add(time.Duration(version) * time.Second)
	return store.Device{
		ID: "uuid-" + id, DeviceID: id, Name: "bench " + status, Status: status, KaiserID: "god",
		ZoneID: "z1", ZoneName: "Zone 1", HardwareType: "ESP32_WROOM", IPAddress: "10.0.0.7",
		FirmwareVersion: "1.2.3", Metadata: map[string]any{"heartbeat_count": float64(version)},
		LastSeen: &seen, DiscoveredAt: ptr(base), CreatedAt: base, UpdatedAt: seen, Version: version,
	}
}

func loadDevice(t *testing.T, s Store, id string) (store.Device, bool) {
	t.Helper()
	devs, err := s.LoadDevices(ctx(t))
	must(t, err)
	for _, d := range devs {
		if d.DeviceID == id {
			return d, true
		}
	}
	return store.Device{}, false
}

// Snapshots may reach the store in any order: an older one never replaces
// a newer one (docs/decisions/0005-versioned-device-saves.md).
func deviceSavesKeepTheNewestVersion(t *testing.T, s Subject) {
	c := ctx(t)
	must(t, s.Store.SaveDevice(c, deviceRecord("ESP_A1", 2, "approved")))
	must(t, s.Store.SaveDevice(c, deviceRecord("ESP_A1", 1, "pending_approval")))
	flush(t, s.Store)
	got, ok := loadDevice(t, s.Store, "ESP_A1")
	if !ok {
		t.Fatal("device not stored")
	}
	want := deviceRecord("ESP_A1", 2, "approved")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stored device\n got %+v\nwant %+v", got, want)
	}

	must(t, s.Store.SaveDevice(c, deviceRecord("ESP_A1", 3, "online")))
	flush(t, s.Store)
	if got, _ := loadDevice(t, s.Store, "ESP_A1"); got.Version != 3 || got.Status != "online" {
		t.Fatalf("newer save not applied: version %d status %s", got.Version, got.Status)
	}

	// Nil times and metadata read back as nil and empty.
	bare := store.Device{ID: "uuid-b", DeviceID: "ESP_B2", Status: "pending_approval", CreatedAt: base,
		UpdatedAt: base, Version: 1}
	must(t, s.Store.SaveDevice(c, bare))
	flush(t, s.Store)
	got, _ = loadDevice(t, s.Store, "ESP_B2")
	if got.LastSeen != nil || got.ApprovedAt != nil || len(got.Metadata) != 0 || !got.CreatedAt.Equal(base) {
		t.Fatalf("bare device read back as %+v", got)
	}
}

// A status change is stored whole; a device's transitions read in version
// order whatever order they were written in.
func deviceChangeAndTransitionOrder(t *testing.T, s Subject) {
	c := ctx(t)
	tr := func(from, to string, v int64) store.Transition {
		return store.Transition{DeviceID: "ESP_T1", From: from, To: to, Cause: "test",
			At: base.Add(time.Duration(v) * time.Second), Version: v}
	}
	must(t, s.Store.SaveDeviceChange(c, deviceRecord("ESP_T1", 3, "online"), tr("approved", "online", 3)))
	must(t, s.Store.AppendTransition(c, tr("pending_approval", "approved", 2)))
	// A stale change: its record is not written, its transition is kept.
	must(t, s.Store.SaveDeviceChange(c, deviceRecord("ESP_T1", 1, "pending_approval"), tr("", "pending_approval", 1)))
	flush(t, s.Store)

	got, err := s.Store.Transitions(c, "ESP_T1")
	must(t, err)
	want := []store.Transition{tr("", "pending_approval", 1), tr("pending_approval", "approved", 2),
		tr("approved", "online", 3)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("transitions\n got %+v\nwant %+v", got, want)
	}
	if d, _ := loadDevice(t, s.Store, "ESP_T1"); d.Status != "online" {
		t.Fatalf("status %s, want online", d.Status)
	}
}

// PurgeDevice removes the record and its history only while no newer save
// is stored.
func purgeDeviceKeepsANewerSave(t *testing.T, s Subject) {
	c := ctx(t)
	must(t, s.Store.SaveDevice(c, deviceRecord("ESP_P1", 5, "deleted")))
	must(t, s.Store.AppendTransition(c, store.Transition{DeviceID: "ESP_P1", From: "online", To: "deleted",
		Cause: "operator", At: base, Version: 5}))
	for i := range 3 {
		must(t, s.Store.AppendHeartbeat(c, store.Heartbeat{DeviceID: "ESP_P1", ReceivedAt: base, DeviceTime: base,
			TimeSource: "device", Uptime: int64(10 + i), HeapFree: 40000, RSSI: -50, Seq: ptr(int64(i))}))
	}
	flush(t, s.Store)
	if up, err := s.Store.HeartbeatUptimes(c, "ESP_P1"); err != nil || !reflect.DeepEqual(up, []int64{10, 11, 12}) {
		t.Fatalf("heartbeats %v %v", up, err)
	}

	must(t, s.Store.PurgeDevice(c, "ESP_P1", 4)) // version 5 is newer: the device is back
	if _, ok := loadDevice(t, s.Store, "ESP_P1"); !ok {
		t.Fatal("purge with an older version removed a newer record")
	}
	must(t, s.Store.PurgeDevice(c, "ESP_P1", 5))
	if _, ok := loadDevice(t, s.Store, "ESP_P1"); ok {
		t.Fatal("record still there after the purge")
	}
	trs, err := s.Store.Transitions(c, "ESP_P1")
	must(t, err)
	up, err := s.Store.HeartbeatUptimes(c, "ESP_P1")
	must(t, err)
	if len(trs) != 0 || len(up) != 0 {
		t.Fatalf("history left after the purge: %d transitions, %d heartbeats", len(trs), len(up))
	}

	// A purge waits for the saves queued before it.
	must(t, s.Store.SaveDevice(c, deviceRecord("ESP_P2", 7, "deleted")))
	must(t, s.Store.PurgeDevice(c, "ESP_P2", 7))
	if _, ok := loadDevice(t, s.Store, "ESP_P2"); ok {
		t.Fatal("a save queued before the purge outlived it")
	}

	must(t, s.Store.SaveConfigPush(c, "ESP_P2", "cid-1", "sent", []byte(`{"sensors":[]}`)))
	must(t, s.Store.SaveConfigPush(c, "ESP_P2", "cid-2", "acknowledged", []byte(`{"sensors":[1]}`)))
	flush(t, s.Store)
	pushes, err := s.Store.LoadConfigPushes(c)
	must(t, err)
	if string(pushes["ESP_P2"]) != `{"sensors":[1]}` {
		t.Fatalf("config push %q", pushes["ESP_P2"])
	}
}
