package device

import (
	"context"
	"testing"
)

// fakeCounts is the hub's configured components per device.
type fakeCounts map[string][2]int

func (f fakeCounts) ComponentCounts(espID string) (int, int) { return f[espID][0], f[espID][1] }

// esp_health always carries integer counts: the heartbeat's, 0 where it sent
// none, until the hub provides its configured counts, which then win for
// the heartbeat and the offline event alike.
func TestHealthEventCounts(t *testing.T) {
	tests := []struct {
		name       string
		counts     Counts
		beat       map[string]any // extra heartbeat fields
		wantOnline [2]float64
		wantOff    [2]float64
	}{
		{
			name:       "no counts anywhere",
			wantOnline: [2]float64{0, 0},
			wantOff:    [2]float64{0, 0},
		},
		{
			name:       "the heartbeat's",
			beat:       map[string]any{"sensor_count": 3, "actuator_count": 1},
			wantOnline: [2]float64{3, 1},
			wantOff:    [2]float64{3, 1},
		},
		{
			name:       "the hub's configured counts win",
			counts:     fakeCounts{testID: {2, 4}},
			beat:       map[string]any{"sensor_count": 3, "actuator_count": 1},
			wantOnline: [2]float64{2, 4},
			wantOff:    [2]float64{2, 4},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			if tc.counts != nil {
				h.svc.SetCounts(tc.counts)
			}
			h.online()
			h.events()

			payload := map[string]any{"esp_id": testID, "ts": 0, "uptime": 30, "heap_free": 1, "wifi_rssi": -1}
			for k, v := range tc.beat {
				payload[k] = v
			}
			m := h.message(testID, "system/heartbeat", payload)
			if err := h.svc.HandleHeartbeat(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, "heartbeat", h, tc.wantOnline)

			if err := h.svc.HandleWill(context.Background(), h.will(testID)); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, "offline", h, tc.wantOff)
		})
	}
}

func checkCounts(t *testing.T, what string, h *harness, want [2]float64) {
	t.Helper()
	health := ofType(h.events(), "esp_health")
	if len(health) != 1 {
		t.Fatalf("%s: %d esp_health events", what, len(health))
	}
	d := dataOf(health[0])
	if d["sensor_count"] != want[0] || d["actuator_count"] != want[1] {
		t.Fatalf("%s: counts %v/%v, want %v", what, d["sensor_count"], d["actuator_count"], want)
	}
}

// After a restart the stored counts are float64; the offline event still
// carries integers.
func TestStoredCount(t *testing.T) {
	for _, v := range []any{int64(2), 2.0, 2} {
		if storedCount(v) != 2 {
			t.Errorf("%T: %d", v, storedCount(v))
		}
	}
	if storedCount(nil) != 0 || storedCount("2") != 0 {
		t.Error("unknown values count 0")
	}
}
