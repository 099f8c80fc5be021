package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
}

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
// limit. It returns the correlation id.
func (s *Service) PushConfig(ctx context.Context, espID, trigger string) (string, error) {
	if s.push == nil {
		return "", errors.New("config push not enabled")
	}
	d, err := s.online(espID)
	if err != nil {
		return "", err
	}

	sensors := s.push.withRemovals(espID, s.push.source.SensorItems(espID))
	now := s.now()
	corr := "cfg-" + uuid.NewString()[:18]
	topic := contract.DeviceTopic(d.KaiserID, espID, "config")
	parts, err := splitConfig(sensors, topic, packetLimit(d.HardwareType), now, corr)
	if err != nil {
		return "", err
	}

	push := newPush(corr, trigger, now, parts, sensors)
	if len(push.Sections) == 0 {
		return "", nil // nothing to configure
	}
	if err := s.publishParts(ctx, topic, parts); err != nil {
		return "", err
	}

	s.track(ctx, espID, push)
	s.log.Info("config pushed", "esp_id", espID, "correlation_id", corr, "parts", len(parts), "trigger", trigger)
	s.notifyPush(false, espID, push)
	return corr, nil
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

// newPush is the pending push of parts: each section a part carries
// expects one success per part.
func newPush(corr, trigger string, now time.Time, parts []contract.Config, sensors []contract.SensorConfigItem) *Push {
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

// track makes push the device's current one, replacing any earlier push
// (P3: one at a time), starts its timeout and saves it.
func (s *Service) track(ctx context.Context, espID string, push *Push) {
	corr := push.CorrelationID

	s.push.mu.Lock()
	s.push.disarmLocked(s.push.byID[espID])
	s.push.byID[espID] = push
	s.push.armLocked(push, s.push.timeout, func() {
		s.finishPush(context.Background(), espID, corr, true)
	})
	s.push.mu.Unlock()

	s.savePush(ctx, espID, push)
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

// splitConfig packs items into as few messages as fit the limit (C7, P5);
// the parts after the first carry the correlation id with a part suffix.
func splitConfig(
	sensors []contract.SensorConfigItem, topic string, limit int, now time.Time, corr string,
) ([]contract.Config, error) {
	fits := func(c contract.Config) bool {
		b, err := contract.MarshalConfig(c)
		return err == nil && contract.FitsPacket(topic, b, limit) && len(b) <= configParsePool
	}

	var parts []contract.Config
	cur := contract.Config{Timestamp: now.Unix(), CorrelationID: corr}
	for _, it := range sensors {
		next := cur
		next.Sensors = append(append([]contract.SensorConfigItem(nil), cur.Sensors...), it)
		if fits(next) {
			cur = next
			continue
		}
		if len(cur.Sensors) == 0 {
			return nil, fmt.Errorf("%w: sensor on GPIO %d", ErrConfigTooLarge, it.GPIO)
		}
		parts = append(parts, cur)
		cur = contract.Config{
			Timestamp:     now.Unix(),
			CorrelationID: fmt.Sprintf("%s-%d", corr, len(parts)),
			Sensors:       []contract.SensorConfigItem{it},
		}
		if !fits(cur) {
			return nil, fmt.Errorf("%w: sensor on GPIO %d", ErrConfigTooLarge, it.GPIO)
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
	s.push.mu.Unlock()
	if err == nil {
		err = s.push.store.SaveConfigPush(ctx, espID, p.CorrelationID, p.Status, doc)
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
