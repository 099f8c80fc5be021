package sensor

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/sensor/processor"
)

// Config is a sensor configuration (docs/api.md §7.1).
type Config struct {
	ID             string         `json:"id"`
	EspID          string         `json:"esp_device_id"`
	GPIO           int            `json:"gpio"`
	SensorType     string         `json:"sensor_type"`
	Name           string         `json:"name"`
	Enabled        bool           `json:"enabled"`
	IntervalMS     int            `json:"interval_ms"`
	ProcessingMode string         `json:"processing_mode"`
	Calibration    map[string]any `json:"calibration"`
	ThresholdMin   *float64       `json:"threshold_min"`
	ThresholdMax   *float64       `json:"threshold_max"`
	WarningMin     *float64       `json:"warning_min"`
	WarningMax     *float64       `json:"warning_max"`
	Metadata       map[string]any `json:"metadata"`
	I2CAddress     *int           `json:"i2c_address"`
	OneWireAddress string         `json:"onewire_address"`
	OperatingMode  string         `json:"operating_mode"`
	TimeoutSeconds int            `json:"timeout_seconds"`
	FreshnessHours *float64       `json:"measurement_freshness_hours"`
	AlertConfig    map[string]any `json:"alert_config"`
	SubzoneID      string         `json:"subzone_id"`
	RetentionDays  *int           `json:"retention_days"`
	CreatedAt      time.Time      `json:"created_at"`
	UpdatedAt      time.Time      `json:"updated_at"`
}

// Address is the bus address part of the sensor identity.
func (c *Config) Address() string {
	if c.I2CAddress != nil {
		return fmt.Sprintf("i2c:%d", *c.I2CAddress)
	}
	if c.OneWireAddress != "" {
		return "ow:" + strings.ToUpper(c.OneWireAddress)
	}
	return ""
}

// Params are the processor parameters (metadata.processing_params).
func (c *Config) Params() map[string]any {
	p, _ := c.Metadata["processing_params"].(map[string]any)
	return p
}

// typeDefaults is docs/domain.md §3.6's table: mode, interval s, timeout s, freshness h.
func typeDefaults(key string) (mode string, intervalS, timeoutS int, freshness float64) {
	switch key {
	case "ds18b20", "sht31_temp", "sht31_humidity", "bmp280_temp", "co2":
		return "continuous", 30, 180, 0
	case "light":
		return "continuous", 60, 180, 0
	case "flow":
		return "continuous", 10, 180, 0
	case "bmp280_pressure":
		return "continuous", 60, 300, 0
	case "moisture":
		return "continuous", 60, 300, 2
	case "ph", "ec":
		return "on_demand", 0, 0, 24
	}
	return "continuous", 30, 180, 0
}

// ApplyDefaults fills fields left empty.
func (c *Config) ApplyDefaults() {
	key, _ := processor.NormaliseType(c.SensorType)
	mode, interval, timeout, fresh := typeDefaults(key)
	if c.ProcessingMode == "" {
		c.ProcessingMode = "pi_enhanced"
	}
	if c.IntervalMS == 0 {
		c.IntervalMS = interval * 1000
		if c.IntervalMS == 0 {
			c.IntervalMS = 30000
		}
	}
	if c.OperatingMode == "" {
		c.OperatingMode = mode
		if c.TimeoutSeconds == 0 {
			c.TimeoutSeconds = timeout
		}
	}
	if c.FreshnessHours == nil && fresh > 0 {
		c.FreshnessHours = &fresh
	}
	if c.Metadata == nil {
		c.Metadata = map[string]any{}
	}
}

// Board is a GPIO rule set (docs/domain.md §8.1).
type Board struct {
	Name                       string
	Max                        int
	NotBonded, Reserved        map[int]bool
	InputOnly, I2C, ADC1, ADC2 map[int]bool
}

func set(pins ...int) map[int]bool {
	m := map[int]bool{}
	for _, p := range pins {
		m[p] = true
	}
	return m
}

// Boards by hardware type; unknown boards use WROOM rules (docs/domain.md §1.5).
var (
	WROOM = Board{
		Name:      "ESP32_WROOM",
		Max:       39,
		NotBonded: set(20, 24, 28, 29, 30, 31),
		Reserved:  set(0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12),
		InputOnly: set(34, 35, 36, 39),
		I2C:       set(21, 22),
		ADC1:      set(32, 33, 34, 35, 36, 39),
		ADC2:      set(4, 13, 14, 15, 25, 26, 27),
	}
	XIAO = Board{
		Name:      "XIAO_ESP32_C3",
		Max:       21,
		NotBonded: set(),
		Reserved:  set(18, 19),
		InputOnly: set(),
		I2C:       set(4, 5),
		ADC1:      set(0, 1, 2, 3, 4),
		ADC2:      set(5),
	}
)

// BoardFor maps a hardware type to its rules.
func BoardFor(hw string) Board {
	switch strings.ToUpper(hw) {
	case "XIAO_ESP32_C3", "XIAO_ESP32C3", "ESP32_C3":
		return XIAO
	}
	return WROOM
}

// Bus is how a sensor type attaches to its pin.
func Bus(key string, wire string) string {
	switch key {
	case "ph", "ec", "moisture":
		return "analog"
	case "ds18b20":
		return "onewire"
	case "sht31_temp", "sht31_humidity", "bmp280_pressure", "bmp280_temp", "light":
		return "i2c"
	case "co2":
		if strings.HasPrefix(wire, "scd30") {
			return "i2c"
		}
	}
	return "digital"
}

// PinError is a rejected pin: Conflict distinguishes 409 from 400.
type PinError struct {
	Conflict bool
	Type     string // none|system|sensor|actuator|esp_reported
	Msg      string
}

func (e *PinError) Error() string { return e.Msg }

// ErrPin is matched by errors.As with *PinError.
var ErrPin = errors.New("gpio not usable")

// CheckPin validates a sensor's pin on a board (docs/domain.md §8.2); others are
// the other sensors of the device. It returns an advisory warning.
func CheckPin(b Board, c *Config, others []*Config) (warning string, err error) {
	key, _ := processor.NormaliseType(c.SensorType)
	bus := Bus(key, strings.ToLower(c.SensorType))
	if msg := b.refuses(c.GPIO, bus); msg != "" {
		return "", &PinError{Type: "system", Msg: msg}
	}
	if o := pinHolder(c, key, bus, others); o != nil {
		return "", &PinError{
			Conflict: true,
			Type:     "sensor",
			Msg:      fmt.Sprintf("GPIO %d is already used by sensor %s", c.GPIO, o.SensorType),
		}
	}

	if bus == "analog" && b.ADC2[c.GPIO] {
		warning = "ADC2 is unusable while WiFi is on; use 32-36 or 39"
	}
	return warning, nil
}

// outputBus is an actuator's pin in refuses: it is driven, so input-only
// pins are out, and it is no I2C sensor, so the bus pins are out too.
const outputBus = "output"

// RefusesOutput says why the board cannot give pin g to an actuator output
// (docs/domain.md §8.2: range, not bonded, system-reserved, input-only, I2C
// bus pin, in that order); "" when it can. Actuators share the board rules
// of sensors, so the two can never disagree about a pin.
func (b Board) RefusesOutput(g int) string { return b.refuses(g, outputBus) }

// refuses says why the board cannot give pin g to a sensor on bus; "" when
// it can.
func (b Board) refuses(g int, bus string) string {
	switch {
	case g < 0 || g > b.Max:
		return fmt.Sprintf("GPIO %d is outside the %s range 0-%d", g, b.Name, b.Max)
	case b.NotBonded[g]:
		return fmt.Sprintf("GPIO %d is not bonded on %s", g, b.Name)
	case b.Reserved[g]:
		return fmt.Sprintf("GPIO %d is reserved by the system on %s", g, b.Name)
	case bus == "onewire" && b.InputOnly[g]:
		return fmt.Sprintf("GPIO %d is input-only and cannot drive a OneWire bus", g)
	case bus == outputBus && b.InputOnly[g]:
		return fmt.Sprintf("GPIO %d is input-only and cannot drive an actuator", g)
	case b.I2C[g] && bus != "i2c":
		return fmt.Sprintf("GPIO %d is an I2C bus pin; only I2C sensors may use it", g)
	case bus == "analog" && !b.ADC1[g] && !b.ADC2[g]:
		return fmt.Sprintf("GPIO %d is not ADC-capable", g)
	}
	return ""
}

// pinHolder is another sensor that holds c's pin, if any. I2C sensors of
// other addresses or types share the bus pins, and the values of one
// multi-value sensor share its pin.
func pinHolder(c *Config, key, bus string, others []*Config) *Config {
	for _, o := range others {
		if o.ID == c.ID || o.GPIO != c.GPIO {
			continue
		}
		okey, _ := processor.NormaliseType(o.SensorType)
		obus := Bus(okey, strings.ToLower(o.SensorType))
		if bus == "i2c" && obus == "i2c" && (c.Address() != o.Address() || okey != key) {
			continue
		}
		if sameFamily(key, okey) && c.Address() == o.Address() {
			continue
		}
		return o
	}
	return nil
}

// sameFamily reports whether two processor keys are different values of
// one multi-value sensor.
func sameFamily(a, b string) bool {
	return family(a, a) == family(b, b) && a != b
}
