// Package device is the device registry and lifecycle (docs/domain.md §1,
// docs/protocol.md §5.4–§5.6): auto-registration from heartbeats, approval, liveness by hub
// receive time, last-will handling, heartbeat acks and metadata, and the
// registration gate every other inbound message passes.
package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Statuses (docs/api.md §6.1).
const (
	StatusPending  = "pending_approval"
	StatusApproved = "approved"
	StatusOnline   = "online"
	StatusOffline  = "offline"
	StatusRejected = "rejected"
	StatusDeleted  = "deleted"
	StatusError    = "error"
	StatusUnknown  = "unknown"
)

// Errors of the domain operations; the API maps them to codes.
var (
	ErrNotFound     = errors.New("device not found")
	ErrInvalidState = errors.New("operation not allowed in the device's current state")
	ErrDuplicate    = errors.New("device already exists")
)

// Publisher is the part of the message bus the domain needs.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error
}

// Defaults of Config.
const (
	defaultHeartbeatTimeout = 180 * time.Second // docs/protocol.md L2
	defaultDiscoveryPerMin  = 100
	defaultDiscoveryPerID   = 300 * time.Second
)

// Bounds of the registry's own bookkeeping.
const (
	// flapWindow and flapWills: this many last wills within the window mark
	// a device as flapping (docs/domain.md §1.3).
	flapWindow = 300 * time.Second
	flapWills  = 2

	// maxUnknownIDs bounds the ids remembered from unregistered senders.
	maxUnknownIDs = 10000

	// maxHeldTopics bounds the topics whose last payload is kept per
	// pending or rejected device.
	maxHeldTopics = 32
)

// Config tunes the service.
type Config struct {
	HeartbeatTimeout time.Duration // default defaultHeartbeatTimeout
	DiscoveryPerMin  int           // new devices per 60 s (default defaultDiscoveryPerMin)
	DiscoveryPerID   time.Duration // per-id rediscovery spacing (default defaultDiscoveryPerID)
	// MaxPending caps the discovered devices awaiting approval (default
	// defaultMaxPending); PendingExpiry forgets one not heard from for
	// that long (default defaultPendingExpiry). See pending.go.
	MaxPending    int
	PendingExpiry time.Duration
	// Stopping reports hub shutdown; wills then come from the hub closing
	// connections and are not device facts.
	Stopping func() bool
	// LostSubscriptions applies docs/protocol.md B3: the broker cannot
	// restore the firmware's subscriptions (an external broker), so a
	// baseline device back online without a reboot hears nothing.
	LostSubscriptions bool
}

// Device is a snapshot of one device for callers outside the package.
type Device struct {
	store.Device
	LastHeartbeatAt   *time.Time
	SubscriptionsLost bool
	RebootRequired    bool
}

type entry struct {
	rec           store.Device
	lastHeartbeat time.Time // receive time of the last valid live heartbeat (L1)
	lastUptime    int64
	hasUptime     bool
	wills         []time.Time
	lastPayloads  map[string][]byte // pending/rejected: last payload per topic, for inspection
	heldBytes     int               // the bytes of lastPayloads
}

// Service owns the registry. It is safe for concurrent use; per-device
// ordering of inbound messages is provided by ingest.
type Service struct {
	cfg    Config
	store  store.Devices
	bus    Publisher
	events *event.Bus
	log    *slog.Logger
	now    func() time.Time

	// refreshMu orders Refresh and RefreshAll, so that a later reload
	// always applies a later read of the store.
	refreshMu sync.Mutex

	mu         sync.Mutex
	devices    map[string]*entry
	unknownIDs map[string]time.Time // recently heard unknown ids (bounded)
	discovered []time.Time          // discovery times in the last minute
	perID      map[string]time.Time
	awaitingN  int // devices awaiting approval since discovery (pending.go)

	push    *pushes
	hooks   pushHooks
	deleted deleteHooks
	counts  counts
}

// New builds the service; call Load before serving traffic.
func New(cfg Config, st store.Devices, bus Publisher, events *event.Bus, log *slog.Logger) *Service {
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = defaultHeartbeatTimeout
	}
	if cfg.DiscoveryPerMin <= 0 {
		cfg.DiscoveryPerMin = defaultDiscoveryPerMin
	}
	if cfg.DiscoveryPerID <= 0 {
		cfg.DiscoveryPerID = defaultDiscoveryPerID
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = defaultMaxPending
	}
	if cfg.PendingExpiry <= 0 {
		cfg.PendingExpiry = defaultPendingExpiry
	}
	if cfg.Stopping == nil {
		cfg.Stopping = func() bool { return false }
	}
	if log == nil {
		log = slog.Default()
	}

	return &Service{
		cfg:        cfg,
		store:      st,
		bus:        bus,
		events:     events,
		log:        log,
		now:        time.Now,
		devices:    map[string]*entry{},
		unknownIDs: map[string]time.Time{},
		perID:      map[string]time.Time{},
	}
}

// Load reads the registry from the store. Liveness restarts from the load
// time: a device online before a restart gets a full timeout to heartbeat.
func (s *Service) Load(ctx context.Context) error {
	recs, err := s.store.LoadDevices(ctx)
	if err != nil {
		return fmt.Errorf("load devices: %w", err)
	}
	now := s.now()

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		e := &entry{}
		e.load(r, now)
		s.devices[r.DeviceID] = e
	}
	s.countAwaiting()
	return nil
}

// load makes r, as read from the store, e's record. A device online
// without a live heartbeat here gets a full timeout from now; s.mu is held.
func (e *entry) load(r store.Device, now time.Time) {
	if r.Metadata == nil {
		r.Metadata = map[string]any{}
	}
	e.rec = r
	if u, ok := r.Metadata["last_uptime"].(float64); ok {
		e.lastUptime, e.hasUptime = int64(u), true
	}
	if r.Status == StatusOnline && e.lastHeartbeat.IsZero() {
		e.lastHeartbeat = now
	}
}

// Root returns the recorded kaiser root of an approved device (docs/protocol.md A2, M4).
func (s *Service) Root(espID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.devices[espID]
	if e == nil || !isApproved(e.rec.Status) {
		return "", false
	}
	return e.rec.KaiserID, true
}

// isGone reports a device the registry does not know or has deleted.
func isGone(e *entry) bool {
	return e == nil || e.rec.Status == StatusDeleted
}

func isApproved(status string) bool {
	switch status {
	case StatusApproved, StatusOnline, StatusOffline, StatusError, StatusUnknown:
		return true
	}
	return false
}

// ackStatus is the heartbeat-ack status for a registration status (docs/protocol.md §5.4).
func ackStatus(status string) string {
	switch status {
	case StatusPending:
		return "pending_approval"
	case StatusRejected:
		return "rejected"
	}
	return "online"
}

// HandleHeartbeat is the ingest handler of `system/heartbeat`.
func (s *Service) HandleHeartbeat(ctx context.Context, m ingest.Message) error {
	hb, err := decodeLiveHeartbeat(m)
	if err != nil {
		return err
	}

	beat, refused := s.applyBeat(m, hb)
	if refused != nil {
		s.ack(ctx, m, StatusPending, hb)
		return refused
	}

	// The ack goes out before any storage work (docs/protocol.md G2).
	s.ack(ctx, m, ackStatus(beat.rec.Status), hb)
	s.pushAfterBeat(ctx, beat)

	if err := s.storeBeat(ctx, beat, hb, m.ReceivedAt); err != nil {
		return err
	}
	s.publish(beat.events)
	return nil
}

// beatOutcome is what one heartbeat did to the registry, carried from the locked
// step to the ack, the config push and the storage.
type beatOutcome struct {
	rec         store.Device // the record after the heartbeat
	from        string       // status before the heartbeat; pending after a discovery
	rebooted    bool
	cameOnline  bool
	events      []event.Event
	transitions []store.Transition
}

// changed records e's status change from prev.
func (b *beatOutcome) changed(e *entry, prev, cause string, now time.Time) {
	b.events = append(b.events, statusEvent(e, prev, cause, now))
	b.transitions = append(b.transitions, e.transitionFrom(prev, cause, now))
}

// decodeLiveHeartbeat validates a heartbeat; a retained one is not liveness.
func decodeLiveHeartbeat(m ingest.Message) (contract.Heartbeat, error) {
	hb, err := contract.DecodeHeartbeat(m.Topic, m.Payload)
	if err != nil {
		return hb, err
	}
	if m.Replay {
		return hb, ingest.Drop(contract.ReasonReplay, "retained heartbeat is not liveness")
	}
	return hb, nil
}

// applyBeat looks the device up, registering it when new or deleted,
// records the heartbeat and makes the status change it causes. It returns
// the drop when the discovery limits turn a new device away.
func (s *Service) applyBeat(m ingest.Message, hb contract.Heartbeat) (beatOutcome, error) {
	now := m.ReceivedAt
	var b beatOutcome

	s.mu.Lock()
	defer s.mu.Unlock()

	e := s.devices[m.Topic.EspID]
	if isGone(e) {
		var err error
		if e, err = s.discover(m.Topic.EspID, e, hb, now, &b); err != nil {
			return b, err
		}
	}

	b.from = e.rec.Status
	knewUptime := e.hasUptime
	b.rebooted = s.applyHeartbeat(e, m, hb, now)
	b.settle(e, now)
	s.noteLostSubscriptions(e, b, hb, knewUptime)
	if isApproved(e.rec.Status) {
		b.events = append(b.events, healthEvent(e, hb, "heartbeat", now))
	}

	b.rec = e.stamp()
	for i := range b.transitions { // made before the stamp: they belong to this save
		b.transitions[i].Version = b.rec.Version
	}
	return b, nil
}

// discover registers an unknown or deleted device as pending if the cap on
// devices awaiting approval and the discovery limits allow it, else returns
// the drop; s.mu is held. A device refused for the cap uses none of the
// discovery rate.
func (s *Service) discover(id string, old *entry, hb contract.Heartbeat, now time.Time, b *beatOutcome) (*entry, error) {
	if s.awaitingN >= s.cfg.MaxPending {
		return nil, errPendingLimit
	}
	if !s.allowDiscovery(id, now) {
		return nil, ingest.Drop(contract.ReasonDiscoveryRateLimited,
			"discovery rate limit reached; device registers on a later heartbeat")
	}

	e := s.register(id, now, old)
	b.events = append(b.events, discoveryEvent(old != nil, id, hb, now))
	b.changed(e, "", "discovered", now)
	return e, nil
}

func discoveryEvent(rediscovered bool, id string, hb contract.Heartbeat, now time.Time) event.Event {
	return event.Event{Time: now, Data: event.DeviceDiscovered{
		Rediscovered:  rediscovered,
		EspID:         id,
		DeviceID:      id,
		DiscoveredAt:  now.UTC().Format(time.RFC3339),
		HardwareType:  hb.HardwareType,
		IPAddress:     hb.WifiIP,
		ZoneID:        hb.ZoneID,
		HeapFree:      hb.HeapFree,
		WifiRSSI:      hb.RSSI,
		SensorCount:   hb.SensorCount,
		ActuatorCount: hb.ActuatorCount,
		Timestamp:     now.Unix(),
	}}
}

// settle applies the heartbeat's status change (docs/domain.md §1.1): a pending
// device counts its heartbeats, a rejected one stays rejected, an approved
// one that is not online goes online; s.mu is held.
func (b *beatOutcome) settle(e *entry, now time.Time) {
	switch b.from {
	case StatusPending:
		e.rec.Metadata["heartbeat_count"] = toInt(e.rec.Metadata["heartbeat_count"]) + 1
	case StatusRejected, StatusOnline:
	default:
		e.rec.Status = StatusOnline
		b.cameOnline = true
		b.changed(e, b.from, "heartbeat", now)
	}
}

// pushAfterBeat sends the config after approval, after a reboot, or when
// the device comes back with a push it has not confirmed (docs/protocol.md P6, B2).
func (s *Service) pushAfterBeat(ctx context.Context, b beatOutcome) {
	id := b.rec.DeviceID
	var trigger string
	switch {
	case !isApproved(b.rec.Status):
		return
	case b.rebooted:
		trigger = "reboot"
	case b.cameOnline && (b.from == StatusApproved || s.configAvailable(id)):
		trigger = "online"
	default:
		return
	}

	if _, err := s.PushConfig(ctx, id, trigger); err != nil && !errors.Is(err, ErrOffline) {
		s.log.Warn("config push failed", "esp_id", id, "error", err)
	}
}

// storeBeat persists the record, the heartbeat and the transitions.
func (s *Service) storeBeat(ctx context.Context, b beatOutcome, hb contract.Heartbeat, now time.Time) error {
	id := b.rec.DeviceID
	if err := s.store.SaveDevice(ctx, b.rec); err != nil {
		return fmt.Errorf("save device %s: %w", id, err)
	}

	dt, src := contract.NormaliseTime(hb.TS, now)
	h := store.Heartbeat{
		DeviceID:   id,
		ReceivedAt: now,
		DeviceTime: dt,
		TimeSource: string(src),
		Uptime:     hb.Uptime,
		HeapFree:   hb.HeapFree,
		RSSI:       hb.RSSI,
		Seq:        hb.Seq,
	}
	if err := s.store.AppendHeartbeat(ctx, h); err != nil {
		return fmt.Errorf("store heartbeat %s: %w", id, err)
	}

	for _, t := range b.transitions {
		if err := s.store.AppendTransition(ctx, t); err != nil {
			return fmt.Errorf("store transition %s: %w", id, err)
		}
	}
	return nil
}

func (s *Service) publish(evs []event.Event) {
	for _, ev := range evs {
		s.events.Publish(s.withCounts(ev))
	}
}

func (s *Service) ack(ctx context.Context, m ingest.Message, status string, hb contract.Heartbeat) {
	configAvailable := status == "online" && s.configAvailable(m.Topic.EspID)
	payload, err := contract.Marshal(contract.NewHeartbeatAck(status, configAvailable, s.now(), hb.ActiveHandoverEpoch))
	if err != nil {
		s.log.Error("encode heartbeat ack", "error", err)
		return
	}

	topic := contract.DeviceTopic(m.Topic.KaiserID, m.Topic.EspID, "system/heartbeat/ack")
	if err := s.bus.Publish(ctx, topic, payload, 1, false); err != nil {
		s.log.Warn("heartbeat ack not published", "esp_id", m.Topic.EspID, "error", err)
	}
}

// allowDiscovery applies the discovery limits (docs/domain.md §1.2); s.mu is held.
func (s *Service) allowDiscovery(id string, now time.Time) bool {
	cut := now.Add(-time.Minute)
	i := 0
	for i < len(s.discovered) && s.discovered[i].Before(cut) {
		i++
	}
	s.discovered = s.discovered[i:]

	if last, ok := s.perID[id]; ok && now.Sub(last) < s.cfg.DiscoveryPerID {
		return false
	}
	if len(s.discovered) >= s.cfg.DiscoveryPerMin {
		return false
	}

	s.discovered = append(s.discovered, now)
	s.perID[id] = now
	if len(s.perID) > 4*s.cfg.DiscoveryPerMin+1024 {
		for k, t := range s.perID {
			if now.Sub(t) >= s.cfg.DiscoveryPerID {
				delete(s.perID, k)
			}
		}
	}
	return true
}

// register creates (or revives a deleted) pending record; a revived one
// continues its version, so a late save of the deleted record loses; s.mu is held.
func (s *Service) register(id string, now time.Time, old *entry) *entry {
	rec := store.Device{
		ID:           uuid.NewString(),
		DeviceID:     id,
		Status:       StatusPending,
		KaiserID:     "",
		Metadata:     map[string]any{"heartbeat_count": 0},
		DiscoveredAt: &now,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	if old != nil {
		rec.ID, rec.CreatedAt, rec.Version = old.rec.ID, old.rec.CreatedAt, old.rec.Version
	}
	e := &entry{rec: rec}
	s.devices[id] = e
	s.awaitingN++
	delete(s.unknownIDs, id)
	return e
}

// applyHeartbeat stores the heartbeat metadata (docs/domain.md §1.4); s.mu is held.
func (s *Service) applyHeartbeat(e *entry, m ingest.Message, hb contract.Heartbeat, now time.Time) (rebooted bool) {
	rebooted = noteReboot(e, hb, now)
	noteLiveness(e, m, hb, now)
	noteReported(e.rec.Metadata, hb, now)
	noteIdentity(&e.rec, hb)
	noteFirmware(e.rec.Metadata, m, hb)
	noteClock(e.rec.Metadata, hb, now)
	return rebooted
}

// noteLostSubscriptions flags a baseline device that came back online
// after an offline transition without a reboot (docs/protocol.md B3): it
// reconnected, and the baseline subscribes only once per boot (Q3), so it
// hears nothing until it is power-cycled; commands to it are refused. Only
// when the broker cannot restore subscriptions, and only when the
// device's previous uptime is known (else a reboot cannot be ruled out);
// s.mu is held.
func (s *Service) noteLostSubscriptions(e *entry, b beatOutcome, hb contract.Heartbeat, knewUptime bool) {
	if !s.cfg.LostSubscriptions || !b.cameOnline || b.from != StatusOffline || b.rebooted ||
		!knewUptime || hb.Seq != nil {
		return
	}
	e.rec.Metadata["subscriptions_lost"] = true
	s.log.Warn("device reconnected without a reboot and hears nothing until it is power-cycled "+
		"(baseline firmware, docs/protocol.md B3); commands are refused", "esp_id", e.rec.DeviceID)
}

// noteReboot detects a reboot (docs/protocol.md B1): uptime went backwards.
func noteReboot(e *entry, hb contract.Heartbeat, now time.Time) bool {
	if !e.hasUptime || hb.Uptime >= e.lastUptime {
		return false
	}

	md := e.rec.Metadata
	md["last_reboot_at"] = now.UTC().Format(time.RFC3339)
	md["reboot_count"] = toInt(md["reboot_count"]) + 1
	delete(md, "subscriptions_lost")
	delete(md, "reboot_required") // docs/protocol.md B2: a reboot ends the deafness of A4
	return true
}

// noteLiveness records the hub receive time as liveness (docs/protocol.md L1).
func noteLiveness(e *entry, m ingest.Message, hb contract.Heartbeat, now time.Time) {
	e.lastUptime, e.hasUptime = hb.Uptime, true
	e.lastHeartbeat = now
	t := now
	e.rec.LastSeen = &t
	e.rec.UpdatedAt = now
	e.rec.KaiserID = m.Topic.KaiserID // A2: publish under the root of the last live message
}

// noteReported keeps what the device reported about itself.
func noteReported(md map[string]any, hb contract.Heartbeat, now time.Time) {
	md["last_heartbeat"] = now.UTC().Format(time.RFC3339Nano)
	md["last_heap_free"] = hb.HeapFree
	md["last_wifi_rssi"] = hb.RSSI
	md["last_uptime"] = hb.Uptime
	setOpt(md, "last_sensor_count", hb.SensorCount)
	setOpt(md, "last_actuator_count", hb.ActuatorCount)
	if hb.SystemState != "" {
		md["system_state"] = hb.SystemState
	}

	md["reported_zone_id"] = hb.ZoneID
	md["reported_master_zone_id"] = hb.MasterZoneID
	if hb.ZoneAssigned != nil {
		md["zone_assigned"] = *hb.ZoneAssigned
	}

	optional := map[string]string{
		"boot_sequence_id": hb.BootSequenceID,
		"reset_reason":     hb.ResetReason,
		"firmware_version": hb.FirmwareVersion,
	}
	for k, v := range optional {
		if v != "" {
			md[k] = v
		}
	}
	if hb.TimeValid != nil {
		md["time_valid"] = *hb.TimeValid
	}
}

// noteIdentity updates the record's address, hardware and firmware; the
// hardware type is kept once known.
func noteIdentity(rec *store.Device, hb contract.Heartbeat) {
	if hb.WifiIP != "" {
		rec.IPAddress = hb.WifiIP
	}
	if hb.HardwareType != "" && rec.HardwareType == "" {
		rec.HardwareType = hb.HardwareType
	}
	if hb.FirmwareVersion != "" {
		rec.FirmwareVersion = hb.FirmwareVersion
	}
}

// noteFirmware keeps the firmware generation and the quirks seen
// (docs/protocol.md §2.3), for operators.
func noteFirmware(md map[string]any, m ingest.Message, hb contract.Heartbeat) {
	gen := "baseline"
	if hb.Seq != nil {
		gen = "newer"
	}
	md["firmware_generation"] = gen

	quirks, _ := md["quirks_seen"].(map[string]any)
	if quirks == nil {
		quirks = map[string]any{}
	}
	if m.Topic.KaiserID == "" {
		quirks["empty_kaiser_id"] = true
	}
	if hb.TS == 0 {
		quirks["ntp_unsynced"] = true
	}
	if m.Retain {
		quirks["retain_bit"] = true
	}
	md["quirks_seen"] = quirks
}

// noteClock keeps the device's clock skew while its time is usable.
func noteClock(md map[string]any, hb contract.Heartbeat, now time.Time) {
	dt, src := contract.NormaliseTime(hb.TS, now)
	if src == contract.SourceDevice {
		md["clock_skew_seconds"] = dt.Sub(now.Truncate(time.Second)).Seconds()
	} else {
		delete(md, "clock_skew_seconds")
	}
}

func setOpt(md map[string]any, key string, v *int64) {
	if v != nil {
		md[key] = *v
	}
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return 0
}

// HandleWill is the ingest handler of `system/will` (docs/protocol.md L3).
func (s *Service) HandleWill(ctx context.Context, m ingest.Message) error {
	if _, err := contract.DecodeWill(m.Topic, m.Payload); err != nil {
		return err
	}
	if m.Replay {
		s.log.Info("retained last will replayed; liveness unchanged", "esp_id", m.Topic.EspID)
		return ingest.Drop(contract.ReasonReplay, "retained will")
	}
	if s.cfg.Stopping() {
		s.log.Debug("will caused by hub shutdown ignored", "esp_id", m.Topic.EspID)
		return nil
	}

	now := m.ReceivedAt
	s.mu.Lock()
	e := s.devices[m.Topic.EspID]
	if err := s.gateLocked(e, m); err != nil {
		s.mu.Unlock()
		return err
	}

	noteWill(e, now)
	if e.rec.Status != StatusOnline {
		rec := e.stamp()
		s.mu.Unlock()
		return s.store.SaveDevice(ctx, rec)
	}

	rec, tr, evs := s.goOffline(e, "lwt", now)
	s.mu.Unlock()
	return s.persist(ctx, rec, tr, evs)
}

// noteWill marks a device flapping that sent flapWills last wills within
// flapWindow (docs/domain.md §1.3); s.mu is held.
func noteWill(e *entry, now time.Time) {
	cut := now.Add(-flapWindow)
	w := e.wills[:0]
	for _, t := range e.wills {
		if t.After(cut) {
			w = append(w, t)
		}
	}

	e.wills = append(w, now)
	if len(e.wills) >= flapWills {
		e.rec.Metadata["flapping"] = true
	}
}

// goOffline applies online → offline and returns what to persist; s.mu is held.
func (s *Service) goOffline(e *entry, cause string, now time.Time) (store.Device, store.Transition, []event.Event) {
	prev := e.rec.Status
	e.rec.Status = StatusOffline
	e.rec.UpdatedAt = now
	e.rec.Metadata["offline_reason"] = cause
	if cause == "heartbeat_timeout" || cause == "lwt" {
		e.rec.Metadata["went_offline_at"] = now.UTC().Format(time.RFC3339)
	}
	md := e.rec.Metadata
	evs := []event.Event{statusEvent(e, prev, cause, now), {Time: now, Data: event.EspHealth{
		EspID:         e.rec.DeviceID,
		Status:        StatusOffline,
		HeapFree:      md["last_heap_free"],
		WifiRSSI:      md["last_wifi_rssi"],
		Uptime:        md["last_uptime"],
		SensorCount:   storedCount(md["last_sensor_count"]),
		ActuatorCount: storedCount(md["last_actuator_count"]),
		Source:        cause,
		Timestamp:     now.Unix(),
	}}}
	rec := e.stamp()
	return rec, e.transitionFrom(prev, cause, now), evs
}

// transitionFrom is the record of e's change from prev to its current
// status, under the record's current version.
func (e *entry) transitionFrom(prev, cause string, at time.Time) store.Transition {
	return store.Transition{
		DeviceID: e.rec.DeviceID,
		From:     prev,
		To:       e.rec.Status,
		Cause:    cause,
		At:       at,
		Version:  e.rec.Version,
	}
}

// stamp raises the record's version and returns the copy to save. Every
// save goes through here, under s.mu, so versions follow the order of the
// changes and the store can refuse a snapshot that arrives after a newer
// one (docs/decisions/0005); s.mu is held.
func (e *entry) stamp() store.Device {
	e.rec.Version++
	return cloneRecord(e.rec)
}

func (s *Service) persist(ctx context.Context, rec store.Device, tr store.Transition, evs []event.Event) error {
	if err := s.queueChange(ctx, rec, tr); err != nil {
		return err
	}
	s.announce(rec, tr, evs)
	return nil
}

// persistCommitted is persist for an operator's change: it returns only
// once the change is committed, because the answer to the operator says it
// is stored, and a crash right after it must not undo an approval or a
// deletion. It waits for the outcome of its own writes: a flush that
// commits after them says nothing about whether they failed.
func (s *Service) persistCommitted(
	ctx context.Context, rec store.Device, tr store.Transition, evs []event.Event,
) error {
	if err := waitCommitted(ctx, func(ctx context.Context) error { return s.queueChange(ctx, rec, tr) }); err != nil {
		return fmt.Errorf("commit device %s: %w", rec.DeviceID, err)
	}
	s.announce(rec, tr, evs)
	return nil
}

// waitCommitted runs queue, which queues writes, and waits until they are
// committed, returning the first failure.
func waitCommitted(ctx context.Context, queue func(ctx context.Context) error) error {
	c := store.NewCommits()
	err := queue(store.WithCommits(ctx, c))
	c.Seal()
	if err != nil {
		return err
	}
	return c.Wait(ctx)
}

func (s *Service) queueChange(ctx context.Context, rec store.Device, tr store.Transition) error {
	if err := s.store.SaveDeviceChange(ctx, rec, tr); err != nil {
		return fmt.Errorf("save device %s and its transition: %w", rec.DeviceID, err)
	}
	return nil
}

func (s *Service) announce(rec store.Device, tr store.Transition, evs []event.Event) {
	s.publish(evs)
	s.log.Info("device status changed", "esp_id", rec.DeviceID, "from", tr.From, "to", tr.To, "cause", tr.Cause)
}

// CheckLiveness sets online devices offline whose last live heartbeat is
// older than the timeout (docs/protocol.md L2). It is the scheduler's first job.
func (s *Service) CheckLiveness(ctx context.Context) error {
	now := s.now()
	type change struct {
		rec store.Device
		tr  store.Transition
		evs []event.Event
	}
	var changes []change

	s.mu.Lock()
	for _, e := range s.devices {
		if e.rec.Status == StatusOnline && now.Sub(e.lastHeartbeat) > s.cfg.HeartbeatTimeout {
			rec, tr, evs := s.goOffline(e, "heartbeat_timeout", now)
			changes = append(changes, change{rec, tr, evs})
		}
	}
	s.mu.Unlock()

	var errs []error
	for _, c := range changes {
		if err := s.persist(ctx, c.rec, c.tr, c.evs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Gate is the registration check of every other inbound kind
// (docs/protocol.md §5.2 steps 4–6): the payload is validated, replays and messages of
// unknown or unapproved devices are dropped. It returns the device's
// current snapshot for handlers that go on.
func (s *Service) Gate(_ context.Context, m ingest.Message) (Device, error) {
	if err := contract.Validate(m.Topic, m.Payload); err != nil {
		return Device{}, err
	}
	if m.Replay {
		return Device{}, ingest.Drop(contract.ReasonReplay, "retained message")
	}
	return s.Admit(m)
}

// Admit is the registration check alone (docs/protocol.md §5.2 step 6), for
// handlers that decoded and checked for replay themselves. It records the
// kaiser root of the live message (A2).
func (s *Service) Admit(m ingest.Message) (Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.admitLocked(m)
	if err != nil {
		return Device{}, err
	}
	return s.snapshot(e), nil
}

// AdmitType is Admit without the copy of the device record, for the
// reading path, which needs only the device's hardware type: at 1,000
// readings/s the copy (its metadata maps) was most of what a reading
// allocated in the hub's own code.
func (s *Service) AdmitType(m ingest.Message) (hardwareType string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.admitLocked(m)
	if err != nil {
		return "", err
	}
	return e.rec.HardwareType, nil
}

// admitLocked applies the registration check and records the message's
// kaiser root; s.mu is held.
func (s *Service) admitLocked(m ingest.Message) (*entry, error) {
	e := s.devices[m.Topic.EspID]
	if err := s.gateLocked(e, m); err != nil {
		return nil, err
	}
	e.rec.KaiserID = m.Topic.KaiserID
	return e, nil
}

// gateLocked applies the registration check; s.mu is held.
func (s *Service) gateLocked(e *entry, m ingest.Message) error {
	if isGone(e) {
		if len(s.unknownIDs) < maxUnknownIDs {
			s.unknownIDs[m.Topic.EspID] = m.ReceivedAt
		}
		return ingest.Drop(contract.ReasonUnknownDevice, "device is not registered")
	}
	if !isApproved(e.rec.Status) {
		e.hold(m.Topic.Suffix, m.Payload)
		return ingest.Drop(contract.ReasonNotApproved, "device is "+e.rec.Status)
	}
	return nil
}

// HandleGated returns an ingest handler that passes the gate and then does
// nothing more: for kinds whose domain handling comes from other packages.
func (s *Service) HandleGated() ingest.Handler {
	return func(ctx context.Context, m ingest.Message) error {
		_, err := s.Gate(ctx, m)
		return err
	}
}

// UnknownIDs lists ids heard from but not registered (docs/protocol.md §5.4).
func (s *Service) UnknownIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.unknownIDs))
	for id := range s.unknownIDs {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func statusEvent(e *entry, prev, reason string, now time.Time) event.Event {
	var lastSeen *string
	if e.rec.LastSeen != nil {
		s := e.rec.LastSeen.UTC().Format(time.RFC3339Nano)
		lastSeen = &s
	}
	return event.Event{Time: now, Data: event.DeviceStatus{
		EspID:          e.rec.DeviceID,
		DeviceID:       e.rec.DeviceID,
		Status:         e.rec.Status,
		PreviousStatus: prev,
		Reason:         reason,
		LastSeen:       lastSeen,
		Timestamp:      now.Unix(),
	}}
}

func healthEvent(e *entry, hb contract.Heartbeat, source string, now time.Time) event.Event {
	sensors, actuators := reportedCounts(hb)
	return event.Event{Time: now, Data: event.EspHealth{
		EspID:         e.rec.DeviceID,
		Status:        e.rec.Status,
		HeapFree:      hb.HeapFree,
		WifiRSSI:      hb.RSSI,
		Uptime:        hb.Uptime,
		SensorCount:   sensors,
		ActuatorCount: actuators,
		Source:        source,
		Timestamp:     now.Unix(),
	}}
}

func cloneRecord(r store.Device) store.Device {
	md := make(map[string]any, len(r.Metadata))
	for k, v := range r.Metadata {
		if m, ok := v.(map[string]any); ok {
			c := make(map[string]any, len(m))
			for k2, v2 := range m {
				c[k2] = v2
			}
			v = c
		}
		md[k] = v
	}
	r.Metadata = md
	return r
}

func (s *Service) snapshot(e *entry) Device {
	d := Device{Device: cloneRecord(e.rec)}
	if !e.lastHeartbeat.IsZero() {
		t := e.lastHeartbeat
		d.LastHeartbeatAt = &t
	}
	d.SubscriptionsLost, _ = e.rec.Metadata["subscriptions_lost"].(bool)
	d.RebootRequired, _ = e.rec.Metadata["reboot_required"].(bool)
	return d
}
