package contract

import (
	"strconv"
	"unicode/utf8"
)

// scanFlat walks a flat JSON object of strings without escapes, numbers,
// booleans and null, calling fn for each member. It reports false for
// anything else (nesting, escapes, bad syntax), so the caller can fall back
// to the full decoder: the fast path never decides a drop reason.
func scanFlat(b []byte, fn func(key []byte, kind byte, val []byte) bool) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipWS(b, i+1) == len(b)
	}
	for {
		key, j, ok := scanString(b, i)
		if !ok {
			return false
		}
		i = skipWS(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return false
		}
		var kind byte
		var val []byte
		switch c := b[i]; {
		case c == '"':
			val, i, ok = scanString(b, i)
			kind = 's'
		case c == 't' && hasLit(b, i, "true"):
			kind, val, i, ok = 'b', b[i:i+4], i+4, true
		case c == 'f' && hasLit(b, i, "false"):
			kind, val, i, ok = 'b', b[i:i+5], i+5, true
		case c == 'n' && hasLit(b, i, "null"):
			kind, val, i, ok = 'z', nil, i+4, true
		case c == '-' || c >= '0' && c <= '9':
			j := scanNumber(b, i)
			kind, val, ok = 'n', b[i:j], j > i
			i = j
		default:
			return false
		}
		if !ok || !fn(key, kind, val) {
			return false
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return skipWS(b, i+1) == len(b)
		default:
			return false
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func hasLit(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// scanString reads a string without escapes or control characters.
func scanString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, j, false
		}
	}
	return nil, len(b), false
}

// scanNumber returns the end of a number with JSON's grammar, or i when invalid.
func scanNumber(b []byte, i int) int {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
	default:
		return i
	}
	if j < len(b) && b[j] == '.' {
		k := j + 1
		for k < len(b) && b[k] >= '0' && b[k] <= '9' {
			k++
		}
		if k == j+1 {
			return i
		}
		j = k
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		k := j + 1
		if k < len(b) && (b[k] == '+' || b[k] == '-') {
			k++
		}
		m := k
		for m < len(b) && b[m] >= '0' && b[m] <= '9' {
			m++
		}
		if m == k {
			return i
		}
		j = m
	}
	return j
}

// scanSensorWire fills a sensorWire from a flat payload; false = use the
// full decoder.
func scanSensorWire(payload []byte, w *sensorWire) bool {
	num := func(v []byte) (*float64, bool) {
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return nil, false
		}
		return &f, true
	}
	return scanFlat(payload, func(key []byte, kind byte, v []byte) bool {
		if kind == 'z' {
			return true // null: as absent
		}
		var sp **string
		var fp **float64
		var bp **bool
		switch string(key) {
		case "esp_id":
			sp = &w.EspID
		case "zone_id":
			sp = &w.ZoneID
		case "subzone_id":
			sp = &w.SubzoneID
		case "sensor_type":
			sp = &w.SensorType
		case "unit":
			sp = &w.Unit
		case "quality":
			sp = &w.Quality
		case "_source":
			sp = &w.Source
		case "onewire_address":
			sp = &w.OneWire
		case "gpio":
			fp = &w.GPIO
		case "raw":
			fp = &w.Raw
		case "raw_value":
			fp = &w.RawValue
		case "value":
			fp = &w.Value
		case "ts":
			fp = &w.TS
		case "timestamp":
			fp = &w.Timestamp
		case "seq":
			fp = &w.Seq
		case "i2c_address":
			fp = &w.I2C
		case "raw_mode":
			bp = &w.RawMode
		case "_test_mode":
			bp = &w.TestMode
		case "time_valid":
			bp = &w.TimeValid
		default:
			return true // unknown fields are ignored
		}
		switch {
		case sp != nil && kind == 's':
			s := string(v)
			*sp = &s
		case fp != nil && kind == 'n':
			f, ok := num(v)
			if !ok {
				return false
			}
			*fp = f
		case bp != nil && kind == 'b':
			b := v[0] == 't'
			*bp = &b
		default:
			return false // a mistyped field: let the full decoder name it
		}
		return true
	})
}
