package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

var (
	uuidPattern    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	onewirePattern = regexp.MustCompile(`^[0-9A-Fa-f]{16}$`)
	subzonePattern = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)
)

func (s *Server) sensorJSON(c sensor.Config) map[string]any {
	var devUUID any
	if d, err := s.devices.Get(c.EspID); err == nil {
		devUUID = d.ID
	}
	out := map[string]any{"id": c.ID, "esp_id": devUUID, "esp_device_id": c.EspID, "gpio": c.GPIO, "sensor_type": c.SensorType,
		"name": nullStr(c.Name), "enabled": c.Enabled, "interval_ms": c.IntervalMS, "processing_mode": c.ProcessingMode,
		"calibration": c.Calibration, "threshold_min": c.ThresholdMin, "threshold_max": c.ThresholdMax,
		"warning_min": c.WarningMin, "warning_max": c.WarningMax, "metadata": c.Metadata, "i2c_address": c.I2CAddress,
		"onewire_address": nullStr(c.OneWireAddress), "operating_mode": c.OperatingMode, "timeout_seconds": c.TimeoutSeconds,
		"measurement_freshness_hours": c.FreshnessHours, "alert_config": c.AlertConfig, "subzone_id": nullStr(c.SubzoneID),
		"retention_days": c.RetentionDays, "latest_value": nil, "latest_quality": nil, "latest_timestamp": nil,
		"config_sent": false, "config_status": nil, "config_error_code": nil, "config_error_message": nil,
		"created_at": tsv(c.CreatedAt), "updated_at": tsv(c.UpdatedAt)}
	if r, ok := s.sensors.LatestOf(c); ok {
		v := r.Raw
		if r.Processed != nil {
			v = *r.Processed
		}
		out["latest_value"], out["latest_quality"], out["latest_timestamp"] = v, r.Quality, tsv(time.UnixMilli(r.TS))
	}
	if p := s.devices.LastPush(c.EspID); p != nil {
		out["config_sent"] = !p.SentAt.Before(c.UpdatedAt)
		out["config_status"], out["config_error_code"], out["config_error_message"] = p.Status, nullStr(p.ErrorCode()), nullStr(p.ErrorMessage())
	}
	return out
}

func (s *Server) sensorRoutes() {
	s.protected("GET", "/api/v1/sensors", auth.RoleViewer, "List sensor configs", "sensors", s.listSensors)
	s.protected("GET", "/api/v1/sensors/{esp_id}/{gpio}", auth.RoleViewer, "Get a sensor config", "sensors", s.getSensor)
	s.protected("POST", "/api/v1/sensors/{esp_id}/{gpio}", auth.RoleOperator, "Create or replace a sensor config and push the device config", "sensors", s.upsertSensor)
	s.protected("DELETE", "/api/v1/sensors/{esp_id}/{gpio}", auth.RoleOperator, "Delete a sensor config", "sensors", s.deleteSensor)
	s.protected("GET", "/api/v1/sensors/config/{config_id}", auth.RoleViewer, "Get a sensor config by id", "sensors", s.sensorByID(false))
	s.protected("DELETE", "/api/v1/sensors/config/{config_id}", auth.RoleOperator, "Delete a sensor config by id", "sensors", s.sensorByID(true))
	s.protected("GET", "/api/v1/sensors/data", auth.RoleViewer, "Sensor history with server-side downsampling", "sensors", s.sensorData)
	s.protected("GET", "/api/v1/sensors/data/latest", auth.RoleViewer, "Latest value per sensor", "sensors", s.latestData)
	s.protected("GET", "/api/v1/sensors/types", auth.RoleViewer, "Processors and their types", "sensors", s.sensorTypes)
	s.public("GET", "/api/v1/sensors/health", "Processing subsystem status", "sensors", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]any{"success": true, "status": "healthy", "processors_loaded": len(sensor.ProcessorKeys),
			"sensor_types": sensor.ProcessorKeys})
	})
	s.protected("POST", "/api/v1/sensors/calibrate", auth.RoleOperator, "Compute (and store) a calibration", "sensors", s.calibrate)
	s.handle(Route{Method: "POST", Path: "/api/v1/sensors/process", MinRole: "device", Tag: "sensors",
		Summary: "Firmware processing call (compact reply parsed by substring search)"}, s.process)
	s.protected("POST", "/api/v1/esp/devices/{esp_id}/config", auth.RoleOperator, "Re-send the device's combined config", "devices", s.resendConfig)
}

func (s *Server) pushAfterChange(ctx context.Context, espID string) (bool, error) {
	d, err := s.devices.Get(espID)
	if err != nil || d.Status != device.StatusOnline {
		return false, nil
	}
	corr, err := s.devices.PushConfig(ctx, espID, "config_change")
	return corr != "", err
}

func gpioFromPath(w http.ResponseWriter, r *http.Request) (int, bool) {
	g, err := strconv.Atoi(r.PathValue("gpio"))
	if err != nil || g < 0 || g > 39 {
		pathError(w, r, "gpio", "must be an integer 0-39")
		return 0, false
	}
	return g, true
}

func (s *Server) listSensors(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := &query{r: r}
	esp := q.str("esp_id", 31)
	typ := strings.ToLower(q.str("sensor_type", 50))
	enabledSet := r.URL.Query().Get("enabled") != ""
	enabled := q.boolean("enabled", true)
	page := q.integer("page", 1, 1, 1<<30)
	size := q.integer("page_size", 20, 1, 100)
	if q.done(w, r) {
		return
	}
	if !s.knownDevice(w, r, esp) {
		return
	}
	var rows []map[string]any
	for _, c := range s.sensors.All() {
		if (esp != "" && c.EspID != esp) || (typ != "" && c.SensorType != typ) || (enabledSet && c.Enabled != enabled) {
			continue
		}
		rows = append(rows, s.sensorJSON(c))
	}
	writePage(w, rows, page, size)
}

func selector(q *query) sensor.Selector {
	sel := sensor.Selector{SensorType: q.str("sensor_type", 50), OneWireAddress: q.str("onewire_address", 16)}
	if v := q.r.URL.Query().Get("i2c_address"); v != "" {
		n := q.integer("i2c_address", 0, 8, 119)
		sel.I2CAddress = &n
	}
	return sel
}

// findSensor resolves the path's sensor (422, 404, 409 AMBIGUOUS_SENSOR).
func (s *Server) findSensor(w http.ResponseWriter, r *http.Request) (sensor.Config, bool) {
	d, ok := s.deviceFromPath(w, r)
	if !ok {
		return sensor.Config{}, false
	}
	g, ok := gpioFromPath(w, r)
	if !ok {
		return sensor.Config{}, false
	}
	q := &query{r: r}
	sel := selector(q)
	if q.done(w, r) {
		return sensor.Config{}, false
	}
	c, cands, err := s.sensors.Find(d.DeviceID, g, sel)
	switch {
	case errors.Is(err, sensor.ErrAmbiguous):
		var list []map[string]any
		for _, c := range cands {
			list = append(list, map[string]any{"id": c.ID, "sensor_type": c.SensorType, "i2c_address": c.I2CAddress, "onewire_address": nullStr(c.OneWireAddress)})
		}
		WriteError(w, r, http.StatusConflict, "AMBIGUOUS_SENSOR", "several sensors on this pin; select one with sensor_type, i2c_address or onewire_address",
			map[string]any{"candidates": list})
		return c, false
	case err != nil:
		WriteError(w, r, http.StatusNotFound, "SENSOR_NOT_FOUND", fmt.Sprintf("no sensor on %s GPIO %d", d.DeviceID, g), nil)
		return c, false
	}
	return c, true
}

func (s *Server) getSensor(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	if c, ok := s.findSensor(w, r); ok {
		WriteJSON(w, http.StatusOK, s.sensorJSON(c))
	}
}

func optNum(b *body, name string) *float64 {
	if v, ok := b.number(name, false, -1e12, 1e12); ok {
		return &v
	}
	return nil
}

func (s *Server) upsertSensor(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	var c sensor.Config
	c.SensorType, _ = b.str("sensor_type", true, 1, 50, nil)
	c.Name, _ = b.str("name", false, 0, 100, nil)
	if strings.ContainsAny(c.Name, "\"\\") || strings.IndexFunc(c.Name, func(r rune) bool { return r < 0x20 }) >= 0 {
		b.fail("name", "must not contain quotes, backslashes or control characters (it is sent to the device)", "value_error")
	}
	c.Enabled = b.boolean("enabled", true)
	if v, ok := b.integer("interval_ms", false, 1000, 300000); ok {
		c.IntervalMS = int(v)
	}
	if m, ok := b.str("processing_mode", false, 1, 20, nil); ok {
		if m != "pi_enhanced" && m != "local" && m != "raw" {
			b.fail("processing_mode", "must be pi_enhanced, local or raw", "enum")
		}
		c.ProcessingMode = m
	}
	c.Calibration, _ = b.object("calibration")
	c.ThresholdMin, c.ThresholdMax = optNum(b, "threshold_min"), optNum(b, "threshold_max")
	c.WarningMin, c.WarningMax = optNum(b, "warning_min"), optNum(b, "warning_max")
	if c.ThresholdMin != nil && c.ThresholdMax != nil && *c.ThresholdMin > *c.ThresholdMax {
		b.fail("threshold_min", "must not exceed threshold_max", "value_error")
	}
	if c.WarningMin != nil && c.WarningMax != nil && *c.WarningMin > *c.WarningMax {
		b.fail("warning_min", "must not exceed warning_max", "value_error")
	}
	c.Metadata, _ = b.object("metadata")
	if v, ok := b.integer("i2c_address", false, 8, 119); ok {
		n := int(v)
		c.I2CAddress = &n
	}
	c.OneWireAddress, _ = b.str("onewire_address", false, 16, 16, onewirePattern)
	if m, ok := b.str("operating_mode", false, 1, 20, nil); ok {
		if m != "continuous" && m != "on_demand" {
			b.fail("operating_mode", "must be continuous or on_demand", "enum")
		}
		c.OperatingMode = m
	}
	if v, ok := b.integer("timeout_seconds", false, 0, 86400); ok {
		c.TimeoutSeconds = int(v)
	}
	if v, ok := b.number("measurement_freshness_hours", false, 0, 8760); ok {
		c.FreshnessHours = &v
	}
	c.AlertConfig, _ = b.object("alert_config")
	if v, ok := b.integer("retention_days", false, 1, 3650); ok {
		n := int(v)
		c.RetentionDays = &n
	}
	c.SubzoneID, _ = b.str("subzone_id", false, 0, 32, nil)
	if c.SubzoneID != "" && !subzonePattern.MatchString(c.SubzoneID) {
		b.fail("subzone_id", "must be 1-32 characters of [A-Za-z0-9_]", "string_pattern_mismatch")
	}
	if id, ok := b.str("esp_id", false, 1, 31, nil); ok && id != r.PathValue("esp_id") {
		b.fail("esp_id", "must equal the path's esp_id", "value_error")
	}
	if g, ok := b.integer("gpio", false, 0, 255); ok && strconv.FormatInt(g, 10) != r.PathValue("gpio") {
		b.fail("gpio", "must equal the path's gpio", "value_error")
	}
	if b.done(w, r) {
		return
	}
	d, ok := s.deviceFromPath(w, r)
	if !ok {
		return
	}
	if c.GPIO, ok = gpioFromPath(w, r); !ok {
		return
	}
	c.EspID = d.DeviceID
	c, warning, err := s.sensors.Upsert(r.Context(), c)
	if s.sensorError(w, r, err) {
		return
	}
	sent, perr := s.pushAfterChange(r.Context(), c.EspID)
	if errors.Is(perr, device.ErrConfigTooLarge) {
		WriteError(w, r, http.StatusBadRequest, "CONFIG_TOO_LARGE", perr.Error(), nil)
		return
	}
	s.audit.Record(r.Context(), store.AuditEntry{EventType: "config_published", SourceType: "user", SourceID: p.User.Username,
		Message: "sensor config changed", Details: map[string]any{"esp_id": c.EspID, "gpio": c.GPIO, "sensor_type": c.SensorType, "mqtt_sent": sent},
		IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	out := s.sensorJSON(c)
	out["config_sent"] = sent
	if warning != "" {
		out["warnings"] = []string{warning}
	}
	WriteJSON(w, http.StatusOK, out)
}

// sensorError maps domain errors; it reports whether it answered.
func (s *Server) sensorError(w http.ResponseWriter, r *http.Request, err error) bool {
	var pe *sensor.PinError
	switch {
	case err == nil:
		return false
	case errors.As(err, &pe) && pe.Conflict:
		WriteError(w, r, http.StatusConflict, "GPIO_CONFLICT", pe.Msg, map[string]any{"conflict_type": pe.Type})
	case errors.As(err, &pe):
		WriteError(w, r, http.StatusBadRequest, "GPIO_RESERVED", pe.Msg, map[string]any{"conflict_type": pe.Type})
	case errors.Is(err, sensor.ErrUnsupportedType):
		WriteError(w, r, http.StatusBadRequest, "UNSUPPORTED_SENSOR_TYPE", err.Error(), nil)
	case errors.Is(err, sensor.ErrLimit):
		WriteError(w, r, http.StatusConflict, "LIMIT_EXCEEDED", err.Error(), nil)
	case errors.Is(err, sensor.ErrNotFound):
		WriteError(w, r, http.StatusNotFound, "SENSOR_NOT_FOUND", "sensor not found", nil)
	case errors.Is(err, device.ErrNotFound):
		s.deviceError(w, r, r.PathValue("esp_id"), err)
	default:
		s.internal(w, r, err)
	}
	return true
}

func (s *Server) deleteSensor(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	c, ok := s.findSensor(w, r)
	if ok {
		s.removeSensor(w, r, p, c)
	}
}

func (s *Server) removeSensor(w http.ResponseWriter, r *http.Request, p auth.Principal, c sensor.Config) {
	c, err := s.sensors.Delete(r.Context(), c.ID)
	if s.sensorError(w, r, err) {
		return
	}
	sent, _ := s.pushAfterChange(r.Context(), c.EspID)
	s.audit.Record(r.Context(), store.AuditEntry{EventType: "config_published", SourceType: "user", SourceID: p.User.Username,
		Message: "sensor config deleted", Details: map[string]any{"esp_id": c.EspID, "gpio": c.GPIO, "mqtt_sent": sent},
		IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	out := s.sensorJSON(c)
	out["config_sent"] = sent
	WriteJSON(w, http.StatusOK, out)
}

func (s *Server) sensorByID(del bool) authed {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		id := r.PathValue("config_id")
		if !uuidPattern.MatchString(id) {
			pathError(w, r, "config_id", "must be a UUID")
			return
		}
		c, err := s.sensors.ByID(id)
		if s.sensorError(w, r, err) {
			return
		}
		if del {
			s.removeSensor(w, r, p, c)
			return
		}
		WriteJSON(w, http.StatusOK, s.sensorJSON(c))
	}
}

func (s *Server) sensorData(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := &query{r: r}
	hq := sensor.HistoryQuery{EspID: q.str("esp_id", 31), GPIO: -1, SensorType: q.str("sensor_type", 50), Quality: q.str("quality", 20)}
	if r.URL.Query().Get("gpio") != "" {
		hq.GPIO = q.integer("gpio", 0, 0, 39)
	}
	hq.Start, hq.End = q.time("start_time"), q.time("end_time")
	now := time.Now().UTC()
	if hq.End.IsZero() {
		hq.End = now
	}
	if hq.Start.IsZero() {
		hq.Start = hq.End.Add(-24 * time.Hour)
	}
	if !hq.Start.Before(hq.End) || hq.End.Sub(hq.Start) > 366*24*time.Hour {
		q.fail("start_time", "start_time must be before end_time and the span at most 366 days", "value_error")
	}
	hq.Resolution = q.str("resolution", 10)
	if hq.Resolution == "" {
		hq.Resolution = q.str("bucket", 10)
	}
	if _, err := sensor.ParseResolution(hq.Resolution); err != nil {
		q.fail("resolution", "must be raw, 1m, 5m, 15m, 1h, 6h, 1d, auto or 10-86400 seconds", "enum")
	}
	hq.Buckets = q.integer("buckets", 0, 1, 10000)
	aggregated := hq.Buckets > 0 || (hq.Resolution != "" && hq.Resolution != "raw")
	if aggregated {
		hq.Limit = q.integer("limit", 1000, 1, 10000)
	} else {
		hq.Limit = q.integer("limit", 100, 1, 1000)
	}
	hq.Before = q.time("before_timestamp")
	switch order := q.str("order", 4); order {
	case "", "desc":
	case "asc":
		hq.Asc = true
	default:
		q.fail("order", "must be asc or desc", "enum")
	}
	if q.done(w, r) {
		return
	}
	if !s.knownDevice(w, r, hq.EspID) {
		return
	}
	h, err := s.sensors.Query(r.Context(), hq)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	rows := h.Rows
	if rows == nil {
		rows = []sensor.Row{}
	}
	var agg any
	if h.BucketSeconds > 0 {
		agg = map[string]any{"bucket_seconds": h.BucketSeconds, "functions": []string{"avg", "min", "max"}}
	}
	var cursor any
	if h.NextCursor != nil {
		cursor = tsv(*h.NextCursor)
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "esp_id": nullStr(hq.EspID), "gpio": gpioOrNil(hq.GPIO),
		"sensor_type": nullStr(hq.SensorType), "readings": rows, "count": len(rows), "resolution": h.Resolution, "aggregation": agg,
		"has_more": h.HasMore, "next_cursor": cursor, "time_range": map[string]any{"start": tsv(hq.Start), "end": tsv(hq.End),
			"has_more": h.HasMore, "next_cursor": cursor}})
}

func gpioOrNil(g int) any {
	if g < 0 {
		return nil
	}
	return g
}

func (s *Server) latestData(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := &query{r: r}
	esp, typ := q.str("esp_id", 31), q.str("sensor_type", 50)
	gpio := -1
	if r.URL.Query().Get("gpio") != "" {
		gpio = q.integer("gpio", 0, 0, 39)
	}
	zone := q.str("zone_id", 32)
	if q.done(w, r) {
		return
	}
	if !s.knownDevice(w, r, esp) {
		return
	}
	now := time.Now()
	out := []map[string]any{}
	for _, l := range s.sensors.Latest(esp, gpio, typ) {
		if zone != "" && l.Reading.ZoneID != zone {
			continue
		}
		v := l.Reading.Raw
		if l.Reading.Processed != nil {
			v = *l.Reading.Processed
		}
		at := time.UnixMilli(l.Reading.TS)
		out = append(out, map[string]any{"esp_id": l.Key.EspID, "gpio": l.Key.GPIO, "sensor_type": l.Key.SensorType, "value": v,
			"raw_value": l.Reading.Raw, "processed_value": l.Reading.Processed, "unit": l.Reading.Unit, "quality": l.Reading.Quality,
			"timestamp": tsv(at), "age_seconds": int64(now.Sub(at).Seconds()), "stale": l.Stale})
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "data": out, "count": len(out)})
}

func (s *Server) sensorTypes(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	var procs []map[string]any
	for _, k := range sensor.ProcessorKeys {
		procs = append(procs, map[string]any{"type": k, "unit": sensor.DefaultUnit[k], "aliases": sensor.AliasesOf(k),
			"calibration_fields": calibrationFields(k), "params": map[string]any{}})
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "sensor_types": sensor.ProcessorKeys, "count": len(sensor.ProcessorKeys), "processors": procs})
}

func calibrationFields(k string) []string {
	switch sensor.CalibrationMethod(k) {
	case "linear":
		return []string{"slope", "offset"}
	case "dry_wet":
		return []string{"dry_value", "wet_value"}
	case "offset":
		return []string{"offset"}
	}
	return []string{"calibration_factor"}
}

func (s *Server) calibrate(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	esp, _ := b.str("esp_id", true, 1, 31, espIDPattern)
	gpio, _ := b.integer("gpio", true, 0, 39)
	typ, _ := b.str("sensor_type", true, 1, 50, nil)
	method, _ := b.str("method", false, 1, 20, nil)
	save := b.boolean("save_to_config", true)
	var points []sensor.Point
	switch list := b.m["calibration_points"].(type) {
	case []any:
		if len(list) < 1 || len(list) > 10 {
			b.fail("calibration_points", "must have 1-10 points", "value_error")
		}
		for _, it := range list {
			m, _ := it.(map[string]any)
			raw, ok1 := m["raw"].(json.Number)
			ref, ok2 := m["reference"].(json.Number)
			if !ok1 || !ok2 {
				b.fail("calibration_points", "each point needs numeric raw and reference", "type_error")
				break
			}
			rf, _ := raw.Float64()
			ff, _ := ref.Float64()
			points = append(points, sensor.Point{Raw: rf, Reference: ff})
		}
	default:
		b.fail("calibration_points", "field required", "missing")
	}
	if b.done(w, r) {
		return
	}
	key, hasProc := sensor.NormaliseType(typ)
	if !hasProc {
		WriteError(w, r, http.StatusNotFound, "PROCESSOR_NOT_FOUND", "no processor for sensor type "+typ, nil)
		return
	}
	if method != "" && method != sensor.CalibrationMethod(key) {
		WriteError(w, r, http.StatusBadRequest, "CALIBRATION_FAILED", fmt.Sprintf("%s is calibrated with method %q", key, sensor.CalibrationMethod(key)), nil)
		return
	}
	cal, err := sensor.Calibrate(key, points, time.Now())
	if err != nil {
		WriteError(w, r, http.StatusBadRequest, "CALIBRATION_FAILED", err.Error(), nil)
		return
	}
	saved := false
	if save {
		c, _, err := s.sensors.Find(esp, int(gpio), sensor.Selector{SensorType: typ})
		if err != nil {
			WriteError(w, r, http.StatusNotFound, "SENSOR_NOT_FOUND", fmt.Sprintf("no %s sensor on %s GPIO %d", typ, esp, gpio), nil)
			return
		}
		if _, err := s.sensors.SaveCalibration(r.Context(), c.ID, cal); s.sensorError(w, r, err) {
			return
		}
		saved = true
		_, _ = s.pushAfterChange(r.Context(), esp)
		s.audit.Record(r.Context(), store.AuditEntry{EventType: "config_published", SourceType: "user", SourceID: p.User.Username,
			Message: "sensor calibrated", Details: map[string]any{"esp_id": esp, "gpio": gpio, "method": cal["method"]},
			IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "calibration computed", "calibration": cal,
		"sensor_type": key, "method": cal["method"], "saved": saved})
}

func (s *Server) resendConfig(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	for k := range b.m {
		if strings.HasPrefix(k, "wifi_") || strings.HasPrefix(k, "mqtt_") || k == "report_interval_ms" || k == "heartbeat_interval_ms" || k == "log_level" {
			b.fail(k, "device settings are not sent over MQTT", "value_error")
		}
	}
	if b.done(w, r) {
		return
	}
	d, ok := s.deviceFromPath(w, r)
	if !ok {
		return
	}
	corr, err := s.devices.PushConfig(r.Context(), d.DeviceID, "resend")
	switch {
	case errors.Is(err, device.ErrConfigTooLarge):
		WriteError(w, r, http.StatusBadRequest, "CONFIG_TOO_LARGE", err.Error(), nil)
		return
	case errors.Is(err, device.ErrNotApproved), errors.Is(err, device.ErrOffline):
		s.deviceError(w, r, d.DeviceID, err)
		return
	case err != nil:
		WriteError(w, r, http.StatusServiceUnavailable, "MQTT_UNAVAILABLE", "config could not be published", nil)
		return
	}
	s.audit.Record(r.Context(), store.AuditEntry{EventType: "config_published", SourceType: "user", SourceID: p.User.Username,
		Message: "config re-sent", Details: map[string]any{"esp_id": d.DeviceID, "correlation_id": corr, "mqtt_sent": corr != ""},
		IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "config sent", "device_id": d.DeviceID,
		"config_sent": corr != "", "config_acknowledged": false, "correlation_id": nullStr(corr)})
}
