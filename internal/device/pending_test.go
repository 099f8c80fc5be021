package device

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// Beyond the cap on devices awaiting approval an unknown id's heartbeat is
// acked pending_approval and counted pending_limit, and registers nothing;
// an approval frees a place. Devices an operator set pending do not count.
func TestPendingCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{MaxPending: 2})
		ctx := context.Background()
		beat := func(id string) error { return h.svc.HandleHeartbeat(ctx, h.heartbeat(id, 1)) }
		for i := range 2 {
			if err := beat(fmt.Sprintf("ESP_N%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		h.acks()

		if err := beat("ESP_N2"); dropReason(err) != contract.ReasonPendingLimit {
			t.Fatalf("a discovery beyond the cap: %v, want a pending_limit drop", err)
		}
		if _, err := h.svc.Get("ESP_N2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a device beyond the cap was registered: %v", err)
		}
		if acks := h.acks(); len(acks) != 1 || acks[0].Status != "pending_approval" {
			t.Fatalf("acks %+v, want one pending_approval ack (docs/protocol.md G2)", acks)
		}

		if _, err := h.svc.Approve(ctx, "ESP_N0", "admin", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.SetPending(ctx, "ESP_N0", "admin", "check wiring"); err != nil {
			t.Fatal(err)
		}
		if err := beat("ESP_N2"); err != nil {
			t.Fatalf("discovery after an approval freed a place: %v", err)
		}
		h.mustStatus("ESP_N2", StatusPending)
		if err := beat("ESP_N3"); dropReason(err) != contract.ReasonPendingLimit {
			t.Fatalf("a discovery beyond the cap again: %v", err)
		}
	})
}

// A discovered device not heard from for the expiry is forgotten: record,
// transitions and heartbeats leave the store and the registry, a
// device_status event says so, and its next heartbeat discovers it again.
// A device heard from within the expiry, and one an operator set pending,
// stay.
func TestPendingDevicesExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{PendingExpiry: 24 * time.Hour})
		ctx := context.Background()
		for _, id := range []string{"ESP_OLD", "ESP_BUSY", "ESP_KEPT"} {
			if err := h.svc.HandleHeartbeat(ctx, h.heartbeat(id, 1)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := h.svc.Approve(ctx, "ESP_KEPT", "admin", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.SetPending(ctx, "ESP_KEPT", "admin", ""); err != nil {
			t.Fatal(err)
		}
		time.Sleep(23 * time.Hour)
		if err := h.svc.HandleHeartbeat(ctx, h.heartbeat("ESP_BUSY", 2)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Hour)
		h.events()

		if err := h.svc.ExpirePending(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.Get("ESP_OLD"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a pending device silent for 25 h is still registered: %v", err)
		}
		h.mustStatus("ESP_BUSY", StatusPending)
		h.mustStatus("ESP_KEPT", StatusPending)
		if got := changes(h.events()); len(got) != 1 || got[0] != "pending_approval→deleted (pending_expired)" {
			t.Fatalf("status events %v, want the expiry", got)
		}
		h.store.mu.Lock()
		_, saved := h.store.saved["ESP_OLD"]
		var history int
		for _, tr := range h.store.transitions {
			if tr.DeviceID == "ESP_OLD" {
				history++
			}
		}
		for _, hb := range h.store.heartbeats {
			if hb.DeviceID == "ESP_OLD" {
				history++
			}
		}
		h.store.mu.Unlock()
		if saved || history != 0 {
			t.Fatalf("the store keeps the expired device: record %v, %d history rows", saved, history)
		}

		if err := h.svc.HandleHeartbeat(ctx, h.heartbeat("ESP_OLD", 1)); err != nil {
			t.Fatal(err)
		}
		h.mustStatus("ESP_OLD", StatusPending)
		if n := len(ofType(h.events(), "device_discovered")); n != 1 {
			t.Fatalf("device_discovered events after the return: %d, want 1", n)
		}
	})
}

// What a pending device sends is kept for inspection within 32 topics and
// 16 KiB, whatever it sends; an approval frees it.
func TestHeldPayloadsAreBounded(t *testing.T) {
	h := newHarness(t, Config{})
	h.beat(10)
	for i := range 100 {
		m := h.message(testID, fmt.Sprintf("sensor/%d/data", i), nil)
		m.Payload = fmt.Appendf(nil, `{"esp_id":%q,"gpio":%d,"sensor_type":"ph","raw":1,"ts":0,"name":%q}`,
			testID, i, strings.Repeat("x", 900))
		if err := h.svc.HandleGated()(context.Background(), m); dropReason(err) != contract.ReasonNotApproved {
			t.Fatalf("reading of a pending device: %v", err)
		}
	}
	h.svc.mu.Lock()
	e := h.svc.devices[testID]
	topics, bytes := len(e.lastPayloads), e.heldBytes
	h.svc.mu.Unlock()
	if topics == 0 || topics > maxHeldTopics || bytes > maxHeldBytes {
		t.Fatalf("held %d topics, %d bytes; bounds %d, %d", topics, bytes, maxHeldTopics, maxHeldBytes)
	}

	if _, err := h.svc.Approve(context.Background(), testID, "admin", ""); err != nil {
		t.Fatal(err)
	}
	h.svc.mu.Lock()
	topics, bytes = len(e.lastPayloads), e.heldBytes
	h.svc.mu.Unlock()
	if topics != 0 || bytes != 0 {
		t.Fatalf("an approved device still holds %d payloads (%d bytes)", topics, bytes)
	}
}
