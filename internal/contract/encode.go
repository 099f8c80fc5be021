package contract

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// Marshal encodes v per J1/J5: compact, no HTML escaping, no trailing newline.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// Decimal is a finite float encoded with at most Places decimals and at
// least one (`1.0`, `6.19`), matching the contract's examples. Non-finite
// values encode as 0 so a payload is never invalid JSON (J3).
type Decimal struct {
	V      float64
	Places int
}

// MarshalJSON implements json.Marshaler.
func (d Decimal) MarshalJSON() ([]byte, error) {
	v := d.V
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	p := math.Pow(10, float64(d.Places))
	v = math.Round(v*p) / p
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !bytes.ContainsAny([]byte(s), ".eE") {
		s += ".0"
	}
	return []byte(s), nil
}

// HeartbeatAck is `system/heartbeat/ack` (docs/protocol.md §3.2.10). No further keys
// may be added: the newer firmware's parse pool is 256 bytes.
type HeartbeatAck struct {
	Status          string `json:"status"`
	ConfigAvailable bool   `json:"config_available"`
	ServerTime      int64  `json:"server_time"`
	HandoverEpoch   int64  `json:"handover_epoch"`
	AckType         string `json:"ack_type"`
	ContractVersion int    `json:"contract_version"`
}

// NewHeartbeatAck builds the ack; epoch is the device's active_handover_epoch
// (nil or ≤ 0 → 1).
func NewHeartbeatAck(status string, configAvailable bool, now time.Time, epoch *int64) HeartbeatAck {
	e := int64(1)
	if epoch != nil && *epoch > 0 {
		e = *epoch
	}
	return HeartbeatAck{
		Status:          status,
		ConfigAvailable: configAvailable,
		ServerTime:      now.Unix(),
		HandoverEpoch:   e,
		AckType:         "heartbeat",
		ContractVersion: 2,
	}
}

// ActuatorCommand is `actuator/{gpio}/command` (docs/protocol.md §3.2.1).
type ActuatorCommand struct {
	Command       string  `json:"command"`
	Value         Decimal `json:"value"`
	Duration      int64   `json:"duration"`
	Timestamp     int64   `json:"timestamp"`
	CorrelationID string  `json:"correlation_id"`
}

// NewActuatorCommand builds a command with the value rounded to 3 places (K2).
func NewActuatorCommand(
	command string, value float64, duration int64, now time.Time, correlationID string,
) ActuatorCommand {
	return ActuatorCommand{
		Command:       command,
		Value:         Decimal{V: value, Places: 3},
		Duration:      duration,
		Timestamp:     now.Unix(),
		CorrelationID: correlationID,
	}
}

// SensorConfigItem is one element of `config.sensors` (docs/protocol.md §3.2.2).
type SensorConfigItem struct {
	GPIO       int    `json:"gpio"`
	SensorType string `json:"sensor_type"`
	SensorName string `json:"sensor_name"`
	SubzoneID  string `json:"subzone_id"`
	Active     bool   `json:"active"`
	RawMode    bool   `json:"raw_mode"`
}

// ActuatorConfigItem is one element of `config.actuators` with canonical keys.
type ActuatorConfigItem struct {
	GPIO          int    `json:"gpio"`
	ActuatorType  string `json:"actuator_type"`
	ActuatorName  string `json:"actuator_name"`
	SubzoneID     string `json:"subzone_id"`
	Active        bool   `json:"active"`
	AuxGPIO       int    `json:"aux_gpio"`
	Critical      bool   `json:"critical"`
	InvertedLogic bool   `json:"inverted_logic"`
	DefaultState  bool   `json:"default_state"`
	DefaultPWM    int    `json:"default_pwm"`
}

// Config is the combined `config` message; both arrays are always present (P2).
type Config struct {
	Sensors       []SensorConfigItem   `json:"sensors"`
	Actuators     []ActuatorConfigItem `json:"actuators"`
	Timestamp     int64                `json:"timestamp"`
	CorrelationID string               `json:"correlation_id"`
}

// MarshalConfig encodes c, turning nil arrays into `[]`.
func MarshalConfig(c Config) ([]byte, error) {
	if c.Sensors == nil {
		c.Sensors = []SensorConfigItem{}
	}
	if c.Actuators == nil {
		c.Actuators = []ActuatorConfigItem{}
	}
	return Marshal(c)
}

// SystemCommand is `system/command` (docs/protocol.md §3.2.3); only factory_reset
// with top-level confirm is ever sent to the baseline.
type SystemCommand struct {
	Command       string `json:"command"`
	Confirm       bool   `json:"confirm"`
	Timestamp     int64  `json:"timestamp"`
	CorrelationID string `json:"correlation_id"`
}

// ZoneAssign is `zone/assign` (docs/protocol.md §3.2.4).
type ZoneAssign struct {
	ZoneID        string `json:"zone_id"`
	MasterZoneID  string `json:"master_zone_id"`
	ZoneName      string `json:"zone_name"`
	KaiserID      string `json:"kaiser_id"`
	Timestamp     int64  `json:"timestamp"`
	CorrelationID string `json:"correlation_id"`
}

// SubzoneAssign is `subzone/assign` (docs/protocol.md §3.2.5); safe_mode_active is
// always sent explicitly (Z3).
type SubzoneAssign struct {
	SubzoneID      string `json:"subzone_id"`
	SubzoneName    string `json:"subzone_name"`
	ParentZoneID   string `json:"parent_zone_id"`
	AssignedGPIOs  []int  `json:"assigned_gpios"`
	SafeModeActive bool   `json:"safe_mode_active"`
	Timestamp      int64  `json:"timestamp"`
	CorrelationID  string `json:"correlation_id"`
}

// SubzoneRemove is `subzone/remove` (docs/protocol.md §3.2.6).
type SubzoneRemove struct {
	SubzoneID     string `json:"subzone_id"`
	Reason        string `json:"reason"`
	Timestamp     int64  `json:"timestamp"`
	CorrelationID string `json:"correlation_id"`
}

// DeviceEmergency is `actuator/emergency` (docs/protocol.md §3.2.8), ≤ 160 bytes.
type DeviceEmergency struct {
	Command       string `json:"command"`
	AuthToken     string `json:"auth_token"`
	CorrelationID string `json:"correlation_id"`
}

// BroadcastEmergency is `kaiser/broadcast/emergency` (docs/protocol.md §3.2.9); the
// timestamp is an ISO-8601 string, never a number.
type BroadcastEmergency struct {
	Command   string `json:"command"`
	Reason    string `json:"reason"`
	IssuedBy  string `json:"issued_by"`
	Timestamp string `json:"timestamp"`
	// AuthToken is the hub's broadcast token (docs/protocol.md S4); newer
	// production builds refuse a stop without it, the baseline ignores it.
	AuthToken string `json:"auth_token,omitempty"`
}

// NewBroadcastEmergency builds the global stop with the length limits of docs/protocol.md §3.2.9.
func NewBroadcastEmergency(reason, issuedBy string, now time.Time) BroadcastEmergency {
	return BroadcastEmergency{
		Command:   "emergency_stop",
		Reason:    truncate(SanitizeText(reason), 24),
		IssuedBy:  truncate(SanitizeText(issuedBy), 16),
		Timestamp: now.UTC().Format("2006-01-02T15:04:05Z"),
	}
}

// SetEmergencyToken is the `system/command` that provisions an emergency
// token on newer firmware (docs/protocol.md §3.2.3, S4); the baseline ignores it.
type SetEmergencyToken struct {
	Command       string `json:"command"` // always set_emergency_token
	Token         string `json:"token"`
	TokenType     string `json:"token_type"` // esp or broadcast
	Timestamp     int64  `json:"timestamp"`
	CorrelationID string `json:"correlation_id"`
}

// NewSetEmergencyToken builds the provisioning command for a token of tokenType.
func NewSetEmergencyToken(tokenType, token string, now time.Time, correlationID string) SetEmergencyToken {
	return SetEmergencyToken{
		Command:       "set_emergency_token",
		Token:         token,
		TokenType:     tokenType,
		Timestamp:     now.Unix(),
		CorrelationID: correlationID,
	}
}

// Processed is `sensor/{gpio}/processed` (docs/protocol.md §3.2.11).
type Processed struct {
	ProcessedValue Decimal `json:"processed_value"`
	Unit           string  `json:"unit"`
	Quality        string  `json:"quality"`
	Timestamp      int64   `json:"timestamp"`
}

// ServerStatus is the retained `server/status` payload.
type ServerStatus struct {
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
	Timestamp int64  `json:"timestamp,omitempty"`
}

// MaxDevicePacket is the whole-packet budget the hub assumes for a device
// unless it is recorded as an ESP32 dev board (docs/protocol.md §1.6).
const MaxDevicePacket = 1024

// FitsPacket reports whether topic+payload fit a device packet limit (docs/protocol.md §1.6).
func FitsPacket(topic string, payload []byte, limit int) bool {
	return len(topic)+len(payload)+7 <= limit
}

// SanitizeText removes `"`, `\` and control characters from free text sent
// to devices, which copy it unescaped into their own JSON (J4).
func SanitizeText(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			continue
		}
		out = append(out, r)
	}
	return string(out)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// TimeSource tells whether a record's device time came from the device.
type TimeSource string

// Time sources (docs/protocol.md §5.3).
const (
	SourceDevice TimeSource = "device"
	SourceHub    TimeSource = "hub"
)

// MaxFuture is how far ahead of the hub's receive time a device time may
// lie and still be the device's (docs/protocol.md §5.3).
const MaxFuture = 30 * time.Second

// NormaliseTime applies docs/protocol.md §5.3: milliseconds are scaled, and zero,
// implausible or out-of-range device times fall back to the receive time, as
// do times more than MaxFuture ahead of it: a device clock running fast (or
// the hub's stepped back) would otherwise date a record in the future, where
// it hides from every "up to now" query and outranks later ones. The source
// "hub" is the flag a record carries for it.
func NormaliseTime(t int64, receivedAt time.Time) (time.Time, TimeSource) {
	if t > 1e10 {
		t /= 1000
	}
	if t == 0 || t < 1700000000 || t > 2500000000 {
		return receivedAt, SourceHub
	}
	at := time.Unix(t, 0).UTC()
	if at.After(receivedAt.Add(MaxFuture)) {
		return receivedAt, SourceHub
	}
	return at, SourceDevice
}
