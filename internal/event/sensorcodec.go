package event

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/kaiserhub/kaiser/internal/flatjson"
)

// sensor_data is nearly every event the replicas relay (one per reading),
// so Encode and Decode have a fast path for it: the same bytes as
// encoding/json would write, and the same payload as it would read, with
// encoding/json itself as the fallback for whatever the fast path does not
// cover (escaped strings, a value JSON cannot hold, a mistyped field).
// docs/BENCHMARKS.md, "The relay's cost", has what it saves.

// appendSensorEvent appends the encoded event of d, as Encode writes it;
// false (and b unchanged in content) when encoding/json must write it.
func appendSensorEvent(b []byte, unixNano int64, d SensorData) ([]byte, bool) {
	for _, s := range [...]string{d.EspID, d.SensorType, d.Unit, d.Quality, d.ProcessingMode, d.ZoneID, d.SubzoneID, d.OneWireAddress} {
		if !plainString(s) {
			return b, false
		}
	}
	if !finite(d.Value) || !finite(d.RawValue) || (d.ProcessedValue != nil && !finite(*d.ProcessedValue)) {
		return b, false // encoding/json refuses it, with its error
	}

	b = append(b, `{"type":"sensor_data"`...)
	if unixNano != 0 {
		b = append(b, `,"time":`...)
		b = strconv.AppendInt(b, unixNano, 10)
	}
	b = appendField(b, `,"data":{"esp_id":`, d.EspID)
	b = append(b, `,"gpio":`...)
	b = strconv.AppendInt(b, int64(d.GPIO), 10)
	b = appendField(b, `,"sensor_type":`, d.SensorType)
	b = append(b, `,"value":`...)
	b = appendFloat(b, d.Value)
	b = append(b, `,"raw_value":`...)
	b = appendFloat(b, d.RawValue)
	b = append(b, `,"processed_value":`...)
	if d.ProcessedValue == nil {
		b = append(b, "null"...)
	} else {
		b = appendFloat(b, *d.ProcessedValue)
	}
	b = appendField(b, `,"unit":`, d.Unit)
	b = appendField(b, `,"quality":`, d.Quality)
	b = appendField(b, `,"processing_mode":`, d.ProcessingMode)
	b = appendField(b, `,"zone_id":`, d.ZoneID)
	b = appendField(b, `,"subzone_id":`, d.SubzoneID)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, d.Timestamp, 10)
	if d.I2CAddress != nil {
		b = append(b, `,"i2c_address":`...)
		b = strconv.AppendInt(b, int64(*d.I2CAddress), 10)
	}
	if d.OneWireAddress != "" {
		b = appendField(b, `,"onewire_address":`, d.OneWireAddress)
	}
	return append(b, "}}"...), true
}

func appendField(b []byte, key, s string) []byte {
	b = append(b, key...)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainString reports a string encoding/json writes as it is, between
// quotes: valid UTF-8 without control characters, quotes, backslashes,
// the HTML characters it escapes, or U+2028/U+2029.
func plainString(s string) bool {
	for i, r := range s {
		switch {
		case r < 0x20, r == '"', r == '\\', r == '<', r == '>', r == '&', r == '\u2028', r == '\u2029':
			return false
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return false
			}
		}
	}
	return true
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// appendFloat writes f as encoding/json does: the shortest representation,
// in exponent form only for very large or very small magnitudes.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// decodeSensorData is the registry's decoder of sensor_data payloads: the
// fast path, or encoding/json where it does not apply.
func decodeSensorData(data []byte) (Payload, error) {
	if d, ok := scanSensorData(data); ok {
		return d, nil
	}
	var d SensorData
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	return d, nil
}

// scanSensorData reads a flat sensor_data payload; false when encoding/json
// must decide.
func scanSensorData(data []byte) (SensorData, bool) {
	var d SensorData
	ok := flatjson.Scan(data, func(key []byte, kind flatjson.Kind, v []byte) bool {
		switch string(key) {
		case "esp_id":
			return setString(&d.EspID, kind, v)
		case "sensor_type":
			return setString(&d.SensorType, kind, v)
		case "unit":
			return setString(&d.Unit, kind, v)
		case "quality":
			return setString(&d.Quality, kind, v)
		case "processing_mode":
			return setString(&d.ProcessingMode, kind, v)
		case "zone_id":
			return setString(&d.ZoneID, kind, v)
		case "subzone_id":
			return setString(&d.SubzoneID, kind, v)
		case "onewire_address":
			return setString(&d.OneWireAddress, kind, v)
		case "gpio":
			n, ok := integer(kind, v)
			d.GPIO = int(n)
			return ok
		case "timestamp":
			n, ok := integer(kind, v)
			d.Timestamp = n
			return ok
		case "value":
			return setFloat(&d.Value, kind, v)
		case "raw_value":
			return setFloat(&d.RawValue, kind, v)
		case "processed_value":
			if kind == flatjson.Null {
				d.ProcessedValue = nil
				return true
			}
			var f float64
			d.ProcessedValue = &f
			return setFloat(&f, kind, v)
		case "i2c_address":
			if kind == flatjson.Null {
				d.I2CAddress = nil
				return true
			}
			n, ok := integer(kind, v)
			a := int(n)
			d.I2CAddress = &a
			return ok
		default:
			// An unknown field; encoding/json decides what else it holds.
			return false
		}
	})
	return d, ok
}

// setString sets a string field; null leaves it as it is, as
// encoding/json does.
func setString(dst *string, kind flatjson.Kind, v []byte) bool {
	switch kind {
	case flatjson.String:
		*dst = string(v)
		return true
	case flatjson.Null:
		return true
	}
	return false
}

func setFloat(dst *float64, kind flatjson.Kind, v []byte) bool {
	if kind == flatjson.Null {
		return true
	}
	if kind != flatjson.Number {
		return false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	*dst = f
	return err == nil
}

// integer reads a number in an integer field; false for a fraction, an
// exponent or a value out of range, which encoding/json refuses.
func integer(kind flatjson.Kind, v []byte) (int64, bool) {
	if kind != flatjson.Number {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}
