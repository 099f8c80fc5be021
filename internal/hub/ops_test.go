package hub

import (
	"strings"
	"testing"
	"time"
)

// The ingest figures of GET /health/detailed come from the running
// pipeline and store (docs/api.md §13): a malformed heartbeat shows up as a
// bad_json drop, both database files are measured by name.
func TestDetailedHealthIngestFigures(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	_, _, viewer := setupUsers(t, c)

	dev := mustDial(t, h.MQTTAddr(), "ESP_0BAD01")
	dev.subscribe(t, "kaiser/+/esp/ESP_0BAD01/system/heartbeat/ack")
	hb := "kaiser/god/esp/ESP_0BAD01/system/heartbeat"
	if err := dev.publish(hb, `{"ts":`, false); err != nil {
		t.Fatal(err)
	}
	if err := dev.publish(hb, heartbeat(61), false); err != nil {
		t.Fatal(err)
	}
	// One device's messages are handled in order: the ack of the second
	// means the first has been dropped.
	if m := dev.next(t, 5*time.Second); !strings.Contains(m.payload, "pending_approval") {
		t.Fatalf("ack: %s", m.payload)
	}

	r := c.do("GET", "/api/v1/health/detailed", viewer, nil)
	in, _ := r.body["ingest"].(map[string]any)
	if r.status != 200 || in == nil {
		t.Fatalf("detailed: %d %s", r.status, r.raw)
	}
	if in["dropped"].(map[string]any)["bad_json"] != 1.0 {
		t.Fatalf("drops: %v", in["dropped"])
	}
	if _, ok := in["messages_per_second"].(float64); !ok {
		t.Fatalf("rate: %v", in["messages_per_second"])
	}
	depths := in["queue_depths"].(map[string]any)
	for _, q := range []string{"ingest", "readings", "store_main", "store_control"} {
		if _, ok := depths[q].(float64); !ok {
			t.Errorf("queue depth %s missing: %v", q, depths)
		}
	}
	db := r.body["database"].(map[string]any)
	files := db["files"].([]any)
	if len(files) != 2 || files[0].(map[string]any)["name"] != "kaiser.db" ||
		files[1].(map[string]any)["name"] != "control.db" || files[1].(map[string]any)["size_bytes"].(float64) <= 0 {
		t.Fatalf("database files: %v", files)
	}
	if db["size_bytes"].(float64) < files[0].(map[string]any)["size_bytes"].(float64) {
		t.Fatalf("total size %v", db["size_bytes"])
	}
}
