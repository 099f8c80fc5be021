// Package sensorapi serves the sensors of docs/api.md §7 under /api/v1/sensors:
// sensor configs and the device config push that follows a change,
// calibration, reading history and latest values, the processors, and the
// firmware's synchronous processing call with its byte-exact reply.
package sensorapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sensor/processor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// sensors is what the sensor routes need from the sensor domain.
type sensors interface {
	All() []sensor.Config
	ByID(id string) (sensor.Config, error)
	Find(espID string, gpio int, sel sensor.Selector) (sensor.Config, []sensor.Config, error)
	Upsert(ctx context.Context, c sensor.Config) (sensor.Config, string, error)
	Delete(ctx context.Context, id string) (sensor.Config, error)
	SaveCalibration(ctx context.Context, id string, cal map[string]any) (sensor.Config, error)
	Query(ctx context.Context, q sensor.HistoryQuery) (sensor.History, error)
	Latest(espID string, gpio int, sensorType string) []sensor.LatestValue
	LatestOf(c sensor.Config) (store.Reading, bool)
	Process(req sensor.ProcessRequest) sensor.ProcessReply
	CountProcess(result string)
}

var _ sensors = (*sensor.Service)(nil)

// devices is what the sensor routes need from the device registry: the
// device of a config and its config push.
type devices interface {
	Get(espID string) (device.Device, error)
	PushConfig(ctx context.Context, espID, trigger string) (string, error)
	LastPush(espID string) *device.Push
}

var _ devices = (*device.Service)(nil)

// recorder is where the sensor routes record config changes.
type recorder interface {
	Record(ctx context.Context, e store.AuditEntry)
}

var _ recorder = (*audit.Log)(nil)

// Deps are what the sensor routes need from the hub.
type Deps struct {
	Sensors sensors
	Devices devices
	Audit   recorder
}

type handlers struct {
	srv     *api.Server
	sensors sensors
	devices devices
	audit   recorder
	// processLimit bounds the processing calls of each device (600 a minute).
	processLimit *auth.Limiter
}

var (
	uuidPattern    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	subzonePattern = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)
)

// sensorResponse is the sensor config object (docs/api.md §7.1) with its latest
// reading and the state of the last config push.
type sensorResponse struct {
	ID                 string         `json:"id"`
	EspID              *string        `json:"esp_id"` // the device's UUID
	EspDeviceID        string         `json:"esp_device_id"`
	GPIO               int            `json:"gpio"`
	SensorType         string         `json:"sensor_type"`
	Name               *string        `json:"name"`
	Enabled            bool           `json:"enabled"`
	IntervalMS         int            `json:"interval_ms"`
	ProcessingMode     string         `json:"processing_mode"`
	Calibration        map[string]any `json:"calibration"`
	ThresholdMin       *float64       `json:"threshold_min"`
	ThresholdMax       *float64       `json:"threshold_max"`
	WarningMin         *float64       `json:"warning_min"`
	WarningMax         *float64       `json:"warning_max"`
	Metadata           map[string]any `json:"metadata"`
	I2CAddress         *int           `json:"i2c_address"`
	OneWireAddress     *string        `json:"onewire_address"`
	OperatingMode      string         `json:"operating_mode"`
	TimeoutSeconds     int            `json:"timeout_seconds"`
	FreshnessHours     *float64       `json:"measurement_freshness_hours"`
	AlertConfig        map[string]any `json:"alert_config"`
	SubzoneID          *string        `json:"subzone_id"`
	RetentionDays      *int           `json:"retention_days"`
	LatestValue        *float64       `json:"latest_value"`
	LatestQuality      *string        `json:"latest_quality"`
	LatestTimestamp    *string        `json:"latest_timestamp"`
	ConfigSent         bool           `json:"config_sent"`
	ConfigStatus       *string        `json:"config_status"`
	ConfigErrorCode    *string        `json:"config_error_code"`
	ConfigErrorMessage *string        `json:"config_error_message"`
	CreatedAt          *string        `json:"created_at"`
	UpdatedAt          *string        `json:"updated_at"`
	Warnings           []string       `json:"warnings,omitempty"`
}

func (h *handlers) sensorJSON(c sensor.Config) sensorResponse {
	out := sensorResponse{
		ID:             c.ID,
		EspDeviceID:    c.EspID,
		GPIO:           c.GPIO,
		SensorType:     c.SensorType,
		Name:           api.NullString(c.Name),
		Enabled:        c.Enabled,
		IntervalMS:     c.IntervalMS,
		ProcessingMode: c.ProcessingMode,
		Calibration:    c.Calibration,
		ThresholdMin:   c.ThresholdMin,
		ThresholdMax:   c.ThresholdMax,
		WarningMin:     c.WarningMin,
		WarningMax:     c.WarningMax,
		Metadata:       c.Metadata,
		I2CAddress:     c.I2CAddress,
		OneWireAddress: api.NullString(c.OneWireAddress),
		OperatingMode:  c.OperatingMode,
		TimeoutSeconds: c.TimeoutSeconds,
		FreshnessHours: c.FreshnessHours,
		AlertConfig:    c.AlertConfig,
		SubzoneID:      api.NullString(c.SubzoneID),
		RetentionDays:  c.RetentionDays,
		CreatedAt:      api.Timestamp(c.CreatedAt),
		UpdatedAt:      api.Timestamp(c.UpdatedAt),
	}
	if d, err := h.devices.Get(c.EspID); err == nil {
		out.EspID = &d.ID
	}
	if r, ok := h.sensors.LatestOf(c); ok {
		v := readingValue(r)
		out.LatestValue, out.LatestQuality, out.LatestTimestamp = &v, &r.Quality, api.Timestamp(time.UnixMilli(r.TS))
	}
	if p := h.devices.LastPush(c.EspID); p != nil {
		out.ConfigSent = !p.SentAt.Before(c.UpdatedAt)
		out.ConfigStatus = &p.Status
		out.ConfigErrorCode, out.ConfigErrorMessage = api.NullString(p.ErrorCode()), api.NullString(p.ErrorMessage())
	}
	return out
}

// readingValue is the processed value where there is one, else the raw value.
func readingValue(r store.Reading) float64 {
	if r.Processed != nil {
		return *r.Processed
	}
	return r.Raw
}

// Register adds the sensor routes to s, and the config re-send of a device,
// which belongs to the sensor configs it sends.
func Register(s *api.Server, d Deps) {
	const (
		one    = "/api/v1/sensors/{esp_id}/{gpio}"
		byID   = "/api/v1/sensors/config/{config_id}"
		viewer = auth.RoleViewer
		op     = auth.RoleOperator
	)
	h := &handlers{
		srv:          s,
		sensors:      d.Sensors,
		devices:      d.Devices,
		audit:        d.Audit,
		processLimit: auth.NewLimiter(600, time.Minute),
	}

	g := s.Group("sensors")
	g.Add("GET", "/api/v1/sensors", viewer, "List sensor configs", h.listSensors,
		api.Returns(api.PageOf[sensorResponse]{}))
	g.Add("GET", one, viewer, "Get a sensor config", h.getSensor, api.Returns(sensorResponse{}))
	g.Add("POST", one, op, "Create or replace a sensor config and push the device config",
		h.upsertSensor, api.Accepts(upsertSensorRequest{}), api.Returns(sensorResponse{}))
	g.Add("DELETE", one, op, "Delete a sensor config", h.deleteSensor, api.Returns(sensorResponse{}))
	g.Add("GET", byID, viewer, "Get a sensor config by id", h.sensorByID(false),
		api.Returns(sensorResponse{}))
	g.Add("DELETE", byID, op, "Delete a sensor config by id", h.sensorByID(true),
		api.Returns(sensorResponse{}))
	g.Add("GET", "/api/v1/sensors/data", viewer, "Sensor history with server-side downsampling",
		h.sensorData, api.Returns(historyResponse{}))
	g.Add("GET", "/api/v1/sensors/data/latest", viewer, "Latest value per sensor", h.latestData,
		api.Returns(latestResponse{}))
	g.Add("GET", "/api/v1/sensors/types", viewer, "Processors and their types", h.sensorTypes,
		api.Returns(sensorTypesResponse{}))
	g.Public("GET", "/api/v1/sensors/health", "Processing subsystem status", h.sensorHealth,
		api.Returns(processingHealth{}))
	g.Add("POST", "/api/v1/sensors/calibrate", op, "Compute (and store) a calibration", h.calibrate,
		api.Accepts(calibrateRequest{}), api.Returns(calibrateResponse{}))

	s.RegisterOpen(api.Route{
		Method:  "POST",
		Path:    "/api/v1/sensors/process",
		MinRole: "device",
		Tag:     "sensors",
		Summary: "Firmware processing call (compact reply parsed by substring search)",
	}, h.process)
	s.Group("devices").Add("POST", "/api/v1/esp/devices/{esp_id}/config", op,
		"Re-send the device's combined config", h.resendConfig, api.Returns(resendResponse{}))
}

func (h *handlers) pushAfterChange(ctx context.Context, espID string) (bool, error) {
	d, err := h.devices.Get(espID)
	if err != nil || d.Status != device.StatusOnline {
		return false, nil
	}
	corr, err := h.devices.PushConfig(ctx, espID, "config_change")
	return corr != "", err
}

func (h *handlers) listSensors(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	esp := q.Str("esp_id", 31)
	typ := strings.ToLower(q.Str("sensor_type", 50))
	enabledSet := q.Set("enabled")
	enabled := q.Bool("enabled", true)
	page := q.Int("page", 1, 1, 1<<30)
	size := q.Int("page_size", 20, 1, 100)
	if q.Done(w, r) || !h.knownDevice(w, r, esp) {
		return
	}

	var rows []sensorResponse
	for _, c := range h.sensors.All() {
		if (esp != "" && c.EspID != esp) || (typ != "" && c.SensorType != typ) || (enabledSet && c.Enabled != enabled) {
			continue
		}
		rows = append(rows, h.sensorJSON(c))
	}
	api.WritePage(w, rows, page, size)
}

func selector(q *api.Query) sensor.Selector {
	sel := sensor.Selector{SensorType: q.Str("sensor_type", 50), OneWireAddress: q.Str("onewire_address", 16)}
	if q.Set("i2c_address") {
		n := q.Int("i2c_address", 0, 8, 119)
		sel.I2CAddress = &n
	}
	return sel
}

// sensorCandidate is one of several sensors on a pin (409 AMBIGUOUS_SENSOR).
type sensorCandidate struct {
	ID             string  `json:"id"`
	SensorType     string  `json:"sensor_type"`
	I2CAddress     *int    `json:"i2c_address"`
	OneWireAddress *string `json:"onewire_address"`
}

// findSensor resolves the path's sensor (422, 404, 409 AMBIGUOUS_SENSOR).
func (h *handlers) findSensor(w http.ResponseWriter, r *http.Request) (sensor.Config, bool) {
	d, ok := h.srv.DeviceFromPath(w, r)
	if !ok {
		return sensor.Config{}, false
	}
	g, ok := api.PathGPIO(w, r)
	if !ok {
		return sensor.Config{}, false
	}
	q := api.NewQuery(r)
	sel := selector(q)
	if q.Done(w, r) {
		return sensor.Config{}, false
	}

	c, cands, err := h.sensors.Find(d.DeviceID, g, sel)
	switch {
	case errors.Is(err, sensor.ErrAmbiguous):
		var list []sensorCandidate
		for _, c := range cands {
			list = append(list, sensorCandidate{
				ID:             c.ID,
				SensorType:     c.SensorType,
				I2CAddress:     c.I2CAddress,
				OneWireAddress: api.NullString(c.OneWireAddress),
			})
		}
		api.WriteError(w, r, http.StatusConflict, "AMBIGUOUS_SENSOR",
			"several sensors on this pin; select one with sensor_type, i2c_address or onewire_address",
			map[string]any{"candidates": list})
		return c, false
	case err != nil:
		api.WriteError(w, r, http.StatusNotFound, "SENSOR_NOT_FOUND",
			fmt.Sprintf("no sensor on %s GPIO %d", d.DeviceID, g), nil)
		return c, false
	}
	return c, true
}

func (h *handlers) getSensor(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	if c, ok := h.findSensor(w, r); ok {
		api.WriteJSON(w, http.StatusOK, h.sensorJSON(c))
	}
}

// upsertSensorRequest is a whole sensor config (docs/api.md §7.2); esp_id and gpio
// may repeat the path's values.
type upsertSensorRequest struct {
	SensorType     string         `json:"sensor_type" api:"required,min=1,max=50"`
	Name           string         `json:"name" api:"max=100"`
	Enabled        bool           `json:"enabled" api:"default=true"`
	IntervalMS     int            `json:"interval_ms" api:"min=1000,max=300000"`
	ProcessingMode string         `json:"processing_mode" api:"min=1,max=20,enum=pi_enhanced|local|raw"`
	Calibration    map[string]any `json:"calibration"`
	ThresholdMin   *float64       `json:"threshold_min" api:"min=-1e12,max=1e12"`
	ThresholdMax   *float64       `json:"threshold_max" api:"min=-1e12,max=1e12"`
	WarningMin     *float64       `json:"warning_min" api:"min=-1e12,max=1e12"`
	WarningMax     *float64       `json:"warning_max" api:"min=-1e12,max=1e12"`
	Metadata       map[string]any `json:"metadata"`
	I2CAddress     *int           `json:"i2c_address" api:"min=8,max=119"`
	OneWireAddress string         `json:"onewire_address" api:"min=16,max=16,pattern=onewire"`
	OperatingMode  string         `json:"operating_mode" api:"min=1,max=20,enum=continuous|on_demand"`
	TimeoutSeconds int            `json:"timeout_seconds" api:"min=0,max=86400"`
	FreshnessHours *float64       `json:"measurement_freshness_hours" api:"min=0,max=8760"`
	AlertConfig    map[string]any `json:"alert_config"`
	RetentionDays  *int           `json:"retention_days" api:"min=1,max=3650"`
	SubzoneID      string         `json:"subzone_id" api:"max=32"`
	EspID          string         `json:"esp_id" api:"min=1,max=31"`
	GPIO           *int           `json:"gpio" api:"min=0,max=255"`
}

func (q *upsertSensorRequest) Validate(b *api.Body) {
	if deviceBoundTextInvalid(q.Name) {
		b.Fail("name", "must not contain quotes, backslashes or control characters (it is sent to the device)",
			"value_error")
	}
	if q.ThresholdMin != nil && q.ThresholdMax != nil && *q.ThresholdMin > *q.ThresholdMax {
		b.Fail("threshold_min", "must not exceed threshold_max", "value_error")
	}
	if q.WarningMin != nil && q.WarningMax != nil && *q.WarningMin > *q.WarningMax {
		b.Fail("warning_min", "must not exceed warning_max", "value_error")
	}
	if q.SubzoneID != "" && !subzonePattern.MatchString(q.SubzoneID) {
		b.Fail("subzone_id", "must be 1-32 characters of [A-Za-z0-9_]", "string_pattern_mismatch")
	}
}

// deviceBoundTextInvalid is text the firmware cannot carry (docs/api.md §1.2).
func deviceBoundTextInvalid(s string) bool {
	return strings.ContainsAny(s, "\"\\") || strings.IndexFunc(s, func(r rune) bool { return r < 0x20 }) >= 0
}

// matchesPath adds errors for esp_id and gpio that disagree with the path.
func (q *upsertSensorRequest) matchesPath(b *api.Body, r *http.Request) {
	if q.EspID != "" && q.EspID != r.PathValue("esp_id") {
		b.Fail("esp_id", "must equal the path's esp_id", "value_error")
	}
	if q.GPIO != nil && strconv.Itoa(*q.GPIO) != r.PathValue("gpio") {
		b.Fail("gpio", "must equal the path's gpio", "value_error")
	}
}

func (q *upsertSensorRequest) config(espID string, gpio int) sensor.Config {
	return sensor.Config{
		EspID:          espID,
		GPIO:           gpio,
		SensorType:     q.SensorType,
		Name:           q.Name,
		Enabled:        q.Enabled,
		IntervalMS:     q.IntervalMS,
		ProcessingMode: q.ProcessingMode,
		Calibration:    q.Calibration,
		ThresholdMin:   q.ThresholdMin,
		ThresholdMax:   q.ThresholdMax,
		WarningMin:     q.WarningMin,
		WarningMax:     q.WarningMax,
		Metadata:       q.Metadata,
		I2CAddress:     q.I2CAddress,
		OneWireAddress: q.OneWireAddress,
		OperatingMode:  q.OperatingMode,
		TimeoutSeconds: q.TimeoutSeconds,
		FreshnessHours: q.FreshnessHours,
		AlertConfig:    q.AlertConfig,
		SubzoneID:      q.SubzoneID,
		RetentionDays:  q.RetentionDays,
	}
}

func (h *handlers) upsertSensor(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req upsertSensorRequest
	b, ok := api.DecodeBody(w, r, &req)
	if !ok {
		return
	}
	req.matchesPath(b, r)
	if b.Done(w, r) {
		return
	}
	d, ok := h.srv.DeviceFromPath(w, r)
	if !ok {
		return
	}
	gpio, ok := api.PathGPIO(w, r)
	if !ok {
		return
	}

	c, warning, err := h.sensors.Upsert(r.Context(), req.config(d.DeviceID, gpio))
	if h.srv.SensorError(w, r, err) {
		return
	}
	sent, perr := h.pushAfterChange(r.Context(), c.EspID)
	if errors.Is(perr, device.ErrConfigTooLarge) {
		api.WriteError(w, r, http.StatusBadRequest, "CONFIG_TOO_LARGE", perr.Error(), nil)
		return
	}
	h.auditConfig(r, p, "sensor config changed", map[string]any{
		"esp_id":      c.EspID,
		"gpio":        c.GPIO,
		"sensor_type": c.SensorType,
		"mqtt_sent":   sent,
	})

	out := h.sensorJSON(c)
	out.ConfigSent = sent
	if warning != "" {
		out.Warnings = []string{warning}
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// auditConfig records a user's config change (event config_published).
func (h *handlers) auditConfig(r *http.Request, p auth.Principal, msg string, details map[string]any) {
	h.audit.Record(r.Context(), api.UserEntry(r, p.User.Username, "config_published", msg, details))
}

func (h *handlers) deleteSensor(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if c, ok := h.findSensor(w, r); ok {
		h.removeSensor(w, r, p, c)
	}
}

func (h *handlers) removeSensor(w http.ResponseWriter, r *http.Request, p auth.Principal, c sensor.Config) {
	c, err := h.sensors.Delete(r.Context(), c.ID)
	if h.srv.SensorError(w, r, err) {
		return
	}
	sent, _ := h.pushAfterChange(r.Context(), c.EspID)
	h.auditConfig(r, p, "sensor config deleted", map[string]any{"esp_id": c.EspID, "gpio": c.GPIO, "mqtt_sent": sent})

	out := h.sensorJSON(c)
	out.ConfigSent = sent
	api.WriteJSON(w, http.StatusOK, out)
}

func (h *handlers) sensorByID(del bool) api.Authed {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		id := r.PathValue("config_id")
		if !uuidPattern.MatchString(id) {
			api.PathError(w, r, "config_id", "must be a UUID")
			return
		}
		c, err := h.sensors.ByID(id)
		if h.srv.SensorError(w, r, err) {
			return
		}
		if del {
			h.removeSensor(w, r, p, c)
			return
		}
		api.WriteJSON(w, http.StatusOK, h.sensorJSON(c))
	}
}

type historyAggregation struct {
	BucketSeconds int64    `json:"bucket_seconds"`
	Functions     []string `json:"functions"`
}

type historyRange struct {
	Start      *string `json:"start"`
	End        *string `json:"end"`
	HasMore    bool    `json:"has_more"`
	NextCursor *string `json:"next_cursor"`
}

// historyResponse is a page of readings or buckets (docs/api.md §7.3).
type historyResponse struct {
	Success     bool                `json:"success"`
	EspID       *string             `json:"esp_id"`
	GPIO        *int                `json:"gpio"`
	SensorType  *string             `json:"sensor_type"`
	Readings    []sensor.Row        `json:"readings"`
	Count       int                 `json:"count"`
	Resolution  string              `json:"resolution"`
	Aggregation *historyAggregation `json:"aggregation"`
	HasMore     bool                `json:"has_more"`
	NextCursor  *string             `json:"next_cursor"`
	TimeRange   historyRange        `json:"time_range"`
}

// historyQuery reads the history parameters; the span defaults to the last 24 h.
func historyQuery(q *api.Query) sensor.HistoryQuery {
	hq := sensor.HistoryQuery{
		EspID:      q.Str("esp_id", 31),
		GPIO:       -1,
		SensorType: q.Str("sensor_type", 50),
		Quality:    q.Str("quality", 20),
	}
	if q.Set("gpio") {
		hq.GPIO = q.Int("gpio", 0, 0, 39)
	}

	hq.Start, hq.End = q.Time("start_time"), q.Time("end_time")
	if hq.End.IsZero() {
		hq.End = time.Now().UTC()
	}
	if hq.Start.IsZero() {
		hq.Start = hq.End.Add(-24 * time.Hour)
	}
	if !hq.Start.Before(hq.End) || hq.End.Sub(hq.Start) > 366*24*time.Hour {
		q.Fail("start_time", "start_time must be before end_time and the span at most 366 days", "value_error")
	}

	hq.Resolution = q.Str("resolution", 10)
	if hq.Resolution == "" {
		hq.Resolution = q.Str("bucket", 10)
	}
	if _, err := sensor.ParseResolution(hq.Resolution); err != nil {
		q.Fail("resolution", "must be raw, 1m, 5m, 15m, 1h, 6h, 1d, auto or 10-86400 seconds", "enum")
	}
	hq.Buckets = q.Int("buckets", 0, 1, 10000)
	if aggregated := hq.Buckets > 0 || (hq.Resolution != "" && hq.Resolution != "raw"); aggregated {
		hq.Limit = q.Int("limit", 1000, 1, 10000)
	} else {
		hq.Limit = q.Int("limit", 100, 1, 1000)
	}

	hq.Before = q.Time("before_timestamp")
	switch order := q.Str("order", 4); order {
	case "", "desc":
	case "asc":
		hq.Asc = true
	default:
		q.Fail("order", "must be asc or desc", "enum")
	}
	return hq
}

func (h *handlers) sensorData(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	hq := historyQuery(q)
	if q.Done(w, r) || !h.knownDevice(w, r, hq.EspID) {
		return
	}
	hist, err := h.sensors.Query(r.Context(), hq)
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}

	out := historyResponse{
		Success:    true,
		EspID:      api.NullString(hq.EspID),
		SensorType: api.NullString(hq.SensorType),
		Readings:   hist.Rows,
		Count:      len(hist.Rows),
		Resolution: hist.Resolution,
		HasMore:    hist.HasMore,
		NextCursor: api.NullTimestamp(hist.NextCursor),
	}
	if out.Readings == nil {
		out.Readings = []sensor.Row{}
	}
	if hq.GPIO >= 0 {
		out.GPIO = &hq.GPIO
	}
	if hist.BucketSeconds > 0 {
		out.Aggregation = &historyAggregation{BucketSeconds: hist.BucketSeconds, Functions: []string{"avg", "min", "max"}}
	}
	out.TimeRange = historyRange{
		Start:      api.Timestamp(hq.Start),
		End:        api.Timestamp(hq.End),
		HasMore:    hist.HasMore,
		NextCursor: out.NextCursor,
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// latestReading is the newest value of one series.
type latestReading struct {
	EspID          string   `json:"esp_id"`
	GPIO           int      `json:"gpio"`
	SensorType     string   `json:"sensor_type"`
	Value          float64  `json:"value"`
	RawValue       float64  `json:"raw_value"`
	ProcessedValue *float64 `json:"processed_value"`
	Unit           string   `json:"unit"`
	Quality        string   `json:"quality"`
	Timestamp      *string  `json:"timestamp"`
	AgeSeconds     int64    `json:"age_seconds"`
	Stale          bool     `json:"stale"`
}

type latestResponse struct {
	Success bool            `json:"success"`
	Data    []latestReading `json:"data"`
	Count   int             `json:"count"`
}

func (h *handlers) latestData(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	esp, typ := q.Str("esp_id", 31), q.Str("sensor_type", 50)
	gpio := -1
	if q.Set("gpio") {
		gpio = q.Int("gpio", 0, 0, 39)
	}
	zone := q.Str("zone_id", 32)
	if q.Done(w, r) || !h.knownDevice(w, r, esp) {
		return
	}

	now := time.Now()
	out := []latestReading{}
	for _, l := range h.sensors.Latest(esp, gpio, typ) {
		if zone != "" && l.Reading.ZoneID != zone {
			continue
		}
		at := time.UnixMilli(l.Reading.TS)
		out = append(out, latestReading{
			EspID:          l.Key.EspID,
			GPIO:           l.Key.GPIO,
			SensorType:     l.Key.SensorType,
			Value:          readingValue(l.Reading),
			RawValue:       l.Reading.Raw,
			ProcessedValue: l.Reading.Processed,
			Unit:           l.Reading.Unit,
			Quality:        l.Reading.Quality,
			Timestamp:      api.Timestamp(at),
			AgeSeconds:     int64(now.Sub(at).Seconds()),
			Stale:          l.Stale,
		})
	}
	api.WriteJSON(w, http.StatusOK, latestResponse{Success: true, Data: out, Count: len(out)})
}

type processorInfo struct {
	Type              string         `json:"type"`
	Unit              string         `json:"unit"`
	Aliases           []string       `json:"aliases"`
	CalibrationFields []string       `json:"calibration_fields"`
	Params            map[string]any `json:"params"`
}

type sensorTypesResponse struct {
	Success     bool            `json:"success"`
	SensorTypes []string        `json:"sensor_types"`
	Count       int             `json:"count"`
	Processors  []processorInfo `json:"processors"`
}

func (h *handlers) sensorTypes(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	procs := make([]processorInfo, 0, len(processor.Keys))
	for _, k := range processor.Keys {
		procs = append(procs, processorInfo{
			Type:              k,
			Unit:              processor.DefaultUnit[k],
			Aliases:           processor.AliasesOf(k),
			CalibrationFields: calibrationFields(k),
			Params:            map[string]any{},
		})
	}
	api.WriteJSON(w, http.StatusOK, sensorTypesResponse{
		Success:     true,
		SensorTypes: processor.Keys,
		Count:       len(processor.Keys),
		Processors:  procs,
	})
}

type processingHealth struct {
	Success          bool     `json:"success"`
	Status           string   `json:"status"`
	ProcessorsLoaded int      `json:"processors_loaded"`
	SensorTypes      []string `json:"sensor_types"`
}

func (h *handlers) sensorHealth(w http.ResponseWriter, _ *http.Request) {
	api.WriteJSON(w, http.StatusOK, processingHealth{
		Success:          true,
		Status:           "healthy",
		ProcessorsLoaded: len(processor.Keys),
		SensorTypes:      processor.Keys,
	})
}

func calibrationFields(k string) []string {
	switch processor.CalibrationMethod(k) {
	case "linear":
		return []string{"slope", "offset"}
	case "dry_wet":
		return []string{"dry_value", "wet_value"}
	case "offset":
		return []string{"offset"}
	}
	return []string{"calibration_factor"}
}

type calibrationPoint struct {
	Raw       float64 `json:"raw" api:"required"`
	Reference float64 `json:"reference" api:"required"`
}

type calibrateRequest struct {
	EspID        string             `json:"esp_id" api:"required,min=1,max=31,pattern=esp_id"`
	GPIO         int                `json:"gpio" api:"required,min=0,max=39"`
	SensorType   string             `json:"sensor_type" api:"required,min=1,max=50"`
	Method       string             `json:"method" api:"min=1,max=20"`
	SaveToConfig bool               `json:"save_to_config" api:"default=true"`
	Points       []calibrationPoint `json:"calibration_points" api:"required,min=1,max=10"`
}

func (q *calibrateRequest) points() []processor.Point {
	out := make([]processor.Point, 0, len(q.Points))
	for _, p := range q.Points {
		out = append(out, processor.Point{Raw: p.Raw, Reference: p.Reference})
	}
	return out
}

type calibrateResponse struct {
	Success     bool           `json:"success"`
	Message     string         `json:"message"`
	Calibration map[string]any `json:"calibration"`
	SensorType  string         `json:"sensor_type"`
	Method      any            `json:"method"`
	Saved       bool           `json:"saved"`
}

func (h *handlers) calibrate(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req calibrateRequest
	if !api.Decode(w, r, &req) {
		return
	}
	key, hasProc := processor.NormaliseType(req.SensorType)
	if !hasProc {
		api.WriteError(w, r, http.StatusNotFound, "PROCESSOR_NOT_FOUND", "no processor for sensor type "+req.SensorType, nil)
		return
	}
	if method := processor.CalibrationMethod(key); req.Method != "" && req.Method != method {
		api.WriteError(w, r, http.StatusBadRequest, "CALIBRATION_FAILED",
			fmt.Sprintf("%s is calibrated with method %q", key, method), nil)
		return
	}
	cal, err := processor.Calibrate(key, req.points(), time.Now())
	if err != nil {
		api.WriteError(w, r, http.StatusBadRequest, "CALIBRATION_FAILED", err.Error(), nil)
		return
	}

	if req.SaveToConfig && !h.saveCalibration(w, r, p, &req, cal) {
		return
	}
	api.WriteJSON(w, http.StatusOK, calibrateResponse{
		Success:     true,
		Message:     "calibration computed",
		Calibration: cal,
		SensorType:  key,
		Method:      cal["method"],
		Saved:       req.SaveToConfig,
	})
}

// saveCalibration stores cal in the addressed sensor's config and pushes the
// device config; it answers failures itself.
func (h *handlers) saveCalibration(w http.ResponseWriter, r *http.Request, p auth.Principal, req *calibrateRequest,
	cal map[string]any) bool {
	c, _, err := h.sensors.Find(req.EspID, req.GPIO, sensor.Selector{SensorType: req.SensorType})
	if err != nil {
		api.WriteError(w, r, http.StatusNotFound, "SENSOR_NOT_FOUND",
			fmt.Sprintf("no %s sensor on %s GPIO %d", req.SensorType, req.EspID, req.GPIO), nil)
		return false
	}
	if _, err := h.sensors.SaveCalibration(r.Context(), c.ID, cal); h.srv.SensorError(w, r, err) {
		return false
	}
	_, _ = h.pushAfterChange(r.Context(), req.EspID)
	h.auditConfig(r, p, "sensor calibrated",
		map[string]any{"esp_id": req.EspID, "gpio": req.GPIO, "method": cal["method"]})
	return true
}

// deviceSetting reports body fields that are device settings, which are not sent over MQTT.
func deviceSetting(k string) bool {
	return strings.HasPrefix(k, "wifi_") || strings.HasPrefix(k, "mqtt_") || k == "report_interval_ms" ||
		k == "heartbeat_interval_ms" || k == "log_level"
}

type resendResponse struct {
	Success            bool    `json:"success"`
	Message            string  `json:"message"`
	DeviceID           string  `json:"device_id"`
	ConfigSent         bool    `json:"config_sent"`
	ConfigAcknowledged bool    `json:"config_acknowledged"`
	CorrelationID      *string `json:"correlation_id"`
}

func (h *handlers) resendConfig(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req struct{} // only fields that must not be there
	b, ok := api.DecodeBody(w, r, &req)
	if !ok {
		return
	}
	for _, k := range b.Keys() {
		if deviceSetting(k) {
			b.Fail(k, "device settings are not sent over MQTT", "value_error")
		}
	}
	if b.Done(w, r) {
		return
	}
	d, ok := h.srv.DeviceFromPath(w, r)
	if !ok {
		return
	}
	if d.Status == device.StatusOnline && d.SubscriptionsLost {
		// It hears nothing until it is power-cycled (docs/protocol.md B3, an external broker).
		api.WriteError(w, r, http.StatusConflict, "DEVICE_UNREACHABLE",
			fmt.Sprintf("ESP device '%s' has lost its subscriptions and needs a power cycle", d.DeviceID),
			map[string]any{"esp_id": d.DeviceID, "reason": "subscriptions_lost"})
		return
	}

	corr, err := h.devices.PushConfig(r.Context(), d.DeviceID, "resend")
	switch {
	case errors.Is(err, device.ErrConfigTooLarge):
		api.WriteError(w, r, http.StatusBadRequest, "CONFIG_TOO_LARGE", err.Error(), nil)
		return
	case errors.Is(err, device.ErrNotApproved), errors.Is(err, device.ErrOffline):
		h.srv.DeviceError(w, r, d.DeviceID, err)
		return
	case err != nil:
		api.WriteError(w, r, http.StatusServiceUnavailable, "MQTT_UNAVAILABLE", "config could not be published", nil)
		return
	}
	h.auditConfig(r, p, "config re-sent",
		map[string]any{"esp_id": d.DeviceID, "correlation_id": corr, "mqtt_sent": corr != ""})
	api.WriteJSON(w, http.StatusOK, resendResponse{
		Success:       true,
		Message:       "config sent",
		DeviceID:      d.DeviceID,
		ConfigSent:    corr != "",
		CorrelationID: api.NullString(corr),
	})
}

// knownDevice answers 404 for an optional device filter naming an unknown device.
func (h *handlers) knownDevice(w http.ResponseWriter, r *http.Request, esp string) bool {
	if esp == "" {
		return true
	}
	if _, err := h.devices.Get(esp); err != nil {
		h.srv.DeviceError(w, r, esp, err)
		return false
	}
	return true
}
