package device

import (
	"context"
	"testing"
)

// docs/protocol.md B3 with an external broker: a baseline device back
// online after a will without a reboot has lost its subscriptions; a reboot
// clears the flag; newer firmware (seq) and the embedded broker, which
// restores subscriptions (M4), never get it.
func TestLostSubscriptions(t *testing.T) {
	lostAfterReconnect := func(cfg Config, seq bool) bool {
		t.Helper()
		h := newHarness(t, cfg)
		h.online()
		if err := h.svc.HandleWill(context.Background(), h.will(testID)); err != nil {
			t.Fatal(err)
		}
		h.mustStatus(testID, StatusOffline)
		m := h.heartbeat(testID, 80) // uptime went on: no reboot
		if seq {
			m = h.message(testID, "system/heartbeat", map[string]any{
				"esp_id": testID, "ts": 0, "uptime": 80, "heap_free": 120000, "wifi_rssi": -60, "seq": 7,
			})
		}
		if err := h.svc.HandleHeartbeat(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		h.mustStatus(testID, StatusOnline)
		d, _ := h.svc.Get(testID)
		if d.SubscriptionsLost && cfg.LostSubscriptions && !seq {
			h.beat(5) // a reboot: the firmware subscribes again
			if d, _ := h.svc.Get(testID); d.SubscriptionsLost {
				t.Fatal("a reboot kept subscriptions_lost")
			}
		}
		return d.SubscriptionsLost
	}
	if !lostAfterReconnect(Config{LostSubscriptions: true}, false) {
		t.Fatal("external broker, baseline device: reconnect without reboot not flagged")
	}
	if lostAfterReconnect(Config{LostSubscriptions: true}, true) {
		t.Fatal("newer firmware flagged")
	}
	if lostAfterReconnect(Config{}, false) {
		t.Fatal("embedded broker (subscriptions restored) flagged")
	}
}
