package event

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// generic is Encode without its sensor_data fast path: encoding/json.
func generic(t *testing.T, e Event) []byte {
	t.Helper()
	w := wire[Payload]{Type: e.Type(), Data: e.Data}
	if !e.Time.IsZero() {
		w.Time = e.Time.UnixNano()
	}
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return b
}

// randomReading is a sensor_data payload with values from every corner the
// fast path handles differently: tiny and huge magnitudes, negative zero,
// nil pointers, strings encoding/json escapes.
func randomReading(r *rand.Rand) SensorData {
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 21.5, 1e-7, 1.5e-9, 123456789.125, 1e21, 1e20,
		-3.4e38, 5e-324, math.MaxFloat64, r.NormFloat64() * 1e3, r.Float64(), r.ExpFloat64() * 1e-8}
	plain := []string{"", "ESP_00AB12", "temperature", "°C", "µS/cm", "zone-1", "日本"}
	escaped := []string{"a<b", "x&y", "q\"uote", "back\\slash", "tab\t", "line\u2028sep", "bad\xffutf8"}
	pick := func() string {
		if r.IntN(10) == 0 {
			return escaped[r.IntN(len(escaped))]
		}
		return plain[r.IntN(len(plain))]
	}
	f := func() float64 { return floats[r.IntN(len(floats))] }
	d := SensorData{
		EspID: pick(), GPIO: r.IntN(40) - 1, SensorType: pick(), Value: f(), RawValue: f(),
		Unit: pick(), Quality: pick(), ProcessingMode: pick(), ZoneID: pick(), SubzoneID: pick(),
		Timestamp: r.Int64N(1 << 40),
	}
	if r.IntN(3) > 0 {
		v := f()
		d.ProcessedValue = &v
	}
	switch r.IntN(3) {
	case 0:
		a := r.IntN(128)
		d.I2CAddress = &a
	case 1:
		d.OneWireAddress = pick()
	}
	return d
}

// The fast path writes the bytes encoding/json writes and reads back the
// payload encoding/json reads, for any reading.
func TestSensorCodecMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fast := 0
	for range 20000 {
		e := Event{Data: randomReading(r)}
		if r.IntN(2) == 0 {
			e.Time = time.Unix(0, r.Int64N(1<<62))
		}
		want := generic(t, e)
		got, err := Encode(e)
		if err != nil {
			t.Fatalf("Encode %+v: %v", e.Data, err)
		}
		if string(got) != string(want) {
			t.Fatalf("Encode %+v:\n got %s\nwant %s", e.Data, got, want)
		}

		var w wire[json.RawMessage]
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		var std SensorData
		if err := json.Unmarshal(w.Data, &std); err != nil {
			t.Fatal(err)
		}
		dec, err := decodeSensorData(w.Data)
		if err != nil {
			t.Fatalf("decode %s: %v", w.Data, err)
		}
		if !reflect.DeepEqual(dec, std) {
			t.Fatalf("decode %s:\n got %+v\nwant %+v", w.Data, dec, std)
		}
		// What the fast path writes, it reads back on the fast path.
		if _, ok := appendSensorEvent(nil, 0, e.Data.(SensorData)); ok {
			fast++
			if _, ok := scanSensorData(w.Data); !ok {
				t.Fatalf("the fast path does not read what it wrote: %s", w.Data)
			}
		}
	}
	if fast < 100 {
		t.Fatalf("only %d of 20000 readings took the fast path", fast)
	}
	t.Logf("%d of 20000 readings took the fast path", fast)
}

// A value JSON cannot hold is refused as encoding/json refuses it.
func TestSensorCodecRefusesNaN(t *testing.T) {
	if _, err := Encode(Event{Data: SensorData{Value: math.NaN()}}); err == nil {
		t.Fatal("a NaN reading encoded")
	}
}

// Whatever the input, the fast path never accepts what encoding/json reads
// differently.
func FuzzSensorDecodeAgrees(f *testing.F) {
	seed, _ := Encode(Event{Data: randomReading(rand.New(rand.NewPCG(3, 4)))})
	var w wire[json.RawMessage]
	_ = json.Unmarshal(seed, &w)
	f.Add([]byte(w.Data))
	f.Add([]byte(`{"gpio":4.0,"value":null,"processed_value":null,"i2c_address":null,"esp_id":null}`))
	f.Add([]byte(`{"timestamp":1e3,"gpio":99999999999999999999}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := scanSensorData(data)
		if !ok {
			return
		}
		var std SensorData
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", data, err)
		}
		if !reflect.DeepEqual(fast, std) {
			t.Fatalf("decode %q:\n fast %+v\n  std %+v", data, fast, std)
		}
	})
}
