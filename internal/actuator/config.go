package actuator

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Classes of docs/domain.md §4.1.
const (
	ClassDigital = "digital"
	ClassPWM     = "pwm"
	ClassServo   = "servo"
)

// storedTypes maps every accepted input type to the device type it is
// stored and sent as (docs/domain.md §4.1).
var storedTypes = map[string]string{
	"relay":   "relay",
	"digital": "relay",
	"binary":  "relay",
	"switch":  "relay",
	"pump":    "pump",
	"valve":   "valve",
	"pwm":     "pwm",
	"servo":   "servo",
}

// NormaliseType is the stored device type of an input type; false for a
// type the hub refuses.
func NormaliseType(in string) (string, bool) {
	t, ok := storedTypes[strings.ToLower(strings.TrimSpace(in))]
	return t, ok
}

// ClassOf is a stored type's class.
func ClassOf(typ string) string {
	switch typ {
	case "pwm":
		return ClassPWM
	case "servo":
		return ClassServo
	}
	return ClassDigital
}

// allows reports whether a class accepts a command (docs/domain.md §4.1).
func allows(class, cmd string) bool {
	switch cmd {
	case "ON", "OFF":
		return true
	case "TOGGLE":
		return class != ClassServo
	case "PWM":
		return class == ClassPWM || class == ClassServo
	}
	return false
}

// Config is an actuator configuration (docs/api.md §8.1, docs/domain.md §4.2).
type Config struct {
	ID                 string         `json:"id"`
	EspID              string         `json:"esp_id"`
	GPIO               int            `json:"gpio"`
	Type               string         `json:"actuator_type"` // the stored device type
	Name               string         `json:"name"`
	Enabled            bool           `json:"enabled"`
	MinValue           float64        `json:"min_value"`
	MaxValue           float64        `json:"max_value"`
	DefaultValue       float64        `json:"default_value"`
	DefaultState       bool           `json:"default_state"`
	DefaultPWM         int            `json:"default_pwm"`
	MaxRuntimeSeconds  int            `json:"max_runtime_seconds"`
	CooldownSeconds    int            `json:"cooldown_seconds"`
	ValveTravelSeconds int            `json:"valve_travel_seconds"`
	PWMFrequency       *int           `json:"pwm_frequency"`
	ServoMinPulse      *int           `json:"servo_min_pulse"`
	ServoMaxPulse      *int           `json:"servo_max_pulse"`
	AuxGPIO            *int           `json:"aux_gpio"`
	Critical           bool           `json:"critical"`
	InvertedLogic      bool           `json:"inverted_logic"`
	SubzoneID          string         `json:"subzone_id"`
	Metadata           map[string]any `json:"metadata"`
	AlertConfig        map[string]any `json:"alert_config"`
	CreatedAt          time.Time      `json:"created_at"`
	UpdatedAt          time.Time      `json:"updated_at"`
}

// Class is the actuator's class.
func (c Config) Class() string { return ClassOf(c.Type) }

// pins are the pins the actuator owns: its own and, for a valve, the enable
// pin (aux_gpio, else gpio+1, docs/domain.md §8.3).
func (c Config) pins() []int {
	if c.Type != "valve" {
		return []int{c.GPIO}
	}
	return []int{c.GPIO, c.enablePin()}
}

func (c Config) enablePin() int {
	if c.AuxGPIO != nil {
		return *c.AuxGPIO
	}
	return c.GPIO + 1
}

// travel is how long the valve needs to close after its OFF (Q14).
func (c Config) travel(second time.Duration) time.Duration {
	if c.Type != "valve" {
		return 0
	}
	return time.Duration(c.ValveTravelSeconds) * second
}

// Defaults of docs/domain.md §4.2 for fields a caller leaves at zero; Upsert
// applies them before CheckFields.
const (
	defaultMaxRuntime  = 3600
	defaultValveTravel = 5
)

func (c *Config) applyDefaults() {
	if c.MaxRuntimeSeconds == 0 {
		c.MaxRuntimeSeconds = defaultMaxRuntime
	}
	if c.Type == "valve" && c.ValveTravelSeconds == 0 {
		c.ValveTravelSeconds = defaultValveTravel
	}
	if c.Metadata == nil {
		c.Metadata = map[string]any{}
	}
}

// FieldError is one refused configuration field (422 VALIDATION_ERROR).
type FieldError struct {
	Field, Msg, Type string
}

// InvalidError is a configuration the hub refuses, with every reason.
type InvalidError struct {
	Errors []FieldError
}

func (e *InvalidError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		msgs[i] = fe.Field + ": " + fe.Msg
	}
	return "invalid actuator config: " + strings.Join(msgs, "; ")
}

// Refusal reasons the firmware forces on the hub (docs/domain.md §4.2).
const (
	msgInvertedLogic = "inverted_logic:true is refused: the firmware does not apply it at configure time, " +
		"so an active-low output would be energised after every configuration (docs/protocol.md Q13); " +
		"wire the load active-high"
	msgDefaultState = "default_state:true is accepted only for relays: the firmware ignores it for valves, pwm " +
		"and servo outputs (docs/protocol.md Q17), and a pump must never start by itself at every configuration"
)

var subzonePattern = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)

// CheckFields applies the field rules of docs/domain.md §4.2 to c (whose
// type may still be an input alias); it lists every failing field.
func CheckFields(c Config) []FieldError {
	var errs []FieldError
	fail := func(field, typ, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Msg: fmt.Sprintf(format, args...), Type: typ})
	}
	typ, ok := NormaliseType(c.Type)
	if !ok {
		fail("actuator_type", "enum", "must be one of relay, digital, binary, switch, pump, valve, pwm, servo")
	}

	checkRange := func(field string, v, lo, hi float64) {
		if v < lo || v > hi {
			fail(field, "value_error", "must be %g-%g", lo, hi)
		}
	}
	checkRange("min_value", c.MinValue, 0, 1)
	checkRange("max_value", c.MaxValue, 0, 1)
	checkRange("default_value", c.DefaultValue, 0, 1)
	if c.MinValue > c.MaxValue {
		fail("max_value", "value_error", "must not be below min_value")
	}
	checkRange("default_pwm", float64(c.DefaultPWM), 0, 255)
	checkRange("max_runtime_seconds", float64(c.MaxRuntimeSeconds), 1, 86400)
	checkRange("cooldown_seconds", float64(c.CooldownSeconds), 0, 3600)
	if typ == "valve" {
		checkRange("valve_travel_seconds", float64(c.ValveTravelSeconds), 1, 60)
	}
	if c.PWMFrequency != nil {
		checkRange("pwm_frequency", float64(*c.PWMFrequency), 1, 40000)
	}
	if c.ServoMinPulse != nil {
		checkRange("servo_min_pulse", float64(*c.ServoMinPulse), 500, 2500)
	}
	if c.ServoMaxPulse != nil {
		checkRange("servo_max_pulse", float64(*c.ServoMaxPulse), 500, 2500)
	}
	if c.ServoMinPulse != nil && c.ServoMaxPulse != nil && *c.ServoMinPulse > *c.ServoMaxPulse {
		fail("servo_max_pulse", "value_error", "must not be below servo_min_pulse")
	}

	if c.DefaultState && ok && typ != "relay" {
		fail("default_state", "value_error", msgDefaultState)
	}
	if c.InvertedLogic {
		fail("inverted_logic", "value_error", msgInvertedLogic)
	}
	if c.AuxGPIO != nil {
		switch {
		case ok && typ != "valve":
			fail("aux_gpio", "value_error", "applies to valves only (their enable pin)")
		case *c.AuxGPIO < 0 || *c.AuxGPIO > 39:
			fail("aux_gpio", "value_error", "must be 0-39")
		case *c.AuxGPIO == c.GPIO:
			fail("aux_gpio", "value_error", "must differ from gpio")
		}
	}

	if len(c.Name) > 100 {
		fail("name", "string_too_long", "must be at most 100 characters")
	}
	if strings.ContainsAny(c.Name, "\"\\") || strings.IndexFunc(c.Name, func(r rune) bool { return r < 0x20 }) >= 0 {
		fail("name", "value_error", "must not contain quotes, backslashes or control characters (it is sent to the device)")
	}
	if c.SubzoneID != "" && !subzonePattern.MatchString(c.SubzoneID) {
		fail("subzone_id", "string_pattern_mismatch", "must be 1-32 characters of [A-Za-z0-9_]")
	}
	return errs
}

// Actuators per device (docs/domain.md §1.5).
const (
	maxActuators     = 12
	maxActuatorsXIAO = 6
)

// Upsert creates or replaces the actuator on c's pin (docs/api.md §8.2).
// The caller pushes the device config afterwards (Push).
func (s *Service) Upsert(ctx context.Context, c Config) (Config, error) {
	d, err := s.devices.Get(c.EspID)
	if err != nil {
		return c, err
	}
	if typ, ok := NormaliseType(c.Type); ok {
		c.Type = typ
	}
	c.applyDefaults()
	if errs := CheckFields(c); len(errs) > 0 {
		return c, &InvalidError{Errors: errs}
	}

	now := s.now()
	k := key{c.EspID, c.GPIO}
	s.mu.Lock()
	existing := s.units[k]
	others := s.othersLocked(c.EspID, c.GPIO)
	s.mu.Unlock()

	if existing != nil {
		c.ID, c.CreatedAt = existing.cfg.ID, existing.cfg.CreatedAt
		c.AlertConfig = mergeAlertConfig(existing.cfg.AlertConfig, c.AlertConfig)
	} else {
		c.ID, c.CreatedAt = uuid.NewString(), now
		if err := checkLimit(d, len(others)); err != nil {
			return c, err
		}
	}
	c.UpdatedAt = now
	if err := s.checkPins(d, c, others); err != nil {
		return c, err
	}
	if err := s.saveConfig(ctx, c); err != nil {
		return c, err
	}

	s.mu.Lock()
	if u := s.units[k]; u != nil {
		u.cfg = c
	} else {
		s.units[k] = newUnit(c)
	}
	s.dirty[c.EspID] = true
	s.mu.Unlock()
	return c, nil
}

func mergeAlertConfig(old, in map[string]any) map[string]any {
	if in != nil {
		return in
	}
	return old
}

func checkLimit(d device.Device, have int) error {
	limit := maxActuators
	if sensor.BoardFor(d.HardwareType).Name == sensor.XIAO.Name {
		limit = maxActuatorsXIAO
	}
	if have >= limit {
		return fmt.Errorf("%w: %d actuators on %s", ErrLimit, limit, sensor.BoardFor(d.HardwareType).Name)
	}
	return nil
}

// othersLocked are the device's actuators except the one on gpio; s.mu is held.
func (s *Service) othersLocked(espID string, gpio int) []Config {
	var out []Config
	for k, u := range s.units {
		if k.esp == espID && k.gpio != gpio {
			out = append(out, u.cfg)
		}
	}
	return out
}

// checkPins applies docs/domain.md §8.2 to the actuator's pins: the board
// rules (shared with sensors), then sensors on the pins, then other
// actuators' pins (their own and their valves' enable pins).
func (s *Service) checkPins(d device.Device, c Config, others []Config) error {
	board := sensor.BoardFor(d.HardwareType)
	if msg := board.RefusesOutput(c.GPIO); msg != "" {
		return &sensor.PinError{Type: "system", Msg: msg}
	}
	if c.Type == "valve" {
		if msg := board.RefusesOutput(c.enablePin()); msg != "" {
			if c.AuxGPIO == nil {
				msg = fmt.Sprintf("the valve's enable pin GPIO %d (gpio+1) is not usable: %s; set aux_gpio",
					c.enablePin(), msg)
			}
			return &sensor.PinError{Type: "system", Msg: msg}
		}
	}

	for _, p := range c.pins() {
		if s.sensors != nil {
			for _, sc := range s.sensors.ByDevice(c.EspID) {
				if sc.GPIO == p {
					return &sensor.PinError{
						Conflict: true,
						Type:     "sensor",
						Msg:      fmt.Sprintf("GPIO %d is already used by sensor %s", p, sc.SensorType),
					}
				}
			}
		}
		for _, o := range others {
			for _, op := range o.pins() {
				if op == p {
					return &sensor.PinError{
						Conflict: true,
						Type:     "actuator",
						Msg:      fmt.Sprintf("GPIO %d is already used by %s", p, o.describe(op)),
					}
				}
			}
		}
	}
	return nil
}

// describe names the actuator as the owner of pin p.
func (c Config) describe(p int) string {
	if p != c.GPIO {
		return fmt.Sprintf("the enable pin of the valve on GPIO %d", c.GPIO)
	}
	return fmt.Sprintf("actuator %s on GPIO %d", c.Type, c.GPIO)
}

// PinClaim tells the sensor domain whether an actuator owns a pin
// (sensor.PinClaims).
func (s *Service) PinClaim(espID string, gpio int) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, u := range s.units {
		if k.esp != espID {
			continue
		}
		for _, p := range u.cfg.pins() {
			if p == gpio {
				return u.cfg.describe(p), true
			}
		}
	}
	return "", false
}

var _ sensor.PinClaims = (*Service)(nil)

func (s *Service) saveConfig(ctx context.Context, c Config) error {
	doc, err := json.Marshal(c)
	if err != nil {
		return err
	}
	err = s.store.SaveActuatorConfig(ctx, store.Doc{
		ID:        c.ID,
		EspID:     c.EspID,
		GPIO:      c.GPIO,
		Kind:      c.Type,
		JSON:      doc,
		CreatedAt: c.CreatedAt,
		UpdatedAt: c.UpdatedAt,
	})
	if err != nil {
		return fmt.Errorf("save actuator %s/%d: %w", c.EspID, c.GPIO, err)
	}
	return nil
}

// Get returns the actuator on a device pin.
func (s *Service) Get(espID string, gpio int) (Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.units[key{espID, gpio}]
	if u == nil {
		return Config{}, ErrNotFound
	}
	return u.cfg, nil
}

// ByID returns the actuator with a config id.
func (s *Service) ByID(id string) (Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.units {
		if u.cfg.ID == id {
			return u.cfg, nil
		}
	}
	return Config{}, ErrNotFound
}

// List returns every actuator ordered by device and gpio (docs/api.md §1.7).
func (s *Service) List() []Config {
	s.mu.Lock()
	out := make([]Config, 0, len(s.units))
	for _, u := range s.units {
		out = append(out, u.cfg)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].EspID != out[j].EspID {
			return out[i].EspID < out[j].EspID
		}
		return out[i].GPIO < out[j].GPIO
	})
	return out
}

// ByDevice returns a device's actuators ordered by gpio. It copies only the
// device's configs: a device list asks this for every device of a page.
func (s *Service) ByDevice(espID string) []Config {
	var out []Config
	s.mu.Lock()
	for k, u := range s.units {
		if k.esp == espID {
			out = append(out, u.cfg)
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].GPIO < out[j].GPIO })
	return out
}

// SetAlertConfig merges patch into the actuator's alert_config (a nil value
// deletes a key) and returns the result.
func (s *Service) SetAlertConfig(ctx context.Context, id string, patch map[string]any) (map[string]any, error) {
	c, err := s.ByID(id)
	if err != nil {
		return nil, err
	}
	ac := map[string]any{}
	for k, v := range c.AlertConfig {
		ac[k] = v
	}
	for k, v := range patch {
		if v == nil {
			delete(ac, k)
		} else {
			ac[k] = v
		}
	}
	c.AlertConfig = ac
	c.UpdatedAt = s.now()
	if err := s.saveConfig(ctx, c); err != nil {
		return nil, err
	}

	s.mu.Lock()
	if u := s.units[key{c.EspID, c.GPIO}]; u != nil && u.cfg.ID == id {
		u.cfg.AlertConfig = ac
		u.cfg.UpdatedAt = c.UpdatedAt
	}
	s.mu.Unlock()
	return ac, nil
}

// Delete removes an actuator (docs/api.md §8.2): an OFF first if the device
// is reachable (for a valve the next push then waits for its travel), then
// the config. The caller pushes the device config afterwards (Push), whose
// removal item takes the output off the device.
func (s *Service) Delete(ctx context.Context, espID string, gpio int, issuedBy string) (Config, error) {
	c, err := s.Get(espID, gpio)
	if err != nil {
		return c, err
	}
	if d, err := s.devices.Get(espID); err == nil && d.Status == device.StatusOnline {
		if _, err := s.sendOffOnce(ctx, c, d, issuedBy); err != nil {
			s.log.Warn("OFF before deleting an actuator failed", "esp_id", espID, "gpio", gpio, "error", err)
		}
	}

	if err := s.store.DeleteActuatorConfig(ctx, c.ID); err != nil {
		return c, fmt.Errorf("delete actuator %s/%d: %w", espID, gpio, err)
	}
	now := s.now()
	fx := &effects{}
	s.mu.Lock()
	if u := s.units[key{espID, gpio}]; u != nil {
		s.forgetLocked(u, "actuator deleted", now, fx)
	}
	s.dirty[espID] = true
	s.mu.Unlock()
	s.run(ctx, fx, now)
	return c, nil
}

// Push sends the device's config after an actuator change when the device
// is online; otherwise the change is pushed when it comes back.
func (s *Service) Push(ctx context.Context, espID string) (bool, error) {
	d, err := s.devices.Get(espID)
	if err != nil || d.Status != device.StatusOnline {
		return false, nil
	}
	corr, err := s.devices.PushConfig(ctx, espID, device.TriggerActuatorChange)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	delete(s.dirty, espID)
	s.mu.Unlock()
	return corr != "", nil
}

// ActuatorItems is the device's actuator section of a push
// (device.ConfigSource): the stored device type unchanged, so device-side
// pump protection stays on (docs/domain.md §4.1; servo goes as pwm);
// inverted_logic always false (Q13); default_state only for relays, and
// never while the device is hub-latched (docs/domain.md §5.3).
func (s *Service) ActuatorItems(espID string) []contract.ActuatorConfigItem {
	latched := s.hubLatched(espID)
	var out []contract.ActuatorConfigItem
	for _, c := range s.ByDevice(espID) {
		typ := c.Type
		if typ == "servo" {
			typ = "pwm"
		}
		aux := 255
		if c.Type == "valve" && c.AuxGPIO != nil {
			aux = *c.AuxGPIO
		}
		it := contract.ActuatorConfigItem{
			GPIO:         c.GPIO,
			ActuatorType: typ,
			ActuatorName: truncate(contract.SanitizeText(c.Name), 32),
			SubzoneID:    c.SubzoneID,
			Active:       true,
			AuxGPIO:      aux,
			Critical:     c.Critical,
			DefaultState: c.DefaultState && c.Type == "relay" && !latched,
			DefaultPWM:   c.DefaultPWM,
		}
		if latched {
			it.DefaultPWM = 0
		}
		out = append(out, it)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// Output is one configured actuator.
type Output struct {
	EspID       string
	GPIO        int
	Type        string        // stored device type: relay, pump, valve, pwm, servo
	ValveTravel time.Duration // valves only; 0 for others
}

// Outputs lists the configured actuators of a device.
func (s *Service) Outputs(espID string) []Output {
	var out []Output
	for _, c := range s.ByDevice(espID) {
		out = append(out, Output{
			EspID:       c.EspID,
			GPIO:        c.GPIO,
			Type:        c.Type,
			ValveTravel: c.travel(s.second),
		})
	}
	return out
}
