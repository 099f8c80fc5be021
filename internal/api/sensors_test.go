package api

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sensor/processor"
	"github.com/kaiserhub/kaiser/internal/store"
)

func TestUpsertSensorValidatesAgainstThePath(t *testing.T) {
	f := newFixture(t, dev("ESP_LIVE01", device.StatusOnline))
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"path mismatch", `{"sensor_type": "ph", "esp_id": "ESP_OTHER", "gpio": 35.0}`,
			[]string{"body.esp_id: value_error", "body.gpio: value_error"}},
		{"device-bound name", `{"sensor_type": "ph", "name": "a\"b"}`, []string{"body.name: value_error"}},
		{"crossed thresholds", `{"sensor_type": "ph", "threshold_min": 5, "threshold_max": 1, "warning_min": 3, "warning_max": 2}`,
			[]string{"body.threshold_min: value_error", "body.warning_min: value_error"}},
		{"enums and subzone", `{"sensor_type": "ph", "processing_mode": "magic", "operating_mode": "x", "subzone_id": "a-b"}`,
			[]string{"body.processing_mode: enum", "body.operating_mode: enum", "body.subzone_id: string_pattern_mismatch"}},
		{"bounds", `{"sensor_type": "", "interval_ms": 10, "i2c_address": 200, "onewire_address": "12"}`,
			[]string{"body.sensor_type: string_too_short", "body.interval_ms: greater_than_equal",
				"body.i2c_address: less_than_equal", "body.onewire_address: string_too_short"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "POST", "/api/v1/sensors/ESP_LIVE01/34", operatorToken, tc.body)
			if got := r.fieldErrors(); r.status != 422 || !slices.Equal(got, tc.want) {
				t.Fatalf("%d %v", r.status, got)
			}
		})
	}
}

func TestUpsertSensorStoresPushesAndAudits(t *testing.T) {
	f := newFixture(t, dev("ESP_LIVE01", device.StatusOnline))
	body := `{"sensor_type": "ph", "esp_id": "ESP_LIVE01", "gpio": 4, "interval_ms": 5000.0, "threshold_min": 1,
		"calibration": {"slope": 2}, "subzone_id": "bed_1"}`
	r := f.do(t, "POST", "/api/v1/sensors/ESP_LIVE01/4", operatorToken, body)
	if r.status != 200 || r.body["config_sent"] != true || r.body["interval_ms"] != 5000.0 || r.body["enabled"] != true ||
		r.body["esp_id"] != "uuid-ESP_LIVE01" || r.body["esp_device_id"] != "ESP_LIVE01" || r.body["subzone_id"] != "bed_1" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if w := r.items("warnings"); len(w) != 1 {
		t.Fatalf("warning of the domain not passed on: %s", r.raw)
	}
	c := f.sensors.configs[0]
	if c.GPIO != 4 || *c.ThresholdMin != 1 || c.Calibration["slope"] != 2.0 {
		t.Fatalf("stored %+v", c)
	}
	if !slices.Equal(f.devices.pushes, []string{"ESP_LIVE01:config_change"}) {
		t.Fatalf("pushes %v", f.devices.pushes)
	}
	if !slices.Contains(f.audit.events(), "config_published") {
		t.Fatal("not audited")
	}

	f.sensors.upsertErr = &sensor.PinError{Conflict: true, Type: "sensor_vs_actuator", Msg: "pin taken"}
	if r := f.do(t, "POST", "/api/v1/sensors/ESP_LIVE01/5", operatorToken, `{"sensor_type": "ph"}`); r.status != 409 ||
		r.code() != "GPIO_CONFLICT" {
		t.Fatalf("conflict: %s", r.raw)
	}
	f.sensors.upsertErr = nil
	f.devices.pushErr = device.ErrConfigTooLarge
	if r := f.do(t, "POST", "/api/v1/sensors/ESP_LIVE01/6", operatorToken, `{"sensor_type": "ph"}`); r.status != 400 ||
		r.code() != "CONFIG_TOO_LARGE" {
		t.Fatalf("too large: %s", r.raw)
	}
}

func TestSensorErrorsMapToCodes(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{&sensor.PinError{Conflict: true}, 409, "GPIO_CONFLICT"},
		{&sensor.PinError{}, 400, "GPIO_RESERVED"},
		{sensor.ErrUnsupportedType, 400, "UNSUPPORTED_SENSOR_TYPE"},
		{sensor.ErrLimit, 409, "LIMIT_EXCEEDED"},
		{sensor.ErrNotFound, 404, "SENSOR_NOT_FOUND"},
		{device.ErrNotFound, 404, "ESP_NOT_FOUND"},
		{errBoom, 500, "INTERNAL_ERROR"},
	}
	f := newFixture(t)
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			rec, req := recorder("GET", "/")
			if !f.srv.SensorError(rec, req, tc.err) {
				t.Fatal("not answered")
			}
			if r := decodeResponse(t, rec); r.status != tc.status || r.code() != tc.code {
				t.Fatalf("%d %s", r.status, r.raw)
			}
		})
	}
	if f.srv.SensorError(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), nil) {
		t.Fatal("nil error answered")
	}
}

func TestSensorLookups(t *testing.T) {
	f := newFixture(t, dev("ESP_LIVE01", device.StatusOnline))
	ph, ec := sensorOn("ESP_LIVE01", 34, "ph"), sensorOn("ESP_LIVE01", 34, "ec")
	ec.ID = "22222222-0000-0000-0000-000000000034"
	f.sensors.configs = []sensor.Config{ph, ec, sensorOn("ESP_LIVE01", 35, "moisture")}
	processed := 7.1
	f.sensors.latest = []sensor.LatestValue{{
		Key:     store.SeriesKey{EspID: "ESP_LIVE01", GPIO: 35, SensorType: "moisture"},
		Reading: store.Reading{Raw: 2000, Processed: &processed, Quality: "good", TS: time.Now().UnixMilli()},
	}}

	if r := f.do(t, "GET", "/api/v1/sensors/ESP_LIVE01/34", viewerToken, nil); r.status != 409 ||
		r.code() != "AMBIGUOUS_SENSOR" || len(r.obj("error")["details"].(map[string]any)["candidates"].([]any)) != 2 {
		t.Fatalf("ambiguous: %s", r.raw)
	}
	if r := f.do(t, "GET", "/api/v1/sensors/ESP_LIVE01/34?sensor_type=ec", viewerToken, nil); r.body["id"] != ec.ID {
		t.Fatalf("selected: %s", r.raw)
	}
	if r := f.do(t, "GET", "/api/v1/sensors/ESP_LIVE01/35", viewerToken, nil); r.body["latest_value"] != 7.1 ||
		r.body["latest_quality"] != "good" {
		t.Fatalf("latest reading: %s", r.raw)
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
		if r := f.do(t, "GET", path, viewerToken, nil); r.status != status {
			t.Errorf("%s: %d %s", path, r.status, r.raw)
		}
	}
	if r := f.do(t, "GET", "/api/v1/sensors?sensor_type=PH", viewerToken, nil); len(r.items("data")) != 1 {
		t.Fatalf("type filter: %s", r.raw)
	}
	r := f.do(t, "GET", "/api/v1/sensors/data/latest", viewerToken, nil)
	row := r.items("data")[0].(map[string]any)
	if row["value"] != 7.1 || row["raw_value"] != 2000.0 || row["stale"] != false {
		t.Fatalf("latest: %s", r.raw)
	}

	r = f.do(t, "DELETE", "/api/v1/sensors/config/"+ph.ID, operatorToken, nil)
	if r.status != 200 || r.body["sensor_type"] != "ph" || len(f.sensors.configs) != 2 {
		t.Fatalf("delete by id: %s", r.raw)
	}
	if r := f.do(t, "DELETE", "/api/v1/sensors/ESP_LIVE01/35", operatorToken, nil); r.status != 200 || len(f.sensors.configs) != 1 {
		t.Fatalf("delete by pin: %s", r.raw)
	}
}

func TestSensorHistoryQuery(t *testing.T) {
	f := newFixture(t, dev("ESP_LIVE01", device.StatusOnline))
	next := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	f.sensors.history = sensor.History{Resolution: "5m", BucketSeconds: 300, HasMore: true, NextCursor: &next}

	r := f.do(t, "GET", "/api/v1/sensors/data?esp_id=ESP_LIVE01&gpio=34&resolution=5m&order=asc"+
		"&start_time=2026-01-04T00:00:00Z&end_time=2026-01-05T00:00:00Z", viewerToken, nil)
	q := f.sensors.lastQuery
	if r.status != 200 || q.GPIO != 34 || !q.Asc || q.Limit != 1000 || q.Resolution != "5m" {
		t.Fatalf("%+v %s", q, r.raw)
	}
	if r.obj("aggregation")["bucket_seconds"] != 300.0 || r.body["next_cursor"] != "2026-01-05T09:00:00.000Z" ||
		r.obj("time_range")["start"] != "2026-01-04T00:00:00.000Z" || len(r.items("readings")) != 0 || r.items("readings") == nil {
		t.Fatalf("%s", r.raw)
	}

	r = f.do(t, "GET", "/api/v1/sensors/data", viewerToken, nil)
	if q := f.sensors.lastQuery; r.body["gpio"] != nil || q.GPIO != -1 || q.Limit != 100 || q.End.Sub(q.Start) != 24*time.Hour {
		t.Fatalf("defaults %+v %s", q, r.raw)
	}

	r = f.do(t, "GET", "/api/v1/sensors/data?resolution=7s&order=up&start_time=2026-01-05&end_time=2026-01-04",
		viewerToken, nil)
	want := []string{"query.start_time: value_error", "query.resolution: enum", "query.order: enum"}
	if got := r.fieldErrors(); !slices.Equal(got, want) {
		t.Fatalf("errors %v", got)
	}
	f.sensors.queryErr = errBoom
	if r := f.do(t, "GET", "/api/v1/sensors/data", viewerToken, nil); r.status != 500 {
		t.Fatalf("store failure: %d", r.status)
	}
}

func TestSensorTypesAndProcessingHealth(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "GET", "/api/v1/sensors/types", viewerToken, nil)
	procs := r.items("processors")
	if r.body["count"] != float64(len(processor.Keys)) || len(procs) != len(processor.Keys) {
		t.Fatalf("%s", r.raw)
	}
	for _, p := range procs {
		if len(p.(map[string]any)["calibration_fields"].([]any)) == 0 {
			t.Fatalf("processor without calibration fields: %v", p)
		}
	}
	if r := f.do(t, "GET", "/api/v1/sensors/health", "", nil); r.body["processors_loaded"] != float64(len(processor.Keys)) {
		t.Fatalf("health: %s", r.raw)
	}
}

func TestCalibrate(t *testing.T) {
	f := newFixture(t, dev("ESP_LIVE01", device.StatusOnline))
	f.sensors.configs = []sensor.Config{sensorOn("ESP_LIVE01", 34, "ph")}
	points := []map[string]any{{"raw": 1000, "reference": 4}, {"raw": 2000.0, "reference": 7}}

	r := f.do(t, "POST", "/api/v1/sensors/calibrate", operatorToken,
		map[string]any{"esp_id": "ESP_LIVE01", "gpio": 34, "sensor_type": "ph", "calibration_points": points})
	if r.status != 200 || r.body["saved"] != true || r.body["method"] != "linear" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if f.sensors.saved[f.sensors.configs[0].ID] == nil || !slices.Contains(f.audit.events(), "config_published") {
		t.Fatal("calibration not stored or not audited")
	}

	tests := []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"no processor", map[string]any{"esp_id": "ESP_LIVE01", "gpio": 34, "sensor_type": "nope",
			"calibration_points": points}, 404, "PROCESSOR_NOT_FOUND"},
		{"wrong method", map[string]any{"esp_id": "ESP_LIVE01", "gpio": 34, "sensor_type": "ph", "method": "offset",
			"calibration_points": points}, 400, "CALIBRATION_FAILED"},
		{"degenerate points", map[string]any{"esp_id": "ESP_LIVE01", "gpio": 34, "sensor_type": "ph",
			"calibration_points": []map[string]any{{"raw": 1, "reference": 4}, {"raw": 1, "reference": 7}}}, 400,
			"CALIBRATION_FAILED"},
		{"no sensor to save to", map[string]any{"esp_id": "ESP_LIVE01", "gpio": 35, "sensor_type": "ph",
			"calibration_points": points}, 404, "SENSOR_NOT_FOUND"},
		{"points missing", map[string]any{"esp_id": "ESP_LIVE01", "gpio": 35, "sensor_type": "ph"}, 422, "VALIDATION_ERROR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := f.do(t, "POST", "/api/v1/sensors/calibrate", operatorToken, tc.body); r.status != tc.status ||
				r.code() != tc.code {
				t.Fatalf("%d %s", r.status, r.raw)
			}
		})
	}
	r = f.do(t, "POST", "/api/v1/sensors/calibrate", operatorToken, map[string]any{"esp_id": "ESP_LIVE01", "gpio": 34,
		"sensor_type": "ph", "save_to_config": false, "calibration_points": points})
	if r.status != 200 || r.body["saved"] != false {
		t.Fatalf("compute only: %s", r.raw)
	}
}

func TestResendConfig(t *testing.T) {
	f := newFixture(t, dev("ESP_LIVE01", device.StatusOnline))
	r := f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/config", operatorToken, `{"wifi_ssid": "x", "zone": 1}`)
	if got := r.fieldErrors(); !slices.Equal(got, []string{"body.wifi_ssid: value_error"}) {
		t.Fatalf("device settings: %v", got)
	}
	r = f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/config", operatorToken, nil)
	if r.status != 200 || r.body["correlation_id"] != "corr-1" || r.body["config_sent"] != true {
		t.Fatalf("%s", r.raw)
	}
	for err, code := range map[error]string{device.ErrConfigTooLarge: "CONFIG_TOO_LARGE",
		device.ErrNotApproved: "DEVICE_NOT_APPROVED", errBoom: "MQTT_UNAVAILABLE"} {
		f.devices.pushErr = err
		if r := f.do(t, "POST", "/api/v1/esp/devices/ESP_LIVE01/config", operatorToken, nil); r.code() != code {
			t.Errorf("%v: %s", err, r.raw)
		}
	}
}

// The firmware parses the processing reply by substring search: one compact
// line, CRLF CRLF, counted in Content-Length.
func TestProcessReplyIsByteExact(t *testing.T) {
	f := newFixture(t)
	f.sensors.reply = sensor.ProcessReply{Value: 7.25, Unit: "pH", Quality: "good"}
	r := f.do(t, "POST", "/api/v1/sensors/process", "", `{"esp_id": "ESP_LIVE01", "gpio": 34.0, "sensor_type": "ph",
		"raw_value": 2048, "raw_mode": true, "calibration": {"slope": 1}}`)
	if !strings.HasPrefix(r.raw, `{"success":true,"processed_value":7.25,"unit":"pH","quality":"good","timestamp":`) ||
		!strings.HasSuffix(r.raw, "}\r\n\r\n") || r.header.Get("Content-Length") != itoa(len(r.raw)) {
		t.Fatalf("%q %v", r.raw, r.header)
	}
	req := f.sensors.processed[0]
	if req.GPIO != 34 || req.Raw != 2048 || req.RawMode == nil || !*req.RawMode || req.Calibration["slope"] != 1.0 || req.Trusted {
		t.Fatalf("request %+v", req)
	}

	f.srv.SetReady(false)
	if r := f.do(t, "POST", "/api/v1/sensors/process", "", `{"esp_id": "E", "gpio": 1, "sensor_type": "ph", "raw_value": 5}`); !strings.Contains(r.raw, `"quality":`) || f.sensors.counted[0] != "not_ready" {
		t.Fatalf("not ready: %q %v", r.raw, f.sensors.counted)
	}
	for body, code := range map[string]int{`{"esp_id": "E", "gpio": 1.5, "sensor_type": "ph", "raw_value": 5}`: 400,
		`not json`: 400} {
		rec := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/sensors/process", strings.NewReader(body)))
		if rec.Code != code || !strings.Contains(rec.Body.String(), "BAD_REQUEST") {
			t.Errorf("%s: %d %s", body, rec.Code, rec.Body.String())
		}
	}
	req2 := httptest.NewRequest("POST", "/api/v1/sensors/process",
		strings.NewReader(`{"esp_id": "E", "gpio": 1, "sensor_type": "ph", "raw_value": 5}`))
	req2.Header.Set("X-API-Key", "k")
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req2)
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "INVALID_API_KEY") {
		t.Fatalf("api key: %d %s", rec.Code, rec.Body.String())
	}
}

func TestProcessTrustsAValidTokenAndLimitsPerDevice(t *testing.T) {
	f := newFixture(t)
	body := `{"esp_id": "ESP_RATE01", "gpio": 1, "sensor_type": "ph", "raw_value": 5}`
	r := f.do(t, "POST", "/api/v1/sensors/process", viewerToken, body)
	if r.status != 200 || !f.sensors.processed[0].Trusted {
		t.Fatalf("token not trusted: %s", r.raw)
	}
	for range 700 {
		f.do(t, "POST", "/api/v1/sensors/process", "", body)
	}
	if !slices.Contains(f.sensors.counted, "rate_limited") {
		t.Fatal("no request was rate limited")
	}
}
