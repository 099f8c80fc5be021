package processor

import (
	"math"
	"strings"
	"testing"
	"time"
)

type vec struct {
	name    string
	key     string
	in      Input
	want    float64 // NaN = null
	unit    string
	quality string
}

func p(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

var null = math.NaN()

// docs/domain.md §2.5 worked examples, one per row.
var vectors = []vec{
	{"PH1", "ph", Input{Raw: 2048, RawMode: true}, 6.47, "pH", "fair"},
	{"PH2", "ph", Input{Raw: 2048, RawMode: true, Params: p("temperature_compensation", 35.0)}, 6.49, "pH", "fair"},
	{"PH3", "ph", Input{Raw: 0, RawMode: true}, 12.25, "pH", "poor"},
	{"PH4", "ph", Input{Raw: 2000, RawMode: true, Calibration: p("slope", 10.636364, "offset", -11.428571)}, 5.71, "pH", "good"},
	{"PH5", "ph", Input{Raw: 4200, RawMode: true}, null, "pH", "error"},
	{"EC1", "ec", Input{Raw: 1500, RawMode: true}, 7325.3, "µS/cm", "fair"},
	{"EC2", "ec", Input{Raw: 1500, RawMode: true, Params: p("unit", "ms_cm")}, 7.3, "mS/cm", "fair"},
	{"EC3", "ec", Input{Raw: 1500, RawMode: true, Params: p("unit", "ppm")}, 3662.6, "ppm", "fair"},
	{"EC4", "ec", Input{Raw: 1500, RawMode: true, Params: p("temperature_compensation", 30.0)}, 6659.3, "µS/cm", "fair"},
	{"EC5", "ec", Input{Raw: 4095, RawMode: true}, 19998.0, "µS/cm", "poor"},
	{"EC6", "ec", Input{Raw: 1200, RawMode: true, Calibration: p("slope", 5691.8018, "offset", -880.4)}, 4623.8, "µS/cm", "good"},
	{"EC7", "ec", Input{Raw: 10000, RawMode: true}, 9247.1, "µS/cm", "fair"},
	{"TMP1", "ds18b20", Input{Raw: 400, RawMode: true}, 25.0, "°C", "good"},
	{"TMP2", "ds18b20", Input{Raw: 400, RawMode: true, Params: p("unit", "fahrenheit")}, 77.0, "°F", "good"},
	{"TMP3", "ds18b20", Input{Raw: 368, RawMode: true, Calibration: p("offset", -0.5)}, 22.5, "°C", "good"},
	{"TMP4", "ds18b20", Input{Raw: -200, RawMode: true}, -12.5, "°C", "fair"},
	{"TMP5a", "ds18b20", Input{Raw: -2032, RawMode: true}, null, "°C", "error"},
	{"TMP5b", "ds18b20", Input{Raw: 1360, RawMode: true}, 85.0, "°C", "suspect"},
	{"TMP5c", "ds18b20", Input{Raw: -960, RawMode: true}, null, "°C", "error"},
	{"TMP6", "sht31_temp", Input{Raw: 26000, RawMode: true}, 24.4, "°C", "good"},
	{"TMP7a", "sht31_temp", Input{Raw: 17000, RawMode: true}, 0.4, "°C", "good"},
	{"TMP7b", "sht31_temp", Input{Raw: 0, RawMode: true}, null, "°C", "error"},
	{"TMP8a", "bmp280_temp", Input{Raw: 23.456, RawMode: true}, 23.46, "°C", "good"},
	{"TMP8b", "bmp280_temp", Input{Raw: -30.0, RawMode: true}, -30.0, "°C", "fair"},
	{"TMP8c", "bmp280_temp", Input{Raw: 90.0, RawMode: true}, null, "°C", "error"},
	{"HUM1", "sht31_humidity", Input{Raw: 32768, RawMode: true}, 50.0, "%RH", "good"},
	{"HUM2", "sht31_humidity", Input{Raw: 52000, RawMode: true}, 79.3, "%RH", "good"},
	{"HUM3", "sht31_humidity", Input{Raw: 2000, RawMode: true}, 3.1, "%RH", "poor"},
	{"HUM4", "sht31_humidity", Input{Raw: 65535, RawMode: true}, 100.0, "%RH", "poor"},
	{"HUM5", "sht31_humidity", Input{Raw: 65.5, RawMode: false}, 65.5, "%RH", "good"},
	{"BAR1", "bmp280_pressure", Input{Raw: 1008.37, RawMode: true}, 1008.4, "hPa", "good"},
	{"BAR2", "bmp280_pressure", Input{Raw: 1008.37, RawMode: true, Params: p("unit", "pa")}, 100837.0, "Pa", "good"},
	{"BAR3", "bmp280_pressure", Input{Raw: 950.0, RawMode: true, Params: p("altitude", 500.0)}, 1008.3, "hPa", "good"},
	{"BAR4", "bmp280_pressure", Input{Raw: 940.06, RawMode: true}, 940.1, "hPa", "fair"},
	{"BAR5", "bmp280_pressure", Input{Raw: 1200.0, RawMode: true}, null, "hPa", "error"},
	{"MST1", "moisture", Input{Raw: 2350, RawMode: true}, 50.0, "%", "good"},
	{"MST2", "moisture", Input{Raw: 3500, RawMode: true}, 0.0, "%", "poor"},
	{"MST3", "moisture", Input{Raw: 2900, RawMode: true}, 17.6, "%", "fair"},
	{"MST4", "moisture", Input{Raw: 2700, RawMode: true, Calibration: p("dry_value", 3000.0, "wet_value", 1200.0)}, 16.7, "%", "fair"},
	{"MST5", "moisture", Input{
		Raw:         2700,
		RawMode:     true,
		Calibration: p("dry_value", 3000.0, "wet_value", 1200.0),
		Params:      p("invert", true),
	}, 83.3, "%", "fair"},
	{"LUX1", "light", Input{Raw: 523.4, RawMode: true}, 523, "lux", "good"},
	{"LUX2", "light", Input{Raw: 49.6, RawMode: true}, 50, "lux", "fair"},
	{"LUX3", "light", Input{Raw: 523.4, RawMode: true, Calibration: p("offset", -30.0)}, 493, "lux", "good"},
	{"LUX4", "light", Input{Raw: 150000, RawMode: true}, null, "lux", "error"},
	{"CO2-1", "co2", Input{Raw: 850.6, RawMode: true}, 851, "ppm", "good"},
	{"CO2-2", "co2", Input{Raw: 1700.2, RawMode: true}, 1700, "ppm", "poor"},
	{"CO2-3", "co2", Input{Raw: 399.4, RawMode: true}, 399, "ppm", "excellent"},
	{"CO2-4", "co2", Input{Raw: 12000, RawMode: true, WireType: "mhz19_co2"}, null, "ppm", "error"},
	{"FLOW1", "flow", Input{Raw: 75, RawMode: true}, 10.0, "L/min", "good"},
	{"FLOW2", "flow", Input{Raw: 15, RawMode: true, Params: p("input_type", "frequency")}, 2.0, "L/min", "excellent"},
	{"FLOW3", "flow", Input{Raw: 40, RawMode: true, Params: p("time_window", 60.0)}, 0.09, "L/min", "fair"},
	{"FLOW4", "flow", Input{Raw: 25, RawMode: true, Params: p("input_type", "flow_rate")}, 25.0, "L/min", "fair"},
	{"FLOW5", "flow", Input{Raw: 900, RawMode: true}, null, "L/min", "error"},
}

func TestProcessorVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			r, ok := Process(v.key, v.in)
			if !ok {
				t.Fatalf("no processor %s", v.key)
			}

			if math.IsNaN(v.want) {
				if r.Value != nil || r.Quality != "error" || r.Metadata["error"] == nil {
					t.Errorf("want null/error, got %v %s", r.Value, r.Quality)
				}
				return
			}

			if r.Value == nil {
				t.Fatalf("got null %s %s, want %v %s %s", r.Unit, r.Quality, v.want, v.unit, v.quality)
			}
			if *r.Value != v.want || r.Unit != v.unit || r.Quality != v.quality {
				t.Errorf("got %v %s %s, want %v %s %s", *r.Value, r.Unit, r.Quality, v.want, v.unit, v.quality)
			}
		})
	}

	r, _ := Process("sht31_humidity", Input{Raw: 65535, RawMode: true})
	if r.Metadata["condensation_warning"] != true {
		t.Error("HUM4 must carry the condensation warning")
	}
}

func TestNormaliseType(t *testing.T) {
	cases := []struct{ in, want string }{
		{"PH_SENSOR", "ph"},
		{" ph ", "ph"},
		{"temperature_ds18b20", "ds18b20"},
		{"mhz19_co2", "co2"},
		{"scd30_co2", "co2"},
		{"bme280_humidity", "sht31_humidity"},
		{"soil_moisture", "moisture"},
		{"yfs201", "flow"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			if got, ok := NormaliseType(c.in); !ok || got != c.want {
				t.Errorf("got %s %v, want %s", got, ok, c.want)
			}
		})
	}

	for _, unknown := range []string{"Temperature", "humidity", "pressure"} {
		t.Run(unknown, func(t *testing.T) {
			want := strings.ToLower(unknown)
			if got, ok := NormaliseType(unknown); ok || got != want {
				t.Errorf("got %s %v, want %s without a processor", got, ok, want)
			}
		})
	}
}

// Every processor in /sensors/types is its own input type, has a unit, and
// its aliases lead back to it.
func TestKeysAliasesAndUnits(t *testing.T) {
	for _, key := range Keys {
		t.Run(key, func(t *testing.T) {
			if got, ok := NormaliseType(key); !ok || got != key {
				t.Errorf("the key normalises to %s %v", got, ok)
			}
			if DefaultUnit[key] == "" {
				t.Error("no default unit")
			}
			if _, ok := Process(key, Input{Raw: 1, RawMode: true}); !ok {
				t.Error("no processor")
			}

			as := AliasesOf(key)
			if len(as) == 0 {
				t.Error("no aliases")
			}
			for _, a := range as {
				if got, _ := NormaliseType(a); got != key {
					t.Errorf("alias %s normalises to %s", a, got)
				}
			}
		})
	}

	if len(aliasesOf) != len(Keys) {
		t.Errorf("%d processors have aliases, %d are listed", len(aliasesOf), len(Keys))
	}
	AliasesOf("co2")[0] = "changed"
	if AliasesOf("co2")[0] != "mhz19_co2" {
		t.Error("AliasesOf hands out the table itself")
	}
}

// docs/domain.md §2.6 calibration examples.
func TestCalibrationVectors(t *testing.T) {
	now := time.Unix(0, 0)
	c, err := Calibrate("ph", []Point{{2150, 7.0}, {1800, 4.0}}, now)
	if err != nil || c["slope"] != 10.636364 || c["offset"] != -11.428571 {
		t.Fatalf("CAL1: %v %v", c, err)
	}
	for raw, want := range map[float64]float64{2000: 5.71, 2300: 8.29} {
		r, _ := Process("ph", Input{Raw: raw, RawMode: true, Calibration: c})
		if *r.Value != want {
			t.Errorf("CAL1 raw %v → %v, want %v", raw, *r.Value, want)
		}
	}
	c, err = Calibrate("ec", []Point{{500, 1413}, {3000, 12880}}, now)
	if err != nil || c["adc_type"] != "12bit" || math.Abs(c["slope"].(float64)-5691.8018) > 0.001 ||
		math.Abs(c["offset"].(float64)+880.40) > 0.01 {
		t.Fatalf("CAL2: %v %v", c, err)
	}
	if r, _ := Process("ec", Input{Raw: 1200, RawMode: true, Calibration: c}); *r.Value != 4623.8 {
		t.Errorf("CAL2 raw 1200 → %v", *r.Value)
	}
	c, err = Calibrate("moisture", []Point{{1200, 100}, {3000, 0}}, now)
	if err != nil || c["dry_value"] != 3000.0 || c["wet_value"] != 1200.0 {
		t.Fatalf("CAL3: %v %v", c, err)
	}
	c, err = Calibrate("ds18b20", []Point{{23.5, 24.0}, {30.0, 30.4}}, now)
	if err != nil || c["offset"] != 0.45 || c["method"] != "offset" {
		t.Fatalf("CAL4: %v %v", c, err)
	}
	if _, err := Calibrate("ph", []Point{{2000, 4}, {2000, 7}}, now); err == nil {
		t.Fatal("identical raw values accepted")
	}
	if _, err := Calibrate("flow", []Point{{1, 1}}, now); err == nil {
		t.Fatal("flow calibration by points accepted")
	}
}

func BenchmarkProcessors(b *testing.B) {
	for _, key := range []string{"ph", "ec", "ds18b20", "sht31_humidity", "moisture", "co2"} {
		in := Input{Raw: 2048, RawMode: true}
		b.Run(key, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				Process(key, in)
			}
		})
	}
}
