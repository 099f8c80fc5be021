// Package sensor is the sensor pipeline (docs/domain.md §2–3): sensor configuration,
// reading ingest with deduplication through the processors of
// internal/sensor/processor, rollups and history, thresholds that raise
// alerts, and stale-sensor detection.
package sensor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/sensor/processor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Store is the persistence the sensor domain needs.
type Store interface {
	SaveSensorConfig(ctx context.Context, d store.Doc) error
	DeleteSensorConfig(ctx context.Context, id string) error
	LoadSensorConfigs(ctx context.Context) ([]store.Doc, error)
	EnsureSeries(ctx context.Context, k store.SeriesKey) (int64, error)
	LoadSeries(ctx context.Context) (map[store.SeriesKey]int64, error)
	LatestReadings(ctx context.Context) ([]store.RawRow, error)
	QueryReadings(ctx context.Context, q store.RawQuery) ([]store.RawRow, error)
	Buckets(
		ctx context.Context, series int64, source string, start, end, width, align int64,
	) ([]store.Bucket, error)
	CountReadings(ctx context.Context, series int64, before int64) (int64, error)
	DeleteReadingsBatch(ctx context.Context, series int64, before int64, limit int) (int64, error)
	DeleteRollupsBefore(ctx context.Context, source string, before int64, limit int) (int64, error)
	RepairRollups(ctx context.Context, from, to time.Time) error
}

// Sink receives readings for durable storage.
type Sink interface {
	Add(ctx context.Context, r store.Reading) error
}

// Publisher publishes hub messages (the processed echo).
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error
}

// audienceTeller is a Publisher that knows whether a topic has any
// subscriber (the embedded broker does; an external one cannot), so a
// message nobody would receive need not be built.
type audienceTeller interface {
	HasSubscribers(topic string) bool
}

// Devices is what the sensor domain asks of the device registry.
type Devices interface {
	Get(espID string) (device.Device, error)
	// AdmitType returns the hardware type of an inbound message's device,
	// or the drop error when the device may not send data.
	AdmitType(m ingest.Message) (hardwareType string, err error)
}

// Alerts opens and resolves the alerts of thresholds and stale sensors.
type Alerts interface {
	Raise(ctx context.Context, spec notify.Spec) error
	Clear(ctx context.Context, key string) error
}

var (
	_ Devices = (*device.Service)(nil)
	_ Alerts  = (*notify.Service)(nil)
)

// PinClaims tells which pins other components own (docs/domain.md §8.3: a
// sensor never shares a pin with an actuator, its aux_gpio or a valve's
// enable pin). Component names the owner for the conflict message.
type PinClaims interface {
	PinClaim(espID string, gpio int) (component string, claimed bool)
}

// Errors of the domain operations.
var (
	ErrNotFound        = errors.New("sensor not found")
	ErrAmbiguous       = errors.New("several sensors on this pin")
	ErrUnsupportedType = errors.New("no processor for this sensor type")
	ErrLimit           = errors.New("sensor limit reached")
)

// Options tunes the service.
type Options struct {
	ProcessedEcho bool
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
	// MaxSeriesPerDevice and MaxSeries cap the series readings open without
	// a sensor config (0: DefaultMaxSeriesPerDevice, DefaultMaxSeries).
	MaxSeriesPerDevice int
	MaxSeries          int
	// NoThresholds leaves the threshold alerts of the readings ingested
	// here to another service: a standby replica's, whose readings the
	// primary evaluates in ApplyRemote (docs/decisions/0029-replicas.md).
	NoThresholds bool
}

// The caps on series (docs/decisions/0020-long-run-bounds.md). A series is
// opened by the first reading of its key, and the key comes from the
// payload (sensor type, bus address), so without a cap a device could open
// series, rows and memory without end. A reading that would open one more
// is dropped as series_limit (docs/protocol.md §5.2); a configured sensor's
// series always opens (configs have their own bound, docs/domain.md §1.5).
const (
	// DefaultMaxSeriesPerDevice: 20 sensors of up to two values each, with
	// room for as many again from replaced sensors and unconfigured ones.
	DefaultMaxSeriesPerDevice = 64
	// DefaultMaxSeries: a fleet of 1,000 fully equipped devices (40,000)
	// with a quarter again to spare; about 30 MiB of series state.
	DefaultMaxSeries = 50000
)

// latest is the newest reading of a series, served from memory.
type latest struct {
	key store.SeriesKey
	r   store.Reading
}

type seriesState struct {
	id     int64
	lastTS int64   // last stored reading time (ms), for hub-timed spacing
	recent []int64 // recent device-timed reading times (ms), for dedup
	stale  bool
}

// Service is the sensor domain.
type Service struct {
	store   Store
	sink    Sink
	devices Devices
	bus     Publisher
	events  *event.Bus
	alerts  Alerts // nil: no alerts
	claims  PinClaims
	log     *slog.Logger
	opt     Options
	now     func() time.Time

	// refreshMu orders RefreshDevice and RefreshAll, so that a later
	// reload always applies a later read of the store.
	refreshMu sync.Mutex

	mu      sync.RWMutex
	configs map[string]*Config // by id
	byKey   map[store.SeriesKey]*Config
	series  map[store.SeriesKey]*seriesState
	latest  map[int64]*latest
	// perDevice counts each device's series, for the cap.
	perDevice map[string]int

	processReqs *prometheus.CounterVec
}

// New builds the service; call Load before serving. alerts may be nil.
func New(
	st Store, sink Sink, devices Devices, bus Publisher, events *event.Bus, alerts Alerts, opt Options,
) *Service {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.MaxSeriesPerDevice <= 0 {
		opt.MaxSeriesPerDevice = DefaultMaxSeriesPerDevice
	}
	if opt.MaxSeries <= 0 {
		opt.MaxSeries = DefaultMaxSeries
	}
	s := &Service{
		store:     st,
		sink:      sink,
		devices:   devices,
		bus:       bus,
		events:    events,
		alerts:    alerts,
		log:       opt.Logger,
		opt:       opt,
		now:       time.Now,
		configs:   map[string]*Config{},
		byKey:     map[store.SeriesKey]*Config{},
		series:    map[store.SeriesKey]*seriesState{},
		latest:    map[int64]*latest{},
		perDevice: map[string]int{},
		processReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "god_kaiser_sensor_process_requests_total",
			Help: "Firmware processing requests by result.",
		}, []string{"result"}),
	}
	if opt.Registerer != nil {
		opt.Registerer.MustRegister(s.processReqs)
	}
	return s
}

// SetPinClaims makes Upsert refuse pins that claims owns; without it only
// the board rules and other sensors are checked.
func (s *Service) SetPinClaims(claims PinClaims) {
	s.mu.Lock()
	s.claims = claims
	s.mu.Unlock()
}

// Load reads configs, series and the latest reading per series.
func (s *Service) Load(ctx context.Context) error {
	docs, err := s.store.LoadSensorConfigs(ctx)
	if err != nil {
		return fmt.Errorf("load sensor configs: %w", err)
	}
	series, err := s.store.LoadSeries(ctx)
	if err != nil {
		return fmt.Errorf("load series: %w", err)
	}
	lat, err := s.store.LatestReadings(ctx)
	if err != nil {
		return fmt.Errorf("load latest readings: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range docs {
		var c Config
		if err := json.Unmarshal(d.JSON, &c); err != nil {
			return fmt.Errorf("sensor config %s: %w", d.ID, err)
		}
		s.configs[c.ID] = &c
		s.byKey[keyOf(&c)] = &c
	}

	for k, id := range series {
		s.addSeries(k, id)
	}

	for _, r := range lat {
		s.latest[r.SeriesID] = &latest{key: r.Key, r: r.Reading}
		if st := s.series[r.Key]; st != nil {
			st.lastTS = r.TS
		}
	}
	return nil
}

func keyOf(c *Config) store.SeriesKey {
	k, _ := processor.NormaliseType(c.SensorType)
	return store.SeriesKey{
		EspID:      c.EspID,
		GPIO:       c.GPIO,
		SensorType: k,
		Address:    c.Address(),
	}
}

// ByDevice returns a device's configs ordered by gpio and type.
func (s *Service) ByDevice(espID string) []Config {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Config
	for _, c := range s.configs {
		if c.EspID == espID {
			out = append(out, *c)
		}
	}
	sortConfigs(out)
	return out
}

func sortConfigs(cs []Config) {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].EspID != cs[j].EspID {
			return cs[i].EspID < cs[j].EspID
		}
		if cs[i].GPIO != cs[j].GPIO {
			return cs[i].GPIO < cs[j].GPIO
		}
		return cs[i].SensorType < cs[j].SensorType
	})
}

// All returns every config, ordered.
func (s *Service) All() []Config {
	s.mu.RLock()
	out := make([]Config, 0, len(s.configs))
	for _, c := range s.configs {
		out = append(out, *c)
	}
	s.mu.RUnlock()
	sortConfigs(out)
	return out
}

// ByID returns one config.
func (s *Service) ByID(id string) (Config, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.configs[id]
	if c == nil {
		return Config{}, ErrNotFound
	}
	return *c, nil
}

// Selector picks one of several sensors on a pin (docs/api.md §7.2).
type Selector struct {
	SensorType     string
	I2CAddress     *int
	OneWireAddress string
}

// matches reports whether c fits every part of the selector that is set.
func (sel Selector) matches(c Config) bool {
	if sel.SensorType != "" {
		want, _ := processor.NormaliseType(sel.SensorType)
		if k, _ := processor.NormaliseType(c.SensorType); k != want {
			return false
		}
	}
	if sel.I2CAddress != nil && (c.I2CAddress == nil || *c.I2CAddress != *sel.I2CAddress) {
		return false
	}
	return sel.OneWireAddress == "" || strings.EqualFold(c.OneWireAddress, sel.OneWireAddress)
}

// Find resolves (device, gpio, selector) to one config; candidates are
// returned with ErrAmbiguous.
func (s *Service) Find(espID string, gpio int, sel Selector) (Config, []Config, error) {
	var cands []Config
	for _, c := range s.ByDevice(espID) {
		if c.GPIO == gpio && sel.matches(c) {
			cands = append(cands, c)
		}
	}

	switch len(cands) {
	case 0:
		return Config{}, nil, ErrNotFound
	case 1:
		return cands[0], nil, nil
	}
	return Config{}, cands, ErrAmbiguous
}

// SensorItems is the device's config section for a push (device.ConfigSource).
// The values of one multi-value sensor share one item.
func (s *Service) SensorItems(espID string) []contract.SensorConfigItem {
	seen := map[string]bool{}
	var out []contract.SensorConfigItem
	for _, c := range s.ByDevice(espID) {
		if !c.Enabled {
			continue
		}
		key, _ := processor.NormaliseType(c.SensorType)
		fam := fmt.Sprintf("%d/%s", c.GPIO, family(key, c.SensorType))
		if seen[fam] {
			continue
		}
		seen[fam] = true
		out = append(out, contract.SensorConfigItem{
			GPIO:       c.GPIO,
			SensorType: wireType(key, c.SensorType),
			SensorName: truncate(contract.SanitizeText(c.Name), 32),
			SubzoneID:  c.SubzoneID,
			Active:     true,
			RawMode:    true,
		})
	}
	return out
}

// multiValue lists the processor keys that are values of one multi-value
// sensor: the sensor's family, and the type the firmware is configured with.
var multiValue = map[string]struct{ family, wire string }{
	"sht31_temp":      {"sht31", "sht31_temp"},
	"sht31_humidity":  {"sht31", "sht31_temp"},
	"bmp280_temp":     {"bmp280", "bmp280_pressure"},
	"bmp280_pressure": {"bmp280", "bmp280_pressure"},
}

// family is the physical sensor a type belongs to (raw is the configured type).
func family(key, raw string) string {
	if mv, ok := multiValue[key]; ok {
		return mv.family
	}
	return strings.ToLower(raw)
}

// wireType is the type the firmware expects in its config.
func wireType(key, raw string) string {
	if mv, ok := multiValue[key]; ok {
		return mv.wire
	}
	return strings.ToLower(raw)
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

// Upsert creates or replaces the config with c's identity (docs/api.md §7.2: on a
// pin holding one non-bus sensor, that sensor is replaced whatever its type).
func (s *Service) Upsert(ctx context.Context, c Config) (Config, string, error) {
	d, err := s.devices.Get(c.EspID)
	if err != nil {
		return c, "", err
	}
	key, err := acceptType(&c)
	if err != nil {
		return c, "", err
	}

	now := s.now()
	existing := s.ByDevice(c.EspID)
	replace, others := onPin(existing, &c, key)
	if replace != nil {
		c.ID, c.CreatedAt = replace.ID, replace.CreatedAt
	} else {
		c.ID, c.CreatedAt = uuid.NewString(), now
		if err := checkLimit(BoardFor(d.HardwareType), existing, &c); err != nil {
			return c, "", err
		}
	}
	c.UpdatedAt = now
	c.ApplyDefaults()

	warning, err := CheckPin(BoardFor(d.HardwareType), &c, others)
	if err != nil {
		return c, "", err
	}
	if err := s.claimed(c); err != nil {
		return c, "", err
	}
	if err := s.save(ctx, c, key); err != nil {
		return c, "", err
	}
	return c, warning, nil
}

// claimed refuses c's pin when another component owns it: existing
// actuator on the pin, after the sensor checks (docs/domain.md §8.2).
func (s *Service) claimed(c Config) error {
	s.mu.RLock()
	claims := s.claims
	s.mu.RUnlock()
	if claims == nil {
		return nil
	}
	if owner, ok := claims.PinClaim(c.EspID, c.GPIO); ok {
		return &PinError{
			Conflict: true,
			Type:     "actuator",
			Msg:      fmt.Sprintf("GPIO %d is already used by %s", c.GPIO, owner),
		}
	}
	return nil
}

// acceptType lower-cases c's type and returns its processor key; a
// processed sensor needs a processor.
func acceptType(c *Config) (string, error) {
	key, hasProc := processor.NormaliseType(c.SensorType)
	c.SensorType = strings.ToLower(strings.TrimSpace(c.SensorType))
	processed := c.ProcessingMode == "pi_enhanced" || c.ProcessingMode == ""
	if processed && !hasProc {
		return key, fmt.Errorf("%w: %s", ErrUnsupportedType, c.SensorType)
	}
	return key, nil
}

// onPin finds the config c replaces among a device's configs (same
// identity, or the one non-bus sensor on its pin) and returns the others.
func onPin(existing []Config, c *Config, key string) (replace *Config, others []*Config) {
	for i := range existing {
		o := existing[i]
		okey, _ := processor.NormaliseType(o.SensorType)
		sameIdentity := o.GPIO == c.GPIO && okey == key && o.Address() == c.Address()
		plainPin := o.GPIO == c.GPIO && o.Address() == "" && c.Address() == "" && !sameFamily(okey, key) &&
			Bus(okey, o.SensorType) != "i2c" && Bus(key, c.SensorType) != "i2c"
		if sameIdentity || plainPin {
			replace = &o
		} else {
			others = append(others, &o)
		}
	}
	return replace, others
}

// Sensors per device (docs/domain.md §1.5); the values of one multi-value sensor
// count once.
const (
	maxSensors     = 20
	maxSensorsXIAO = 10
)

// checkLimit refuses a new physical sensor beyond the board's limit.
func checkLimit(board Board, existing []Config, c *Config) error {
	limit := maxSensors
	if board.Name == XIAO.Name {
		limit = maxSensorsXIAO
	}
	if physical(existing) >= limit && !joinsFamily(existing, c) {
		return fmt.Errorf("%w: %d sensors on %s", ErrLimit, limit, board.Name)
	}
	return nil
}

// save persists c and caches it under its id and series key.
func (s *Service) save(ctx context.Context, c Config, key string) error {
	doc, err := json.Marshal(c)
	if err != nil {
		return err
	}
	err = s.store.SaveSensorConfig(ctx, store.Doc{
		ID:        c.ID,
		EspID:     c.EspID,
		GPIO:      c.GPIO,
		Kind:      key,
		Address:   c.Address(),
		JSON:      doc,
		CreatedAt: c.CreatedAt,
		UpdatedAt: c.UpdatedAt,
	})
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.forget(c.ID)
	s.configs[c.ID] = &c
	s.byKey[keyOf(&c)] = &c
	return nil
}

// forget drops a config from the caches; its series key is dropped only
// while it is the config's, not another's that took it over; s.mu is held.
func (s *Service) forget(id string) {
	if old := s.configs[id]; old != nil && s.byKey[keyOf(old)] == old {
		delete(s.byKey, keyOf(old))
	}
	delete(s.configs, id)
}

func physical(cs []Config) int {
	seen := map[string]bool{}
	for _, c := range cs {
		k, _ := processor.NormaliseType(c.SensorType)
		seen[fmt.Sprintf("%d/%s/%s", c.GPIO, family(k, c.SensorType), c.Address())] = true
	}
	return len(seen)
}

func joinsFamily(cs []Config, c *Config) bool {
	k, _ := processor.NormaliseType(c.SensorType)
	for _, o := range cs {
		ok, _ := processor.NormaliseType(o.SensorType)
		if o.GPIO == c.GPIO && family(ok, o.SensorType) == family(k, c.SensorType) && o.Address() == c.Address() {
			return true
		}
	}
	return false
}

// Delete removes a config.
func (s *Service) Delete(ctx context.Context, id string) (Config, error) {
	c, err := s.ByID(id)
	if err != nil {
		return c, err
	}
	if err := s.store.DeleteSensorConfig(ctx, id); err != nil {
		return c, err
	}
	s.mu.Lock()
	s.forget(id)
	s.mu.Unlock()
	return c, nil
}

// DeleteDevice removes every config of a deleted device.
func (s *Service) DeleteDevice(ctx context.Context, espID string) error {
	var errs []error
	for _, c := range s.ByDevice(espID) {
		if _, err := s.Delete(ctx, c.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SaveCalibration replaces a sensor's calibration object.
func (s *Service) SaveCalibration(ctx context.Context, id string, cal map[string]any) (Config, error) {
	c, err := s.ByID(id)
	if err != nil {
		return c, err
	}
	c.Calibration = cal
	c, _, err = s.Upsert(ctx, c)
	return c, err
}

// configFor returns the config of a series key; s.mu is held.
func (s *Service) configFor(k store.SeriesKey) *Config { return s.byKey[k] }

// dataSource classifies a reading (docs/domain.md §2.2).
func dataSource(d contract.SensorData, hw string) string {
	switch {
	case d.TestMode:
		return "test"
	case d.Source != "":
		return strings.ToLower(d.Source)
	case strings.EqualFold(hw, "MOCK_ESP32") || strings.HasPrefix(d.EspID, "MOCK_"):
		return "mock"
	case strings.HasPrefix(d.EspID, "TEST_"):
		return "test"
	case strings.HasPrefix(d.EspID, "SIM_"):
		return "simulation"
	}
	return "production"
}

// maxAge drops readings older than a day (docs/domain.md §2.2 too_old).
const maxAge = 86400 * time.Second

// HandleData is the ingest handler of `sensor/{gpio}/data` (docs/protocol.md §5.7).
func (s *Service) HandleData(ctx context.Context, m ingest.Message) error {
	in, err := s.receive(m)
	if err != nil {
		return err
	}
	st, err := s.identify(ctx, &in)
	if err != nil {
		return err
	}

	r := in.reading(st.id)
	res, processed := processReading(&r, in)
	wasStale, err := s.dedup(st, in.key, &r, in.at, in.src)
	if err != nil {
		return err
	}
	if err := s.sink.Add(ctx, r); err != nil {
		return fmt.Errorf("store reading: %w", err)
	}

	if processed && s.opt.ProcessedEcho {
		s.echo(ctx, m, res, in.now)
	}
	if !s.opt.NoThresholds {
		s.checkThresholds(ctx, in, r, wasStale)
	}
	s.publishData(in.data, in.procKey, r, r.TS, in.now)
	return nil
}

// incoming is one reading on its way through HandleData.
type incoming struct {
	data     contract.SensorData
	hardware string    // the device's hardware type
	now      time.Time // received
	at       time.Time // measured: device time, or the hub's
	src      contract.TimeSource
	procKey  string // processor key, or the lower-cased type
	hasProc  bool
	key      store.SeriesKey
	cfg      *Config // a copy; nil for a sensor without a config
}

// receive decodes a reading from an admitted device and dates it; replays
// and readings older than a day are dropped (docs/domain.md §2.2).
func (s *Service) receive(m ingest.Message) (incoming, error) {
	d, err := contract.DecodeSensorData(m.Topic, m.Payload)
	if err != nil {
		return incoming{}, err
	}
	if m.Replay {
		return incoming{}, ingest.Drop(contract.ReasonReplay, "retained reading")
	}
	hardware, err := s.devices.AdmitType(m)
	if err != nil {
		return incoming{}, err
	}

	now := m.ReceivedAt
	at, src := contract.NormaliseTime(d.TS, now)
	if d.TimeValid != nil && !*d.TimeValid {
		at, src = now, contract.SourceHub
	}
	if now.Sub(at) > maxAge {
		return incoming{}, ingest.Drop(contract.ReasonTooOld, "reading older than 24 h")
	}

	procKey, hasProc := processor.NormaliseType(d.SensorType)
	return incoming{
		data:     d,
		hardware: hardware,
		now:      now,
		at:       at,
		src:      src,
		procKey:  procKey,
		hasProc:  hasProc,
		key:      readingKey(d, procKey),
	}, nil
}

// readingKey is the series identity of a reading: device, pin, type and
// bus address.
func readingKey(d contract.SensorData, procKey string) store.SeriesKey {
	return store.SeriesKey{
		EspID:      d.EspID,
		GPIO:       d.GPIO,
		SensorType: procKey,
		Address:    busAddress(d.I2CAddress, d.OneWireAddr),
	}
}

// busAddress is a series key's address: the sensor's I2C address or its
// upper-cased OneWire ROM code, "" for a sensor alone on its pin.
func busAddress[I int | int64](i2c *I, oneWire string) string {
	switch {
	case i2c != nil:
		return "i2c:" + strconv.FormatInt(int64(*i2c), 10)
	case oneWire != "":
		return "ow:" + strings.ToUpper(oneWire)
	}
	return ""
}

// identify finds the reading's config (a copy, so that processing needs no
// lock) and its series, creating the series on its first reading within
// the caps on series.
func (s *Service) identify(ctx context.Context, in *incoming) (*seriesState, error) {
	s.mu.Lock()
	if cfg := s.configFor(in.key); cfg != nil {
		c := *cfg
		in.cfg = &c
	}
	st := s.series[in.key]
	full := s.seriesFull(in.key.EspID)
	s.mu.Unlock()
	if st != nil {
		return st, nil
	}
	if full != "" && in.cfg == nil {
		return nil, ingest.Drop(contract.ReasonSeriesLimit, full)
	}

	id, err := s.store.EnsureSeries(ctx, in.key)
	if err != nil {
		return nil, fmt.Errorf("series %v: %w", in.key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st = s.series[in.key]; st == nil {
		st = s.addSeries(in.key, id)
	}
	return st, nil
}

// addSeries opens the state of series k, which is not open; s.mu is held.
func (s *Service) addSeries(k store.SeriesKey, id int64) *seriesState {
	st := &seriesState{id: id}
	s.series[k] = st
	s.perDevice[k.EspID]++
	return st
}

// seriesFull tells why a device may open no more series, "" when it may.
// Readings of different devices run in parallel, so the total can pass its
// cap by at most one series per ingest worker; s.mu is held.
func (s *Service) seriesFull(espID string) string {
	if n := s.perDevice[espID]; n >= s.opt.MaxSeriesPerDevice {
		return fmt.Sprintf("device has %d series, the cap per device", n)
	}
	if n := len(s.series); n >= s.opt.MaxSeries {
		return fmt.Sprintf("hub has %d series, the cap", n)
	}
	return ""
}

// reading is the stored row before processing and timing.
func (in incoming) reading(series int64) store.Reading {
	return store.Reading{
		SeriesID:    series,
		Raw:         float64(in.data.Raw),
		Source:      dataSource(in.data, in.hardware),
		ZoneID:      in.data.ZoneID,
		SubzoneID:   in.data.SubzoneID,
		ReceivedAt:  in.now.UnixMilli(),
		TimeSource:  string(in.src),
		DeviceValue: in.data.Value,
	}
}

// processReading fills the reading's mode, value, unit and quality (docs/domain.md §2.1):
// the device's own value, the processor's for a pi_enhanced config, else
// the raw value. processed reports a successful pi_enhanced result.
func processReading(r *store.Reading, in incoming) (res processor.Result, processed bool) {
	d, cfg := in.data, in.cfg
	switch {
	case !d.RawMode:
		r.Mode, r.Processed, r.Unit, r.Quality = "local", d.Value, d.Unit, d.Quality
		if r.Processed == nil {
			r.Processed = &r.Raw
		}
	case cfg != nil && cfg.ProcessingMode == "pi_enhanced":
		r.Mode = "pi_enhanced"
		if !in.hasProc {
			r.Unit, r.Quality = d.Unit, "error"
			break
		}
		res, _ = processor.Process(in.procKey, processor.Input{
			Raw:         float64(d.Raw),
			RawMode:     true,
			Calibration: cfg.Calibration,
			Params:      cfg.Params(),
			WireType:    d.SensorType,
		})
		r.Processed, r.Unit, r.Quality = res.Value, res.Unit, res.Quality
		processed = res.Quality != "error"
	default:
		v := float64(d.Raw)
		r.Mode, r.Processed, r.Unit, r.Quality = "raw", &v, d.Unit, d.Quality
	}
	if r.Quality == "" {
		r.Quality = "unknown"
	}
	return res, processed
}

// recentDeviceTimes is how many device times per series dedup remembers.
const recentDeviceTimes = 16

// dedup gives r its time key in the series (docs/domain.md §2.2): a device-timed
// reading whose time was seen recently is a duplicate; hub-timed readings
// are never merged, each gets a distinct key. It makes r the series'
// latest reading and clears its stale mark, reporting whether it was set.
//
// No series time runs more than contract.MaxFuture ahead of the hub's
// clock. Device times beyond it are the hub's already
// (docs/protocol.md §5.3); a series whose last time lies further ahead (the
// hub's clock stepped back, or a reading stored before that rule) restarts at the
// receive time instead of counting on from its future end, and its latest
// reading gives way, so neither pins the series in the future where
// queries up to now cannot see it. A hub-timed key that is taken there
// already is moved on by the store, never dropped.
func (s *Service) dedup(
	st *seriesState, key store.SeriesKey, r *store.Reading, at time.Time, src contract.TimeSource,
) (wasStale bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	ts := at.UnixMilli()
	ahead := st.lastTS - r.ReceivedAt // how far the series runs ahead of the hub's clock
	future := ahead > contract.MaxFuture.Milliseconds()
	if src == contract.SourceDevice {
		if slices.Contains(st.recent, ts) {
			return false, ingest.Drop(contract.ReasonDuplicate, "reading with the same device time already stored")
		}
		if len(st.recent) >= recentDeviceTimes {
			st.recent = st.recent[1:]
		}
		st.recent = append(st.recent, ts)
	} else if ts <= st.lastTS && !future {
		ts = st.lastTS + 1
	}
	if ts > st.lastTS || future {
		st.lastTS = ts
	}
	r.TS = ts

	wasStale, st.stale = st.stale, false
	if l := s.latest[st.id]; l == nil || l.r.TS <= ts || l.r.TS-r.ReceivedAt > contract.MaxFuture.Milliseconds() {
		s.latest[st.id] = &latest{key: key, r: *r}
	}
	return wasStale, nil
}

// checkThresholds resolves a stale mark and evaluates the thresholds of a
// configured sensor's usable reading (docs/domain.md §3).
func (s *Service) checkThresholds(ctx context.Context, in incoming, r store.Reading, wasStale bool) {
	if in.cfg == nil {
		return
	}
	if wasStale {
		s.recovered(ctx, in.key, in.cfg, in.now)
	}
	if usable(r) {
		s.evaluate(ctx, in.key, in.cfg, *r.Processed, r.Unit)
	}
}

// usable is docs/domain.md §2.2's test: a reading logic and thresholds may act on.
func usable(r store.Reading) bool {
	return r.Quality != "error" && r.Quality != "suspect" && r.Processed != nil
}

// publishData emits the live `sensor_data` event, when anyone listens.
func (s *Service) publishData(d contract.SensorData, key string, r store.Reading, ts int64, now time.Time) {
	if !s.events.Wants(event.TypeSensorData) {
		return
	}
	data := event.SensorData{
		EspID:          d.EspID,
		GPIO:           d.GPIO,
		SensorType:     key,
		Value:          valueOf(r),
		RawValue:       r.Raw,
		ProcessedValue: r.Processed,
		Unit:           r.Unit,
		Quality:        r.Quality,
		ProcessingMode: r.Mode,
		ZoneID:         d.ZoneID,
		SubzoneID:      d.SubzoneID,
		Timestamp:      ts / 1000,
	}
	// The address the series key holds (busAddress): I2C first.
	if d.I2CAddress != nil {
		a := int(*d.I2CAddress)
		data.I2CAddress = &a
	} else {
		data.OneWireAddress = strings.ToUpper(d.OneWireAddr)
	}
	s.events.Publish(event.Event{Time: now, Data: data})
}

func valueOf(r store.Reading) float64 {
	if r.Processed != nil {
		return *r.Processed
	}
	return r.Raw
}

// echo publishes the processed value back (docs/protocol.md §3.2.11, QoS 0).
func (s *Service) echo(ctx context.Context, m ingest.Message, res processor.Result, now time.Time) {
	topic := contract.DeviceTopic(m.Topic.KaiserID, m.Topic.EspID, "sensor/"+strconv.Itoa(m.Topic.GPIO)+"/processed")
	if a, ok := s.bus.(audienceTeller); ok && !a.HasSubscribers(topic) {
		return
	}

	payload, err := contract.Marshal(contract.Processed{
		ProcessedValue: contract.Decimal{V: *res.Value, Places: 6},
		Unit:           res.Unit,
		Quality:        res.Quality,
		Timestamp:      now.Unix(),
	})
	if err != nil {
		return
	}

	if err := s.bus.Publish(ctx, topic, payload, 0, false); err != nil {
		s.log.Debug("processed echo not published", "error", err)
	}
}

// LatestValue is a series' newest reading for the API.
type LatestValue struct {
	Key     store.SeriesKey
	Reading store.Reading
	Stale   bool
}

// seriesFilter selects series by device, pin (-1 = any) and type; empty
// strings match any.
type seriesFilter struct {
	espID      string
	gpio       int
	sensorType string // normalised
}

func newSeriesFilter(espID string, gpio int, sensorType string) seriesFilter {
	f := seriesFilter{espID: espID, gpio: gpio}
	if sensorType != "" {
		f.sensorType, _ = processor.NormaliseType(sensorType)
	}
	return f
}

func (f seriesFilter) matches(k store.SeriesKey) bool {
	return (f.espID == "" || k.EspID == f.espID) &&
		(f.gpio < 0 || k.GPIO == f.gpio) &&
		(f.sensorType == "" || k.SensorType == f.sensorType)
}

// defaultStaleAfter is when a reading counts as stale for a sensor without
// its own timeout.
const defaultStaleAfter = 180 * time.Second

// Latest returns the newest reading per series, filtered.
func (s *Service) Latest(espID string, gpio int, sensorType string) []LatestValue {
	f := newSeriesFilter(espID, gpio, sensorType)
	now := s.now()

	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []LatestValue
	for _, l := range s.latest {
		if !f.matches(l.key) {
			continue
		}
		timeout := defaultStaleAfter
		if c := s.configFor(l.key); c != nil && c.TimeoutSeconds > 0 {
			timeout = time.Duration(c.TimeoutSeconds) * time.Second
		}
		out = append(out, LatestValue{
			Key:     l.key,
			Reading: l.r,
			Stale:   now.Sub(time.UnixMilli(l.r.TS)) > timeout,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		if a.EspID != b.EspID {
			return a.EspID < b.EspID
		}
		if a.GPIO != b.GPIO {
			return a.GPIO < b.GPIO
		}
		return a.SensorType < b.SensorType
	})
	return out
}

// LatestOf returns the newest reading of one config, if any.
func (s *Service) LatestOf(c Config) (store.Reading, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.series[keyOf(&c)]
	if st == nil {
		return store.Reading{}, false
	}
	l := s.latest[st.id]
	if l == nil {
		return store.Reading{}, false
	}
	return l.r, true
}

// SeriesIDs returns the ids of series matching a filter.
func (s *Service) SeriesIDs(espID string, gpio int, sensorType string) []int64 {
	f := newSeriesFilter(espID, gpio, sensorType)

	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []int64
	for k, st := range s.series {
		if f.matches(k) {
			out = append(out, st.id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// SeriesKeyOf returns the identity of a series id.
func (s *Service) SeriesKeyOf(id int64) (store.SeriesKey, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k, st := range s.series {
		if st.id == id {
			return k, true
		}
	}
	return store.SeriesKey{}, false
}

// ProcessRequest is the device-facing processing call (docs/protocol.md §4, docs/api.md §7.4).
type ProcessRequest struct {
	EspID       string
	GPIO        int
	SensorType  string
	Raw         float64
	RawMode     *bool
	Calibration map[string]any
	Params      map[string]any
	// Trusted is set for a valid user token (or device key): processing
	// without an approved device.
	Trusted bool
}

// ProcessReply is what the firmware gets back.
type ProcessReply struct {
	Value   float64
	Unit    string
	Quality string
	Result  string // processed, fallback, error (metric label)
}

// Fallback is the firmware's own convention for an unprocessed value.
func Fallback(raw float64, result string) ProcessReply {
	return ProcessReply{
		Value:   raw,
		Unit:    "raw",
		Quality: "fair",
		Result:  result,
	}
}

// Process computes exactly what ingest would compute (docs/domain.md §2.1): real
// processing only for an admitted device with a pi_enhanced config.
func (s *Service) Process(req ProcessRequest) ProcessReply {
	key, hasProc := processor.NormaliseType(req.SensorType)
	raw := req.Raw
	if key == "ds18b20" && raw >= 1<<31 {
		raw -= 1 << 32
	}
	if !s.admitted(req) {
		return s.count(Fallback(raw, "fallback"))
	}
	cfg := s.plainConfig(req.EspID, req.GPIO, key)
	if !hasProc || (cfg == nil || cfg.ProcessingMode != "pi_enhanced") && !req.Trusted {
		return s.count(Fallback(raw, "fallback"))
	}

	res, _ := processor.Process(key, processInput(req, raw, cfg))
	if res.Value == nil || math.Abs(*res.Value) >= 1e9 {
		return s.count(ProcessReply{
			Value:   raw,
			Unit:    "raw",
			Quality: "error",
			Result:  "error",
		})
	}
	return s.count(ProcessReply{
		Value:   *res.Value,
		Unit:    res.Unit,
		Quality: res.Quality,
		Result:  "processed",
	})
}

// admitted: a trusted caller, or a device that is neither pending nor rejected.
func (s *Service) admitted(req ProcessRequest) bool {
	if req.Trusted {
		return true
	}
	d, err := s.devices.Get(req.EspID)
	return err == nil && d.Status != device.StatusPending && d.Status != device.StatusRejected
}

// plainConfig is a copy of the config of the sensor without a bus address:
// the firmware's processing call carries none.
func (s *Service) plainConfig(espID string, gpio int, key string) *Config {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.byKey[store.SeriesKey{EspID: espID, GPIO: gpio, SensorType: key}]
	if c == nil {
		return nil
	}
	cp := *c
	return &cp
}

// processInput is the processor input of a request; calibration and params
// the request leaves out come from the config.
func processInput(req ProcessRequest, raw float64, cfg *Config) processor.Input {
	in := processor.Input{
		Raw:         raw,
		RawMode:     true,
		Calibration: req.Calibration,
		Params:      req.Params,
		WireType:    strings.ToLower(req.SensorType),
	}
	if req.RawMode != nil {
		in.RawMode = *req.RawMode
	}
	if cfg == nil {
		return in
	}
	if in.Calibration == nil {
		in.Calibration = cfg.Calibration
	}
	if in.Params == nil {
		in.Params = cfg.Params()
	}
	return in
}

func (s *Service) count(r ProcessReply) ProcessReply {
	s.processReqs.WithLabelValues(r.Result).Inc()
	return r
}

// CountProcess counts a request answered before reaching Process.
func (s *Service) CountProcess(result string) { s.processReqs.WithLabelValues(result).Inc() }
