package actuatorapi

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
)

// configResponse is the ActuatorConfig object of docs/api.md §8.1.
type configResponse struct {
	ID                 string         `json:"id"`
	EspID              *string        `json:"esp_id"` // the device's UUID
	EspDeviceID        string         `json:"esp_device_id"`
	GPIO               int            `json:"gpio"`
	ActuatorType       string         `json:"actuator_type"`
	Name               *string        `json:"name"`
	Enabled            bool           `json:"enabled"`
	MinValue           float64        `json:"min_value"`
	MaxValue           float64        `json:"max_value"`
	DefaultValue       float64        `json:"default_value"`
	DefaultState       bool           `json:"default_state"`
	DefaultPWM         int            `json:"default_pwm"`
	MaxRuntimeSeconds  int            `json:"max_runtime_seconds"`
	CooldownSeconds    int            `json:"cooldown_seconds"`
	ValveTravelSeconds *int           `json:"valve_travel_seconds"`
	PWMFrequency       *int           `json:"pwm_frequency"`
	ServoMinPulse      *int           `json:"servo_min_pulse"`
	ServoMaxPulse      *int           `json:"servo_max_pulse"`
	AuxGPIO            *int           `json:"aux_gpio"`
	Critical           bool           `json:"critical"`
	InvertedLogic      bool           `json:"inverted_logic"`
	SubzoneID          *string        `json:"subzone_id"`
	Metadata           map[string]any `json:"metadata"`
	AlertConfig        map[string]any `json:"alert_config"`
	CurrentValue       float64        `json:"current_value"`
	State              string         `json:"state"`
	Stale              bool           `json:"stale"`
	IsActive           bool           `json:"is_active"`
	LastCommand        *string        `json:"last_command"`
	LastCommandAt      *string        `json:"last_command_at"`
	ConfigSent         bool           `json:"config_sent"`
	ConfigStatus       *string        `json:"config_status"`
	ConfigErrorCode    *string        `json:"config_error_code"`
	ConfigErrorMessage *string        `json:"config_error_message"`
	CreatedAt          *string        `json:"created_at"`
	UpdatedAt          *string        `json:"updated_at"`
}

func (rt *routes) configJSON(c actuator.Config) configResponse {
	out := configResponse{
		ID:                c.ID,
		EspDeviceID:       c.EspID,
		GPIO:              c.GPIO,
		ActuatorType:      c.Type,
		Name:              api.NullString(c.Name),
		Enabled:           c.Enabled,
		MinValue:          c.MinValue,
		MaxValue:          c.MaxValue,
		DefaultValue:      c.DefaultValue,
		DefaultState:      c.DefaultState,
		DefaultPWM:        c.DefaultPWM,
		MaxRuntimeSeconds: c.MaxRuntimeSeconds,
		CooldownSeconds:   c.CooldownSeconds,
		PWMFrequency:      c.PWMFrequency,
		ServoMinPulse:     c.ServoMinPulse,
		ServoMaxPulse:     c.ServoMaxPulse,
		AuxGPIO:           c.AuxGPIO,
		Critical:          c.Critical,
		InvertedLogic:     c.InvertedLogic,
		SubzoneID:         api.NullString(c.SubzoneID),
		Metadata:          c.Metadata,
		AlertConfig:       c.AlertConfig,
		CreatedAt:         api.Timestamp(c.CreatedAt),
		UpdatedAt:         api.Timestamp(c.UpdatedAt),
	}
	if c.Type == "valve" {
		t := c.ValveTravelSeconds
		out.ValveTravelSeconds = &t
	}
	if d, err := rt.Devices.Get(c.EspID); err == nil {
		out.EspID = &d.ID
	}
	if st, err := rt.Actuators.State(c.EspID, c.GPIO); err == nil {
		out.CurrentValue, out.State, out.Stale = st.Value, st.State, st.Stale
		out.IsActive = !st.Stale && (st.State == "on" || (st.State == "pwm" && st.Value > 0))
		out.LastCommand, out.LastCommandAt = api.NullString(st.LastCommand), ts(st.LastCommandAt)
	}
	if p := rt.Devices.LastPush(c.EspID); p != nil {
		out.ConfigSent = !p.SentAt.Before(c.UpdatedAt)
		out.ConfigStatus = &p.Status
		out.ConfigErrorCode, out.ConfigErrorMessage = api.NullString(p.ErrorCode()), api.NullString(p.ErrorMessage())
	}
	return out
}

func (rt *routes) list(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	esp := q.Str("esp_id", 31)
	typ := q.Str("actuator_type", 20)
	enabledSet := q.Set("enabled")
	enabled := q.Bool("enabled", true)
	pg := q.Int("page", 1, 1, 1<<30)
	size := q.Int("page_size", 20, 1, 100)
	if q.Done(w, r) {
		return
	}
	if esp != "" {
		if _, err := rt.Devices.Get(esp); err != nil {
			rt.srv.DeviceError(w, r, esp, err)
			return
		}
	}
	if typ != "" {
		typ, _ = actuator.NormaliseType(typ)
	}

	var rows []configResponse
	for _, c := range rt.Actuators.List() {
		if (esp != "" && c.EspID != esp) || (typ != "" && c.Type != typ) || (enabledSet && c.Enabled != enabled) {
			continue
		}
		rows = append(rows, rt.configJSON(c))
	}
	writePage(w, rows, pg, size)
}

// target resolves the path's device (422, 404) and gpio (422).
func (rt *routes) target(w http.ResponseWriter, r *http.Request) (device.Device, int, bool) {
	d, ok := rt.srv.DeviceFromPath(w, r)
	if !ok {
		return d, 0, false
	}
	g, ok := api.PathGPIO(w, r)
	return d, g, ok
}

// find resolves the path's actuator (422, 404 ESP_NOT_FOUND / ACTUATOR_NOT_FOUND).
func (rt *routes) find(w http.ResponseWriter, r *http.Request) (actuator.Config, bool) {
	d, g, ok := rt.target(w, r)
	if !ok {
		return actuator.Config{}, false
	}
	c, err := rt.Actuators.Get(d.DeviceID, g)
	if err != nil {
		notFound(w, r, d.DeviceID, g)
		return c, false
	}
	return c, true
}

func notFound(w http.ResponseWriter, r *http.Request, espID string, gpio int) {
	api.WriteError(w, r, http.StatusNotFound, "ACTUATOR_NOT_FOUND", fmt.Sprintf("no actuator on %s GPIO %d", espID, gpio),
		map[string]any{"esp_id": espID, "gpio": gpio})
}

func (rt *routes) get(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if r.PathValue("gpio") == "alert-config" {
		rt.getAlertConfig(w, r, p)
		return
	}
	if c, ok := rt.find(w, r); ok {
		api.WriteJSON(w, http.StatusOK, rt.configJSON(c))
	}
}

// upsertRequest is a whole actuator config (docs/api.md §8.2); esp_id and
// gpio may repeat the path's values. The field rules (docs/domain.md §4.2)
// come from the domain (actuator.CheckFields), so REST and every other
// caller refuse the same things with the same reasons.
type upsertRequest struct {
	ActuatorType       string         `json:"actuator_type" api:"min=1,max=20,default=relay"`
	Name               string         `json:"name" api:"max=100"`
	Enabled            bool           `json:"enabled" api:"default=true"`
	MinValue           float64        `json:"min_value" api:"min=0,max=1,default=0"`
	MaxValue           float64        `json:"max_value" api:"min=0,max=1,default=1"`
	DefaultValue       float64        `json:"default_value" api:"min=0,max=1"`
	DefaultState       bool           `json:"default_state"`
	DefaultPWM         int            `json:"default_pwm" api:"min=0,max=255"`
	MaxRuntimeSeconds  int            `json:"max_runtime_seconds" api:"min=1,max=86400,default=3600"`
	CooldownSeconds    int            `json:"cooldown_seconds" api:"min=0,max=3600"`
	ValveTravelSeconds int            `json:"valve_travel_seconds" api:"min=1,max=60,default=5"`
	PWMFrequency       *int           `json:"pwm_frequency" api:"min=1,max=40000"`
	ServoMinPulse      *int           `json:"servo_min_pulse" api:"min=500,max=2500"`
	ServoMaxPulse      *int           `json:"servo_max_pulse" api:"min=500,max=2500"`
	AuxGPIO            *int           `json:"aux_gpio" api:"min=0,max=39"`
	Critical           bool           `json:"critical"`
	InvertedLogic      bool           `json:"inverted_logic"`
	SubzoneID          string         `json:"subzone_id" api:"max=32"`
	Metadata           map[string]any `json:"metadata"`
	EspID              string         `json:"esp_id" api:"min=1,max=31"`
	GPIO               *int           `json:"gpio" api:"min=0,max=255"`
}

func (q *upsertRequest) config(espID string, gpio int) actuator.Config {
	return actuator.Config{
		EspID:              espID,
		GPIO:               gpio,
		Type:               q.ActuatorType,
		Name:               q.Name,
		Enabled:            q.Enabled,
		MinValue:           q.MinValue,
		MaxValue:           q.MaxValue,
		DefaultValue:       q.DefaultValue,
		DefaultState:       q.DefaultState,
		DefaultPWM:         q.DefaultPWM,
		MaxRuntimeSeconds:  q.MaxRuntimeSeconds,
		CooldownSeconds:    q.CooldownSeconds,
		ValveTravelSeconds: q.ValveTravelSeconds,
		PWMFrequency:       q.PWMFrequency,
		ServoMinPulse:      q.ServoMinPulse,
		ServoMaxPulse:      q.ServoMaxPulse,
		AuxGPIO:            q.AuxGPIO,
		Critical:           q.Critical,
		InvertedLogic:      q.InvertedLogic,
		SubzoneID:          q.SubzoneID,
		Metadata:           q.Metadata,
	}
}

// check adds the domain's field errors and the path agreement to b.
func (q *upsertRequest) check(b *api.Body, r *http.Request) {
	gpio, _ := strconv.Atoi(r.PathValue("gpio"))
	for _, fe := range actuator.CheckFields(q.config(r.PathValue("esp_id"), gpio)) {
		if !b.Failed(fe.Field) {
			b.Fail(fe.Field, fe.Msg, fe.Type)
		}
	}
	if q.EspID != "" && q.EspID != r.PathValue("esp_id") {
		b.Fail("esp_id", "must equal the path's esp_id", "value_error")
	}
	if q.GPIO != nil && strconv.Itoa(*q.GPIO) != r.PathValue("gpio") {
		b.Fail("gpio", "must equal the path's gpio", "value_error")
	}
}

func (rt *routes) upsert(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req upsertRequest
	b, ok := api.DecodeBody(w, r, &req)
	if !ok {
		return
	}
	req.check(b, r)
	if b.Done(w, r) {
		return
	}
	d, g, ok := rt.target(w, r)
	if !ok {
		return
	}

	c, err := rt.Actuators.Upsert(r.Context(), req.config(d.DeviceID, g))
	if rt.configError(w, r, err) {
		return
	}
	sent, perr := rt.Actuators.Push(r.Context(), c.EspID)
	if errors.Is(perr, device.ErrConfigTooLarge) {
		api.WriteError(w, r, http.StatusBadRequest, "CONFIG_TOO_LARGE", perr.Error(), nil)
		return
	}
	rt.audit(r, p, "actuator config changed", map[string]any{
		"esp_id":        c.EspID,
		"gpio":          c.GPIO,
		"actuator_type": c.Type,
		"mqtt_sent":     sent,
	})

	out := rt.configJSON(c)
	out.ConfigSent = sent
	api.WriteJSON(w, http.StatusOK, out)
}

// configError answers a domain error of a config change; it reports whether it answered.
func (rt *routes) configError(w http.ResponseWriter, r *http.Request, err error) bool {
	return WriteConfigError(w, r, rt.srv, err)
}

// WriteConfigError answers a domain error of an actuator config change
// (pin conflicts, field rules, limits, unknown device) the way the actuator
// routes do; it reports whether it answered. Mock creation uses it too.
func WriteConfigError(w http.ResponseWriter, r *http.Request, srv ErrorWriter, err error) bool {
	var pe *sensor.PinError
	var inv *actuator.InvalidError
	switch {
	case err == nil:
		return false
	case errors.As(err, &pe) && pe.Conflict:
		api.WriteError(w, r, http.StatusConflict, "GPIO_CONFLICT", pe.Msg, map[string]any{"conflict_type": pe.Type})
	case errors.As(err, &pe):
		api.WriteError(w, r, http.StatusBadRequest, "GPIO_RESERVED", pe.Msg, map[string]any{"conflict_type": pe.Type})
	case errors.As(err, &inv):
		var errs []fieldError
		for _, fe := range inv.Errors {
			errs = append(errs, fieldError{Loc: []any{"body", fe.Field}, Msg: fe.Msg, Type: fe.Type})
		}
		writeValidation(w, r, errs)
	case errors.Is(err, actuator.ErrLimit):
		api.WriteError(w, r, http.StatusConflict, "LIMIT_EXCEEDED", err.Error(), nil)
	case errors.Is(err, actuator.ErrNotFound):
		api.WriteError(w, r, http.StatusNotFound, "ACTUATOR_NOT_FOUND", "actuator not found", nil)
	case errors.Is(err, device.ErrNotFound):
		srv.DeviceError(w, r, r.PathValue("esp_id"), err)
	default:
		srv.Internal(w, r, err)
	}
	return true
}

func (rt *routes) remove(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	c, ok := rt.find(w, r)
	if !ok {
		return
	}
	c, err := rt.Actuators.Delete(r.Context(), c.EspID, c.GPIO, "user:"+p.User.Username)
	if rt.configError(w, r, err) {
		return
	}
	sent, _ := rt.Actuators.Push(r.Context(), c.EspID)
	rt.audit(r, p, "actuator config deleted", map[string]any{"esp_id": c.EspID, "gpio": c.GPIO, "mqtt_sent": sent})

	out := rt.configJSON(c)
	out.ConfigSent = sent
	api.WriteJSON(w, http.StatusOK, out)
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// alertConfigResponse is `{success, alert_config}`.
type alertConfigResponse struct {
	Success     bool           `json:"success"`
	AlertConfig map[string]any `json:"alert_config"`
}

// byConfigID resolves a {config_id} path value (the {esp_id} one of the GET route).
func (rt *routes) byConfigID(w http.ResponseWriter, r *http.Request, id string) (actuator.Config, bool) {
	if !uuidPattern.MatchString(id) {
		pathError(w, r, "config_id", "must be a UUID")
		return actuator.Config{}, false
	}
	c, err := rt.Actuators.ByID(id)
	if err != nil {
		api.WriteError(w, r, http.StatusNotFound, "ACTUATOR_NOT_FOUND", "actuator not found", map[string]any{"id": id})
		return c, false
	}
	return c, true
}

func (rt *routes) getAlertConfig(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	if c, ok := rt.byConfigID(w, r, r.PathValue("esp_id")); ok {
		api.WriteJSON(w, http.StatusOK, alertConfigResponse{Success: true, AlertConfig: orEmpty(c.AlertConfig)})
	}
}

// alertConfigRequest is any AlertConfig fields; unknown keys are ignored
// (docs/api.md §1.2), null deletes a key.
type alertConfigRequest struct {
	AlertsEnabled       api.Field[bool]           `json:"alerts_enabled"`
	SuppressionReason   api.Field[string]         `json:"suppression_reason" api:"enum=maintenance|intentionally_offline|calibration|custom"`
	SuppressionNote     api.Field[string]         `json:"suppression_note" api:"max=500"`
	SuppressionUntil    api.Field[string]         `json:"suppression_until" api:"max=40"`
	CustomThresholds    api.Field[map[string]any] `json:"custom_thresholds"`
	SeverityOverride    api.Field[string]         `json:"severity_override" api:"enum=critical|warning|info"`
	PropagateToChildren api.Field[bool]           `json:"propagate_to_children"`
}

// patch is the fields the body names; a null deletes its key.
func (q *alertConfigRequest) patch() map[string]any {
	out := map[string]any{}
	set := func(k string, present, null bool, v any) {
		switch {
		case present && null:
			out[k] = nil
		case present:
			out[k] = v
		}
	}
	set("alerts_enabled", q.AlertsEnabled.Present, q.AlertsEnabled.Null, q.AlertsEnabled.Value)
	set("suppression_reason", q.SuppressionReason.Present, q.SuppressionReason.Null, q.SuppressionReason.Value)
	set("suppression_note", q.SuppressionNote.Present, q.SuppressionNote.Null, q.SuppressionNote.Value)
	set("suppression_until", q.SuppressionUntil.Present, q.SuppressionUntil.Null, q.SuppressionUntil.Value)
	set("custom_thresholds", q.CustomThresholds.Present, q.CustomThresholds.Null, q.CustomThresholds.Value)
	set("severity_override", q.SeverityOverride.Present, q.SeverityOverride.Null, q.SeverityOverride.Value)
	set("propagate_to_children", q.PropagateToChildren.Present, q.PropagateToChildren.Null,
		q.PropagateToChildren.Value)
	return out
}

func (q *alertConfigRequest) Validate(b *api.Body) {
	if u := q.SuppressionUntil; u.Present && !u.Null {
		if _, err := time.Parse(time.RFC3339, u.Value); err != nil {
			b.Fail("suppression_until", "must be an RFC 3339 time", "value_error")
		}
	}
}

func (rt *routes) patchAlertConfig(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req alertConfigRequest
	b, ok := api.DecodeBody(w, r, &req)
	if !ok || b.Done(w, r) {
		return
	}
	c, ok := rt.byConfigID(w, r, r.PathValue("config_id"))
	if !ok {
		return
	}

	ac, err := rt.Actuators.SetAlertConfig(r.Context(), c.ID, req.patch())
	if rt.configError(w, r, err) {
		return
	}
	rt.audit(r, p, "actuator alert config changed", map[string]any{"esp_id": c.EspID, "gpio": c.GPIO})
	api.WriteJSON(w, http.StatusOK, alertConfigResponse{Success: true, AlertConfig: orEmpty(ac)})
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
