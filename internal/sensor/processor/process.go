// Package processor holds the sensor processors of docs/domain.md §2.3–2.6:
// type normalisation, conversion, quality and calibration; pure functions, so
// the sensor service and the HTTP layer share one definition of a reading.
package processor

import (
	"math"
	"slices"
	"strings"
)

// Result is a processor's output (docs/domain.md §2.4). Value is nil on error.
type Result struct {
	Value    *float64
	Unit     string
	Quality  string
	Metadata map[string]any
}

// Input is a processor's input: the raw number, whether it is a device raw
// word (raw_mode) or a physical value, and the sensor's calibration and params.
type Input struct {
	Raw         float64
	RawMode     bool
	Calibration map[string]any
	Params      map[string]any
	// WireType is the normalised input type (e.g. bme280_humidity), which
	// decides decoding details within a processor.
	WireType string
}

// aliasesOf is docs/domain.md §2.3's table: each processor key with the
// other input types it accepts.
var aliasesOf = map[string][]string{
	"ph":              {"ph_sensor"},
	"ec":              {"ec_sensor"},
	"ds18b20":         {"temperature_ds18b20"},
	"sht31_temp":      {"temperature_sht31"},
	"sht31_humidity":  {"humidity_sht31", "bme280_humidity", "humidity_bme280"},
	"bmp280_pressure": {"pressure_bmp280", "bme280_pressure", "pressure_bme280"},
	"bmp280_temp":     {"temperature_bmp280", "bme280_temp", "temperature_bme280"},
	"moisture":        {"soil_moisture"},
	"light":           {"tsl2561", "bh1750"},
	"co2":             {"mhz19_co2", "scd30_co2", "mhz19", "scd30"},
	"flow":            {"yfs201"},
}

// aliases maps every input type with a processor, the keys included, to its key.
var aliases = func() map[string]string {
	m := map[string]string{}
	for key, as := range aliasesOf {
		m[key] = key
		for _, a := range as {
			m[a] = key
		}
	}
	return m
}()

// Keys lists the processors, for /sensors/types.
var Keys = []string{"ph", "ec", "ds18b20", "sht31_temp", "sht31_humidity", "bmp280_pressure",
	"bmp280_temp", "moisture", "light", "co2", "flow"}

// NormaliseType lower-cases t and maps aliases; key is the processor key,
// or the lower-cased type with ok=false when no processor exists.
func NormaliseType(t string) (key string, ok bool) {
	t = strings.ToLower(strings.TrimSpace(t))
	if k, found := aliases[t]; found {
		return k, true
	}
	return t, false
}

// AliasesOf lists the input types mapped to a processor key, in the order
// of docs/domain.md §2.3.
func AliasesOf(key string) []string { return slices.Clone(aliasesOf[key]) }

// DefaultUnit is each processor's unit before any unit param, for /sensors/types.
var DefaultUnit = map[string]string{
	"ph":              "pH",
	"ec":              "µS/cm",
	"ds18b20":         "°C",
	"sht31_temp":      "°C",
	"sht31_humidity":  "%RH",
	"bmp280_pressure": "hPa",
	"bmp280_temp":     "°C",
	"moisture":        "%",
	"light":           "lux",
	"co2":             "ppm",
	"flow":            "L/min",
}

// Process runs the processor of key; ok is false when there is none.
func Process(key string, in Input) (Result, bool) {
	if in.Calibration == nil {
		in.Calibration = map[string]any{}
	}
	if in.Params == nil {
		in.Params = map[string]any{}
	}
	var r Result
	switch key {
	case "ph":
		r = processPH(in)
	case "ec":
		r = processEC(in)
	case "ds18b20", "sht31_temp", "bmp280_temp":
		r = processTemperature(key, in)
	case "sht31_humidity":
		r = processHumidity(in)
	case "bmp280_pressure":
		r = processPressure(in)
	case "moisture":
		r = processMoisture(in)
	case "light":
		r = processLight(in)
	case "co2":
		r = processCO2(in)
	case "flow":
		r = processFlow(in)
	default:
		return Result{}, false
	}
	return r, true
}

// Number reads m[k] as a finite number, as calibration, params and alert
// thresholds hold them: JSON decoding gives float64, Go callers may give ints.
func Number(m map[string]any, k string) (float64, bool) {
	switch v := m[k].(type) {
	case float64:
		return v, !math.IsNaN(v) && !math.IsInf(v, 0)
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	}
	return 0, false
}

func strParam(m map[string]any, k, def string) string {
	if s, ok := m[k].(string); ok && s != "" {
		return strings.ToLower(s)
	}
	return def
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

func places(in Input, def int) int {
	if d, ok := Number(in.Params, "decimal_places"); ok && d >= 0 && d <= 6 {
		return int(d)
	}
	return def
}

type meta struct{ m map[string]any }

func newMeta() *meta { return &meta{m: map[string]any{}} }

func (x *meta) warn(s string) {
	w, _ := x.m["warnings"].([]string)
	x.m["warnings"] = append(w, s)
}

func fail(unit string, m *meta, msg string, code int) Result {
	m.m["error"] = msg
	if code != 0 {
		m.m["error_code"] = code
	}
	return Result{Unit: unit, Quality: "error", Metadata: m.m}
}

func ok(v float64, unit, quality string, m *meta) Result {
	return Result{
		Value:    &v,
		Unit:     unit,
		Quality:  quality,
		Metadata: m.m,
	}
}

// linear is a two-point calibration (pH, EC); calibrated is false unless
// both slope and offset are set.
func linear(cal map[string]any) (slope, offset float64, calibrated bool) {
	slope, hasSlope := Number(cal, "slope")
	offset, hasOffset := Number(cal, "offset")
	return slope, offset, hasSlope && hasOffset
}

func processPH(in Input) Result {
	m := newMeta()
	raw := in.Raw
	if raw < 0 || raw > 4095 {
		return fail("pH", m, "raw value outside 0-4095", 0)
	}
	if raw < 100 {
		m.warn("raw value below 100: possibly disconnected")
	}
	if raw > 4000 {
		m.warn("raw value above 4000")
	}
	v := raw / 4095 * 3.3
	slope, offset, calibrated := linear(in.Calibration)
	var ph float64
	if calibrated {
		ph = clamp(slope*v+offset, 0, 14)
	} else {
		ph = clamp(7.0-3.5*(v-1.5), 0, 14)
	}
	if t, has := Number(in.Params, "temperature_compensation"); has {
		ph = clamp(ph+(t-25)*0.003*(7-ph), 0, 14)
	}
	ph = round(ph, places(in, 2))
	m.m["voltage"] = round(v, 6)
	return ok(ph, "pH", phQuality.gradeCalibrated(ph, calibrated), m)
}

func processEC(in Input) Result {
	m := newMeta()
	raw := in.Raw
	adc := strParam(in.Calibration, "adc_type", "")
	if adc == "" {
		adc = "12bit"
		if raw > 4095 {
			adc = "16bit"
		}
	}
	maxRaw, vref := 4095.0, 3.3
	if adc == "16bit" {
		maxRaw, vref = 32767, 5.0
	}
	unit := "µS/cm"
	if raw < 0 || raw > maxRaw {
		return fail(unit, m, "raw value outside the ADC range", 0)
	}
	if raw < 100 {
		m.warn("raw value below 100")
	}
	if raw > maxRaw-100 {
		m.warn("raw value near the ADC maximum")
	}
	v := raw / maxRaw * vref
	slope, offset, calibrated := linear(in.Calibration)
	var ec float64
	if calibrated {
		ec = clamp(slope*v+offset, 0, 20000)
	} else {
		ec = clamp(6060*v, 0, 20000)
	}
	if t, has := Number(in.Params, "temperature_compensation"); has {
		if f := 1 + 0.02*(t-25); f != 0 {
			ec = clamp(ec/f, 0, 20000)
		}
	}
	q := ecQuality.gradeCalibrated(ec, calibrated)
	out := ec
	switch strParam(in.Params, "unit", "us_cm") {
	case "ms_cm":
		out, unit = ec/1000, "mS/cm"
	case "ppm":
		out, unit = ec*0.5, "ppm"
	}
	m.m["adc_type"] = adc
	m.m["voltage"] = round(v, 6)
	return ok(round(out, places(in, 1)), unit, q, m)
}

// tempSpec is one temperature sensor's column of docs/domain.md §2.5.
type tempSpec struct {
	validLo, validHi float64
	warnLo, warnHi   float64
	quality          ladder
	places           int
	kelvin           bool
}

var tempSpecs = map[string]tempSpec{
	"ds18b20": {
		validLo: -55,
		validHi: 125,
		warnLo:  -10,
		warnHi:  85,
		quality: temperatureQuality(-55, 125, -10, 85),
		places:  2,
		kelvin:  true,
	},
	"sht31_temp": {
		validLo: -40,
		validHi: 125,
		warnLo:  0,
		warnHi:  65,
		quality: temperatureQuality(-40, 125, 0, 65),
		places:  1,
	},
	"bmp280_temp": {
		validLo: -40,
		validHi: 85,
		warnLo:  -20,
		warnHi:  math.Inf(1),
		quality: temperatureQuality(-40, 85, -20, 85),
		places:  2,
		kelvin:  true,
	},
}

func processTemperature(key string, in Input) Result {
	m := newMeta()
	sp := tempSpecs[key]
	c := in.Raw
	if in.RawMode {
		switch key {
		case "ds18b20":
			switch in.Raw {
			case -2032:
				return fail("°C", m, "sensor fault (-127 °C)", 1060)
			case 1360:
				m.m["error_code"] = 1061
				m.warn("power-on value 85 °C")
				return ok(85.0, "°C", "suspect", m)
			}
			c = in.Raw * 0.0625
		case "sht31_temp":
			if in.Raw < 0 || in.Raw > 65535 {
				return fail("°C", m, "raw word outside 0-65535", 0)
			}
			c = -45 + 175*in.Raw/65535
		}
	}
	if c < sp.validLo || c > sp.validHi {
		return fail("°C", m, "temperature outside the sensor's range", 0)
	}
	if c < sp.warnLo || c > sp.warnHi {
		m.warn("temperature outside the usual band")
	}
	if off, has := Number(in.Calibration, "offset"); has {
		c += off
	}
	q := sp.quality.grade(c)
	out, unit := c, "°C"
	switch strParam(in.Params, "unit", "celsius") {
	case "fahrenheit":
		out, unit = c*9/5+32, "°F"
	case "kelvin":
		if sp.kelvin {
			out, unit = c+273.15, "K"
		}
	}
	if q == "error" {
		return fail(unit, m, "temperature outside the sensor's range after calibration", 0)
	}
	return ok(round(out, places(in, sp.places)), unit, q, m)
}

func processHumidity(in Input) Result {
	m := newMeta()
	h := in.Raw
	if in.RawMode && (in.WireType == "" || in.WireType == "sht31_humidity" || in.WireType == "humidity_sht31") {
		if in.Raw < 0 || in.Raw > 65535 {
			return fail("%RH", m, "raw word outside 0-65535", 0)
		}
		h = 100 * in.Raw / 65535
	}
	if h < 0 || h > 100 {
		return fail("%RH", m, "humidity outside 0-100", 0)
	}
	if off, has := Number(in.Calibration, "offset"); has {
		h = clamp(h+off, 0, 100)
	}
	h = round(h, places(in, 1))
	if h < 5 {
		m.warn("humidity below 5 %")
	}
	if h < 20 || h > 80 {
		m.warn("humidity outside 20-80 %")
	}
	if cw, set := in.Params["condensation_warning"].(bool); (!set || cw) && h > 95 {
		m.warn("condensation risk above 95 %")
		m.m["condensation_warning"] = true
	}
	return ok(h, "%RH", humidityQuality.grade(h), m)
}

func processPressure(in Input) Result {
	m := newMeta()
	p := in.Raw
	if p < 300 || p > 1100 {
		return fail("hPa", m, "pressure outside 300-1100 hPa", 0)
	}
	if p < 950 || p > 1050 {
		m.warn("pressure outside 950-1050 hPa")
	}
	if off, has := Number(in.Calibration, "offset"); has {
		p += off
	}
	if alt, has := Number(in.Params, "altitude"); has {
		if f := 1 - alt/44330; f > 0 {
			p = clamp(p/math.Pow(f, 5.255), 300, 1100)
		}
	}
	q := pressureQuality.grade(p)
	out, unit := p, "hPa"
	switch strParam(in.Params, "unit", "hpa") {
	case "pa":
		out, unit = p*100, "Pa"
	case "mmhg":
		out, unit = p*0.750062, "mmHg"
	case "inhg":
		out, unit = p*0.02953, "inHg"
	}
	return ok(round(out, places(in, 1)), unit, q, m)
}

func processMoisture(in Input) Result {
	m := newMeta()
	raw := in.Raw
	if raw < 0 || raw > 4095 {
		return fail("%", m, "raw value outside 0-4095", 0)
	}
	if raw < 100 {
		m.warn("raw value below 100")
	}
	if raw > 4000 {
		m.warn("raw value above 4000")
	}
	dry, hasD := Number(in.Calibration, "dry_value")
	wet, hasW := Number(in.Calibration, "wet_value")
	if !hasD || !hasW {
		dry, wet = 3200, 1500
	}
	pct := 50.0
	if dry != wet {
		pct = (raw - dry) / (wet - dry) * 100
	}
	if inv, _ := in.Params["invert"].(bool); inv {
		pct = 100 - pct
	}
	pct = round(clamp(pct, 0, 100), places(in, 1))
	return ok(pct, "%", moistureQuality.grade(pct), m)
}

func model(in Input, def string) string {
	if s := strParam(in.Params, "sensor_model", ""); s != "" {
		return s
	}
	if s := strParam(in.Calibration, "sensor_model", ""); s != "" {
		return s
	}
	return def
}

func processLight(in Input) Result {
	m := newMeta()
	v := in.Raw
	if v < 0 || v > 100000 {
		return fail("lux", m, "illuminance outside 0-100000 lux", 0)
	}
	if v < 50 {
		m.warn("dim light below 50 lux")
	}
	if off, has := Number(in.Calibration, "offset"); has {
		v = math.Max(0, v+off)
	}
	if s := model(in, in.WireType); s != "" && s != "light" {
		m.m["sensor_model"] = s
	}
	v = round(v, places(in, 0))
	return ok(v, "lux", lightQuality.grade(v), m)
}

func processCO2(in Input) Result {
	m := newMeta()
	v := in.Raw
	if v < 0 || v > 10000 {
		return fail("ppm", m, "CO2 outside 0-10000 ppm", 0)
	}
	if v < 400 {
		m.warn("CO2 below 400 ppm")
	}
	if v > 2000 {
		m.warn("CO2 above 2000 ppm")
	}
	if off, has := Number(in.Calibration, "offset"); has {
		v = math.Max(0, v+off)
	}
	def := ""
	switch in.WireType {
	case "mhz19_co2", "mhz19":
		def = "mhz19"
	case "scd30_co2", "scd30":
		def = "scd30"
	}
	switch s := model(in, def); s {
	case "mhz19":
		m.m["sensor_model"] = s
		if v > 5000 {
			m.warn("value outside the MH-Z19 range 0-5000 ppm")
		}
	case "scd30":
		m.m["sensor_model"] = s
		if v < 400 || v > 10000 {
			m.warn("value outside the SCD30 range 400-10000 ppm")
		}
	}
	v = round(v, places(in, 0))
	return ok(v, "ppm", co2Quality.grade(v), m)
}

func processFlow(in Input) Result {
	m := newMeta()
	factor, has := Number(in.Params, "calibration_factor")
	if !has {
		if factor, has = Number(in.Calibration, "calibration_factor"); !has {
			factor = 450
		}
	}
	if factor <= 0 {
		return fail("L/min", m, "calibration_factor must be positive", 0)
	}
	var lpm float64
	switch strParam(in.Params, "input_type", "pulses") {
	case "pulses":
		window, has := Number(in.Params, "time_window")
		if !has {
			window = 1.0
		}
		if window > 0 {
			lpm = (in.Raw / factor) / (window / 60)
		}
	case "frequency":
		lpm = in.Raw * 60 / factor
	case "flow_rate":
		lpm = in.Raw
	default:
		return fail("L/min", m, "unknown input_type", 0)
	}
	lpm = round(math.Max(0, lpm), places(in, 2))
	if lpm > 100 {
		return fail("L/min", m, "flow above 100 L/min", 0)
	}
	if lpm > 20 {
		m.warn("flow above 20 L/min")
	}
	return ok(lpm, "L/min", flowQuality.grade(lpm), m)
}
