package sensorapi

import (
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sensor/processor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// newFixture is the HTTP core with the sensor routes over fakes; the device
// registry holds ds.
func newFixture(t *testing.T, ds ...device.Device) *apitest.Fixture {
	f := apitest.New(t, ds...)
	Register(f.Srv, Deps{Sensors: f.Sensors, Devices: f.Devices, Audit: f.Audit})
	return f
}

func TestUpsertSensorValidatesAgainstThePath(t *testing.T) {
	f := newFixture(t, apitest.Dev("ESP_LIVE01", device.StatusOnline))
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"path mismatch", `{"sensor_type": "ph", "esp_id": "ESP_OTHER", "gpio": 35.0}`,
			[]string{"body.esp_id: value_error", "body.gpio: value_error"}},
		{"device-bound name", `{"sensor_type": "ph", "name": "a\"b"}`, []string{"body.name: value_error"}},
		{"crossed thresholds",
			`{"sensor_type": "ph", "threshold_min": 5, "threshold_max": 1, "warning_min": 3, "warning_max": 2}`,
			[]string{"body.threshold_min: value_error", "body.warning_min: value_error"}},
		{"enums and subzone", `{"sensor_type": "ph", "processing_mode": "magic", "operating_mode": "x", "subzone_id": "a-b"}`,
			[]string{"body.processing_mode: enum", "body.operating_mode: enum", "body.subzone_id: string_pattern_mismatch"}},
		{"bounds", `{"sensor_type": "", "interval_ms": 10, "i2c_address": 200, "onewire_address": "12"}`,
			[]string{"body.sensor_type: string_too_short", "body.interval_ms: greater_than_equal",
				"body.i2c_address: less_than_equal", "body.onewire_address: string_too_short"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.Do(t, "POST", "/api/v1/sensors/ESP_LIVE01/34", apitest.OperatorToken, tc.body)
			if got := r.FieldErrors(); r.Status != 422 || !slices.Equal(got, tc.want) {
				t.Fatalf("%d %v", r.Status, got)
			}
		})
	}
}

func TestUpsertSensorStoresPushesAndAudits(t *testing.T) {
	f := newFixture(t, apitest.Dev("ESP_LIVE01", device.StatusOnline))
	body := `{"sensor_type": "ph", "esp_id": "ESP_LIVE01", "gpio": 4, "interval_ms": 5000.0, "threshold_min": 1,
		"calibration": {"slope": 2}, "subzone_id": "bed_1"}`
	r := f.Do(t, "POST", "/api/v1/sensors/ESP_LIVE01/4", apitest.OperatorToken, body)
	if r.Status != 200 || r.Body["config_sent"] != true || r.Body["interval_ms"] != 5000.0 || r.Body["enabled"] != true ||
		r.Body["esp_id"] != "uuid-ESP_LIVE01" || r.Body["esp_device_id"] != "ESP_LIVE01" || r.Body["subzone_id"] != "bed_1" {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	if w := r.Items("warnings"); len(w) != 1 {
		t.Fatalf("warning of the domain not passed on: %s", r.Raw)
	}
	c := f.Sensors.Configs[0]
	if c.GPIO != 4 || *c.ThresholdMin != 1 || c.Calibration["slope"] != 2.0 {
		t.Fatalf("stored %+v", c)
	}
	if !slices.Equal(f.Devices.Pushes, []string{"ESP_LIVE01:config_change"}) {
		t.Fatalf("pushes %v", f.Devices.Pushes)
	}
	if !slices.Contains(f.Audit.Events(), "config_published") {
		t.Fatal("not audited")
	}

	f.Sensors.UpsertErr = &sensor.PinError{Conflict: true, Type: "sensor_vs_actuator", Msg: "pin taken"}
	r = f.Do(t, "POST", "/api/v1/sensors/ESP_LIVE01/5", apitest.OperatorToken, `{"sensor_type": "ph"}`)
	if r.Status != 409 || r.Code() != "GPIO_CONFLICT" {
		t.Fatalf("conflict: %s", r.Raw)
	}
	f.Sensors.UpsertErr = nil
	f.Devices.PushErr = device.ErrConfigTooLarge
	r = f.Do(t, "POST", "/api/v1/sensors/ESP_LIVE01/6", apitest.OperatorToken, `{"sensor_type": "ph"}`)
	if r.Status != 400 || r.Code() != "CONFIG_TOO_LARGE" {
		t.Fatalf("too large: %s", r.Raw)
	}
}

func TestSensorLookups(t *testing.T) {
	f := newFixture(t, apitest.Dev("ESP_LIVE01", device.StatusOnline))
	ph, ec := apitest.SensorOn("ESP_LIVE01", 34, "ph"), apitest.SensorOn("ESP_LIVE01", 34, "ec")
	ec.ID = "22222222-0000-0000-0000-000000000034"
	f.Sensors.Configs = []sensor.Config{ph, ec, apitest.SensorOn("ESP_LIVE01", 35, "moisture")}
	processed := 7.1
	f.Sensors.Values = []sensor.LatestValue{{
		Key: store.SeriesKey{EspID: "ESP_LIVE01", GPIO: 35, SensorType: "moisture"},
		Reading: store.Reading{
			Raw:       2000,
			Processed: &processed,
			Quality:   "good",
			TS:        time.Now().UnixMilli(),
		},
	}}

	if r := f.Do(t, "GET", "/api/v1/sensors/ESP_LIVE01/34", apitest.ViewerToken, nil); r.Status != 409 ||
		r.Code() != "AMBIGUOUS_SENSOR" || len(r.Obj("error")["details"].(map[string]any)["candidates"].([]any)) != 2 {
		t.Fatalf("ambiguous: %s", r.Raw)
	}
	if r := f.Do(t, "GET", "/api/v1/sensors/ESP_LIVE01/34?sensor_type=ec", apitest.ViewerToken, nil); r.Body["id"] !=
		ec.ID {
		t.Fatalf("selected: %s", r.Raw)
	}
	if r := f.Do(t, "GET", "/api/v1/sensors/ESP_LIVE01/35", apitest.ViewerToken, nil); r.Body["latest_value"] != 7.1 ||
		r.Body["latest_quality"] != "good" {
		t.Fatalf("latest reading: %s", r.Raw)
	}
	for path, status := range map[string]int{
		"/api/v1/sensors/ESP_LIVE01/36":                                   404,
		"/api/v1/sensors/ESP_LIVE01/40":                                   422,
		"/api/v1/sensors/ESP_LIVE01/34?i2c_address=7":                     422,
		"/api/v1/sensors/config/not-a-uuid":                               422,
		"/api/v1/sensors/config/99999999-0000-0000-0000-000000000000":     404,
		"/api/v1/sensors/config/" + ph.ID:                                 200,
		"/api/v1/sensors?esp_id=ESP_NOPE01":                               404,
		"/api/v1/sensors?esp_id=ESP_LIVE01&sensor_type=PH&enabled=true":   200,
		"/api/v1/sensors/data/latest?esp_id=ESP_LIVE01&gpio=35&zone_id=z": 200,
	} {
		if r := f.Do(t, "GET", path, apitest.ViewerToken, nil); r.Status != status {
			t.Errorf("%s: %d %s", path, r.Status, r.Raw)
		}
	}
	if r := f.Do(t, "GET", "/api/v1/sensors?sensor_type=PH", apitest.ViewerToken, nil); len(r.Items("data")) != 1 {
		t.Fatalf("type filter: %s", r.Raw)
	}
	r := f.Do(t, "GET", "/api/v1/sensors/data/latest", apitest.ViewerToken, nil)
	row := r.Items("data")[0].(map[string]any)
	if row["value"] != 7.1 || row["raw_value"] != 2000.0 || row["stale"] != false {
		t.Fatalf("latest: %s", r.Raw)
	}

	r = f.Do(t, "DELETE", "/api/v1/sensors/config/"+ph.ID, apitest.OperatorToken, nil)
	if r.Status != 200 || r.Body["sensor_type"] != "ph" || len(f.Sensors.Configs) != 2 {
		t.Fatalf("delete by id: %s", r.Raw)
	}
	if r := f.Do(t, "DELETE", "/api/v1/sensors/ESP_LIVE01/35", apitest.OperatorToken, nil); r.Status != 200 ||
		len(f.Sensors.Configs) != 1 {
		t.Fatalf("delete by pin: %s", r.Raw)
	}
}

func TestSensorHistoryQuery(t *testing.T) {
	f := newFixture(t, apitest.Dev("ESP_LIVE01", device.StatusOnline))
	next := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	f.Sensors.History = sensor.History{
		Resolution:    "5m",
		BucketSeconds: 300,
		HasMore:       true,
		NextCursor:    &next,
	}

	r := f.Do(t, "GET", "/api/v1/sensors/data?esp_id=ESP_LIVE01&gpio=34&resolution=5m&order=asc"+
		"&start_time=2026-01-04T00:00:00Z&end_time=2026-01-05T00:00:00Z", apitest.ViewerToken, nil)
	q := f.Sensors.LastQuery
	if r.Status != 200 || q.GPIO != 34 || !q.Asc || q.Limit != 1000 || q.Resolution != "5m" {
		t.Fatalf("%+v %s", q, r.Raw)
	}
	if r.Obj("aggregation")["bucket_seconds"] != 300.0 || r.Body["next_cursor"] != "2026-01-05T09:00:00.000Z" ||
		r.Obj("time_range")["start"] != "2026-01-04T00:00:00.000Z" || len(r.Items("readings")) != 0 ||
		r.Items("readings") == nil {
		t.Fatalf("%s", r.Raw)
	}

	r = f.Do(t, "GET", "/api/v1/sensors/data", apitest.ViewerToken, nil)
	if q := f.Sensors.LastQuery; r.Body["gpio"] != nil || q.GPIO != -1 || q.Limit != 100 ||
		q.End.Sub(q.Start) != 24*time.Hour {
		t.Fatalf("defaults %+v %s", q, r.Raw)
	}

	r = f.Do(t, "GET", "/api/v1/sensors/data?resolution=7s&order=up&start_time=2026-01-05&end_time=2026-01-04",
		apitest.ViewerToken, nil)
	want := []string{"query.start_time: value_error", "query.resolution: enum", "query.order: enum"}
	if got := r.FieldErrors(); !slices.Equal(got, want) {
		t.Fatalf("errors %v", got)
	}
	f.Sensors.QueryErr = apitest.ErrBoom
	if r := f.Do(t, "GET", "/api/v1/sensors/data", apitest.ViewerToken, nil); r.Status != 500 {
		t.Fatalf("store failure: %d", r.Status)
	}
}

func TestSensorTypesAndProcessingHealth(t *testing.T) {
	f := newFixture(t)
	r := f.Do(t, "GET", "/api/v1/sensors/types", apitest.ViewerToken, nil)
	procs := r.Items("processors")
	if r.Body["count"] != float64(len(processor.Keys)) || len(procs) != len(processor.Keys) {
		t.Fatalf("%s", r.Raw)
	}
	for _, p := range procs {
		if len(p.(map[string]any)["calibration_fields"].([]any)) == 0 {
			t.Fatalf("processor without calibration fields: %v", p)
		}
	}
	r = f.Do(t, "GET", "/api/v1/sensors/health", "", nil)
	if r.Body["processors_loaded"] != float64(len(processor.Keys)) {
		t.Fatalf("health: %s", r.Raw)
	}
}

func TestCalibrate(t *testing.T) {
	f := newFixture(t, apitest.Dev("ESP_LIVE01", device.StatusOnline))
	f.Sensors.Configs = []sensor.Config{apitest.SensorOn("ESP_LIVE01", 34, "ph")}
	points := []map[string]any{{"raw": 1000, "reference": 4}, {"raw": 2000.0, "reference": 7}}

	r := f.Do(t, "POST", "/api/v1/sensors/calibrate", apitest.OperatorToken, map[string]any{
		"esp_id":             "ESP_LIVE01",
		"gpio":               34,
		"sensor_type":        "ph",
		"calibration_points": points,
	})
	if r.Status != 200 || r.Body["saved"] != true || r.Body["method"] != "linear" {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	if f.Sensors.Saved[f.Sensors.Configs[0].ID] == nil || !slices.Contains(f.Audit.Events(), "config_published") {
		t.Fatal("calibration not stored or not audited")
	}

	tests := []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"no processor", map[string]any{
			"esp_id":             "ESP_LIVE01",
			"gpio":               34,
			"sensor_type":        "nope",
			"calibration_points": points,
		}, 404, "PROCESSOR_NOT_FOUND"},
		{"wrong method", map[string]any{
			"esp_id":             "ESP_LIVE01",
			"gpio":               34,
			"sensor_type":        "ph",
			"method":             "offset",
			"calibration_points": points,
		}, 400, "CALIBRATION_FAILED"},
		{"degenerate points", map[string]any{
			"esp_id":             "ESP_LIVE01",
			"gpio":               34,
			"sensor_type":        "ph",
			"calibration_points": []map[string]any{{"raw": 1, "reference": 4}, {"raw": 1, "reference": 7}},
		}, 400, "CALIBRATION_FAILED"},
		{"no sensor to save to", map[string]any{
			"esp_id":             "ESP_LIVE01",
			"gpio":               35,
			"sensor_type":        "ph",
			"calibration_points": points,
		}, 404, "SENSOR_NOT_FOUND"},
		{"points missing", map[string]any{"esp_id": "ESP_LIVE01", "gpio": 35, "sensor_type": "ph"}, 422, "VALIDATION_ERROR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := f.Do(t, "POST", "/api/v1/sensors/calibrate", apitest.OperatorToken, tc.body); r.Status != tc.status ||
				r.Code() != tc.code {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
		})
	}
	r = f.Do(t, "POST", "/api/v1/sensors/calibrate", apitest.OperatorToken, map[string]any{
		"esp_id":             "ESP_LIVE01",
		"gpio":               34,
		"sensor_type":        "ph",
		"save_to_config":     false,
		"calibration_points": points,
	})
	if r.Status != 200 || r.Body["saved"] != false {
		t.Fatalf("compute only: %s", r.Raw)
	}
}

func TestResendConfig(t *testing.T) {
	f := newFixture(t, apitest.Dev("ESP_LIVE01", device.StatusOnline))
	r := f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/config", apitest.OperatorToken, `{"wifi_ssid": "x", "zone": 1}`)
	if got := r.FieldErrors(); !slices.Equal(got, []string{"body.wifi_ssid: value_error"}) {
		t.Fatalf("device settings: %v", got)
	}
	r = f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/config", apitest.OperatorToken, nil)
	if r.Status != 200 || r.Body["correlation_id"] != "corr-1" || r.Body["config_sent"] != true {
		t.Fatalf("%s", r.Raw)
	}
	for err, code := range map[error]string{device.ErrConfigTooLarge: "CONFIG_TOO_LARGE",
		device.ErrNotApproved: "DEVICE_NOT_APPROVED", apitest.ErrBoom: "MQTT_UNAVAILABLE"} {
		f.Devices.PushErr = err
		if r := f.Do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/config", apitest.OperatorToken, nil); r.Code() != code {
			t.Errorf("%v: %s", err, r.Raw)
		}
	}

	deaf := apitest.Dev("ESP_DEAF01", device.StatusOnline)
	deaf.SubscriptionsLost = true // docs/protocol.md B3, with an external broker
	f = newFixture(t, deaf)
	r = f.Do(t, "POST", "/api/v1/esp/devices/ESP_DEAF01/config", apitest.OperatorToken, nil)
	if r.Code() != "DEVICE_UNREACHABLE" || r.Status != 409 || !strings.Contains(r.Raw, `"reason":"subscriptions_lost"`) {
		t.Fatalf("a device that lost its subscriptions: %s", r.Raw)
	}
}

// The firmware parses the processing reply by substring search: one compact
// line, CRLF CRLF, counted in Content-Length.
func TestProcessReplyIsByteExact(t *testing.T) {
	f := newFixture(t)
	f.Sensors.Reply = sensor.ProcessReply{Value: 7.25, Unit: "pH", Quality: "good"}
	r := f.Do(t, "POST", "/api/v1/sensors/process", "", `{"esp_id": "ESP_LIVE01", "gpio": 34.0, "sensor_type": "ph",
		"raw_value": 2048, "raw_mode": true, "calibration": {"slope": 1}}`)
	if !strings.HasPrefix(r.Raw, `{"success":true,"processed_value":7.25,"unit":"pH","quality":"good","timestamp":`) ||
		!strings.HasSuffix(r.Raw, "}\r\n\r\n") || r.Header.Get("Content-Length") != strconv.Itoa(len(r.Raw)) {
		t.Fatalf("%q %v", r.Raw, r.Header)
	}
	req := f.Sensors.Processed[0]
	if req.GPIO != 34 || req.Raw != 2048 || req.RawMode == nil || !*req.RawMode || req.Calibration["slope"] != 1.0 ||
		req.Trusted {
		t.Fatalf("request %+v", req)
	}

	f.Srv.SetReady(false)
	r = f.Do(t, "POST", "/api/v1/sensors/process", "", `{"esp_id": "E", "gpio": 1, "sensor_type": "ph", "raw_value": 5}`)
	if !strings.Contains(r.Raw, `"quality":`) || f.Sensors.Counted[0] != "not_ready" {
		t.Fatalf("not ready: %q %v", r.Raw, f.Sensors.Counted)
	}
	for body, code := range map[string]int{`{"esp_id": "E", "gpio": 1.5, "sensor_type": "ph", "raw_value": 5}`: 400,
		`not json`: 400} {
		rec := httptest.NewRecorder()
		f.Srv.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/sensors/process", strings.NewReader(body)))
		if rec.Code != code || !strings.Contains(rec.Body.String(), "BAD_REQUEST") {
			t.Errorf("%s: %d %s", body, rec.Code, rec.Body.String())
		}
	}
	req2 := httptest.NewRequest("POST", "/api/v1/sensors/process",
		strings.NewReader(`{"esp_id": "E", "gpio": 1, "sensor_type": "ph", "raw_value": 5}`))
	req2.Header.Set("X-API-Key", "k")
	rec := httptest.NewRecorder()
	f.Srv.Handler().ServeHTTP(rec, req2)
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "INVALID_API_KEY") {
		t.Fatalf("api key: %d %s", rec.Code, rec.Body.String())
	}
}

func TestProcessTrustsAValidTokenAndLimitsPerDevice(t *testing.T) {
	f := newFixture(t)
	body := `{"esp_id": "ESP_RATE01", "gpio": 1, "sensor_type": "ph", "raw_value": 5}`
	r := f.Do(t, "POST", "/api/v1/sensors/process", apitest.ViewerToken, body)
	if r.Status != 200 || !f.Sensors.Processed[0].Trusted {
		t.Fatalf("token not trusted: %s", r.Raw)
	}
	for range 700 {
		f.Do(t, "POST", "/api/v1/sensors/process", "", body)
	}
	if !slices.Contains(f.Sensors.Counted, "rate_limited") {
		t.Fatal("no request was rate limited")
	}
}

// The OpenAPI document describes the calibration body with its bounds, and
// the processing call as a device route.
func TestSensorBodiesAreDocumented(t *testing.T) {
	f := newFixture(t)
	r := f.Do(t, "GET", "/api/v1/openapi.json", "", nil)
	schemas := r.Obj("components")["schemas"].(map[string]any)

	cal := schemas["CalibrateRequest"].(map[string]any)["properties"].(map[string]any)["calibration_points"]
	if cal.(map[string]any)["maxItems"] != 10.0 {
		t.Fatalf("array bounds: %v", cal)
	}
	process := r.Obj("paths")["/api/v1/sensors/process"].(map[string]any)["post"].(map[string]any)
	if process["x-min-role"] != "device" || len(process["security"].([]any)) != 2 {
		t.Fatalf("processing call: %v", process)
	}
}
