package api

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

func dev(id, status string) device.Device {
	d := device.Device{Device: store.Device{DeviceID: id, Status: status, KaiserID: "god"}}
	d.Metadata = map[string]any{}
	return d
}

func fleet(n int, status string) []device.Device {
	var out []device.Device
	for i := range n {
		out = append(out, dev(fmt.Sprintf("ESP_%06X", i), status))
	}
	return out
}

// API §1.7: pages past the end are empty with correct meta; pending devices
// stay out of the default list.
func TestDeviceListPaginates(t *testing.T) {
	f := newFixture(t, append(fleet(5, device.StatusOnline), dev("ESP_PEND01", device.StatusPending))...)
	tests := []struct {
		query         string
		ids           int
		pages         float64
		next, prev    bool
		firstDeviceID string
	}{
		{"?page_size=2", 2, 3, true, false, "ESP_000000"},
		{"?page_size=2&page=3", 1, 3, false, true, "ESP_000004"},
		{"?page_size=2&page=9", 0, 3, false, true, ""},
		{"?status=pending_approval", 1, 1, false, false, "ESP_PEND01"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			r := f.do(t, "GET", "/api/v1/esp/devices"+tc.query, viewerToken, nil)
			data, meta := r.items("data"), r.obj("pagination")
			if r.status != 200 || len(data) != tc.ids || meta["total_pages"] != tc.pages ||
				meta["has_next"] != tc.next || meta["has_prev"] != tc.prev {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			if tc.ids > 0 && data[0].(map[string]any)["device_id"] != tc.firstDeviceID {
				t.Fatalf("first %v", data[0])
			}
		})
	}
	for _, q := range []string{"?page_size=500", "?page=0", "?status=sleeping"} {
		if r := f.do(t, "GET", "/api/v1/esp/devices"+q, viewerToken, nil); r.status != 422 {
			t.Errorf("%s: %d", q, r.status)
		}
	}
}

func TestDeviceObjectShape(t *testing.T) {
	d := dev("ESP_A1B2C3", device.StatusOnline)
	seen := time.Date(2026, 1, 5, 10, 0, 0, 123e6, time.UTC)
	d.LastSeen, d.Name = &seen, "Greenhouse"
	d.Metadata = map[string]any{"capabilities": map[string]any{"adc": true}, "mac_address": "AA:BB:CC:DD:EE:FF",
		"is_zone_master": true, "last_uptime": 130.0}
	f := newFixture(t, d)
	f.sensors.configs = []sensor.Config{sensorOn("ESP_A1B2C3", 34, "ph")}

	r := f.do(t, "GET", "/api/v1/esp/devices/ESP_A1B2C3", viewerToken, nil)
	b := r.body
	if b["name"] != "Greenhouse" || b["zone_id"] != nil || b["last_seen"] != "2026-01-05T10:00:00.123Z" ||
		b["mac_address"] != "AA:BB:CC:DD:EE:FF" || b["is_zone_master"] != true || b["sensor_count"] != 1.0 {
		t.Fatalf("%s", r.raw)
	}
	if r.obj("capabilities")["adc"] != true || r.obj("metadata")["capabilities"] != nil {
		t.Fatalf("capabilities belong beside the metadata, not in it: %s", r.raw)
	}
}

func TestDeviceLookupValidatesThenFinds(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "GET", "/api/v1/esp/devices/bad%20id", viewerToken, nil); r.status != 422 {
		t.Fatalf("bad id: %d", r.status)
	}
	r := f.do(t, "GET", "/api/v1/esp/devices/ESP_NOPE01", viewerToken, nil)
	if r.status != 404 || r.code() != "ESP_NOT_FOUND" || r.obj("error")["details"].(map[string]any)["esp_id"] != "ESP_NOPE01" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

func TestRegisterDevice(t *testing.T) {
	f := newFixture(t)
	body := map[string]any{"device_id": "ESP_NEW001", "name": " Bed 1 ", "mac_address": "AA:BB:CC:DD:EE:01",
		"ip_address": "10.0.0.7", "capabilities": map[string]any{"i2c": true}}
	r := f.do(t, "POST", "/api/v1/esp/devices", operatorToken, body)
	if r.status != 201 || r.body["device_id"] != "ESP_NEW001" || r.body["name"] != "Bed 1" ||
		r.body["firmware_version"] != "unknown" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if !slices.Contains(f.audit.events(), "device_registered") {
		t.Fatal("not audited")
	}

	tests := []struct {
		name   string
		body   map[string]any
		status int
		code   string
		errors []string
	}{
		{"same id", map[string]any{"device_id": "ESP_NEW001"}, 409, "DUPLICATE_ESP", nil},
		{"same MAC", map[string]any{"device_id": "ESP_NEW002", "mac_address": "AA:BB:CC:DD:EE:01"}, 409, "DUPLICATE", nil},
		{"bad fields", map[string]any{"device_id": "x y", "ip_address": "300.1.1.1", "mac_address": "nope"}, 422,
			"VALIDATION_ERROR", []string{"body.device_id: string_pattern_mismatch", "body.mac_address: string_pattern_mismatch",
				"body.ip_address: value_error"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "POST", "/api/v1/esp/devices", operatorToken, tc.body)
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			if tc.errors != nil && !slices.Equal(r.fieldErrors(), tc.errors) {
				t.Fatalf("errors %v", r.fieldErrors())
			}
		})
	}
}

// A PATCH changes what it names; null clears is_zone_master, absent keeps it.
func TestPatchDeviceTellsAbsentFromNull(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		master *bool
	}{
		{"absent", `{"name": "n"}`, nil},
		{"null", `{"is_zone_master": null}`, new(bool)},
		{"true", `{"is_zone_master": true}`, ptr(true)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, dev("ESP_A1B2C3", device.StatusOnline))
			if r := f.do(t, "PATCH", "/api/v1/esp/devices/ESP_A1B2C3", operatorToken, tc.body); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			got := f.devices.patches[0].IsZoneMaster
			if (got == nil) != (tc.master == nil) || got != nil && *got != *tc.master {
				t.Fatalf("IsZoneMaster = %v", got)
			}
		})
	}

	f := newFixture(t, dev("ESP_A1B2C3", device.StatusOnline))
	r := f.do(t, "PATCH", "/api/v1/esp/devices/ESP_A1B2C3", operatorToken, `{"metadata": {"capabilities": {}}}`)
	if !slices.Equal(r.fieldErrors(), []string{"body.metadata: value_error"}) {
		t.Fatalf("capabilities in metadata: %s", r.raw)
	}
	r = f.do(t, "PATCH", "/api/v1/esp/devices/ESP_A1B2C3", operatorToken, `{"capabilities": {"adc": 1}}`)
	if p := f.devices.patches[0]; r.status != 200 || !p.SetCapabilities || p.Capabilities["adc"] != 1.0 {
		t.Fatalf("capabilities not set: %+v %s", p, r.raw)
	}
}

func ptr[T any](v T) *T { return &v }

func TestApprovalTransitions(t *testing.T) {
	f := newFixture(t, dev("ESP_PEND01", device.StatusPending), dev("ESP_PEND02", device.StatusPending),
		dev("ESP_LIVE01", device.StatusOnline))

	r := f.do(t, "POST", "/api/v1/esp/devices/ESP_PEND01/approve", operatorToken, map[string]any{"name": "Bed"})
	if r.status != 200 || r.body["status"] != "approved" || r.body["approved_by"] != "operator" {
		t.Fatalf("approve: %d %s", r.status, r.raw)
	}
	if r := f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/approve", operatorToken, nil); r.status != 409 ||
		r.code() != "INVALID_STATE" {
		t.Fatalf("approve online: %d %s", r.status, r.raw)
	}

	if r := f.do(t, "POST", "/api/v1/esp/devices/ESP_PEND02/reject", operatorToken, nil); !slices.Equal(r.fieldErrors(),
		[]string{"body.reason: missing"}) {
		t.Fatalf("reject needs a reason: %s", r.raw)
	}
	r = f.do(t, "POST", "/api/v1/esp/devices/ESP_PEND02/reject", operatorToken, map[string]any{"reason": "unknown"})
	if r.status != 200 || r.body["status"] != "rejected" || r.body["rejection_reason"] != "unknown" {
		t.Fatalf("reject: %s", r.raw)
	}
	r = f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/set-pending", operatorToken, nil)
	if _, has := r.body["rejection_reason"]; r.status != 200 || r.body["status"] != "pending_approval" || has {
		t.Fatalf("set-pending: %s", r.raw)
	}
	want := []string{"device_approved", "device_rejected", "device_set_pending"}
	if got := f.audit.events(); !slices.Equal(got, want) {
		t.Fatalf("audit %v", got)
	}
}

func TestPendingAndDiscovery(t *testing.T) {
	found := time.Now().Add(-time.Minute)
	old := time.Now().Add(-2 * time.Hour)
	p1, p2 := dev("ESP_PEND01", device.StatusPending), dev("ESP_PEND02", device.StatusPending)
	p1.DiscoveredAt, p2.DiscoveredAt = &found, &old
	p1.Metadata["reported_zone_id"], p1.Metadata["last_heap_free"] = "z1", 1234.0
	f := newFixture(t, p1, p2, dev("ESP_LIVE01", device.StatusOnline))

	r := f.do(t, "GET", "/api/v1/esp/devices/pending", viewerToken, nil)
	first := r.items("devices")[0].(map[string]any)
	if r.body["count"] != 2.0 || first["zone_id"] != "z1" || first["heap_free"] != 1234.0 {
		t.Fatalf("pending: %s", r.raw)
	}
	r = f.do(t, "GET", "/api/v1/esp/discovery", viewerToken, nil)
	if r.body["discovered_count"] != 2.0 || r.body["new_count"] != 1.0 {
		t.Fatalf("discovery: %s", r.raw)
	}
}

func TestDeleteRestartResetAndHealth(t *testing.T) {
	d := dev("ESP_LIVE01", device.StatusOnline)
	d.Metadata["last_uptime"] = 3725.0
	f := newFixture(t, d)
	f.sensors.configs = []sensor.Config{sensorOn("ESP_LIVE01", 34, "ph")}

	if r := f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/restart", operatorToken, nil); r.status != 409 ||
		r.code() != "NOT_SUPPORTED_BY_FIRMWARE" {
		t.Fatalf("restart: %s", r.raw)
	}
	if r := f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/assign_kaiser", operatorToken, nil); r.status != 501 {
		t.Fatalf("assign_kaiser: %d", r.status)
	}
	if r := f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/reset", operatorToken, nil); r.code() != "CONFIRMATION_REQUIRED" {
		t.Fatalf("reset without confirm: %s", r.raw)
	}
	if r := f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/reset", operatorToken,
		map[string]any{"confirm": true, "preserve_wifi": true}); r.status != 422 {
		t.Fatalf("reset keeping Wi-Fi: %s", r.raw)
	}
	if r := f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/reset", operatorToken,
		map[string]any{"confirm": true}); r.status != 200 || r.body["command_sent"] != true {
		t.Fatalf("reset: %s", r.raw)
	}
	f.devices.resetErr = errBoom
	if r := f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/reset", operatorToken,
		map[string]any{"confirm": true}); r.status != 503 || r.code() != "MQTT_UNAVAILABLE" {
		t.Fatalf("reset, broker refusing: %s", r.raw)
	}
	f.devices.resetErr = device.ErrOffline
	if r := f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/reset", operatorToken,
		map[string]any{"confirm": true}); r.status != 409 || r.code() != "DEVICE_OFFLINE" {
		t.Fatalf("reset offline: %s", r.raw)
	}

	r := f.do(t, "GET", "/api/v1/esp/devices/ESP_LIVE01/health", viewerToken, nil)
	if r.body["uptime_formatted"] != "0d 1h 2m" || r.obj("metrics")["uptime"] != 3725.0 || r.obj("counters")["received"] != 7.0 {
		t.Fatalf("health: %s", r.raw)
	}

	if r := f.do(t, "DELETE", "/api/v1/esp/devices/ESP_LIVE01", operatorToken, nil); r.status != 204 || r.raw != "" {
		t.Fatalf("delete: %d %q", r.status, r.raw)
	}
	if len(f.sensors.configs) != 0 || !slices.Contains(f.audit.events(), "device_deleted") {
		t.Fatal("delete left sensor configs or no audit entry")
	}
	if r := f.do(t, "DELETE", "/api/v1/esp/devices/ESP_LIVE01", operatorToken, nil); r.status != 404 {
		t.Fatalf("second delete: %d", r.status)
	}
}

func TestDeviceErrorsMapToCodes(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{device.ErrNotFound, 404, "ESP_NOT_FOUND"},
		{device.ErrInvalidState, 409, "INVALID_STATE"},
		{device.ErrDuplicate, 409, "DUPLICATE_ESP"},
		{device.ErrNotApproved, 409, "DEVICE_NOT_APPROVED"},
		{device.ErrOffline, 409, "DEVICE_OFFLINE"},
		{errBoom, 500, "INTERNAL_ERROR"},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			f := newFixture(t)
			rec, req := recorder("GET", "/")
			f.srv.DeviceError(rec, req, "ESP_X", tc.err)
			if r := decodeResponse(t, rec); r.status != tc.status || r.code() != tc.code {
				t.Fatalf("%d %s", r.status, r.raw)
			}
		})
	}
}
