// Package contract is the MQTT wire contract of the El Trabajante firmware:
// topic grammar, tolerant decoding of every device→hub payload, exact compact
// encoding of every hub→device payload, and timestamp normalisation
// (docs/protocol.md). It imports nothing of the project.
package contract

import (
	"strconv"
	"strings"
)

// Kind names what a device→hub topic carries. The values double as metric
// label values, so they are short and stable.
type Kind string

// Inbound kinds (docs/protocol.md §2.1).
const (
	KindHeartbeat             Kind = "heartbeat"
	KindWill                  Kind = "will"
	KindDiagnostics           Kind = "diagnostics"
	KindSensorData            Kind = "sensor_data"
	KindActuatorStatus        Kind = "actuator_status"
	KindActuatorResponse      Kind = "actuator_response"
	KindActuatorAlert         Kind = "actuator_alert"
	KindConfigResponse        Kind = "config_response"
	KindZoneAck               Kind = "zone_ack"
	KindSubzoneAck            Kind = "subzone_ack"
	KindEmergencyResponse     Kind = "emergency_response"
	KindEmergencyError        Kind = "emergency_error"
	KindSystemCommandResponse Kind = "system_command_response"
	// KindNewer covers topics only newer firmware publishes; the hub logs
	// and ignores them (docs/protocol.md §2.1).
	KindNewer Kind = "newer_firmware"
)

// InboundKinds lists every kind the hub routes, for metrics and tests.
var InboundKinds = []Kind{
	KindHeartbeat, KindWill, KindDiagnostics, KindSensorData, KindActuatorStatus,
	KindActuatorResponse, KindActuatorAlert, KindConfigResponse, KindZoneAck,
	KindSubzoneAck, KindEmergencyResponse, KindEmergencyError,
	KindSystemCommandResponse, KindNewer,
}

// Topic is a parsed device topic `kaiser/{kaiser_id}/esp/{esp_id}/{suffix}`.
type Topic struct {
	KaiserID string
	EspID    string
	Suffix   string
	Kind     Kind
	// GPIO is set for sensor/{gpio}/... and actuator/{gpio}/... topics, else -1.
	GPIO int
}

// Errors returned by ParseTopic; their DropReason is the metric label.
var (
	ErrUnknownTopic = &DecodeError{Reason: ReasonUnknownTopic, Msg: "topic does not match the device grammar"}
	ErrBadEspID     = &DecodeError{Reason: ReasonBadEspID, Msg: "esp_id must be 1-31 characters of [A-Za-z0-9_-]"}
)

// MaxInboundKaiserID is the longest kaiser_id accepted on inbound topics.
const MaxInboundKaiserID = 63

// ParseTopic parses a device→hub topic. Hub→device topics and anything
// outside the grammar give ErrUnknownTopic; an invalid esp_id gives ErrBadEspID.
func ParseTopic(topic string) (Topic, error) {
	t := Topic{GPIO: -1}
	rest, ok := strings.CutPrefix(topic, "kaiser/")
	if !ok {
		return t, ErrUnknownTopic
	}
	kaiser, rest, ok := strings.Cut(rest, "/")
	if !ok || len(kaiser) > MaxInboundKaiserID || strings.ContainsAny(kaiser, "+#") {
		return t, ErrUnknownTopic
	}
	rest, ok = strings.CutPrefix(rest, "esp/")
	if !ok {
		return t, ErrUnknownTopic
	}
	esp, suffix, ok := strings.Cut(rest, "/")
	if !ok || suffix == "" {
		return t, ErrUnknownTopic
	}
	t.KaiserID, t.EspID, t.Suffix = kaiser, esp, suffix
	kind, gpio, ok := classify(suffix)
	if !ok {
		return t, ErrUnknownTopic
	}
	t.Kind, t.GPIO = kind, gpio
	if !ValidEspID(esp) {
		return t, ErrBadEspID
	}
	return t, nil
}

// ValidEspID reports whether id matches docs/protocol.md §1.2: 1–31 of [A-Za-z0-9_-].
func ValidEspID(id string) bool {
	if len(id) == 0 || len(id) > 31 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

var fixedSuffixes = map[string]Kind{
	"system/heartbeat":            KindHeartbeat,
	"system/will":                 KindWill,
	"system/diagnostics":          KindDiagnostics,
	"system/command/response":     KindSystemCommandResponse,
	"config_response":             KindConfigResponse,
	"zone/ack":                    KindZoneAck,
	"subzone/ack":                 KindSubzoneAck,
	"actuator/emergency/response": KindEmergencyResponse,
	"actuator/emergency/error":    KindEmergencyError,
	// Newer firmware only: logged and ignored.
	"system/error":                    KindNewer,
	"system/heartbeat_metrics":        KindNewer,
	"system/intent_outcome":           KindNewer,
	"system/intent_outcome/lifecycle": KindNewer,
	"system/queue_pressure":           KindNewer,
	"actuator/emergency/ack":          KindNewer,
	"actuator/recovery_confirm":       KindNewer,
}

func classify(suffix string) (Kind, int, bool) {
	if k, ok := fixedSuffixes[suffix]; ok {
		return k, -1, true
	}
	first, rest, ok := strings.Cut(suffix, "/")
	if !ok {
		return "", -1, false
	}
	level, leaf, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(leaf, "/") {
		return "", -1, false
	}
	gpio, ok := parseGPIOLevel(level)
	if !ok {
		return "", -1, false
	}
	switch first + "/" + leaf {
	case "sensor/data":
		return KindSensorData, gpio, true
	case "sensor/response":
		return KindNewer, gpio, true
	case "actuator/status":
		return KindActuatorStatus, gpio, true
	case "actuator/response":
		return KindActuatorResponse, gpio, true
	case "actuator/alert":
		return KindActuatorAlert, gpio, true
	}
	return "", -1, false
}

// parseGPIOLevel accepts a topic level of digits only with a value 0–255.
func parseGPIOLevel(s string) (int, bool) {
	if s == "" || len(s) > 3 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 255 {
		return 0, false
	}
	return n, true
}

// hubOnlySuffixes are device-topic suffixes only the hub may publish (docs/protocol.md §2.2).
var hubOnlySuffixes = map[string]bool{
	"config":               true,
	"system/command":       true,
	"zone/assign":          true,
	"subzone/assign":       true,
	"subzone/remove":       true,
	"subzone/safe":         true,
	"actuator/emergency":   true,
	"system/heartbeat/ack": true,
}

// IsHubToDevice reports whether topic is one only the hub may write:
// commands, config, zone/subzone assignment, heartbeat ack, the processed
// echo, the device emergency topic, broadcast and hub status topics.
func IsHubToDevice(topic string) bool {
	if topic == "kaiser/broadcast" || strings.HasPrefix(topic, "kaiser/broadcast/") {
		return true
	}
	rest, ok := strings.CutPrefix(topic, "kaiser/")
	if !ok {
		return false
	}
	_, rest, ok = strings.Cut(rest, "/")
	if !ok {
		return false
	}
	if rest == "server/status" || strings.HasPrefix(rest, "server/") {
		return true
	}
	rest, ok = strings.CutPrefix(rest, "esp/")
	if !ok {
		return false
	}
	_, suffix, ok := strings.Cut(rest, "/")
	return ok && hubSuffix(suffix, func(string) bool { return true })
}

// IsHubToDeviceSuffix reports whether suffix, the part after
// `kaiser/{k}/esp/{id}/`, names a hub→device topic of docs/protocol.md §2.2,
// or is a subscription filter that matches only such topics: `+` may stand
// for the gpio level (the firmware's `actuator/+/command`).
func IsHubToDeviceSuffix(suffix string) bool {
	return hubSuffix(suffix, func(level string) bool {
		_, gpio := parseGPIOLevel(level)
		return gpio || level == "+"
	})
}

// hubSuffix reports a hub-only device-topic suffix: a fixed one, or
// `actuator/{level}/command` or `sensor/{level}/processed` with a middle
// level that levelOK accepts.
func hubSuffix(suffix string, levelOK func(string) bool) bool {
	if hubOnlySuffixes[suffix] {
		return true
	}
	first, rest, ok := strings.Cut(suffix, "/")
	if !ok {
		return false
	}
	level, leaf, _ := strings.Cut(rest, "/")
	return levelOK(level) && (first == "actuator" && leaf == "command" || first == "sensor" && leaf == "processed")
}

// DeviceTopic builds `kaiser/{kaiser}/esp/{esp}/{suffix}`; kaiser may be empty (docs/protocol.md A2).
func DeviceTopic(kaiserID, espID, suffix string) string {
	return "kaiser/" + kaiserID + "/esp/" + espID + "/" + suffix
}

// BroadcastEmergencyTopic is the only broadcast topic the firmware knows.
const BroadcastEmergencyTopic = "kaiser/broadcast/emergency"

// ServerStatusTopic is the retained hub liveness topic (docs/protocol.md §3.2.11).
func ServerStatusTopic(kaiserID string) string { return "kaiser/" + kaiserID + "/server/status" }

// HubSubscriptions is the normative subscription set (docs/protocol.md §2.4). None of
// these filters matches a hub publication.
var HubSubscriptions = []string{
	"kaiser/+/esp/+/system/heartbeat",
	"kaiser/+/esp/+/system/will",
	"kaiser/+/esp/+/system/diagnostics",
	"kaiser/+/esp/+/system/command/response",
	"kaiser/+/esp/+/sensor/+/data",
	"kaiser/+/esp/+/actuator/+/status",
	"kaiser/+/esp/+/actuator/+/alert",
	"kaiser/+/esp/+/actuator/+/response",
	"kaiser/+/esp/+/actuator/emergency/error",
	"kaiser/+/esp/+/config_response",
	"kaiser/+/esp/+/zone/ack",
	"kaiser/+/esp/+/subzone/ack",
}

// DeviceSubscriptions returns the 8 filters the baseline firmware subscribes
// to after its first connect, in its order (docs/protocol.md D4). With an empty
// kaiser id the zone/assign subscription sits under `god`.
func DeviceSubscriptions(kaiserID, espID string) []string {
	zoneRoot := kaiserID
	if zoneRoot == "" {
		zoneRoot = "god"
	}
	return []string{
		DeviceTopic(kaiserID, espID, "system/command"),
		DeviceTopic(kaiserID, espID, "config"),
		BroadcastEmergencyTopic,
		DeviceTopic(kaiserID, espID, "actuator/+/command"),
		DeviceTopic(kaiserID, espID, "actuator/emergency"),
		DeviceTopic(zoneRoot, espID, "zone/assign"),
		DeviceTopic(kaiserID, espID, "subzone/assign"),
		DeviceTopic(kaiserID, espID, "subzone/remove"),
	}
}

// ValidKaiserID reports whether id may be sent to devices (J4, 1–32 chars).
func ValidKaiserID(id string) bool { return ValidIdentifier(id, 32) }

// ValidIdentifier checks J4: `^[A-Za-z0-9_.:-]{1,max}$`.
func ValidIdentifier(id string, max int) bool {
	if len(id) == 0 || len(id) > max {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && c != '_' && c != '.' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}
