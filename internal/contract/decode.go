package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Drop reasons: the exact metric label values of docs/protocol.md §5.2.
const (
	ReasonUnknownTopic         = "unknown_topic"
	ReasonOversize             = "oversize"
	ReasonEmpty                = "empty"
	ReasonQueueOverflow        = "queue_overflow"
	ReasonBadJSON              = "bad_json"
	ReasonMissingField         = "missing_field"
	ReasonWrongType            = "wrong_type"
	ReasonIDMismatch           = "id_mismatch"
	ReasonBadEspID             = "bad_esp_id"
	ReasonUnknownDevice        = "unknown_device"
	ReasonNotApproved          = "not_approved"
	ReasonDiscoveryRateLimited = "discovery_rate_limited"
	ReasonPendingLimit         = "pending_limit"
	ReasonSeriesLimit          = "series_limit"
	ReasonReplay               = "replay"
	ReasonDuplicate            = "duplicate"
	ReasonTooOld               = "too_old"
	ReasonHandlerError         = "handler_error"
	ReasonHandlerPanic         = "handler_panic"
	ReasonHandlerTimeout       = "handler_timeout"
)

// MaxInboundPayload is the largest accepted device payload (docs/protocol.md §1.6).
const MaxInboundPayload = 4096

// DecodeError is an invalid inbound message: it carries the drop reason.
type DecodeError struct {
	Reason string
	Field  string
	Msg    string
}

func (e *DecodeError) Error() string {
	if e.Field != "" {
		return e.Reason + ": " + e.Field + ": " + e.Msg
	}
	return e.Reason + ": " + e.Msg
}

// DropReason is the metric label of this error.
func (e *DecodeError) DropReason() string { return e.Reason }

// object is a decoded JSON object whose numbers are kept as json.Number so
// integer fields can be checked exactly.
type object map[string]any

func parseObject(b []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &DecodeError{Reason: ReasonBadJSON, Msg: err.Error()}
	}
	if dec.More() {
		return nil, &DecodeError{Reason: ReasonBadJSON, Msg: "trailing data after JSON value"}
	}
	o, ok := v.(map[string]any)
	if !ok {
		return nil, &DecodeError{Reason: ReasonBadJSON, Msg: "payload is not a JSON object"}
	}
	return o, nil
}

// lookup returns the value of the first present key (aliases in priority order).
func (o object) lookup(keys []string) (string, any, bool) {
	for _, k := range keys {
		if v, ok := o[k]; ok && v != nil {
			return k, v, true
		}
	}
	return keys[0], nil, false
}

func missing(key string) error {
	return &DecodeError{Reason: ReasonMissingField, Field: key, Msg: "required field is missing"}
}

func wrongType(key, want string) error {
	return &DecodeError{Reason: ReasonWrongType, Field: key, Msg: "must be " + want}
}

// scalar is what a JSON field is read as: string, integer, number or boolean.
type scalar interface {
	string | int64 | float64 | bool
}

// convert reads one present value as T, or names what the field must be.
// The type parameter says which JSON kind the field has.
func convert[T scalar](key string, v any) (T, error) {
	var out T
	var err error
	switch p := any(&out).(type) {
	case *string:
		*p, err = asString(key, v)
	case *int64:
		*p, err = asInteger(key, v)
	case *float64:
		*p, err = asNumber(key, v)
	case *bool:
		*p, err = asBool(key, v)
	}
	return out, err
}

func asString(key string, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", wrongType(key, "a string")
	}
	return s, nil
}

// asInteger accepts JSON integers and integral floats (docs/protocol.md §5.2 step 5).
func asInteger(key string, v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, wrongType(key, "an integer")
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
		return 0, wrongType(key, "an integer")
	}
	return int64(f), nil
}

func asNumber(key string, v any) (float64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, wrongType(key, "a number")
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, wrongType(key, "a finite number")
	}
	return f, nil
}

func asBool(key string, v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, wrongType(key, "a boolean")
	}
	return b, nil
}

// decoder collects the first error so decoders read as a list of fields.
type decoder struct {
	o   object
	err error
}

// field reads the first present of keys (aliases in priority order) as T;
// present is false when none is there. Once the decoder holds an error it
// reads nothing more, so the first error is the one reported.
func field[T scalar](d *decoder, need bool, keys ...string) (v T, present bool) {
	if d.err != nil {
		return v, false
	}
	k, raw, ok := d.o.lookup(keys)
	if !ok {
		if need {
			d.err = missing(k)
		}
		return v, false
	}
	v, d.err = convert[T](k, raw)
	return v, d.err == nil
}

// required reads a field that must be present.
func required[T scalar](d *decoder, keys ...string) T {
	v, _ := field[T](d, true, keys...)
	return v
}

// requiredIf reads a field that must be present when need holds; absent, it
// is the zero value.
func requiredIf[T scalar](d *decoder, need bool, keys ...string) T {
	v, _ := field[T](d, need, keys...)
	return v
}

// optional reads a field that may be absent or null (nil then).
func optional[T scalar](d *decoder, keys ...string) *T {
	v, ok := field[T](d, false, keys...)
	if !ok {
		return nil
	}
	return &v
}

// text reads an optional string; absent is "".
func (d *decoder) text(keys ...string) string {
	v, _ := field[string](d, false, keys...)
	return v
}

// matchIDs enforces the docs/protocol.md §3 rule: esp_id and gpio in the payload, if present,
// equal the topic's values.
func (d *decoder) matchIDs(t Topic, espRequired, gpioRequired bool) {
	esp, ok := field[string](d, espRequired, "esp_id")
	if ok && esp != t.EspID {
		d.err = &DecodeError{
			Reason: ReasonIDMismatch,
			Field:  "esp_id",
			Msg:    fmt.Sprintf("payload %q differs from topic %q", esp, t.EspID),
		}
		return
	}
	if t.GPIO < 0 {
		return
	}
	g, ok := field[int64](d, gpioRequired, "gpio")
	if ok && g != int64(t.GPIO) {
		d.err = &DecodeError{
			Reason: ReasonIDMismatch,
			Field:  "gpio",
			Msg:    fmt.Sprintf("payload %d differs from topic %d", g, t.GPIO),
		}
	}
}

// decode parses payload and lets fill read the fields; the result carries
// the decoder's first error.
func decode[T any](payload []byte, fill func(d *decoder) T) (T, error) {
	o, err := parseObject(payload)
	if err != nil {
		var zero T
		return zero, err
	}
	d := &decoder{o: o}
	v := fill(d)
	return v, d.err
}

// Heartbeat is `system/heartbeat` (docs/protocol.md §3.1.2).
type Heartbeat struct {
	EspID, ZoneID, MasterZoneID string
	ZoneAssigned                *bool
	TS, Uptime, HeapFree, RSSI  int64
	SensorCount, ActuatorCount  *int64
	// Newer-firmware and mock fields, kept when present.
	Seq                          *int64
	SystemState, BootSequenceID  string
	ResetReason, FirmwareVersion string
	WifiIP, HardwareType         string
	TimeValid                    *bool
	ActiveHandoverEpoch          *int64
}

// DecodeHeartbeat decodes and validates a heartbeat for topic t.
func DecodeHeartbeat(t Topic, payload []byte) (Heartbeat, error) {
	return decode(payload, func(d *decoder) (h Heartbeat) {
		d.matchIDs(t, false, false)
		h.EspID = t.EspID
		h.ZoneID = d.text("zone_id")
		h.MasterZoneID = d.text("master_zone_id")
		h.ZoneAssigned = optional[bool](d, "zone_assigned")
		h.TS = required[int64](d, "ts")
		h.Uptime = required[int64](d, "uptime")
		h.HeapFree = required[int64](d, "heap_free", "free_heap")
		h.RSSI = required[int64](d, "wifi_rssi")
		h.SensorCount = optional[int64](d, "sensor_count", "active_sensors")
		h.ActuatorCount = optional[int64](d, "actuator_count", "active_actuators")
		h.Seq = optional[int64](d, "seq")
		h.SystemState = d.text("system_state", "state")
		h.BootSequenceID = d.text("boot_sequence_id")
		h.ResetReason = d.text("reset_reason")
		h.FirmwareVersion = d.text("firmware_version")
		h.WifiIP = d.text("wifi_ip")
		h.HardwareType = d.text("hardware_type")
		h.TimeValid = optional[bool](d, "time_valid")
		h.ActiveHandoverEpoch = optional[int64](d, "active_handover_epoch")
		return h
	})
}

// SensorData is `sensor/{gpio}/data` (docs/protocol.md §3.1.1).
type SensorData struct {
	EspID, ZoneID, SubzoneID string
	GPIO                     int
	// SensorType is the wire type, lower-cased.
	SensorType string
	// Raw is the raw word; DS18B20 negatives are already sign-corrected.
	Raw           int64
	Value         *float64
	Unit, Quality string
	TS            int64
	RawMode       bool
	Source        string
	TestMode      bool
	Seq           *int64
	TimeValid     *bool
	I2CAddress    *int64
	OneWireAddr   string
}

// DecodeSensorData decodes and validates a reading for topic t.
func DecodeSensorData(t Topic, payload []byte) (SensorData, error) {
	if s, ok := decodeSensorFast(t, payload); ok {
		return s, nil
	}
	return decodeSensorTolerant(t, payload)
}

func decodeSensorTolerant(t Topic, payload []byte) (SensorData, error) {
	return decode(payload, func(d *decoder) (s SensorData) {
		d.matchIDs(t, false, false)
		s.EspID, s.GPIO = t.EspID, t.GPIO
		s.ZoneID = d.text("zone_id")
		s.SubzoneID = d.text("subzone_id")
		s.SensorType = sensorType(d)
		s.Raw = rawWordField(d, s.SensorType)
		s.Value = optional[float64](d, "value")
		s.Unit = d.text("unit")
		s.Quality = d.text("quality")
		s.TS = required[int64](d, "ts", "timestamp")

		s.RawMode = true
		if b := optional[bool](d, "raw_mode"); b != nil {
			s.RawMode = *b
		}
		s.Source = d.text("_source")
		if b := optional[bool](d, "_test_mode"); b != nil {
			s.TestMode = *b
		}

		s.Seq = optional[int64](d, "seq")
		s.TimeValid = optional[bool](d, "time_valid")
		s.I2CAddress = optional[int64](d, "i2c_address")
		s.OneWireAddr = d.text("onewire_address")
		return s
	})
}

// sensorType reads the lower-cased wire type, which must not be empty.
func sensorType(d *decoder) string {
	st := strings.ToLower(strings.TrimSpace(required[string](d, "sensor_type")))
	if d.err == nil && st == "" {
		d.err = &DecodeError{
			Reason: ReasonMissingField,
			Field:  "sensor_type",
			Msg:    "must not be empty",
		}
	}
	return st
}

// rawWordField reads `raw` (alias `raw_value`) as a raw word.
func rawWordField(d *decoder, sensorType string) int64 {
	raw := required[float64](d, "raw", "raw_value")
	if d.err != nil {
		return 0
	}
	w, ok := rawWord(raw, sensorType)
	if !ok {
		d.err = wrongType("raw", "an integer 0..4294967295")
	}
	return w
}

// rawWord checks that raw is a 32-bit word; a DS18B20 sends negative
// temperatures as their unsigned two's complement, which is corrected here.
func rawWord(raw float64, sensorType string) (int64, bool) {
	if raw != math.Trunc(raw) || raw < -(1<<31) || raw > math.MaxUint32 {
		return 0, false
	}
	w := int64(raw)
	if w >= 1<<31 && strings.Contains(sensorType, "ds18b20") {
		w -= 1 << 32
	}
	return w, true
}

// Will is the Last Will `system/will` (docs/protocol.md §3.1.9).
type Will struct {
	Status, Reason string
	Timestamp      int64
}

// DecodeWill decodes a last-will payload.
func DecodeWill(t Topic, payload []byte) (Will, error) {
	return decode(payload, func(d *decoder) (w Will) {
		w.Status = required[string](d, "status")
		w.Reason = d.text("reason")
		if ts := optional[int64](d, "timestamp"); ts != nil {
			w.Timestamp = *ts
		}
		return w
	})
}

// ActuatorStatus is `actuator/{gpio}/status` (docs/protocol.md §3.1.3).
type ActuatorStatus struct {
	EspID, ZoneID, SubzoneID string
	GPIO                     int
	TS                       int64
	Type                     string
	// State is on/off/pwm/error/unknown after normalising the bool form.
	State string
	// PWM is 0–255 as reported; ValueFraction is set when the device reported
	// `value` already on the 0–1 scale (mocks).
	PWM           *int64
	ValueFraction *float64
	RuntimeMS     *int64
	Emergency     string
	LastCommand   string
	Error         string
	Seq           *int64
}

// DecodeActuatorStatus decodes an actuator status.
func DecodeActuatorStatus(t Topic, payload []byte) (ActuatorStatus, error) {
	return decode(payload, func(d *decoder) (a ActuatorStatus) {
		d.matchIDs(t, false, false)
		a.EspID, a.GPIO = t.EspID, t.GPIO
		a.ZoneID = d.text("zone_id")
		a.SubzoneID = d.text("subzone_id")
		a.TS = required[int64](d, "ts")
		a.Type = required[string](d, "type", "actuator_type")
		a.State = actuatorState(d)
		a.PWM, a.ValueFraction = actuatorLevel(d)

		a.RuntimeMS = optional[int64](d, "runtime_ms")
		a.Emergency = d.text("emergency")
		if a.Emergency == "" {
			a.Emergency = "normal"
		}
		a.LastCommand = d.text("last_command", "command")
		a.Error = d.text("error")
		a.Seq = optional[int64](d, "seq")
		return a
	})
}

// actuatorState reads `state`, a boolean or one of the state words.
func actuatorState(d *decoder) string {
	if d.err != nil {
		return ""
	}
	switch v := d.o["state"].(type) {
	case nil:
		d.err = missing("state")
	case bool:
		return map[bool]string{true: "on", false: "off"}[v]
	case string:
		switch s := strings.ToLower(v); s {
		case "on", "off", "pwm", "error", "unknown":
			return s
		}
		d.err = wrongType("state", "a boolean or on/off/pwm/error/unknown")
	default:
		d.err = wrongType("state", "a boolean")
	}
	return ""
}

// actuatorLevel reads `pwm` (0–255). Mocks send `value` instead: on the
// 0–1 scale when written with a decimal point (fraction), else on the
// device's 0–255 scale.
func actuatorLevel(d *decoder) (pwm *int64, fraction *float64) {
	pwm = optional[int64](d, "pwm")
	if pwm == nil && d.err == nil {
		v := required[float64](d, "value")
		switch {
		case d.err != nil:
			d.err = missing("pwm")
		case isFraction(d.o["value"]) && v >= 0 && v <= 1:
			fraction = &v
		case v == math.Trunc(v):
			p := int64(v)
			pwm = &p
		default:
			d.err = wrongType("value", "0-1 or an integer 0-255")
		}
	}
	if pwm != nil && (*pwm < 0 || *pwm > 255) {
		d.err = wrongType("pwm", "an integer 0-255")
	}
	return pwm, fraction
}

// isFraction reports whether a json.Number was written with a decimal point
// (`1.0` from a 0–1 mock) rather than as an integer (`1` on the 0–255 scale).
func isFraction(v any) bool {
	n, ok := v.(json.Number)
	return ok && strings.ContainsAny(string(n), ".eE")
}

// ActuatorResponse is `actuator/{gpio}/response` (docs/protocol.md §3.1.4).
type ActuatorResponse struct {
	EspID, ZoneID string
	GPIO          int
	TS            int64
	Command       string
	Value         *float64
	Duration      *int64
	Success       bool
	Message       string
	CorrelationID string
	Seq           *int64
}

// DecodeActuatorResponse decodes a command response.
func DecodeActuatorResponse(t Topic, payload []byte) (ActuatorResponse, error) {
	return decode(payload, func(d *decoder) (r ActuatorResponse) {
		d.matchIDs(t, true, true)
		r.EspID, r.GPIO = t.EspID, t.GPIO
		r.ZoneID = d.text("zone_id")
		r.TS = int64(required[float64](d, "ts"))
		r.Command = required[string](d, "command")
		r.Value = optional[float64](d, "value")
		r.Duration = optional[int64](d, "duration")
		r.Success = required[bool](d, "success")
		r.Message = d.text("message")
		r.CorrelationID = d.text("correlation_id")
		r.Seq = optional[int64](d, "seq")
		return r
	})
}

// ActuatorAlert is `actuator/{gpio}/alert` (docs/protocol.md §3.1.5).
type ActuatorAlert struct {
	EspID, ZoneID string
	GPIO          int
	TS            int64
	AlertType     string
	Message       string
	Seq           *int64
}

// DecodeActuatorAlert decodes an actuator alert.
func DecodeActuatorAlert(t Topic, payload []byte) (ActuatorAlert, error) {
	return decode(payload, func(d *decoder) (a ActuatorAlert) {
		d.matchIDs(t, true, true)
		a.EspID, a.GPIO = t.EspID, t.GPIO
		a.ZoneID = d.text("zone_id")
		a.TS = int64(required[float64](d, "ts"))
		a.AlertType = required[string](d, "alert_type", "type")
		a.Message = d.text("message")
		a.Seq = optional[int64](d, "seq")
		return a
	})
}

// ConfigResponse is `config_response` (docs/protocol.md §3.1.6).
type ConfigResponse struct {
	Status        string // success or error (`failed` is mapped to error)
	Type          string
	Count         int64
	Message       string
	ErrorCode     string
	FailedItem    json.RawMessage
	CorrelationID string
	Seq           *int64
}

// DecodeConfigResponse decodes a config result.
func DecodeConfigResponse(t Topic, payload []byte) (ConfigResponse, error) {
	return decode(payload, func(d *decoder) (c ConfigResponse) {
		d.matchIDs(t, false, false)
		c.Status = required[string](d, "status")
		if c.Status == "failed" {
			c.Status = "error"
		}
		c.Type = required[string](d, "type", "config_type")
		if n := optional[int64](d, "count"); n != nil {
			c.Count = *n
		}
		c.Message = d.text("message")
		c.ErrorCode = d.text("error_code")
		if d.err == nil && c.Status == "error" && c.ErrorCode == "" {
			d.err = missing("error_code")
		}
		if fi, ok := d.o["failed_item"]; ok && fi != nil && d.err == nil {
			if b, err := json.Marshal(fi); err == nil {
				c.FailedItem = b
			}
		}
		c.CorrelationID = d.text("correlation_id")
		c.Seq = optional[int64](d, "seq")
		return c
	})
}

// ZoneAck is `zone/ack` (docs/protocol.md §3.1.7).
type ZoneAck struct {
	Status, ZoneID, MasterZoneID   string
	TS                             int64
	Message, CorrelationID, Reason string
	Seq                            *int64
}

// DecodeZoneAck decodes a zone acknowledgement.
func DecodeZoneAck(t Topic, payload []byte) (ZoneAck, error) {
	return decode(payload, func(d *decoder) (z ZoneAck) {
		d.matchIDs(t, false, false)
		z.Status = required[string](d, "status")
		success := z.Status == "zone_assigned"
		z.ZoneID = requiredIf[string](d, success, "zone_id")
		z.MasterZoneID = d.text("master_zone_id")
		z.TS = int64(required[float64](d, "ts"))
		z.Message = requiredIf[string](d, z.Status == "error", "message")
		z.CorrelationID = d.text("correlation_id")
		z.Reason = d.text("reason_code")
		z.Seq = optional[int64](d, "seq")
		return z
	})
}

// SubzoneAck is `subzone/ack` (docs/protocol.md §3.1.8).
type SubzoneAck struct {
	Status, SubzoneID string
	Timestamp         int64
	ErrorCode         *int64
	Message           string
	ReasonCode        string
	CorrelationID     string
	Seq               *int64
}

// DecodeSubzoneAck decodes a subzone acknowledgement.
func DecodeSubzoneAck(t Topic, payload []byte) (SubzoneAck, error) {
	return decode(payload, func(d *decoder) (s SubzoneAck) {
		d.matchIDs(t, true, false)
		s.Status = required[string](d, "status")
		if d.err == nil {
			if _, ok := d.o["subzone_id"]; !ok {
				d.err = missing("subzone_id")
			}
		}
		s.SubzoneID = d.text("subzone_id")
		s.Timestamp = required[int64](d, "timestamp", "ts")
		isErr := s.Status == "error"
		if isErr && d.err == nil {
			s.ErrorCode = optional[int64](d, "error_code")
			if s.ErrorCode == nil && d.err == nil {
				d.err = missing("error_code")
			}
		}
		s.Message = requiredIf[string](d, isErr, "message")
		s.ReasonCode = d.text("reason_code")
		s.CorrelationID = d.text("correlation_id")
		s.Seq = optional[int64](d, "seq")
		return s
	})
}

// Diagnostics is `system/diagnostics` (docs/protocol.md §3.1.10); TS is uptime.
type Diagnostics struct {
	UptimeTS                                 *int64
	HeapFree, HeapMinFree, HeapFragmentation *int64
	UptimeSeconds, ErrorCount, RSSI          *int64
	WifiConnected, MQTTConnected             *bool
	SensorCount, ActuatorCount               *int64
	SystemState                              string
}

// DecodeDiagnostics decodes a health snapshot.
func DecodeDiagnostics(t Topic, payload []byte) (Diagnostics, error) {
	return decode(payload, func(d *decoder) (g Diagnostics) {
		d.matchIDs(t, true, false)
		g.UptimeTS = optional[int64](d, "ts")
		g.HeapFree = optional[int64](d, "heap_free")
		g.HeapMinFree = optional[int64](d, "heap_min_free")
		g.HeapFragmentation = optional[int64](d, "heap_fragmentation")
		g.UptimeSeconds = optional[int64](d, "uptime_seconds")
		g.ErrorCount = optional[int64](d, "error_count")
		g.WifiConnected = optional[bool](d, "wifi_connected")
		g.MQTTConnected = optional[bool](d, "mqtt_connected")
		g.RSSI = optional[int64](d, "wifi_rssi")
		g.SensorCount = optional[int64](d, "sensor_count")
		g.ActuatorCount = optional[int64](d, "actuator_count")
		g.SystemState = d.text("system_state")
		return g
	})
}

// EmergencyReply is `actuator/emergency/response` or `/error`, or
// `system/command/response` (docs/protocol.md §3.1.11): a status or error with text.
type EmergencyReply struct {
	Status    string // response: emergency_cleared / factory_reset_initiated
	Error     string // error topic: unauthorized / clear_failed
	Message   string
	Timestamp *int64 // uptime ms on emergency/response
	EspID     string
	Command   string
	Success   *bool
}

// DecodeEmergencyResponse decodes `actuator/emergency/response`.
func DecodeEmergencyResponse(t Topic, payload []byte) (EmergencyReply, error) {
	return decode(payload, func(d *decoder) (r EmergencyReply) {
		d.matchIDs(t, false, false)
		r.Status = required[string](d, "status")
		r.Timestamp = optional[int64](d, "timestamp")
		r.Message = d.text("message")
		return r
	})
}

// DecodeEmergencyError decodes `actuator/emergency/error`.
func DecodeEmergencyError(t Topic, payload []byte) (EmergencyReply, error) {
	return decode(payload, func(d *decoder) (r EmergencyReply) {
		d.matchIDs(t, false, false)
		r.Error = required[string](d, "error")
		r.Message = d.text("message")
		return r
	})
}

// DecodeSystemCommandResponse decodes `system/command/response`.
func DecodeSystemCommandResponse(t Topic, payload []byte) (EmergencyReply, error) {
	return decode(payload, func(d *decoder) (r EmergencyReply) {
		d.matchIDs(t, false, false)
		r.Status = required[string](d, "status")
		r.EspID = t.EspID
		r.Command = d.text("command")
		r.Success = optional[bool](d, "success")
		r.Message = d.text("error", "message")
		return r
	})
}

// Validate decodes payload with the decoder for t.Kind and discards the
// result; used where only validity matters (fuzzing, pre-checks).
func Validate(t Topic, payload []byte) error {
	var err error
	switch t.Kind {
	case KindHeartbeat:
		_, err = DecodeHeartbeat(t, payload)
	case KindSensorData:
		_, err = DecodeSensorData(t, payload)
	case KindWill:
		_, err = DecodeWill(t, payload)
	case KindActuatorStatus:
		_, err = DecodeActuatorStatus(t, payload)
	case KindActuatorResponse:
		_, err = DecodeActuatorResponse(t, payload)
	case KindActuatorAlert:
		_, err = DecodeActuatorAlert(t, payload)
	case KindConfigResponse:
		_, err = DecodeConfigResponse(t, payload)
	case KindZoneAck:
		_, err = DecodeZoneAck(t, payload)
	case KindSubzoneAck:
		_, err = DecodeSubzoneAck(t, payload)
	case KindDiagnostics:
		_, err = DecodeDiagnostics(t, payload)
	case KindEmergencyResponse:
		_, err = DecodeEmergencyResponse(t, payload)
	case KindEmergencyError:
		_, err = DecodeEmergencyError(t, payload)
	case KindSystemCommandResponse:
		_, err = DecodeSystemCommandResponse(t, payload)
	case KindNewer:
		_, err = parseObject(payload)
	default:
		err = ErrUnknownTopic
	}
	return err
}

// sensorWire is the typed form of a well-formed reading. Decoding into it
// is several times cheaper than the generic object; anything it cannot
// take (wrong types, bad JSON) goes to the tolerant decoder, which reports
// the precise drop reason.
type sensorWire struct {
	EspID      *string  `json:"esp_id"`
	ZoneID     *string  `json:"zone_id"`
	SubzoneID  *string  `json:"subzone_id"`
	GPIO       *float64 `json:"gpio"`
	SensorType *string  `json:"sensor_type"`
	Raw        *float64 `json:"raw"`
	RawValue   *float64 `json:"raw_value"`
	Value      *float64 `json:"value"`
	Unit       *string  `json:"unit"`
	Quality    *string  `json:"quality"`
	TS         *float64 `json:"ts"`
	Timestamp  *float64 `json:"timestamp"`
	RawMode    *bool    `json:"raw_mode"`
	Source     *string  `json:"_source"`
	TestMode   *bool    `json:"_test_mode"`
	Seq        *float64 `json:"seq"`
	TimeValid  *bool    `json:"time_valid"`
	I2C        *float64 `json:"i2c_address"`
	OneWire    *string  `json:"onewire_address"`
}

func str0(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func intPtr(f *float64) (*int64, bool) {
	if f == nil {
		return nil, true
	}
	if *f != math.Trunc(*f) || math.Abs(*f) > 1<<53 {
		return nil, false
	}
	i := int64(*f)
	return &i, true
}

// decodeSensorFast returns ok=false when the tolerant path must decide.
func decodeSensorFast(t Topic, payload []byte) (SensorData, bool) {
	var w sensorWire
	if !scanSensorWire(payload, &w) {
		return SensorData{}, false
	}
	raw := w.Raw
	if raw == nil {
		raw = w.RawValue
	}
	ts := w.TS
	if ts == nil {
		ts = w.Timestamp
	}
	if w.SensorType == nil || raw == nil || ts == nil || *ts != math.Trunc(*ts) {
		return SensorData{}, false
	}
	if (w.EspID != nil && *w.EspID != t.EspID) || (w.GPIO != nil && *w.GPIO != float64(t.GPIO)) {
		return SensorData{}, false
	}

	s := SensorData{
		EspID:       t.EspID,
		GPIO:        t.GPIO,
		ZoneID:      str0(w.ZoneID),
		SubzoneID:   str0(w.SubzoneID),
		SensorType:  strings.ToLower(strings.TrimSpace(*w.SensorType)),
		Value:       w.Value,
		Unit:        str0(w.Unit),
		Quality:     str0(w.Quality),
		TS:          int64(*ts),
		RawMode:     true,
		Source:      str0(w.Source),
		TimeValid:   w.TimeValid,
		OneWireAddr: str0(w.OneWire),
	}
	var rawOK bool
	if s.Raw, rawOK = rawWord(*raw, s.SensorType); s.SensorType == "" || !rawOK {
		return SensorData{}, false
	}
	if w.RawMode != nil {
		s.RawMode = *w.RawMode
	}
	if w.TestMode != nil {
		s.TestMode = *w.TestMode
	}
	var ok1, ok2 bool
	if s.Seq, ok1 = intPtr(w.Seq); !ok1 {
		return SensorData{}, false
	}
	if s.I2CAddress, ok2 = intPtr(w.I2C); !ok2 {
		return SensorData{}, false
	}
	return s, true
}
