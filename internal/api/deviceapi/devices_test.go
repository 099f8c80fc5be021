package deviceapi

import (
	"slices"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
)

// newFixture serves the device routes; the registry holds ds.
func newFixture(t *testing.T, ds ...device.Device) *apitest.Fixture {
	f := apitest.New(t, ds...)
	Register(f.Srv, Deps{Devices: f.Devices, Sensors: f.Sensors, Audit: f.Audit})
	return f
}

// docs/api.md §1.7: pages past the end are empty with correct meta; pending devices
// stay out of the default list.
func TestDeviceListPaginates(t *testing.T) {
	f := newFixture(t, append(apitest.Fleet(5, device.StatusOnline), apitest.Dev("ESP_PEND01", device.StatusPending))...)
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
			r := f.Do(t, "GET", "/api/v1/esp/devices"+tc.query, apitest.ViewerToken, nil)
			data, meta := r.Items("data"), r.Obj("pagination")
			if r.Status != 200 || len(data) != tc.ids || meta["total_pages"] != tc.pages ||
				meta["has_next"] != tc.next || meta["has_prev"] != tc.prev {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
			if tc.ids > 0 && data[0].(map[string]any)["device_id"] != tc.firstDeviceID {
				t.Fatalf("first %v", data[0])
			}
		})
	}
	for _, q := range []string{"?page_size=500", "?page=0", "?status=sleeping"} {
		if r := f.Do(t, "GET", "/api/v1/esp/devices"+q, apitest.ViewerToken, nil); r.Status != 422 {
			t.Errorf("%s: %d", q, r.Status)
		}
	}
}

func TestDeviceObjectShape(t *testing.T) {
	d := apitest.Dev("ESP_A1B2C3", device.StatusOnline)
	seen := time.Date(2026, 1, 5, 10, 0, 0, 123e6, time.UTC)
	d.LastSeen, d.Name = &seen, "Greenhouse"
	d.Metadata = map[string]any{
		"capabilities":   map[string]any{"adc": true},
		"mac_address":    "AA:BB:CC:DD:EE:FF",
		"is_zone_master": true,
		"last_uptime":    130.0,
	}
	f := newFixture(t, d)
	f.Sensors.Configs = []sensor.Config{apitest.SensorOn("ESP_A1B2C3", 34, "ph")}

	r := f.Do(t, "GET", "/api/v1/esp/devices/ESP_A1B2C3", apitest.ViewerToken, nil)
	b := r.Body
	if b["name"] != "Greenhouse" || b["zone_id"] != nil || b["last_seen"] != "2026-01-05T10:00:00.123Z" ||
		b["mac_address"] != "AA:BB:CC:DD:EE:FF" || b["is_zone_master"] != true || b["sensor_count"] != 1.0 {
		t.Fatalf("%s", r.Raw)
	}
	if r.Obj("capabilities")["adc"] != true || r.Obj("metadata")["capabilities"] != nil {
		t.Fatalf("capabilities belong beside the metadata, not in it: %s", r.Raw)
	}
}

func TestDeviceLookupValidatesThenFinds(t *testing.T) {
	f := newFixture(t)
	if r := f.Do(t, "GET", "/api/v1/esp/devices/bad%20id", apitest.ViewerToken, nil); r.Status != 422 {
		t.Fatalf("bad id: %d", r.Status)
	}
	r := f.Do(t, "GET", "/api/v1/esp/devices/ESP_NOPE01", apitest.ViewerToken, nil)
	if r.Status != 404 || r.Code() != "ESP_NOT_FOUND" ||
		r.Obj("error")["details"].(map[string]any)["esp_id"] != "ESP_NOPE01" {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
}

func TestRegisterDevice(t *testing.T) {
	f := newFixture(t)
	body := map[string]any{
		"device_id":    "ESP_NEW001",
		"name":         " Bed 1 ",
		"mac_address":  "AA:BB:CC:DD:EE:01",
		"ip_address":   "10.0.0.7",
		"capabilities": map[string]any{"i2c": true},
	}
	r := f.Do(t, "POST", "/api/v1/esp/devices", apitest.OperatorToken, body)
	if r.Status != 201 || r.Body["device_id"] != "ESP_NEW001" || r.Body["name"] != "Bed 1" ||
		r.Body["firmware_version"] != "unknown" {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	if !slices.Contains(f.Audit.Events(), "device_registered") {
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
			r := f.Do(t, "POST", "/api/v1/esp/devices", apitest.OperatorToken, tc.body)
			if r.Status != tc.status || r.Code() != tc.code {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
			if tc.errors != nil && !slices.Equal(r.FieldErrors(), tc.errors) {
				t.Fatalf("errors %v", r.FieldErrors())
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
			f := newFixture(t, apitest.Dev("ESP_A1B2C3", device.StatusOnline))
			if r := f.Do(t, "PATCH", "/api/v1/esp/devices/ESP_A1B2C3", apitest.OperatorToken, tc.body); r.Status != 200 {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
			got := f.Devices.Patches[0].IsZoneMaster
			if (got == nil) != (tc.master == nil) || got != nil && *got != *tc.master {
				t.Fatalf("IsZoneMaster = %v", got)
			}
		})
	}

	f := newFixture(t, apitest.Dev("ESP_A1B2C3", device.StatusOnline))
	r := f.Do(t, "PATCH", "/api/v1/esp/devices/ESP_A1B2C3", apitest.OperatorToken, `{"metadata": {"capabilities": {}}}`)
	if !slices.Equal(r.FieldErrors(), []string{"body.metadata: value_error"}) {
		t.Fatalf("capabilities in metadata: %s", r.Raw)
	}
	r = f.Do(t, "PATCH", "/api/v1/esp/devices/ESP_A1B2C3", apitest.OperatorToken, `{"capabilities": {"adc": 1}}`)
	if p := f.Devices.Patches[0]; r.Status != 200 || !p.SetCapabilities || p.Capabilities["adc"] != 1.0 {
		t.Fatalf("capabilities not set: %+v %s", p, r.Raw)
	}
}

func ptr[T any](v T) *T { return &v }

func TestApprovalTransitions(t *testing.T) {
	f := newFixture(t, apitest.Dev("ESP_PEND01", device.StatusPending), apitest.Dev("ESP_PEND02", device.StatusPending),
		apitest.Dev("ESP_LIVE01", device.StatusOnline))

	r := f.Do(t, "POST", "/api/v1/esp/devices/ESP_PEND01/approve", apitest.OperatorToken, map[string]any{"name": "Bed"})
	if r.Status != 200 || r.Body["status"] != "approved" || r.Body["approved_by"] != "operator" {
		t.Fatalf("approve: %d %s", r.Status, r.Raw)
	}
	if r := f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/approve", apitest.OperatorToken, nil); r.Status != 409 ||
		r.Code() != "INVALID_STATE" {
		t.Fatalf("approve online: %d %s", r.Status, r.Raw)
	}

	r = f.Do(t, "POST", "/api/v1/esp/devices/ESP_PEND02/reject", apitest.OperatorToken, nil)
	if !slices.Equal(r.FieldErrors(), []string{"body.reason: missing"}) {
		t.Fatalf("reject needs a reason: %s", r.Raw)
	}
	r = f.Do(t, "POST", "/api/v1/esp/devices/ESP_PEND02/reject", apitest.OperatorToken,
		map[string]any{"reason": "unknown"})
	if r.Status != 200 || r.Body["status"] != "rejected" || r.Body["rejection_reason"] != "unknown" {
		t.Fatalf("reject: %s", r.Raw)
	}
	r = f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/set-pending", apitest.OperatorToken, nil)
	if _, has := r.Body["rejection_reason"]; r.Status != 200 || r.Body["status"] != "pending_approval" || has {
		t.Fatalf("set-pending: %s", r.Raw)
	}
	want := []string{"device_approved", "device_rejected", "device_set_pending"}
	if got := f.Audit.Events(); !slices.Equal(got, want) {
		t.Fatalf("audit %v", got)
	}
}

func TestPendingAndDiscovery(t *testing.T) {
	found := time.Now().Add(-time.Minute)
	old := time.Now().Add(-2 * time.Hour)
	p1, p2 := apitest.Dev("ESP_PEND01", device.StatusPending), apitest.Dev("ESP_PEND02", device.StatusPending)
	p1.DiscoveredAt, p2.DiscoveredAt = &found, &old
	p1.Metadata["reported_zone_id"], p1.Metadata["last_heap_free"] = "z1", 1234.0
	f := newFixture(t, p1, p2, apitest.Dev("ESP_LIVE01", device.StatusOnline))

	r := f.Do(t, "GET", "/api/v1/esp/devices/pending", apitest.ViewerToken, nil)
	first := r.Items("devices")[0].(map[string]any)
	if r.Body["count"] != 2.0 || first["zone_id"] != "z1" || first["heap_free"] != 1234.0 {
		t.Fatalf("pending: %s", r.Raw)
	}
	r = f.Do(t, "GET", "/api/v1/esp/discovery", apitest.ViewerToken, nil)
	if r.Body["discovered_count"] != 2.0 || r.Body["new_count"] != 1.0 {
		t.Fatalf("discovery: %s", r.Raw)
	}
}

func TestDeleteRestartResetAndHealth(t *testing.T) {
	d := apitest.Dev("ESP_LIVE01", device.StatusOnline)
	d.Metadata["last_uptime"] = 3725.0
	f := newFixture(t, d)
	f.Sensors.Configs = []sensor.Config{apitest.SensorOn("ESP_LIVE01", 34, "ph")}

	if r := f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/restart", apitest.OperatorToken, nil); r.Status != 409 ||
		r.Code() != "NOT_SUPPORTED_BY_FIRMWARE" {
		t.Fatalf("restart: %s", r.Raw)
	}
	if r := f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/assign_kaiser", apitest.OperatorToken, nil); r.Status != 501 {
		t.Fatalf("assign_kaiser: %d", r.Status)
	}
	unconfirmed := f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/reset", apitest.OperatorToken, nil)
	if unconfirmed.Code() != "CONFIRMATION_REQUIRED" {
		t.Fatalf("reset without confirm: %s", unconfirmed.Raw)
	}
	if r := f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/reset", apitest.OperatorToken,
		map[string]any{"confirm": true, "preserve_wifi": true}); r.Status != 422 {
		t.Fatalf("reset keeping Wi-Fi: %s", r.Raw)
	}
	if r := f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/reset", apitest.OperatorToken,
		map[string]any{"confirm": true}); r.Status != 200 || r.Body["command_sent"] != true {
		t.Fatalf("reset: %s", r.Raw)
	}
	f.Devices.ResetErr = apitest.ErrBoom
	if r := f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/reset", apitest.OperatorToken,
		map[string]any{"confirm": true}); r.Status != 503 || r.Code() != "MQTT_UNAVAILABLE" {
		t.Fatalf("reset, broker refusing: %s", r.Raw)
	}
	f.Devices.ResetErr = device.ErrOffline
	if r := f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/reset", apitest.OperatorToken,
		map[string]any{"confirm": true}); r.Status != 409 || r.Code() != "DEVICE_OFFLINE" {
		t.Fatalf("reset offline: %s", r.Raw)
	}

	r := f.Do(t, "GET", "/api/v1/esp/devices/ESP_LIVE01/health", apitest.ViewerToken, nil)
	if r.Body["uptime_formatted"] != "0d 1h 2m" || r.Obj("metrics")["uptime"] != 3725.0 ||
		r.Obj("counters")["received"] != 7.0 {
		t.Fatalf("health: %s", r.Raw)
	}

	if r := f.Do(t, "DELETE", "/api/v1/esp/devices/ESP_LIVE01", apitest.OperatorToken, nil); r.Status != 204 ||
		r.Raw != "" {
		t.Fatalf("delete: %d %q", r.Status, r.Raw)
	}
	if len(f.Sensors.Configs) != 0 || !slices.Contains(f.Audit.Events(), "device_deleted") {
		t.Fatal("delete left sensor configs or no audit entry")
	}
	if r := f.Do(t, "DELETE", "/api/v1/esp/devices/ESP_LIVE01", apitest.OperatorToken, nil); r.Status != 404 {
		t.Fatalf("second delete: %d", r.Status)
	}
}

// The OpenAPI document describes the bodies the device routes decode and write.
func TestDeviceBodiesAreDocumented(t *testing.T) {
	f := newFixture(t)
	r := f.Do(t, "GET", "/api/v1/openapi.json", "", nil)
	schemas := r.Obj("components")["schemas"].(map[string]any)

	reg := schemas["RegisterDeviceRequest"].(map[string]any)
	id := reg["properties"].(map[string]any)["device_id"].(map[string]any)
	if id["pattern"] != `^[A-Za-z0-9_-]{1,31}$` || id["maxLength"] != 31.0 || reg["required"].([]any)[0] != "device_id" {
		t.Fatalf("register request: %v", reg)
	}
	if _, required := schemas["PatchDeviceRequest"].(map[string]any)["required"]; required {
		t.Fatalf("a partial update requires nothing: %v", schemas["PatchDeviceRequest"])
	}
	page := schemas["PageOfDeviceResponse"].(map[string]any)["properties"].(map[string]any)["data"].(map[string]any)
	if page["items"].(map[string]any)["$ref"] != "#/components/schemas/DeviceResponse" {
		t.Fatalf("device page: %v", page)
	}
	name := schemas["DeviceResponse"].(map[string]any)["properties"].(map[string]any)["name"].(map[string]any)
	if typ := name["type"].([]any); typ[1] != "null" {
		t.Fatalf("nullable name: %v", typ)
	}
}
