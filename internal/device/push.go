package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
)

// ConfigSource supplies the hub's configuration items of a device (the
// hub is the source of truth, docs/protocol.md P1).
type ConfigSource interface {
	SensorItems(espID string) []contract.SensorConfigItem
	ActuatorItems(espID string) []contract.ActuatorConfigItem
}

// valveCloser is a ConfigSource that can make a push wait for valves
// (docs/protocol.md P4): the re-creation of an actuator leaves a valve where
// it is (Q14), so valves not confirmed closed get their OFF first, and the
// push goes out once the returned travel time has passed.
type valveCloser interface {
	CloseValves(ctx context.Context, espID string) time.Duration
}

// Push triggers. A push caused only by sensor changes sends `actuators:[]`
// (P1): the device's C2 error for the empty section leaves running outputs
// alone, where listing them would switch them off (C5).
const (
	TriggerSensorChange   = "config_change"
	TriggerActuatorChange = "actuator_change"
)

// PushStore persists the last push per device.
type PushStore interface {
	SaveConfigPush(ctx context.Context, espID, correlationID, status string, doc []byte) error
	LoadConfigPushes(ctx context.Context) (map[string][]byte, error)
}

// Timing and sizes of a push (docs/protocol.md P3, §1.6).
const (
	// pushTimeout ends a push whose sections did not all answer.
	pushTimeout = 15 * time.Second
	// errorGrace is the wait after a section's first error for the trailing item errors.
	errorGrace = 2 * time.Second

	// wroomPacketLimit is the whole-packet budget of an ESP32 dev board.
	wroomPacketLimit = 2048
	// mockPacketLimit is the budget of simulated devices: large enough to never split.
	mockPacketLimit = 1 << 20
	// configParsePool is the firmware's JSON pool for one `config` payload.
	configParsePool = 4096
)

// ErrConfigTooLarge refuses an item that cannot fit the device's limits alone (P5).
var ErrConfigTooLarge = errors.New("config item too large for the device")

// Push states (docs/protocol.md P3, docs/api.md §7.1 config_status).
const (
	PushPending  = "pending"
	PushApplied  = "applied"
	PushFailed   = "failed"
	PushTimedOut = "timed_out"
)

// FailedItem is one item error reported by the device.
type FailedItem struct {
	Section   string          `json:"section"`
	ErrorCode string          `json:"error_code"`
	Message   string          `json:"message"`
	Item      json.RawMessage `json:"failed_item,omitempty"`
}

// Push is a device's last config push.
type Push struct {
	CorrelationID string                        `json:"correlation_id"`
	Status        string                        `json:"status"`
	Trigger       string                        `json:"trigger"`
	SentAt        time.Time                     `json:"sent_at"`
	Parts         int                           `json:"parts"`
	Sections      map[string]string             `json:"sections"` // section → pending/applied/failed/timed_out
	Expected      map[string]int                `json:"expected"` // successes needed per section (one per part)
	Successes     map[string]int                `json:"successes"`
	Failures      []FailedItem                  `json:"failures"`
	Sensors       []contract.SensorConfigItem   `json:"sensors"`
	Actuators     []contract.ActuatorConfigItem `json:"actuators"`
	// SentActuators is the actuator section this push carried, removals
	// included (Actuators is what the device has afterwards).
	SentActuators []contract.ActuatorConfigItem `json:"sent_actuators"`
	firstErr      map[string]time.Time
	timer         *time.Timer
}

// ErrorCode and ErrorMessage summarise a failed push for API objects.
func (p *Push) ErrorCode() string {
	if p == nil || len(p.Failures) == 0 {
		return ""
	}
	return p.Failures[0].ErrorCode
}

// ErrorMessage is the first failure's message.
func (p *Push) ErrorMessage() string {
	if p == nil || len(p.Failures) == 0 {
		return ""
	}
	return p.Failures[0].Message
}

type pushes struct {
	mu      sync.Mutex
	byID    map[string]*Push
	source  ConfigSource
	store   PushStore
	timeout time.Duration
	grace   time.Duration
	wg      sync.WaitGroup
	stopped bool
	// results are told of every settled push.
}

// armLocked (re)starts p's timer to run settle after d, unless the pushes
// are stopped; ps.mu is held. Running timers are counted in wg so that
// StopPush can wait for them.
func (ps *pushes) armLocked(p *Push, d time.Duration, settle func()) {
	if ps.stopped {
		return
	}

	ps.disarmLocked(p)
	ps.wg.Add(1)
	p.timer = time.AfterFunc(d, func() {
		defer ps.wg.Done()
		settle()
	})
}

// disarmLocked stops p's timer if it has not fired; ps.mu is held.
func (ps *pushes) disarmLocked(p *Push) {
	if p != nil && p.timer != nil && p.timer.Stop() {
		ps.wg.Done()
	}
}

// EnablePush connects the config source and the push store.
func (s *Service) EnablePush(ctx context.Context, src ConfigSource, st PushStore) error {
	p := &pushes{
		byID:    map[string]*Push{},
		source:  src,
		store:   st,
		timeout: pushTimeout,
		grace:   errorGrace,
	}

	docs, err := st.LoadConfigPushes(ctx)
	if err != nil {
		return fmt.Errorf("load config pushes: %w", err)
	}
	for id, doc := range docs {
		var push Push
		if json.Unmarshal(doc, &push) == nil {
			if push.Status == PushPending {
				push.Status = PushTimedOut // the hub restarted while waiting
			}
			p.byID[id] = &push
		}
	}
	s.push = p
	return nil
}

// StopPush cancels pending push timers.
func (s *Service) StopPush() {
	if s.push == nil {
		return
	}
	s.push.mu.Lock()
	s.push.stopped = true
	for _, p := range s.push.byID {
		s.push.disarmLocked(p)
	}
	s.push.mu.Unlock()
	s.push.wg.Wait()
}

// LastPush returns a copy of a device's last push, or nil.
func (s *Service) LastPush(espID string) *Push {
	if s.push == nil {
		return nil
	}
	s.push.mu.Lock()
	defer s.push.mu.Unlock()
	p := s.push.byID[espID]
	if p == nil {
		return nil
	}
	cp := *p
	cp.Failures = append([]FailedItem(nil), p.Failures...)
	cp.Sections = maps.Clone(p.Sections)
	return &cp
}

// packetLimit is the device's whole-packet budget (docs/protocol.md §1.6, docs/domain.md §1.5).
func packetLimit(hw string) int {
	switch strings.ToUpper(hw) {
	case "ESP32_WROOM", "ESP32_WROOM_32", "ESP32_WROOM32":
		return wroomPacketLimit
	case "MOCK_ESP32":
		return mockPacketLimit
	}
	return contract.MaxDevicePacket
}

// PushConfig sends the device's combined config (docs/protocol.md P1–P6): every item
// the hub knows plus removals since the last push, split to fit the packet
// limit, actuators first. A push caused by sensor changes alone carries no
// actuators (P1). A push with valves not confirmed closed waits for their
// travel after their OFF (P4): it is then published later, and the
// correlation id returned at once. It returns the correlation id.
func (s *Service) PushConfig(ctx context.Context, espID, trigger string) (string, error) {
	if s.push == nil {
		return "", errors.New("config push not enabled")
	}
	d, err := s.online(espID)
	if err != nil {
		return "", err
	}

	sensors := s.push.withRemovals(espID, s.push.source.SensorItems(espID))
	var actuators []contract.ActuatorConfigItem
	if trigger != TriggerSensorChange || s.push.actuatorsUnconfirmed(espID) {
		actuators = s.push.withActuatorRemovals(espID, s.push.source.ActuatorItems(espID))
	}
	now := s.now()
	corr := "cfg-" + uuid.NewString()[:18]
	topic := contract.DeviceTopic(d.KaiserID, espID, "config")
	parts, err := splitConfig(sensors, actuators, topic, packetLimit(d.HardwareType), now, corr)
	if err != nil {
		return "", err
	}

	push := newPush(corr, trigger, now, parts, sensors, actuators, s.push.previous(espID))
	if len(push.Sections) == 0 {
		return "", nil // nothing to configure
	}
	if wait := s.valveTravel(ctx, espID, actuators); wait > 0 {
		s.deferPush(ctx, espID, topic, parts, push, wait)
		s.log.Info("config push waits for valves to close", "esp_id", espID, "correlation_id", corr, "wait", wait)
		return corr, nil
	}
	// Tracked before it goes out: the device's answer can be ingested
	// before the publish call returns, and must find its push.
	prev := s.push.begin(espID, push, func() { s.finishPush(context.Background(), espID, corr, true) })
	if err := s.publishParts(ctx, topic, parts); err != nil {
		s.push.abandon(espID, push, prev, func() { s.finishPush(context.Background(), espID, prev.CorrelationID, true) })
		return "", err
	}

	s.savePush(ctx, espID, push)
	s.log.Info("config pushed", "esp_id", espID, "correlation_id", corr, "parts", len(parts), "trigger", trigger)
	s.notifyPush(false, espID, push)
	return corr, nil
}

// valveTravel closes the valves of a push with an actuator section and
// returns how long they need (P4); 0 without valves to wait for.
func (s *Service) valveTravel(
	ctx context.Context,
	espID string,
	actuators []contract.ActuatorConfigItem,
) time.Duration {
	vc, ok := s.push.source.(valveCloser)
	if !ok || len(actuators) == 0 {
		return 0
	}
	return vc.CloseValves(ctx, espID)
}

// deferPush makes push the device's current one and publishes it after
// wait, if it is still current and the device still online then; its
// timeout runs from the publish.
func (s *Service) deferPush(
	ctx context.Context, espID, topic string, parts []contract.Config, push *Push, wait time.Duration,
) {
	corr := push.CorrelationID
	s.push.mu.Lock()
	s.push.disarmLocked(s.push.byID[espID])
	s.push.byID[espID] = push
	s.push.armLocked(push, wait, func() { s.publishDeferred(espID, topic, parts, corr) })
	s.push.mu.Unlock()
	s.savePush(ctx, espID, push)
}

func (s *Service) publishDeferred(espID, topic string, parts []contract.Config, corr string) {
	ctx := context.Background()
	s.push.mu.Lock()
	p := s.push.byID[espID]
	current := p != nil && p.CorrelationID == corr && p.Status == PushPending
	s.push.mu.Unlock()
	if !current {
		return
	}

	_, err := s.online(espID)
	if err == nil {
		err = s.publishParts(ctx, topic, parts)
	}
	if err != nil {
		s.log.Warn("deferred config push not sent", "esp_id", espID, "correlation_id", corr, "error", err)
		s.finishPush(ctx, espID, corr, true)
		return
	}

	s.push.mu.Lock()
	p.SentAt = s.now()
	s.push.armLocked(p, s.push.timeout, func() { s.finishPush(context.Background(), espID, corr, true) })
	s.push.mu.Unlock()
	s.savePush(ctx, espID, p)
	s.log.Info("config push sent", "esp_id", espID, "correlation_id", corr, "parts", len(parts), "deferred", true)
}

// actuatorsUnconfirmed reports a last push whose actuator section the
// device has not confirmed: a sensor change must not drop it by replacing
// that push with one without actuators.
func (ps *pushes) actuatorsUnconfirmed(espID string) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.byID[espID]
	return p != nil && len(p.SentActuators) > 0 && p.Sections["actuator"] != PushApplied
}

// previous is the device's last push, or nil.
func (ps *pushes) previous(espID string) *Push {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.byID[espID]
}

// withRemovals adds, inactive, the items of the previous push that are
// gone now (P1).
func (ps *pushes) withRemovals(espID string, sensors []contract.SensorConfigItem) []contract.SensorConfigItem {
	ps.mu.Lock()
	prev := ps.byID[espID]
	ps.mu.Unlock()
	if prev == nil {
		return sensors
	}

	have := map[string]bool{}
	for _, it := range sensors {
		have[fmt.Sprintf("%d/%s", it.GPIO, it.SensorType)] = true
	}
	for _, it := range prev.Sensors {
		if it.Active && !have[fmt.Sprintf("%d/%s", it.GPIO, it.SensorType)] {
			it.Active = false
			sensors = append(sensors, it)
		}
	}
	return sensors
}

// withActuatorRemovals adds, inactive, the actuators the device was last
// given that are gone now (P1); an actuator is known by its pin.
func (ps *pushes) withActuatorRemovals(
	espID string, actuators []contract.ActuatorConfigItem,
) []contract.ActuatorConfigItem {
	prev := ps.previous(espID)
	if prev == nil {
		return actuators
	}

	have := map[int]bool{}
	for _, it := range actuators {
		have[it.GPIO] = true
	}
	for _, it := range prev.Actuators {
		if it.Active && !have[it.GPIO] {
			it.Active = false
			actuators = append(actuators, it)
		}
	}
	return actuators
}

// newPush is the pending push of parts: each section a part carries
// expects one success per part. A push without an actuator section leaves
// the device's actuators as prev knew them.
func newPush(
	corr, trigger string, now time.Time, parts []contract.Config,
	sensors []contract.SensorConfigItem, actuators []contract.ActuatorConfigItem, prev *Push,
) *Push {
	kept := activeActuators(actuators)
	if len(actuators) == 0 && prev != nil {
		kept = prev.Actuators
	}
	push := &Push{
		CorrelationID: corr,
		Status:        PushPending,
		Trigger:       trigger,
		SentAt:        now,
		Parts:         len(parts),
		Sections:      map[string]string{},
		Expected:      map[string]int{},
		Successes:     map[string]int{},
		Sensors:       activeOnly(sensors),
		Actuators:     kept,
		SentActuators: actuators,
		firstErr:      map[string]time.Time{},
	}
	for _, part := range parts {
		if len(part.Sensors) > 0 {
			push.Expected["sensor"]++
			push.Sections["sensor"] = PushPending
		}
		if len(part.Actuators) > 0 {
			push.Expected["actuator"]++
			push.Sections["actuator"] = PushPending
		}
	}
	return push
}

func (s *Service) publishParts(ctx context.Context, topic string, parts []contract.Config) error {
	for _, part := range parts {
		payload, err := contract.MarshalConfig(part)
		if err != nil {
			return err
		}
		if err := s.bus.Publish(ctx, topic, payload, 1, false); err != nil {
			return fmt.Errorf("publish config: %w", err)
		}
	}
	return nil
}

// begin makes push the device's current one, replacing any earlier push
// (P3: one at a time), and starts its timeout, which runs expire; it
// returns the push it replaced.
func (ps *pushes) begin(espID string, push *Push, expire func()) *Push {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	prev := ps.byID[espID]
	ps.disarmLocked(prev)
	ps.byID[espID] = push
	ps.armLocked(push, ps.timeout, expire)
	return prev
}

// abandon undoes begin for a push that could not be published: the device
// never got it, so prev stays what it has (removals are computed from it).
// A pending prev gets a new timeout, which runs expire.
func (ps *pushes) abandon(espID string, push, prev *Push, expire func()) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.byID[espID] != push {
		return
	}
	ps.disarmLocked(push)
	if prev == nil {
		delete(ps.byID, espID)
		return
	}
	ps.byID[espID] = prev
	if prev.Status == PushPending {
		ps.armLocked(prev, ps.timeout, expire)
	}
}

func activeActuators(items []contract.ActuatorConfigItem) []contract.ActuatorConfigItem {
	var out []contract.ActuatorConfigItem
	for _, it := range items {
		if it.Active {
			out = append(out, it)
		}
	}
	return out
}

func activeOnly(items []contract.SensorConfigItem) []contract.SensorConfigItem {
	var out []contract.SensorConfigItem
	for _, it := range items {
		if it.Active {
			out = append(out, it)
		}
	}
	return out
}

// splitConfig packs items into as few messages as fit the limit (C7, P5),
// actuators first; the parts after the first carry the correlation id with
// a part suffix.
func splitConfig(
	sensors []contract.SensorConfigItem, actuators []contract.ActuatorConfigItem,
	topic string, limit int, now time.Time, corr string,
) ([]contract.Config, error) {
	fits := func(c contract.Config) bool {
		b, err := contract.MarshalConfig(c)
		return err == nil && contract.FitsPacket(topic, b, limit) && len(b) <= configParsePool
	}

	var parts []contract.Config
	cur := contract.Config{Timestamp: now.Unix(), CorrelationID: corr}
	// add puts one item into cur, or cur into parts and the item into a new part.
	add := func(with func(contract.Config) contract.Config, what string, gpio int) error {
		if next := with(cur); fits(next) {
			cur = next
			return nil
		}
		if len(cur.Sensors) == 0 && len(cur.Actuators) == 0 {
			return fmt.Errorf("%w: %s on GPIO %d", ErrConfigTooLarge, what, gpio)
		}
		parts = append(parts, cur)
		cur = with(contract.Config{Timestamp: now.Unix(), CorrelationID: fmt.Sprintf("%s-%d", corr, len(parts))})
		if !fits(cur) {
			return fmt.Errorf("%w: %s on GPIO %d", ErrConfigTooLarge, what, gpio)
		}
		return nil
	}

	for _, it := range actuators {
		with := func(c contract.Config) contract.Config {
			c.Actuators = append(slices.Clone(c.Actuators), it)
			return c
		}
		if err := add(with, "actuator", it.GPIO); err != nil {
			return nil, err
		}
	}
	for _, it := range sensors {
		with := func(c contract.Config) contract.Config {
			c.Sensors = append(slices.Clone(c.Sensors), it)
			return c
		}
		if err := add(with, "sensor", it.GPIO); err != nil {
			return nil, err
		}
	}

	if len(cur.Sensors) > 0 || len(cur.Actuators) > 0 {
		parts = append(parts, cur)
	}
	return parts, nil
}

func (s *Service) savePush(ctx context.Context, espID string, p *Push) {
	s.push.mu.Lock()
	doc, err := json.Marshal(p)
	corr, status := p.CorrelationID, p.Status // read under the lock: an answer may settle p meanwhile
	s.push.mu.Unlock()
	if err == nil {
		err = s.push.store.SaveConfigPush(ctx, espID, corr, status, doc)
	}
	if err != nil {
		s.log.Error("saving config push failed", "esp_id", espID, "error", err)
	}
}

// HandleConfigResponse completes the pending push (docs/protocol.md §5.9).
func (s *Service) HandleConfigResponse(ctx context.Context, m ingest.Message) error {
	cr, err := contract.DecodeConfigResponse(m.Topic, m.Payload)
	if err != nil {
		return err
	}
	if m.Replay {
		return ingest.Drop(contract.ReasonReplay, "retained config_response")
	}
	if _, err := s.Admit(m); err != nil {
		return err
	}
	if s.push == nil {
		return nil
	}

	id := m.Topic.EspID
	r, ok := s.push.record(id, cr, m.ReceivedAt)
	if !ok {
		s.log.Info("config_response without a pending push", "esp_id", id, "status", cr.Status, "type", cr.Type)
		return nil
	}

	section, corr := cr.Type, r.corr
	if r.counted {
		status := "success"
		if cr.Status != "success" {
			status = "failed"
		}
		s.events.Publish(event.Event{Time: m.ReceivedAt, Data: event.ConfigResponse{
			EspID:            id,
			ConfigType:       section,
			Status:           status,
			Count:            cr.Count,
			Message:          cr.Message,
			ErrorCode:        nilIfEmpty(cr.ErrorCode),
			ErrorDescription: nilIfEmpty(cr.Message),
			FailedItem:       rawOrNil(cr.FailedItem),
			CorrelationID:    corr,
			Timestamp:        m.ReceivedAt.Unix(),
		}})
	}

	if r.done {
		s.settleAnswered(ctx, id, r)
	}
	return nil
}

// response is what one config_response did to the device's pending push.
type response struct {
	push *Push
	corr string
	// counted is false for the notice of a section the push had no items for.
	counted bool
	// done: no section is pending any more.
	done bool
	// lastErr is the latest first-error time over the failed sections; zero if none failed.
	lastErr time.Time
}

// record applies cr to the device's pending push; false if there is none.
func (ps *pushes) record(espID string, cr contract.ConfigResponse, at time.Time) (response, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()

	p := ps.byID[espID]
	if p == nil || p.Status != PushPending {
		return response{}, false
	}

	r := response{
		push:    p,
		corr:    p.CorrelationID,
		counted: !emptySectionNotice(p, cr),
	}
	if r.counted {
		p.count(cr, at)
	}

	r.done = true
	for _, st := range p.Sections {
		r.done = r.done && st != PushPending
	}
	for _, t := range p.firstErr {
		if t.After(r.lastErr) {
			r.lastErr = t
		}
	}
	return r, true
}

// emptySectionNotice tells the device's MISSING_FIELD about a section the
// push had no items for: the combined config always carries both arrays
// (P2), so it is no failure.
func emptySectionNotice(p *Push, cr contract.ConfigResponse) bool {
	section := cr.Type
	if p.Expected[section] != 0 || cr.Status != "error" || cr.ErrorCode != "MISSING_FIELD" {
		return false
	}
	return strings.Contains(cr.Message, "array is empty") ||
		strings.Contains(cr.Message, "missing '"+section+"s' array")
}

// count adds one section result; a section is applied with one success
// per part that carried it and failed with its first error.
func (p *Push) count(cr contract.ConfigResponse, at time.Time) {
	section := cr.Type
	if cr.Status == "success" {
		p.Successes[section]++
		if p.Successes[section] >= p.Expected[section] && p.Sections[section] == PushPending {
			p.Sections[section] = PushApplied
		}
		return
	}

	p.Sections[section] = PushFailed
	p.Failures = append(p.Failures, FailedItem{
		Section:   section,
		ErrorCode: cr.ErrorCode,
		Message:   cr.Message,
		Item:      cr.FailedItem,
	})
	if _, ok := p.firstErr[section]; !ok {
		p.firstErr[section] = at
	}
}

// settleAnswered settles a push whose sections have all answered: at once
// without errors, else after the grace for trailing item errors (P3: 2 s).
func (s *Service) settleAnswered(ctx context.Context, espID string, r response) {
	if r.lastErr.IsZero() {
		s.finishPush(ctx, espID, r.corr, false)
		return
	}

	wait := time.Until(r.lastErr.Add(s.push.grace))
	s.push.mu.Lock()
	s.push.armLocked(r.push, wait, func() {
		s.finishPush(context.Background(), espID, r.corr, false)
	})
	s.push.mu.Unlock()
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func rawOrNil(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	var v any
	_ = json.Unmarshal(b, &v)
	return v
}

// finishPush settles a push: failed if any section failed, else timed_out
// if any is still pending (timeout), else applied.
func (s *Service) finishPush(ctx context.Context, espID, corr string, timeout bool) {
	s.push.mu.Lock()
	p := s.push.byID[espID]
	if p == nil || p.CorrelationID != corr || p.Status != PushPending {
		s.push.mu.Unlock()
		return
	}

	status := PushApplied
	for sec, st := range p.Sections {
		switch {
		case st == PushFailed:
			status = PushFailed
		case st == PushPending && timeout:
			p.Sections[sec] = PushTimedOut
			if status != PushFailed {
				status = PushTimedOut
			}
		case st == PushPending:
			s.push.mu.Unlock()
			return
		}
	}
	p.Status = status
	s.push.mu.Unlock()
	s.savePush(ctx, espID, p)
	s.log.Info("config push settled", "esp_id", espID, "correlation_id", corr, "status", status)
	s.notifyPush(true, espID, p)
}

// ConfigAvailable reports a push not confirmed (heartbeat ack field).
func (s *Service) configAvailable(espID string) bool {
	if s.push == nil {
		return false
	}
	s.push.mu.Lock()
	defer s.push.mu.Unlock()
	p := s.push.byID[espID]
	return p != nil && p.Status != PushApplied
}
