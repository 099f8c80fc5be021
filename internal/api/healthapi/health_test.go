package healthapi

import (
	"testing"

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

func TestDetailedHealthMeasuresComponents(t *testing.T) {
	f := newFixture(t, nil)
	r := f.Do(t, "GET", "/api/v1/health/detailed", apitest.ViewerToken, nil)
	db, mq := r.Obj("database"), r.Obj("mqtt")
	if db["pool_size"] != 4.0 || db["pool_idle"] != 3.0 || db["connected"] != true {
		t.Fatalf("database: %v", db)
	}
	if mq["messages_received"] != 42.0 || mq["last_message_at"] != "2026-01-05T10:00:00.000Z" ||
		mq["messages_published"] != 0.0 {
		t.Fatalf("mqtt: %v", mq)
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
