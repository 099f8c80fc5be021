package contract

import (
	"strconv"

	"github.com/kaiserhub/kaiser/internal/flatjson"
)

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
	return flatjson.Scan(payload, func(key []byte, kind flatjson.Kind, v []byte) bool {
		if kind == flatjson.Null {
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
		case sp != nil && kind == flatjson.String:
			s := string(v)
			*sp = &s
		case fp != nil && kind == flatjson.Number:
			f, ok := num(v)
			if !ok {
				return false
			}
			*fp = f
		case bp != nil && kind == flatjson.Bool:
			b := v[0] == 't'
			*bp = &b
		default:
			return false // a mistyped field: let the full decoder name it
		}
		return true
	})
}
