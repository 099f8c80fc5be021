package zone

import (
	"context"
	"errors"
	"testing"

	"github.com/kaiserhub/kaiser/internal/device"
)

func TestCreateZone(t *testing.T) {
	tests := []struct {
		name    string
		first   string
		second  string
		wantID  string
		wantErr error
	}{
		{"stored lower-cased", "GreenHouse_1", "", "greenhouse_1", nil},
		{"duplicate id", "bed", "bed", "bed", ErrDuplicate},
		{"duplicate differing in case", "bed", "BED", "bed", ErrDuplicate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			z, err := h.svc.CreateZone(ctx, NewZone{ZoneID: tc.first, Name: "Zone", Description: "d"})
			if err != nil {
				t.Fatal(err)
			}
			if z.ZoneID != tc.wantID || z.Status != StatusActive || z.Name != "Zone" || z.Description != "d" {
				t.Fatalf("created %+v", z)
			}
			if _, ok := h.store.zones[tc.wantID]; !ok {
				t.Fatalf("zone %s not committed", tc.wantID)
			}
			if tc.second == "" {
				return
			}
			if _, err := h.svc.CreateZone(ctx, NewZone{ZoneID: tc.second, Name: "Again"}); !errors.Is(err, tc.wantErr) {
				t.Fatalf("second create: %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestZoneLookupUpdateArchiveAndList(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for _, id := range []string{"b_zone", "a_zone"} {
		if _, err := h.svc.CreateZone(ctx, NewZone{ZoneID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := h.svc.Zone("A_ZONE"); err != nil {
		t.Fatalf("lookup is not case-insensitive: %v", err)
	}
	if _, err := h.svc.Zone("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown zone: %v", err)
	}

	name := "Renamed"
	z, err := h.svc.UpdateZone(ctx, "a_zone", ZonePatch{Name: &name})
	if err != nil || z.Name != "Renamed" || z.Description != "" {
		t.Fatalf("update: %+v %v", z, err)
	}
	if _, err := h.svc.UpdateZone(ctx, "nope", ZonePatch{Name: &name}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of unknown zone: %v", err)
	}

	if z, err = h.svc.Archive(ctx, "b_zone"); err != nil || z.Status != StatusArchived {
		t.Fatalf("archive: %+v %v", z, err)
	}
	if got := h.store.zones["b_zone"].Status; got != StatusArchived {
		t.Fatalf("archive not committed: %s", got)
	}

	all := h.svc.Zones("")
	if len(all) != 2 || all[0].ZoneID != "a_zone" || all[1].ZoneID != "b_zone" {
		t.Fatalf("zones not ordered by id: %+v", all)
	}
	if got := h.svc.Zones(StatusArchived); len(got) != 1 || got[0].ZoneID != "b_zone" {
		t.Fatalf("archived filter: %+v", got)
	}

	if z, err = h.svc.Reactivate(ctx, "b_zone"); err != nil || z.Status != StatusActive {
		t.Fatalf("reactivate: %+v %v", z, err)
	}
	if got := h.svc.Zones(StatusArchived); len(got) != 0 {
		t.Fatalf("still archived: %+v", got)
	}
}

func TestDeleteZone(t *testing.T) {
	tests := []struct {
		name    string
		assign  bool
		zone    string
		wantErr error
	}{
		{"empty zone is deleted", false, "bed", nil},
		{"zone with devices is refused", true, "bed", ErrInvalidState},
		{"unknown zone", false, "nope", ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			if _, err := h.svc.CreateZone(ctx, NewZone{ZoneID: "bed", Name: "Bed"}); err != nil {
				t.Fatal(err)
			}
			if tc.assign {
				h.assign("bed")
			}

			err := h.svc.DeleteZone(ctx, tc.zone)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("delete: %v, want %v", err, tc.wantErr)
			}
			_, stored := h.store.zones["bed"]
			if wantKept := tc.wantErr != nil; stored != wantKept {
				t.Fatalf("zone stored after delete = %v, want %v", stored, wantKept)
			}
		})
	}
}

func TestDeviceCountsAndZoneMembership(t *testing.T) {
	h := newHarness(t)
	h.addDevice("ESP_B", device.StatusOffline, "god")
	h.addDevice("ESP_C", device.StatusApproved, "god")
	h.addDevice("ESP_P", device.StatusPending, "")
	h.assign("bed")
	if _, err := h.svc.Assign(context.Background(), "ESP_B", Assignment{ZoneID: "BED"}); err != nil {
		t.Fatal(err)
	}

	z, err := h.svc.Zone("bed")
	if err != nil || z.DeviceCount != 2 {
		t.Fatalf("device count: %+v %v", z, err)
	}
	in := h.svc.DevicesInZone("Bed")
	if len(in) != 2 || in[0].DeviceID != testID || in[1].DeviceID != "ESP_B" {
		t.Fatalf("devices in zone: %+v", in)
	}
	if got := h.svc.DevicesInZone("elsewhere"); len(got) != 0 {
		t.Fatalf("devices of an empty zone: %+v", got)
	}
	if got := h.svc.Unassigned(); len(got) != 1 || got[0] != "ESP_C" {
		t.Fatalf("unassigned (approved only): %v", got)
	}
}

func TestZoneStoreFailuresAreReturned(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.store.err = errors.New("disk full")
	if _, err := h.svc.CreateZone(ctx, NewZone{ZoneID: "bed", Name: "Bed"}); err == nil {
		t.Fatal("create succeeded without a commit")
	}
	if got := h.svc.Zones(""); len(got) != 0 {
		t.Fatalf("uncommitted zone kept: %+v", got)
	}
}

func TestLoadRestoresZonesAndSubzones(t *testing.T) {
	h := newHarness(t)
	h.assignedZone("bed")
	h.mustSubzone("north", 4, 5)
	h.svc.Stop()

	h.load()
	if _, err := h.svc.Zone("bed"); err != nil {
		t.Fatalf("zone lost over a restart: %v", err)
	}
	info, err := h.svc.Subzone(testID, "north")
	if err != nil || info.Status != SubzonePending || len(info.GPIOs) != 2 {
		t.Fatalf("subzone after restart: %+v %v", info, err)
	}
	if _, err := h.subzone("other", 5); err == nil {
		t.Fatal("pin of a restored subzone is free")
	}
}
