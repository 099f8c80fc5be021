package sim

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// payload is a device payload built key by key. The firmware concatenates
// most of its payloads by hand, so keys come in its order and strings are
// copied unescaped: a hub string with a quote in it yields invalid JSON, as
// on the device (docs/protocol.md §1.4).
type payload []byte

func object() payload { return payload("{") }

func (p payload) raw(key, value string) payload {
	if len(p) > 1 {
		p = append(p, ',')
	}
	p = append(p, '"')
	p = append(p, key...)
	p = append(p, '"', ':')
	return append(p, value...)
}

func (p payload) str(key, value string) payload { return p.raw(key, `"`+value+`"`) }

func (p payload) num(key string, value int64) payload {
	return p.raw(key, strconv.FormatInt(value, 10))
}

func (p payload) flag(key string, value bool) payload { return p.raw(key, strconv.FormatBool(value)) }

func (p payload) end() []byte { return append(p, '}') }

// fieldOf reads a command field the way the firmware does (docs/protocol.md
// docs/protocol.md §3.2.1): it finds `"key":` anywhere in the text, skips spaces, and takes a
// quoted value up to its closing quote, an unquoted one up to the first `,`
// after it, else up to `}`.
func fieldOf(text, key string) string {
	pattern := `"` + key + `":`
	at := strings.Index(text, pattern)
	if at < 0 {
		return ""
	}
	at += len(pattern)
	for at < len(text) && text[at] == ' ' {
		at++
	}
	if at < len(text) && text[at] == '"' {
		end := strings.IndexByte(text[at+1:], '"')
		if end < 0 {
			return ""
		}
		return text[at+1 : at+1+end]
	}
	end := strings.IndexByte(text[at:], ',')
	if end < 0 {
		end = strings.IndexByte(text[at:], '}')
	}
	if end < 0 {
		end = len(text) - at
	}
	return strings.ReplaceAll(strings.TrimSpace(text[at:at+end]), `"`, "")
}

var floatPrefix = regexp.MustCompile(
	`^[ \t\n]*[+-]?(inf(inity)?|nan|[0-9]+\.?[0-9]*([eE][+-]?[0-9]+)?|\.[0-9]+([eE][+-]?[0-9]+)?)`)

// toFloat is Arduino's String.toFloat: the longest numeric prefix as a
// 32-bit float, 0 when there is none.
func toFloat(s string) float32 {
	m := strings.TrimLeft(floatPrefix.FindString(strings.ToLower(s)), " \t\n")
	if m == "" {
		return 0
	}
	v, err := strconv.ParseFloat(m, 32)
	if err != nil && !math.IsInf(v, 0) {
		return 0
	}
	return float32(v)
}

var intPrefix = regexp.MustCompile(`^[ \t\n]*[+-]?[0-9]+`)

// toUint32 is String.toInt (a 32-bit long, saturating) cast to uint32, so
// `-1` becomes 4294967295 (docs/protocol.md §3.2.1).
func toUint32(s string) uint32 {
	m := strings.TrimSpace(intPrefix.FindString(s))
	if m == "" {
		return 0
	}
	v, err := strconv.ParseInt(m, 10, 32)
	if err != nil {
		v = math.MaxInt32
		if strings.HasPrefix(m, "-") {
			v = math.MinInt32
		}
	}
	return uint32(int32(v))
}

// toUint8 is String.toInt cast to uint8, as for the gpio level of a topic.
func toUint8(s string) int { return int(uint8(toUint32(s))) }

// threeDecimals prints a float as Arduino's String(value, 3) does.
func threeDecimals(v float32) string {
	switch {
	case math.IsNaN(float64(v)):
		return "nan"
	case math.IsInf(float64(v), 1):
		return "inf"
	case math.IsInf(float64(v), -1):
		return "-inf"
	}
	return strconv.FormatFloat(float64(v), 'f', 3, 32)
}

// parseInPool parses a payload as the firmware's fixed JSON pool would: it
// fails when the text is not JSON or when its values do not fit (docs/protocol.md
// docs/protocol.md §1.6: 16 bytes per object member or array element plus each copied
// string's length + 1).
func parseInPool(text []byte, pool int) (any, bool) {
	var v any
	if err := json.Unmarshal(text, &v); err != nil {
		return nil, false
	}
	return v, poolCost(v) <= pool
}

func poolCost(v any) int {
	switch v := v.(type) {
	case map[string]any:
		cost := 0
		for k, member := range v {
			cost += 16 + len(k) + 1 + poolCost(member)
		}
		return cost
	case []any:
		cost := 0
		for _, e := range v {
			cost += 16 + poolCost(e)
		}
		return cost
	case string:
		return len(v) + 1
	}
	return 0
}

// asString is ArduinoJson's as<String>(): a missing key reads "null".
func asString(m map[string]any, key string) string {
	switch v := m[key].(type) {
	case nil:
		return "null"
	case string:
		return v
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}
