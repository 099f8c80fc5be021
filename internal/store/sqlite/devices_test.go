package sqlite

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Saves reach the writer in whatever order their goroutines queue them; the
// stored record is always the one with the highest version.
func TestSaveDeviceKeepsTheNewestVersion(t *testing.T) {
	type save struct {
		version int64
		status  string
	}
	cases := []struct {
		name        string
		saves       []save // in the order they reach the store
		wantStatus  string
		wantVersion int64
	}{
		{
			name:        "in order",
			saves:       []save{{1, "pending_approval"}, {2, "approved"}},
			wantStatus:  "approved",
			wantVersion: 2,
		},
		{
			name:        "stale heartbeat after approval",
			saves:       []save{{1, "pending_approval"}, {3, "approved"}, {2, "pending_approval"}},
			wantStatus:  "approved",
			wantVersion: 3,
		},
		{
			name:        "stale heartbeat after deletion",
			saves:       []save{{5, "online"}, {7, "deleted"}, {6, "online"}},
			wantStatus:  "deleted",
			wantVersion: 7,
		},
		{
			name:        "same version twice keeps the first",
			saves:       []save{{4, "approved"}, {4, "pending_approval"}},
			wantStatus:  "approved",
			wantVersion: 4,
		},
		{
			name:        "first save of a row from before versions",
			saves:       []save{{0, "pending_approval"}, {1, "approved"}},
			wantStatus:  "approved",
			wantVersion: 1,
		},
		{
			name:        "stale save as the first write is stored, then replaced",
			saves:       []save{{2, "pending_approval"}, {9, "rejected"}, {8, "pending_approval"}},
			wantStatus:  "rejected",
			wantVersion: 9,
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := open(t, dir)
			now := time.Now().UTC().Truncate(time.Millisecond)
			for _, sv := range tc.saves {
				d := store.Device{
					ID:        "u1",
					DeviceID:  "ESP_V1",
					Status:    sv.status,
					Metadata:  map[string]any{"saved_as": float64(sv.version)},
					CreatedAt: now,
					UpdatedAt: now,
					Version:   sv.version,
				}
				if err := s.SaveDevice(ctx, d); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}

			s = open(t, dir)
			defer s.Close(ctx)
			devs, err := s.LoadDevices(ctx)
			if err != nil || len(devs) != 1 {
				t.Fatalf("devices %+v %v", devs, err)
			}
			got := devs[0]
			if got.Status != tc.wantStatus || got.Version != tc.wantVersion ||
				got.Metadata["saved_as"] != float64(tc.wantVersion) {
				t.Errorf("stored %s v%d (metadata of v%v), want %s v%d",
					got.Status, got.Version, got.Metadata["saved_as"], tc.wantStatus, tc.wantVersion)
			}
		})
	}
}

// Transitions written out of order read in the order of the record versions
// they were saved with.
func TestTransitionsReadInVersionOrder(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close(ctx)
	at := time.Now().UTC().Truncate(time.Millisecond)
	written := []store.Transition{
		{
			DeviceID: "ESP_V1",
			From:     "",
			To:       "pending_approval",
			Cause:    "discovered",
			At:       at,
			Version:  1,
		},
		{
			DeviceID: "ESP_V1",
			From:     "online",
			To:       "deleted",
			Cause:    "deleted",
			At:       at,
			Version:  4,
		},
		{
			DeviceID: "ESP_V1",
			From:     "pending_approval",
			To:       "approved",
			Cause:    "approved",
			At:       at,
			Version:  2,
		},
		{
			DeviceID: "ESP_V1",
			From:     "approved",
			To:       "online",
			Cause:    "heartbeat",
			At:       at,
			Version:  3,
		},
	}
	for _, tr := range written {
		if err := s.AppendTransition(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	got, err := s.Transitions(ctx, "ESP_V1")
	if err != nil {
		t.Fatal(err)
	}
	var causes []string
	for _, tr := range got {
		causes = append(causes, tr.Cause)
	}
	want := []string{"discovered", "approved", "heartbeat", "deleted"}
	if !slices.Equal(causes, want) {
		t.Errorf("transitions %s, want %s", strings.Join(causes, ","), strings.Join(want, ","))
	}
}

// PurgeDevice removes a record with its history only while no newer
// version is stored: a device that came back keeps everything.
func TestPurgeDeviceKeepsANewerSave(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close(ctx)
	now := time.Now().UTC().Truncate(time.Millisecond)
	save := func(id string, version int64) {
		t.Helper()
		d := store.Device{ID: id + "-uuid", DeviceID: id, Status: "pending_approval", Metadata: map[string]any{},
			CreatedAt: now, UpdatedAt: now, Version: version}
		tr := store.Transition{DeviceID: id, To: "pending_approval", Cause: "discovered", At: now, Version: version}
		if err := s.SaveDeviceChange(ctx, d, tr); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendHeartbeat(ctx, store.Heartbeat{DeviceID: id, ReceivedAt: now, DeviceTime: now,
			TimeSource: "hub"}); err != nil {
			t.Fatal(err)
		}
	}
	save("ESP_GONE", 3)
	save("ESP_BACK", 4)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.PurgeDevice(ctx, "ESP_GONE", 3); err != nil {
		t.Fatal(err)
	}
	if err := s.PurgeDevice(ctx, "ESP_BACK", 3); err != nil { // version 4 is stored
		t.Fatal(err)
	}

	devs, err := s.LoadDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].DeviceID != "ESP_BACK" {
		t.Fatalf("devices after the purge: %+v, want ESP_BACK only", devs)
	}
	for id, want := range map[string]int{"ESP_GONE": 0, "ESP_BACK": 1} {
		tr, err := s.Transitions(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		ups, err := s.HeartbeatUptimes(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(tr) != want || len(ups) != want {
			t.Fatalf("%s: %d transitions, %d heartbeats, want %d each", id, len(tr), len(ups), want)
		}
	}
}
