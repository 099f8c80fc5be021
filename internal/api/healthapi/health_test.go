package healthapi

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/device"
)

// newFixture serves the health routes over the fakes of apitest, the device
// registry holding ds; edit, when not nil, changes the measured parts first.
func newFixture(t *testing.T, edit func(*Deps), ds ...device.Device) *apitest.Fixture {
	f := apitest.New(t, ds...)
	d := Deps{
		Version:  "test",
		Store:    apitest.Pinger{},
		DB:       apitest.Pool{},
		Broker:   apitest.Broker{Up: true},
		Registry: f.Registry,
		DataDir:  t.TempDir(),
		Devices:  f.Devices,
		Queues:   queueDepths{"ingest": 3, "store_main": 1},
	}
	if edit != nil {
		edit(&d)
	}
	Register(f.Srv, d)
	return f
}

func TestHealthDegradesWithTheBrokerAndFailsWithTheStore(t *testing.T) {
	tests := []struct {
		name   string
		deps   func(*Deps)
		status string
	}{
		{"all up", func(*Deps) {}, "healthy"},
		{"broker down", func(d *Deps) { d.Broker = apitest.Broker{} }, "degraded"},
		{"store down", func(d *Deps) { d.Store = apitest.Pinger{Err: apitest.ErrBoom} }, "unhealthy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.deps)
			if r := f.Do(t, "GET", "/api/v1/health", "", nil); r.Body["status"] != tc.status {
				t.Fatalf("health: %s", r.Raw)
			}
			r := f.Do(t, "GET", "/api/v1/health/detailed", apitest.ViewerToken, nil)
			if r.Status != 200 || r.Body["status"] != tc.status {
				t.Fatalf("detailed: %s", r.Raw)
			}
		})
	}
}

type queueDepths map[string]int

func (q queueDepths) QueueDepths() map[string]int { return q }

func TestDetailedHealthMeasuresComponents(t *testing.T) {
	dir := t.TempDir()
	main, control := filepath.Join(dir, "kaiser.db"), filepath.Join(dir, "control.db")
	for path, size := range map[string]int{main: 4096, main + "-wal": 100, control: 2048} {
		if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f := newFixture(t, func(d *Deps) { d.DBFiles = []string{main, control, filepath.Join(dir, "gone.db")} })
	r := f.Do(t, "GET", "/api/v1/health/detailed", apitest.ViewerToken, nil)
	db, mq := r.Obj("database"), r.Obj("mqtt")
	if db["pool_size"] != 4.0 || db["pool_idle"] != 3.0 || db["connected"] != true {
		t.Fatalf("database: %v", db)
	}
	if mq["messages_received"] != 42.0 || mq["last_message_at"] != "2026-01-05T10:00:00.000Z" ||
		mq["messages_published"] != 0.0 {
		t.Fatalf("mqtt: %v", mq)
	}
	files := r.Obj("database")["files"].([]any)
	wantFiles := []string{
		`{"name":"kaiser.db","size_bytes":4096,"wal_size_bytes":100}`,
		`{"name":"control.db","size_bytes":2048,"wal_size_bytes":0}`,
		`{"name":"gone.db","size_bytes":null,"wal_size_bytes":0}`,
	}
	for i, want := range wantFiles {
		if got, _ := json.Marshal(files[i]); string(got) != want {
			t.Errorf("file %d: %s, want %s", i, got, want)
		}
	}
	if db["size_bytes"] != 6244.0 || strings.Contains(r.Raw, dir) {
		t.Fatalf("database size (or a path revealed): %s", r.Raw)
	}
	in := r.Obj("ingest")
	if in["messages_per_second"] != 12.5 || in["rate_window_seconds"] != 10.0 {
		t.Fatalf("ingest rate: %v", in)
	}
	if got, _ := json.Marshal(in["dropped"]); string(got) != `{"not_approved":2,"oversize":1}` {
		t.Fatalf("ingest drops: %s", got)
	}
	if got, _ := json.Marshal(in["queue_depths"]); string(got) != `{"ingest":3,"store_main":1}` {
		t.Fatalf("queue depths: %s", got)
	}
	if len(r.Items("components")) != 2 || r.Obj("system")["goroutines"].(float64) < 1 {
		t.Fatalf("components/system: %s", r.Raw)
	}
	if _, ok := r.Body["websocket"].(map[string]any)["active_connections"]; !ok {
		t.Fatalf("websocket stats: %s", r.Raw)
	}
}

func TestFleetHealthCountsAndAverages(t *testing.T) {
	a, b := apitest.Dev("ESP_A00001", "online"), apitest.Dev("ESP_A00002", "offline")
	a.Metadata["last_heap_free"], a.Metadata["last_wifi_rssi"] = 1000.0, -60.0
	b.Metadata["last_heap_free"] = int64(3000)
	f := newFixture(t, nil, a, b, apitest.Dev("ESP_A00003", "error"), apitest.Dev("ESP_A00004", "unknown"),
		apitest.Dev("ESP_A00005", "pending_approval"), apitest.Dev("ESP_A00006", "rejected"))

	r := f.Do(t, "GET", "/api/v1/health/esp", apitest.ViewerToken, nil)
	want := map[string]float64{
		"total_devices": 4,
		"online_count":  1,
		"offline_count": 1,
		"error_count":   1,
		"unknown_count": 1,
		"pending_count": 1,
		"avg_heap_free": 2000,
		"avg_wifi_rssi": -60,
	}
	for k, v := range want {
		if r.Body[k] != v {
			t.Errorf("%s = %v, want %v", k, r.Body[k], v)
		}
	}
	if len(r.Items("devices")) != 4 {
		t.Fatalf("devices: %s", r.Raw)
	}

	empty := newFixture(t, nil)
	r = empty.Do(t, "GET", "/api/v1/health/esp", apitest.ViewerToken, nil)
	if r.Body["avg_heap_free"] != nil || r.Items("devices") == nil {
		t.Fatalf("no devices: %s", r.Raw)
	}
}

// Before the pipeline exists its rate cannot be measured: null, not 0.
func TestDetailedHealthWithoutIngest(t *testing.T) {
	f := apitest.NewWith(t, func(d *api.Deps) { d.Ingest = nil })
	Register(f.Srv, Deps{Store: apitest.Pinger{}, Devices: f.Devices})
	r := f.Do(t, "GET", "/api/v1/health/detailed", apitest.ViewerToken, nil)
	in := r.Obj("ingest")
	if r.Status != 200 || in["messages_per_second"] != nil || len(in["dropped"].(map[string]any)) != 0 ||
		len(in["queue_depths"].(map[string]any)) != 0 {
		t.Fatalf("without ingest: %s", r.Raw)
	}
}
