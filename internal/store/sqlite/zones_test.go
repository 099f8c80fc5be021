package sqlite

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func TestZonesRoundTripAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	now := time.Now().UTC().Truncate(time.Millisecond)

	z := store.Zone{ZoneID: "greenhouse_1", Name: "Greenhouse 1", Status: "active", CreatedAt: now, UpdatedAt: now}
	if err := s.SaveZone(ctx, z); err != nil {
		t.Fatal(err)
	}
	z.Status, z.Description = "archived", "north wing"
	if err := s.SaveZone(ctx, z); err != nil {
		t.Fatal(err)
	}
	gone := store.Zone{ZoneID: "old", Name: "Old", Status: "active", CreatedAt: now, UpdatedAt: now}
	if err := s.SaveZone(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteZone(ctx, "old"); err != nil {
		t.Fatal(err)
	}

	code := int64(2506)
	sz := store.Subzone{
		EspID:        "ESP_A1B2C3",
		SubzoneID:    "bed_north",
		Name:         "Bed north",
		ParentZoneID: "greenhouse_1",
		GPIOs:        []int{34, 5},
		Status:       "error",
		ErrorCode:    &code,
		ErrorMessage: "GPIO assignment failed",
		LastAckAt:    &now,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	if err := s.SaveSubzone(ctx, sz); err != nil {
		t.Fatal(err)
	}
	other := store.Subzone{EspID: "ESP_A1B2C3", SubzoneID: "bed_south", Status: "pending", SafeMode: true,
		CreatedAt: now, UpdatedAt: now}
	if err := s.SaveSubzone(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSubzone(ctx, "ESP_A1B2C3", "bed_south"); err != nil {
		t.Fatal(err)
	}

	ch := store.ZoneChange{EspID: "ESP_A1B2C3", ToZoneID: "greenhouse_1", Strategy: "transfer", Actor: "op",
		CorrelationID: "zone-1", At: now}
	if err := s.AppendZoneChange(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	defer s.Close(ctx)
	zones, err := s.LoadZones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(zones) != 1 || !reflect.DeepEqual(zones[0], z) {
		t.Fatalf("zones %+v, want [%+v]", zones, z)
	}
	subs, err := s.LoadSubzones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 1 || !reflect.DeepEqual(subs[0], sz) {
		t.Fatalf("subzones %+v, want [%+v]", subs, sz)
	}
	changes, err := s.ZoneChanges(ctx, "ESP_A1B2C3")
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || !reflect.DeepEqual(changes[0], ch) {
		t.Fatalf("changes %+v, want [%+v]", changes, ch)
	}
}
