// Package zone assigns devices to zones and pins to subzones
// (docs/domain.md §7, docs/protocol.md §5.12): the zone records, the zone
// assignment and removal a device acknowledges over MQTT, the re-sync after a
// reconnect or a heartbeat that reports another zone, subzones with their
// pins, and subzone safe mode, which only newer firmware understands.
//
// Every operation runs under one lock, from its checks to its last write and
// publish, and so does every device answer: an ack never races the
// assignment it answers, and a zone's devices never change while it is
// deleted. Zone operations are operator actions and rare, so one lock costs
// nothing that matters.
package zone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Errors of the zone operations; the API maps them to codes.
var (
	ErrNotFound        = errors.New("zone not found")
	ErrDuplicate       = errors.New("zone already exists")
	ErrInvalidState    = errors.New("operation not allowed in the current state")
	ErrSubzoneNotFound = errors.New("subzone not found")
	ErrNoZone          = errors.New("device has no zone assigned")
	ErrZoneMismatch    = errors.New("parent_zone_id differs from the device's zone")
	ErrNotSupported    = errors.New("not supported by the device's firmware")
	ErrUnavailable     = errors.New("message could not be published to the device")
	// ErrUnreachable: the device's root moved and it hears nothing until it
	// reboots (docs/protocol.md A4, Q4); the API answers DEVICE_UNREACHABLE.
	ErrUnreachable = errors.New("device cannot receive until it reboots")
)

// PinError is a subzone pin the board refuses (Conflict false: 400
// GPIO_RESERVED) or that another subzone holds (Conflict true: 409
// GPIO_CONFLICT), docs/domain.md §7.3.
type PinError struct {
	GPIO     int
	Conflict bool
	Holder   string // the subzone that holds the pin
	Msg      string
}

func (e *PinError) Error() string { return e.Msg }

// Zone statuses (docs/domain.md §7.1).
const (
	StatusActive   = "active"
	StatusArchived = "archived"
)

// Subzone statuses (docs/domain.md §7.1).
const (
	SubzonePending  = "pending"
	SubzoneActive   = "active"
	SubzoneRemoving = "removing"
	SubzoneError    = "error"
)

// Subzone strategies of an assignment (docs/domain.md §7.2 step 1).
const (
	StrategyTransfer = "transfer"
	StrategyCopy     = "copy"
	StrategyReset    = "reset"
)

// Defaults of Config.
const (
	defaultAckTimeout  = 15 * time.Second // docs/protocol.md Z1, Z3
	defaultResyncEvery = 10 * time.Minute // docs/protocol.md Z6
)

// Store is what the zones need from persistence; every write returns once
// it is committed.
type Store interface {
	LoadZones(ctx context.Context) ([]store.Zone, error)
	SaveZone(ctx context.Context, z store.Zone) error
	DeleteZone(ctx context.Context, zoneID string) error
	LoadSubzones(ctx context.Context) ([]store.Subzone, error)
	SaveSubzone(ctx context.Context, sz store.Subzone) error
	DeleteSubzone(ctx context.Context, espID, subzoneID string) error
	AppendZoneChange(ctx context.Context, c store.ZoneChange) error
}

// Devices is what the zones need from the device registry. The zone fields
// live on the device record and change only through Update, whose saves are
// versioned and committed (docs/decisions/0005).
type Devices interface {
	Get(espID string) (device.Device, error)
	List() []device.Device
	Update(ctx context.Context, espID string, p device.Patch) (device.Device, error)
	Admit(m ingest.Message) (device.Device, error)
}

var _ Devices = (*device.Service)(nil)

// Publisher is the part of the message bus the zones publish with.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error
}

// Alerts raises the warnings operators must see: a refused assignment and a
// device left deaf by a root change.
type Alerts interface {
	Raise(ctx context.Context, spec notify.Spec) error
	Clear(ctx context.Context, key string) error
}

var _ Alerts = (*notify.Service)(nil)

// Config tunes the service; zero values take defaults.
type Config struct {
	AckTimeout  time.Duration // how long an ack is waited for
	ResyncEvery time.Duration // the least time between two sends of one device's assignment

	// SensorPins and ActuatorPins list the pins of a device's configured
	// sensors and actuators, for the counts of a subzone; nil counts none.
	SensorPins   func(espID string) []int
	ActuatorPins func(espID string) []int

	Logger *slog.Logger
}

// Service owns the zones and subzones.
type Service struct {
	cfg     Config
	store   Store
	devices Devices
	bus     Publisher
	events  *event.Bus
	alerts  Alerts
	log     *slog.Logger
	now     func() time.Time

	mu       sync.Mutex
	zones    map[string]store.Zone
	subzones map[string]map[string]*store.Subzone // esp_id → subzone_id → record
	ops      map[subzoneKey]*op                   // subzone operations waiting for the device
	state    map[string]*deviceState
	stopped  bool

	sub  *event.Subscription
	stop chan struct{}
	done chan struct{}
}

type subzoneKey struct{ espID, subzoneID string }

// op is a subzone operation the device has not answered yet.
type op struct {
	kind          string // assign, remove or safe
	correlationID string
	prevSafe      bool // safe mode before a safe-mode operation, restored by an error ack
	timer         *time.Timer
}

// deviceState is what the service remembers of one device between its messages.
type deviceState struct {
	zoneTimer    *time.Timer // the pending assignment's ack wait
	removalTimer *time.Timer
	lastSent     time.Time // last publish of the assignment (Z6 spacing)
	lastSubzones time.Time // last re-send of unconfirmed subzones
	reconnected  bool      // came online since its last heartbeat was seen
}

// New builds the service; call Load, then Start.
func New(cfg Config, st Store, devices Devices, bus Publisher, events *event.Bus, alerts Alerts) *Service {
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = defaultAckTimeout
	}
	if cfg.ResyncEvery <= 0 {
		cfg.ResyncEvery = defaultResyncEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	return &Service{
		cfg:      cfg,
		store:    st,
		devices:  devices,
		bus:      bus,
		events:   events,
		alerts:   alerts,
		log:      cfg.Logger,
		now:      time.Now,
		zones:    map[string]store.Zone{},
		subzones: map[string]map[string]*store.Subzone{},
		ops:      map[subzoneKey]*op{},
		state:    map[string]*deviceState{},
	}
}

// Load reads the zones and subzones. Waits that a restart cut short start
// again: a subzone removal still waits for its ack, and a zone removal for
// the device's confirmation.
func (s *Service) Load(ctx context.Context) error {
	zones, err := s.store.LoadZones(ctx)
	if err != nil {
		return fmt.Errorf("load zones: %w", err)
	}
	subs, err := s.store.LoadSubzones(ctx)
	if err != nil {
		return fmt.Errorf("load subzones: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, z := range zones {
		s.zones[z.ZoneID] = z
	}
	for _, sz := range subs {
		s.putSubzone(sz)
		if sz.Status == SubzoneRemoving {
			s.awaitSubzone(sz.EspID, sz.SubzoneID, &op{kind: opRemove})
		}
	}
	for _, d := range s.devices.List() {
		if r := removalOf(d); r != nil && r.Status == RemovalWaiting {
			s.armRemovalTimer(d.DeviceID, r.CorrelationID)
		}
	}
	return nil
}

// Start follows the device events that trigger a re-sync
// (docs/domain.md §7.2 step 6) and the deletion of a device's subzones.
func (s *Service) Start() {
	s.sub = s.events.Subscribe(4096, event.TypeDeviceStatus, event.TypeEspHealth)
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.watch()
}

// Stop ends the event watch and every ack wait.
func (s *Service) Stop() {
	s.mu.Lock()
	s.stopped = true
	for _, st := range s.state {
		stopTimer(st.zoneTimer)
		stopTimer(st.removalTimer)
	}
	for _, o := range s.ops {
		stopTimer(o.timer)
	}
	s.mu.Unlock()

	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.events.Unsubscribe(s.sub)
		s.stop = nil
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

func (s *Service) watch() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case e := <-s.sub.C:
			s.onDeviceEvent(e)
		}
	}
}

// onDeviceEvent notes reconnects, re-syncs after a live heartbeat and
// forgets a deleted device's subzones (docs/api.md §6.3 DELETE).
func (s *Service) onDeviceEvent(e event.Event) {
	switch p := e.Data.(type) {
	case event.DeviceStatus:
		switch p.Status {
		case device.StatusOnline:
			s.mu.Lock()
			s.dev(p.EspID).reconnected = true
			s.mu.Unlock()
		case device.StatusDeleted:
			s.forget(p.EspID)
		}
	case event.EspHealth:
		if p.Source == "heartbeat" && p.Status == device.StatusOnline {
			s.resync(p.EspID)
		}
	}
}

// forget drops a deleted device's subzones and waits; nothing is published,
// the device is no longer the hub's.
func (s *Service) forget(espID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sz := range s.deviceSubzones(espID) {
		if err := s.dropSubzone(ctx, espID, sz.SubzoneID); err != nil {
			s.log.Warn("subzone of a deleted device not removed", "esp_id", espID, "subzone_id", sz.SubzoneID,
				"error", err)
		}
	}
	if st := s.state[espID]; st != nil {
		stopTimer(st.zoneTimer)
		stopTimer(st.removalTimer)
		delete(s.state, espID)
	}
}

// dev is a device's state, created on first use; s.mu is held.
func (s *Service) dev(espID string) *deviceState {
	st := s.state[espID]
	if st == nil {
		st = &deviceState{}
		s.state[espID] = st
	}
	return st
}

// approved returns a device zone operations may address (docs/domain.md §7.2 step 1).
func (s *Service) approved(espID string) (device.Device, error) {
	d, err := s.devices.Get(espID)
	if err != nil {
		return d, err
	}
	if !isApproved(d.Status) {
		return d, fmt.Errorf("%w: %s is %s", device.ErrNotApproved, espID, d.Status)
	}
	return d, nil
}

func isApproved(status string) bool {
	switch status {
	case device.StatusApproved, device.StatusOnline, device.StatusOffline, device.StatusError,
		device.StatusUnknown:
		return true
	}
	return false
}

// newerFirmware reports a device whose payloads carry `seq`
// (docs/protocol.md §3); a device never heard from counts as baseline, the
// firmware that can do less.
func newerFirmware(d device.Device) bool {
	return d.Metadata["firmware_generation"] == "newer"
}

// correlationID is a fresh id of the J4 form (docs/protocol.md J4).
func correlationID(prefix string) string {
	return prefix + "-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
}

func (s *Service) stamp() string { return formatTime(s.now()) }

func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func parseTime(v any) *time.Time {
	str, _ := v.(string)
	t, err := time.Parse(time.RFC3339Nano, str)
	if err != nil {
		return nil
	}
	return &t
}

// emit publishes a live event stamped now.
func (s *Service) emit(p event.Payload) {
	s.events.Publish(event.Event{Time: s.now(), Data: p})
}

// raise and clear keep alert failures out of the operation that alerts.
func (s *Service) raise(ctx context.Context, spec notify.Spec) {
	if s.alerts == nil {
		return
	}
	if err := s.alerts.Raise(ctx, spec); err != nil {
		s.log.Warn("zone alert not raised", "key", spec.Key, "error", err)
	}
}

func (s *Service) clear(ctx context.Context, key string) {
	if s.alerts == nil {
		return
	}
	if err := s.alerts.Clear(ctx, key); err != nil {
		s.log.Warn("zone alert not cleared", "key", key, "error", err)
	}
}

// sortedIDs returns the keys of m in order.
func sortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
