package device

import (
	"context"
	"testing"
)

// The zone assignment saves the three zone fields in one versioned,
// committed save (docs/domain.md §7.2).
func TestUpdateSetsTheZoneFieldsTogether(t *testing.T) {
	h := newHarness(t, Config{})
	h.online()

	zone, name, master := "greenhouse_1", "Greenhouse 1", "greenhouse"
	if _, err := h.svc.Update(context.Background(), testID, Patch{
		ZoneID:       &zone,
		ZoneName:     &name,
		MasterZoneID: &master,
	}); err != nil {
		t.Fatal(err)
	}

	h.store.mu.Lock()
	got := h.store.committed[testID]
	h.store.mu.Unlock()
	if got.ZoneID != zone || got.ZoneName != name || got.MasterZoneID != master {
		t.Fatalf("committed zone fields %q %q %q", got.ZoneID, got.ZoneName, got.MasterZoneID)
	}
}

// A reboot ends the deafness a root change left behind (docs/protocol.md B2, A4).
func TestRebootClearsRebootRequired(t *testing.T) {
	h := newHarness(t, Config{})
	h.online()
	if _, err := h.svc.Update(context.Background(), testID, Patch{
		Metadata: map[string]any{"reboot_required": true},
	}); err != nil {
		t.Fatal(err)
	}
	if d, _ := h.svc.Get(testID); !d.RebootRequired {
		t.Fatal("reboot_required not reported before the reboot")
	}

	h.beat(30) // rising uptime: no reboot
	if d, _ := h.svc.Get(testID); !d.RebootRequired {
		t.Fatal("reboot_required cleared without a reboot")
	}

	h.beat(5) // uptime went backwards
	if d, _ := h.svc.Get(testID); d.RebootRequired {
		t.Fatal("reboot_required still set after the reboot")
	}
}
