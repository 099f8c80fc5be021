package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Drop reasons: the exact metric label values of CONTRACT §5.2.
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
	ReasonReplay               = "replay"
	ReasonDuplicate            = "duplicate"
	ReasonTooOld               = "too_old"
	ReasonHandlerError         = "handler_error"
	ReasonHandlerPanic         = "handler_panic"
	ReasonHandlerTimeout       = "handler_timeout"
)

// MaxInboundPayload is the largest accepted device payload (CONTRACT §1.6).
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

func (o object) str(required bool, keys ...string) (string, bool, error) {
	k, v, ok := o.lookup(keys)
	if !ok {
		if required {
			return "", false, missing(k)
		}
		return "", false, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", false, wrongType(k, "a string")
	}
	return s, true, nil
}

// integer accepts JSON integers and integral floats (CONTRACT §5.2 step 5).
func (o object) integer(required bool, keys ...string) (int64, bool, error) {
	k, v, ok := o.lookup(keys)
	if !ok {
		if required {
			return 0, false, missing(k)
		}
		return 0, false, nil
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return 0, false, wrongType(k, "an integer")
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i, true, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
		return 0, false, wrongType(k, "an integer")
	}
	return int64(f), true, nil
}

func (o object) number(required bool, keys ...string) (float64, bool, error) {
	k, v, ok := o.lookup(keys)
	if !ok {
		if required {
			return 0, false, missing(k)
		}
		return 0, false, nil
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return 0, false, wrongType(k, "a number")
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false, wrongType(k, "a finite number")
	}
	return f, true, nil
}

func (o object) boolean(required bool, keys ...string) (bool, bool, error) {
	k, v, ok := o.lookup(keys)
	if !ok {
		if required {
			return false, false, missing(k)
		}
		return false, false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, false, wrongType(k, "a boolean")
	}
	return b, true, nil
}

// decoder collects the first error so decoders read as a list of fields.
type decoder struct {
	o   object
	err error
}

func (d *decoder) str(required bool, keys ...string) string {
	if d.err != nil {
		return ""
	}
	s, _, err := d.o.str(required, keys...)
	d.err = err
	return s
}

func (d *decoder) optInt(keys ...string) *int64 {
	if d.err != nil {
		return nil
	}
	i, ok, err := d.o.integer(false, keys...)
	d.err = err
	if !ok {
		return nil
	}
	return &i
}

func (d *decoder) reqInt(keys ...string) int64 {
	if d.err != nil {
		return 0
	}
	i, _, err := d.o.integer(true, keys...)
	d.err = err
	return i
}

func (d *decoder) optNum(keys ...string) *float64 {
	if d.err != nil {
		return nil
	}
	f, ok, err := d.o.number(false, keys...)
	d.err = err
	if !ok {
		return nil
	}
	return &f
}

func (d *decoder) reqNum(keys ...string) float64 {
	if d.err != nil {
		return 0
	}
	f, _, err := d.o.number(true, keys...)
	d.err = err
	return f
}

func (d *decoder) optBool(keys ...string) *bool {
	if d.err != nil {
		return nil
	}
	b, ok, err := d.o.boolean(false, keys...)
	d.err = err
	if !ok {
		return nil
	}
	return &b
}

func (d *decoder) reqBool(keys ...string) bool {
	if d.err != nil {
		return false
	}
	b, _, err := d.o.boolean(true, keys...)
	d.err = err
	return b
}

// matchIDs enforces the §3 rule: esp_id and gpio in the payload, if present,
// equal the topic's values.
func (d *decoder) matchIDs(t Topic, espRequired, gpioRequired bool) {
	if d.err != nil {
		return
	}
	esp, ok, err := d.o.str(espRequired, "esp_id")
	if err != nil {
		d.err = err
		return
	}
	if ok && esp != t.EspID {
		d.err = &DecodeError{Reason: ReasonIDMismatch, Field: "esp_id", Msg: fmt.Sprintf("payload %q differs from topic %q", esp, t.EspID)}
		return
	}
	if t.GPIO < 0 {
		return
	}
	g, ok, err := d.o.integer(gpioRequired, "gpio")
	if err != nil {
		d.err = err
		return
	}
	if ok && g != int64(t.GPIO) {
		d.err = &DecodeError{Reason: ReasonIDMismatch, Field: "gpio", Msg: fmt.Sprintf("payload %d differs from topic %d", g, t.GPIO)}
	}
}

func newDecoder(payload []byte) (*decoder, error) {
	o, err := parseObject(payload)
	if err != nil {
		return nil, err
	}
	return &decoder{o: o}, nil
}

// Heartbeat is `system/heartbeat` (CONTRACT §3.1.2).
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
	var h Heartbeat
	d, err := newDecoder(payload)
	if err != nil {
		return h, err
	}
	d.matchIDs(t, false, false)
	h.EspID = t.EspID
	h.ZoneID = d.str(false, "zone_id")
	h.MasterZoneID = d.str(false, "master_zone_id")
	h.ZoneAssigned = d.optBool("zone_assigned")
	h.TS = d.reqInt("ts")
	h.Uptime = d.reqInt("uptime")
	h.HeapFree = d.reqInt("heap_free", "free_heap")
	h.RSSI = d.reqInt("wifi_rssi")
	h.SensorCount = d.optInt("sensor_count", "active_sensors")
	h.ActuatorCount = d.optInt("actuator_count", "active_actuators")
	h.Seq = d.optInt("seq")
	h.SystemState = d.str(false, "system_state", "state")
	h.BootSequenceID = d.str(false, "boot_sequence_id")
	h.ResetReason = d.str(false, "reset_reason")
	h.FirmwareVersion = d.str(false, "firmware_version")
	h.WifiIP = d.str(false, "wifi_ip")
	h.HardwareType = d.str(false, "hardware_type")
	h.TimeValid = d.optBool("time_valid")
	h.ActiveHandoverEpoch = d.optInt("active_handover_epoch")
	return h, d.err
}

// SensorData is `sensor/{gpio}/data` (CONTRACT §3.1.1).
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
	var s SensorData
	d, err := newDecoder(payload)
	if err != nil {
		return s, err
	}
	d.matchIDs(t, false, false)
	s.EspID, s.GPIO = t.EspID, t.GPIO
	s.ZoneID = d.str(false, "zone_id")
	s.SubzoneID = d.str(false, "subzone_id")
	s.SensorType = strings.ToLower(strings.TrimSpace(d.str(true, "sensor_type")))
	if d.err == nil && s.SensorType == "" {
		d.err = &DecodeError{Reason: ReasonMissingField, Field: "sensor_type", Msg: "must not be empty"}
	}
	raw := d.reqNum("raw", "raw_value")
	if d.err == nil {
		if raw != math.Trunc(raw) || raw < -(1<<31) || raw > math.MaxUint32 {
			d.err = wrongType("raw", "an integer 0..4294967295")
		} else {
			s.Raw = int64(raw)
			if s.Raw >= 1<<31 && strings.Contains(s.SensorType, "ds18b20") {
				s.Raw -= 1 << 32
			}
		}
	}
	s.Value = d.optNum("value")
	s.Unit = d.str(false, "unit")
	s.Quality = d.str(false, "quality")
	s.TS = d.reqInt("ts", "timestamp")
	s.RawMode = true
	if b := d.optBool("raw_mode"); b != nil {
		s.RawMode = *b
	}
	s.Source = d.str(false, "_source")
	if b := d.optBool("_test_mode"); b != nil {
		s.TestMode = *b
	}
	s.Seq = d.optInt("seq")
	s.TimeValid = d.optBool("time_valid")
	s.I2CAddress = d.optInt("i2c_address")
	s.OneWireAddr = d.str(false, "onewire_address")
	return s, d.err
}

// Will is the Last Will `system/will` (CONTRACT §3.1.9).
type Will struct {
	Status, Reason string
	Timestamp      int64
}

// DecodeWill decodes a last-will payload.
func DecodeWill(t Topic, payload []byte) (Will, error) {
	var w Will
	d, err := newDecoder(payload)
	if err != nil {
		return w, err
	}
	w.Status = d.str(true, "status")
	w.Reason = d.str(false, "reason")
	if ts := d.optInt("timestamp"); ts != nil {
		w.Timestamp = *ts
	}
	return w, d.err
}

// ActuatorStatus is `actuator/{gpio}/status` (CONTRACT §3.1.3).
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
	var a ActuatorStatus
	d, err := newDecoder(payload)
	if err != nil {
		return a, err
	}
	d.matchIDs(t, false, false)
	a.EspID, a.GPIO = t.EspID, t.GPIO
	a.ZoneID = d.str(false, "zone_id")
	a.SubzoneID = d.str(false, "subzone_id")
	a.TS = d.reqInt("ts")
	a.Type = d.str(true, "type", "actuator_type")
	if d.err == nil {
		switch v := d.o["state"].(type) {
		case nil:
			d.err = missing("state")
		case bool:
			a.State = map[bool]string{true: "on", false: "off"}[v]
		case string:
			switch s := strings.ToLower(v); s {
			case "on", "off", "pwm", "error", "unknown":
				a.State = s
			default:
				d.err = wrongType("state", "a boolean or on/off/pwm/error/unknown")
			}
		default:
			d.err = wrongType("state", "a boolean")
		}
	}
	a.PWM = d.optInt("pwm")
	if a.PWM == nil && d.err == nil {
		// Mocks send `value` instead of `pwm`: on the 0–1 scale when written
		// with a decimal point, else on the device's 0–255 scale.
		v := d.reqNum("value")
		switch {
		case d.err != nil:
			d.err = missing("pwm")
		case isFraction(d.o["value"]) && v >= 0 && v <= 1:
			a.ValueFraction = &v
		case v == math.Trunc(v):
			p := int64(v)
			a.PWM = &p
		default:
			d.err = wrongType("value", "0-1 or an integer 0-255")
		}
	}
	if a.PWM != nil && (*a.PWM < 0 || *a.PWM > 255) {
		d.err = wrongType("pwm", "an integer 0-255")
	}
	a.RuntimeMS = d.optInt("runtime_ms")
	a.Emergency = d.str(false, "emergency")
	if a.Emergency == "" {
		a.Emergency = "normal"
	}
	a.LastCommand = d.str(false, "last_command", "command")
	a.Error = d.str(false, "error")
	a.Seq = d.optInt("seq")
	return a, d.err
}

// isFraction reports whether a json.Number was written with a decimal point
// (`1.0` from a 0–1 mock) rather than as an integer (`1` on the 0–255 scale).
func isFraction(v any) bool {
	n, ok := v.(json.Number)
	return ok && strings.ContainsAny(string(n), ".eE")
}

// ActuatorResponse is `actuator/{gpio}/response` (CONTRACT §3.1.4).
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
	var r ActuatorResponse
	d, err := newDecoder(payload)
	if err != nil {
		return r, err
	}
	d.matchIDs(t, true, true)
	r.EspID, r.GPIO = t.EspID, t.GPIO
	r.ZoneID = d.str(false, "zone_id")
	r.TS = int64(d.reqNum("ts"))
	r.Command = d.str(true, "command")
	r.Value = d.optNum("value")
	r.Duration = d.optInt("duration")
	r.Success = d.reqBool("success")
	r.Message = d.str(false, "message")
	r.CorrelationID = d.str(false, "correlation_id")
	r.Seq = d.optInt("seq")
	return r, d.err
}

// ActuatorAlert is `actuator/{gpio}/alert` (CONTRACT §3.1.5).
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
	var a ActuatorAlert
	d, err := newDecoder(payload)
	if err != nil {
		return a, err
	}
	d.matchIDs(t, true, true)
	a.EspID, a.GPIO = t.EspID, t.GPIO
	a.ZoneID = d.str(false, "zone_id")
	a.TS = int64(d.reqNum("ts"))
	a.AlertType = d.str(true, "alert_type", "type")
	a.Message = d.str(false, "message")
	a.Seq = d.optInt("seq")
	return a, d.err
}

// ConfigResponse is `config_response` (CONTRACT §3.1.6).
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
	var c ConfigResponse
	d, err := newDecoder(payload)
	if err != nil {
		return c, err
	}
	d.matchIDs(t, false, false)
	c.Status = d.str(true, "status")
	if c.Status == "failed" {
		c.Status = "error"
	}
	c.Type = d.str(true, "type", "config_type")
	if n := d.optInt("count"); n != nil {
		c.Count = *n
	}
	c.Message = d.str(false, "message")
	c.ErrorCode = d.str(false, "error_code")
	if d.err == nil && c.Status == "error" && c.ErrorCode == "" {
		d.err = missing("error_code")
	}
	if fi, ok := d.o["failed_item"]; ok && fi != nil && d.err == nil {
		if b, err := json.Marshal(fi); err == nil {
			c.FailedItem = b
		}
	}
	c.CorrelationID = d.str(false, "correlation_id")
	c.Seq = d.optInt("seq")
	return c, d.err
}

// ZoneAck is `zone/ack` (CONTRACT §3.1.7).
type ZoneAck struct {
	Status, ZoneID, MasterZoneID   string
	TS                             int64
	Message, CorrelationID, Reason string
	Seq                            *int64
}

// DecodeZoneAck decodes a zone acknowledgement.
func DecodeZoneAck(t Topic, payload []byte) (ZoneAck, error) {
	var z ZoneAck
	d, err := newDecoder(payload)
	if err != nil {
		return z, err
	}
	d.matchIDs(t, false, false)
	z.Status = d.str(true, "status")
	success := z.Status == "zone_assigned"
	z.ZoneID = d.str(success, "zone_id")
	z.MasterZoneID = d.str(false, "master_zone_id")
	z.TS = int64(d.reqNum("ts"))
	z.Message = d.str(z.Status == "error", "message")
	z.CorrelationID = d.str(false, "correlation_id")
	z.Reason = d.str(false, "reason_code")
	z.Seq = d.optInt("seq")
	return z, d.err
}

// SubzoneAck is `subzone/ack` (CONTRACT §3.1.8).
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
	var s SubzoneAck
	d, err := newDecoder(payload)
	if err != nil {
		return s, err
	}
	d.matchIDs(t, true, false)
	s.Status = d.str(true, "status")
	if d.err == nil {
		if _, ok := d.o["subzone_id"]; !ok {
			d.err = missing("subzone_id")
		}
	}
	s.SubzoneID = d.str(false, "subzone_id")
	s.Timestamp = d.reqInt("timestamp", "ts")
	isErr := s.Status == "error"
	if isErr && d.err == nil {
		s.ErrorCode = d.optInt("error_code")
		if s.ErrorCode == nil && d.err == nil {
			d.err = missing("error_code")
		}
	}
	s.Message = d.str(isErr, "message")
	s.ReasonCode = d.str(false, "reason_code")
	s.CorrelationID = d.str(false, "correlation_id")
	s.Seq = d.optInt("seq")
	return s, d.err
}

// Diagnostics is `system/diagnostics` (CONTRACT §3.1.10); TS is uptime.
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
	var g Diagnostics
	d, err := newDecoder(payload)
	if err != nil {
		return g, err
	}
	d.matchIDs(t, true, false)
	g.UptimeTS = d.optInt("ts")
	g.HeapFree = d.optInt("heap_free")
	g.HeapMinFree = d.optInt("heap_min_free")
	g.HeapFragmentation = d.optInt("heap_fragmentation")
	g.UptimeSeconds = d.optInt("uptime_seconds")
	g.ErrorCount = d.optInt("error_count")
	g.WifiConnected = d.optBool("wifi_connected")
	g.MQTTConnected = d.optBool("mqtt_connected")
	g.RSSI = d.optInt("wifi_rssi")
	g.SensorCount = d.optInt("sensor_count")
	g.ActuatorCount = d.optInt("actuator_count")
	g.SystemState = d.str(false, "system_state")
	return g, d.err
}

// EmergencyReply is `actuator/emergency/response` or `/error`, or
// `system/command/response` (CONTRACT §3.1.11): a status or error with text.
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
	var r EmergencyReply
	d, err := newDecoder(payload)
	if err != nil {
		return r, err
	}
	d.matchIDs(t, false, false)
	r.Status = d.str(true, "status")
	r.Timestamp = d.optInt("timestamp")
	r.Message = d.str(false, "message")
	return r, d.err
}

// DecodeEmergencyError decodes `actuator/emergency/error`.
func DecodeEmergencyError(t Topic, payload []byte) (EmergencyReply, error) {
	var r EmergencyReply
	d, err := newDecoder(payload)
	if err != nil {
		return r, err
	}
	d.matchIDs(t, false, false)
	r.Error = d.str(true, "error")
	r.Message = d.str(false, "message")
	return r, d.err
}

// DecodeSystemCommandResponse decodes `system/command/response`.
func DecodeSystemCommandResponse(t Topic, payload []byte) (EmergencyReply, error) {
	var r EmergencyReply
	d, err := newDecoder(payload)
	if err != nil {
		return r, err
	}
	d.matchIDs(t, false, false)
	r.Status = d.str(true, "status")
	r.EspID = t.EspID
	r.Command = d.str(false, "command")
	r.Success = d.optBool("success")
	r.Message = d.str(false, "error", "message")
	return r, d.err
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
	s := SensorData{EspID: t.EspID, GPIO: t.GPIO, ZoneID: str0(w.ZoneID), SubzoneID: str0(w.SubzoneID),
		SensorType: strings.ToLower(strings.TrimSpace(*w.SensorType)), Value: w.Value, Unit: str0(w.Unit),
		Quality: str0(w.Quality), TS: int64(*ts), RawMode: true, Source: str0(w.Source), TimeValid: w.TimeValid,
		OneWireAddr: str0(w.OneWire)}
	if s.SensorType == "" || *raw != math.Trunc(*raw) || *raw < -(1<<31) || *raw > math.MaxUint32 {
		return SensorData{}, false
	}
	s.Raw = int64(*raw)
	if s.Raw >= 1<<31 && strings.Contains(s.SensorType, "ds18b20") {
		s.Raw -= 1 << 32
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
