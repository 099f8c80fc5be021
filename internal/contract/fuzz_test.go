package contract

import (
	"errors"
	"testing"
)

func FuzzParseTopic(f *testing.F) {
	for topic := range contractExamples {
		f.Add(topic)
	}
	f.Add("kaiser//esp/ESP_A1B2C3/system/heartbeat")
	f.Add("kaiser/god/esp//system/heartbeat")
	f.Add("kaiser/god/esp/E/sensor/999/data")
	f.Add("kaiser/broadcast/emergency")
	f.Fuzz(func(t *testing.T, topic string) {
		tp, err := ParseTopic(topic)
		if err != nil {
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("error without drop reason: %v", err)
			}
			return
		}
		if !ValidEspID(tp.EspID) || tp.Kind == "" {
			t.Fatalf("accepted invalid topic %q: %+v", topic, tp)
		}
		if IsHubToDevice(topic) {
			t.Fatalf("parsed a hub-only topic as inbound: %q", topic)
		}
	})
}

// fuzzDecoder runs one decoder over arbitrary payloads: it must never panic
// and every error must carry a drop reason.
func fuzzDecoder(f *testing.F, topic string) {
	tp, err := ParseTopic(topic)
	if err != nil {
		f.Fatal(err)
	}
	if ex, ok := contractExamples[topic]; ok {
		f.Add([]byte(ex))
	}
	f.Add([]byte(`{"value":nan}`))
	f.Add([]byte(`{"ts":1e400}`))
	f.Add([]byte(`{"esp_id":"x","gpio":"5"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"state":"ON","pwm":300,"ts":1,"type":"pump"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		if err := Validate(tp, payload); err != nil && !isDecodeError(err) {
			t.Fatalf("error without drop reason: %v", err)
		}
	})
}

func FuzzDecodeHeartbeat(f *testing.F)  { fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/system/heartbeat") }
func FuzzDecodeSensorData(f *testing.F) { fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/sensor/34/data") }
func FuzzDecodeWill(f *testing.F)       { fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/system/will") }
func FuzzDecodeActuatorStatus(f *testing.F) {
	fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/actuator/5/status")
}
func FuzzDecodeActuatorResponse(f *testing.F) {
	fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/actuator/5/response")
}
func FuzzDecodeActuatorAlert(f *testing.F) {
	fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/actuator/5/alert")
}
func FuzzDecodeConfigResponse(f *testing.F) {
	fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/config_response")
}
func FuzzDecodeZoneAck(f *testing.F)    { fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/zone/ack") }
func FuzzDecodeSubzoneAck(f *testing.F) { fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/subzone/ack") }
func FuzzDecodeDiagnostics(f *testing.F) {
	fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/system/diagnostics")
}
func FuzzDecodeEmergencyResponse(f *testing.F) {
	fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/actuator/emergency/response")
}
func FuzzDecodeEmergencyError(f *testing.F) {
	fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/actuator/emergency/error")
}
func FuzzDecodeSystemCommandResponse(f *testing.F) {
	fuzzDecoder(f, "kaiser/god/esp/ESP_A1B2C3/system/command/response")
}

// The fast and tolerant sensor decoders agree on every accepted payload.
func FuzzSensorFastPathAgrees(f *testing.F) {
	tp, _ := ParseTopic("kaiser/god/esp/ESP_A1B2C3/sensor/34/data")
	f.Add([]byte(contractExamples["kaiser/god/esp/ESP_A1B2C3/sensor/34/data"]))
	f.Add([]byte(`{"sensor_type":"DS18B20","raw_value":4294967096,"timestamp":0,"i2c_address":68}`))
	f.Add([]byte(`{"sensor_type":"ph","raw":1.5,"ts":1}`))
	f.Add([]byte(`{"sensor_type":"ph","raw":01,"ts":1}`))
	f.Add([]byte(`{"sensor_type":"ph","RAW":1,"raw":2,"ts":1,"unit":"°C","x":null}`))
	f.Add([]byte(` {"sensor_type":"p\"h","raw":1,"ts":1e3} `))
	f.Fuzz(func(t *testing.T, payload []byte) {
		fast, ok := decodeSensorFast(tp, payload)
		if !ok {
			return
		}
		slow, err := decodeSensorTolerant(tp, payload)
		if err != nil {
			t.Fatalf("fast path accepted what the full decoder rejects (%v): %q", err, payload)
		}
		same := fast.Raw == slow.Raw && fast.TS == slow.TS && fast.SensorType == slow.SensorType &&
			fast.RawMode == slow.RawMode && fast.Unit == slow.Unit && fast.Quality == slow.Quality &&
			fast.ZoneID == slow.ZoneID && (fast.Value == nil) == (slow.Value == nil)
		if !same {
			t.Fatalf("fast %+v slow %+v", fast, slow)
		}
	})
}

// isDecodeError reports whether err carries a drop reason from this package.
func isDecodeError(err error) bool {
	var d *DecodeError
	return errors.As(err, &d)
}
