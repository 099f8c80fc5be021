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
// hub is the source of truth, CONTRACT P1).
type ConfigSource interface {
	SensorItems(espID string) []contract.SensorConfigItem
}

// PushStore persists the last push per device.
type PushStore interface {
	SaveConfigPush(ctx context.Context, espID, correlationID, status string, doc []byte) error
	LoadConfigPushes(ctx context.Context) (map[string][]byte, error)
}

// ErrConfigTooLarge refuses an item that cannot fit the device's limits alone (P5).
var ErrConfigTooLarge = errors.New("config item too large for the device")

// Push states (CONTRACT P3, API §7.1 config_status).
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

// EnablePush connects the config source and the push store.
func (s *Service) EnablePush(ctx context.Context, src ConfigSource, st PushStore) error {
	p := &pushes{byID: map[string]*Push{}, source: src, store: st, timeout: 15 * time.Second, grace: 2 * time.Second}
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
		if p.timer != nil && p.timer.Stop() {
			s.push.wg.Done()
		}
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

// packetLimit is the device's whole-packet budget (CONTRACT §1.6, DOMAIN §1.5).
func packetLimit(hw string) int {
	switch strings.ToUpper(hw) {
	case "ESP32_WROOM", "ESP32_WROOM_32", "ESP32_WROOM32":
		return 2048
	case "MOCK_ESP32":
		return 1 << 20
	}
	return contract.MaxDevicePacket
}

// PushConfig sends the device's combined config (CONTRACT P1–P6): every item
// the hub knows plus removals since the last push, split to fit the packet
// limit. It returns the correlation id.
func (s *Service) PushConfig(ctx context.Context, espID, trigger string) (string, error) {
	if s.push == nil {
		return "", errors.New("config push not enabled")
	}
	d, err := s.Get(espID)
	if err != nil {
		return "", err
	}
	if !isApproved(d.Status) {
		return "", ErrNotApproved
	}
	if d.Status != StatusOnline {
		return "", ErrOffline
	}
	sensors := s.push.source.SensorItems(espID)
	s.push.mu.Lock()
	prev := s.push.byID[espID]
	s.push.mu.Unlock()
	// P1: removals are items of the previous push that are gone now.
	if prev != nil {
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
	}
	now := s.now()
	corr := "cfg-" + uuid.NewString()[:18]
	topic := contract.DeviceTopic(d.KaiserID, espID, "config")
	parts, err := splitConfig(sensors, topic, packetLimit(d.HardwareType), now, corr)
	if err != nil {
		return "", err
	}
	push := &Push{CorrelationID: corr, Status: PushPending, Trigger: trigger, SentAt: now, Parts: len(parts),
		Sections: map[string]string{}, Expected: map[string]int{}, Successes: map[string]int{},
		Sensors: activeOnly(sensors), firstErr: map[string]time.Time{}}
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
	if len(push.Sections) == 0 {
		return "", nil // nothing to configure
	}
	for _, part := range parts {
		payload, err := contract.MarshalConfig(part)
		if err != nil {
			return "", err
		}
		if err := s.bus.Publish(ctx, topic, payload, 1, false); err != nil {
			return "", fmt.Errorf("publish config: %w", err)
		}
	}
	s.push.mu.Lock()
	if old := s.push.byID[espID]; old != nil && old.timer != nil && old.timer.Stop() {
		s.push.wg.Done()
	}
	s.push.byID[espID] = push
	if !s.push.stopped {
		s.push.wg.Add(1)
		push.timer = time.AfterFunc(s.push.timeout, func() {
			defer s.push.wg.Done()
			s.finishPush(context.Background(), espID, corr, true)
		})
	}
	s.push.mu.Unlock()
	s.savePush(ctx, espID, push)
	s.log.Info("config pushed", "esp_id", espID, "correlation_id", corr, "parts", len(parts), "trigger", trigger)
	return corr, nil
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

// splitConfig packs items into as few messages as fit the limit (C7, P5).
func splitConfig(sensors []contract.SensorConfigItem, topic string, limit int, now time.Time, corr string) ([]contract.Config, error) {
	fits := func(c contract.Config) bool {
		b, err := contract.MarshalConfig(c)
		return err == nil && contract.FitsPacket(topic, b, limit) && len(b) <= 4096
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
		cur = contract.Config{Timestamp: now.Unix(), CorrelationID: fmt.Sprintf("%s-%d", corr, len(parts)), Sensors: []contract.SensorConfigItem{it}}
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

// HandleConfigResponse completes the pending push (CONTRACT §5.9).
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
	s.push.mu.Lock()
	p := s.push.byID[id]
	if p == nil || p.Status != PushPending {
		s.push.mu.Unlock()
		s.log.Info("config_response without a pending push", "esp_id", id, "status", cr.Status, "type", cr.Type)
		return nil
	}
	section := cr.Type
	expected := p.Expected[section] == 0 && cr.Status == "error" && cr.ErrorCode == "MISSING_FIELD" &&
		(strings.Contains(cr.Message, "array is empty") || strings.Contains(cr.Message, "missing '"+section+"s' array"))
	if !expected {
		if cr.Status == "success" {
			p.Successes[section]++
			if p.Successes[section] >= p.Expected[section] && p.Sections[section] == PushPending {
				p.Sections[section] = PushApplied
			}
		} else {
			p.Sections[section] = PushFailed
			p.Failures = append(p.Failures, FailedItem{Section: section, ErrorCode: cr.ErrorCode, Message: cr.Message, Item: cr.FailedItem})
			if _, ok := p.firstErr[section]; !ok {
				p.firstErr[section] = m.ReceivedAt
			}
		}
	}
	done := true
	var lastErr time.Time
	for _, st := range p.Sections {
		done = done && st != PushPending
	}
	for _, t := range p.firstErr {
		if t.After(lastErr) {
			lastErr = t
		}
	}
	corr := p.CorrelationID
	s.push.mu.Unlock()
	if !expected {
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
	if done {
		if lastErr.IsZero() {
			s.finishPush(ctx, id, corr, false)
		} else {
			// Trailing item errors may follow the first one (P3: 2 s).
			wait := time.Until(lastErr.Add(s.push.grace))
			s.push.mu.Lock()
			if !s.push.stopped {
				if p.timer != nil && p.timer.Stop() {
					s.push.wg.Done()
				}
				s.push.wg.Add(1)
				p.timer = time.AfterFunc(wait, func() {
					defer s.push.wg.Done()
					s.finishPush(context.Background(), id, corr, false)
				})
			}
			s.push.mu.Unlock()
		}
	}
	return nil
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
