package logic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/sensor/processor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// entry is one rule with its runtime state. mu serialises the rule's
// evaluations (docs/domain.md §6.6) and guards every field.
type entry struct {
	mu   sync.Mutex
	rule rule.Rule
	gone bool
	// hyst are the hysteresis states by leaf path.
	hyst map[string]rule.HysteresisState
	// runs are the starts of step 6 in the trailing hour (docs/domain.md §6.9).
	runs []time.Time
	// rateNoted and offlineNoted bound how often a skip is recorded.
	rateNoted, offlineNoted time.Time
	// cont is the pending delay continuation: the rule is running.
	cont *continuation

	// idx is what the trigger indexes need of the rule, guarded by
	// Service.mu so that matching a trigger never waits for a rule's run.
	idx index
}

// index is the part of a rule the trigger matching reads.
type index struct {
	enabled bool
	pins    []rule.Target
	sensors []rule.SensorRef
	timed   bool
	devices []string
}

func indexOf(r *rule.Rule) index {
	return index{
		enabled: r.Enabled,
		pins:    r.SensorPins(),
		sensors: r.Sensors(),
		timed:   r.HasTimeLeaf(),
		devices: r.Devices(),
	}
}

// states adapts the entry's hysteresis map for the evaluator; mu is held.
type states map[string]rule.HysteresisState

func (m states) Hysteresis(path string) rule.HysteresisState { return m[path] }

// Rule is a rule with its execution totals, for the API.
type Rule struct {
	rule.Rule
	ExecutionCount       int
	LastExecutionSuccess *bool
}

// Load reads the rules, their hysteresis states and pending continuations.
func (s *Service) Load(ctx context.Context) error {
	stored, err := s.d.Store.LoadRules(ctx)
	if err != nil {
		return fmt.Errorf("load rules: %w", err)
	}
	hs, err := s.d.Store.LoadHysteresis(ctx)
	if err != nil {
		return fmt.Errorf("load hysteresis: %w", err)
	}
	s.mu.Lock()
	for _, sr := range stored {
		r, issues := rule.Decode(sr.Doc)
		if len(issues) > 0 {
			// A document this version cannot read stays stored and inert.
			s.log.Error("stored rule does not decode; it stays disabled", "rule_id", sr.ID, "issues", issues)
			continue
		}
		r.ID, r.Enabled, r.LastTriggered = sr.ID, sr.Enabled, sr.LastTriggered
		r.CreatedAt, r.UpdatedAt = sr.CreatedAt, sr.UpdatedAt
		s.rules[r.ID] = &entry{rule: r, hyst: map[string]rule.HysteresisState{}, idx: indexOf(&r)}
	}
	for _, h := range hs {
		if e := s.rules[h.RuleID]; e != nil {
			e.hyst[h.Path] = rule.HysteresisState{
				Active:           h.Active,
				LastValue:        h.LastValue,
				LastActivation:   h.LastActivation,
				LastDeactivation: h.LastDeactivation,
			}
		}
	}
	s.reindexLocked()
	s.mu.Unlock()
	return s.loadContinuations(ctx)
}

// reindexLocked rebuilds the trigger indexes (docs/domain.md §6.6); s.mu is held.
func (s *Service) reindexLocked() {
	s.bySensor = map[rule.Target][]*entry{}
	s.timed = nil
	for _, e := range s.rules {
		if !e.idx.enabled {
			continue
		}
		for _, pin := range e.idx.pins {
			s.bySensor[pin] = append(s.bySensor[pin], e)
		}
		if e.idx.timed {
			s.timed = append(s.timed, e)
		}
	}
}

// snapshot copies the stored rules, for checks against the others.
func (s *Service) snapshot() []rule.Rule {
	s.mu.Lock()
	es := make([]*entry, 0, len(s.rules))
	for _, e := range s.rules {
		es = append(es, e)
	}
	s.mu.Unlock()
	out := make([]rule.Rule, 0, len(es))
	for _, e := range es {
		e.mu.Lock()
		out = append(out, e.rule)
		e.mu.Unlock()
	}
	return out
}

// List returns the rules ordered by priority then name (docs/api.md §1.7).
func (s *Service) List(ctx context.Context, enabled *bool) ([]Rule, error) {
	stats, err := s.d.Store.RuleStats(ctx)
	if err != nil {
		return nil, err
	}
	var out []Rule
	for _, r := range s.snapshot() {
		if enabled == nil || r.Enabled == *enabled {
			st := stats[r.ID]
			out = append(out, Rule{Rule: r, ExecutionCount: st.Count, LastExecutionSuccess: st.LastSuccess})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Priority != out[j].Priority {
			return out[i].Priority < out[j].Priority
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Get returns one rule.
func (s *Service) Get(ctx context.Context, id string) (Rule, error) {
	s.mu.Lock()
	e := s.rules[id]
	s.mu.Unlock()
	if e == nil {
		return Rule{}, ErrNotFound
	}
	e.mu.Lock()
	r := e.rule
	e.mu.Unlock()
	stats, err := s.d.Store.RuleStats(ctx)
	if err != nil {
		return Rule{}, err
	}
	st := stats[id]
	return Rule{Rule: r, ExecutionCount: st.Count, LastExecutionSuccess: st.LastSuccess}, nil
}

// Create checks and stores a new rule from its document (docs/api.md §10.1)
// and runs it once when enabled (the rule_update trigger). Warnings come
// back with the rule.
func (s *Service) Create(ctx context.Context, doc []byte) (Rule, []rule.Issue, error) {
	r, warnings, err := s.check(doc, "")
	if err != nil {
		return Rule{}, warnings, err
	}
	now := s.now().UTC()
	r.ID, r.CreatedAt, r.UpdatedAt = uuid.NewString(), now, now
	if err := s.save(ctx, r); err != nil {
		return Rule{}, warnings, err
	}
	e := &entry{rule: r, hyst: map[string]rule.HysteresisState{}, idx: indexOf(&r)}
	s.mu.Lock()
	s.rules[r.ID] = e
	s.reindexLocked()
	s.mu.Unlock()
	if r.Enabled {
		s.ruleUpdated(e)
	}
	return Rule{Rule: r}, warnings, nil
}

// Update merges patch, a partial document, over the stored rule and checks
// the merged rule as a whole (docs/api.md §10.1).
func (s *Service) Update(ctx context.Context, id string, patch []byte) (Rule, []rule.Issue, error) {
	s.mu.Lock()
	e := s.rules[id]
	s.mu.Unlock()
	if e == nil {
		return Rule{}, nil, ErrNotFound
	}
	e.mu.Lock()
	old := e.rule
	e.mu.Unlock()

	merged, err := mergeDoc(old, patch)
	if err != nil {
		return Rule{}, nil, err
	}
	r, warnings, err := s.check(merged, id)
	if err != nil {
		return Rule{}, warnings, err
	}
	r.ID, r.CreatedAt, r.UpdatedAt, r.LastTriggered = id, old.CreatedAt, s.now().UTC(), old.LastTriggered
	if err := s.save(ctx, r); err != nil {
		return Rule{}, warnings, err
	}
	s.replace(ctx, e, r)
	stats, _ := s.d.Store.RuleStats(ctx)
	st := stats[id]
	return Rule{Rule: r, ExecutionCount: st.Count, LastExecutionSuccess: st.LastSuccess}, warnings, nil
}

// Toggle enables or disables a rule; enabling runs the loop check again,
// since the rule joins the graph of enabled rules.
func (s *Service) Toggle(ctx context.Context, id string, enabled bool) (r Rule, previous bool, err error) {
	s.mu.Lock()
	e := s.rules[id]
	s.mu.Unlock()
	if e == nil {
		return Rule{}, false, ErrNotFound
	}
	e.mu.Lock()
	next := e.rule
	e.mu.Unlock()
	previous = next.Enabled
	next.Enabled = enabled
	if enabled && !previous {
		if f := rule.Check(&next, s.catalog(), s.others(id)); len(f.Errors) > 0 {
			return Rule{}, previous, &InvalidError{Errors: f.Errors, Warnings: f.Warnings}
		}
	}
	next.UpdatedAt = s.now().UTC()
	if err := s.save(ctx, next); err != nil {
		return Rule{}, previous, err
	}
	s.replace(ctx, e, next)
	got, err := s.Get(ctx, id)
	return got, previous, err
}

// Delete removes a rule with its history; an active hysteresis state sends
// its OFF and a pending continuation ends with its cleanup OFFs
// (docs/domain.md §6.3.3, §6.5).
func (s *Service) Delete(ctx context.Context, id string) (Rule, error) {
	got, err := s.Get(ctx, id)
	if err != nil {
		return Rule{}, err
	}
	if err := s.d.Store.DeleteRule(ctx, id); err != nil {
		return Rule{}, fmt.Errorf("delete rule: %w", err)
	}
	s.mu.Lock()
	e := s.rules[id]
	delete(s.rules, id)
	s.reindexLocked()
	s.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		e.gone = true
		s.retireLocked(ctx, e, "rule_deleted")
		e.mu.Unlock()
	}
	return got, nil
}

// replace installs a changed version of a rule: hysteresis states whose
// leaf changed are reset (with the OFF of an active one), a disabled rule
// loses its states and continuation, and a changed or enabled rule runs
// once (docs/domain.md §6.3.3, §6.6).
func (s *Service) replace(ctx context.Context, e *entry, r rule.Rule) {
	e.mu.Lock()
	old := e.rule
	e.rule = r
	switch {
	case !r.Enabled:
		s.retireLocked(ctx, e, "rule_disabled")
	default:
		trig := rule.Trigger{Kind: rule.TriggerRuleUpdate, Reason: "hysteresis_reset"}
		s.resetHysteresisLocked(ctx, e, changedHysteresis(&old, &r), trig)
		if !reflect.DeepEqual(old.Actions, r.Actions) {
			s.cancelContinuationLocked(ctx, e, "rule_updated", true)
		}
	}
	e.mu.Unlock()

	s.mu.Lock()
	e.idx = indexOf(&r)
	s.reindexLocked()
	s.mu.Unlock()
	if r.Enabled {
		s.ruleUpdated(e)
	}
}

// retireLocked ends what a disabled or deleted rule keeps running: its
// hysteresis states (with the OFF of an active one) and its continuation
// (with the cleanup OFFs). e.mu is held.
func (s *Service) retireLocked(ctx context.Context, e *entry, reason string) {
	var paths []string
	for p := range e.hyst {
		paths = append(paths, p)
	}
	s.resetHysteresisLocked(ctx, e, paths, rule.Trigger{Kind: rule.TriggerRuleUpdate, Reason: reason})
	s.cancelContinuationLocked(ctx, e, reason, true)
	if err := s.d.Store.ResetHysteresis(ctx, e.rule.ID); err != nil {
		s.log.Error("hysteresis states not removed", "rule_id", e.rule.ID, "error", err)
	}
}

// changedHysteresis lists the hysteresis paths of old whose leaf is not the
// same in r.
func changedHysteresis(old, r *rule.Rule) []string {
	now := map[string]*rule.Hysteresis{}
	for _, l := range r.Leaves() {
		if l.Condition.Hysteresis != nil {
			now[l.Path] = l.Condition.Hysteresis
		}
	}
	var out []string
	for _, l := range old.Leaves() {
		if h := l.Condition.Hysteresis; h != nil && (now[l.Path] == nil || !reflect.DeepEqual(*h, *now[l.Path])) {
			out = append(out, l.Path)
		}
	}
	return out
}

// check decodes a document and runs the save-time checks; self is the id
// of the rule it replaces, "" for a new one.
func (s *Service) check(doc []byte, self string) (rule.Rule, []rule.Issue, error) {
	r, issues := rule.Decode(doc)
	if len(issues) > 0 {
		return r, nil, &InvalidError{Errors: issues}
	}
	r.ID = self
	others := s.others(self)
	f := rule.Check(&r, s.catalog(), others)
	f.Errors = append(f.Errors, s.checkWebhooks(&r)...)
	if len(f.Errors) > 0 {
		return r, f.Warnings, &InvalidError{Errors: f.Errors, Warnings: f.Warnings}
	}
	for _, o := range others {
		if strings.EqualFold(o.Name, r.Name) {
			return r, f.Warnings, ErrDuplicate
		}
	}
	return r, f.Warnings, nil
}

func (s *Service) others(self string) []rule.Rule {
	all := s.snapshot()
	return slices.DeleteFunc(all, func(r rule.Rule) bool { return r.ID == self })
}

// checkWebhooks refuses webhook hosts outside the admin's allow-list
// (docs/api.md §10.2).
func (s *Service) checkWebhooks(r *rule.Rule) []rule.Issue {
	if len(s.opt.WebhookHosts) == 0 {
		return nil
	}
	var out []rule.Issue
	check := func(n *rule.Notification, loc []any) {
		if n == nil || n.Channel != rule.ChannelWebhook {
			return
		}
		if !s.webhookAllowed(n.Target) {
			out = append(out, rule.Issue{
				Loc:     append(loc, "target"),
				Code:    rule.CodeFormat,
				Message: "webhook host is not in the hub's allowed hosts",
			})
		}
	}
	for i, a := range r.Actions {
		check(a.Notification, []any{"actions", i})
		if a.Sequence != nil {
			for j, st := range a.Sequence.Steps {
				if st.Action != nil {
					check(st.Action.Notification, []any{"actions", i, "steps", j, "action"})
				}
			}
		}
	}
	return out
}

func (s *Service) webhookAllowed(target string) bool {
	if len(s.opt.WebhookHosts) == 0 {
		return true
	}
	u, err := url.Parse(target)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(s.opt.WebhookHosts, func(h string) bool { return strings.EqualFold(h, u.Hostname()) })
}

func (s *Service) save(ctx context.Context, r rule.Rule) error {
	doc, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode rule: %w", err)
	}
	err = s.d.Store.SaveRule(ctx, store.Rule{
		ID:            r.ID,
		Name:          r.Name,
		Enabled:       r.Enabled,
		Priority:      r.Priority,
		Doc:           doc,
		LastTriggered: r.LastTriggered,
		CreatedAt:     r.CreatedAt,
		UpdatedAt:     r.UpdatedAt,
	})
	if errors.Is(err, store.ErrDuplicate) {
		return ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("save rule: %w", err)
	}
	return nil
}

// docFields are the document fields a partial update may change.
var docFields = []string{"name", "description", "enabled", "priority", "logic_operator", "conditions",
	"actions", "cooldown_seconds", "max_executions_per_hour"}

// mergeDoc overlays the top-level fields of patch on the stored rule's
// document; an explicit null clears a nullable field.
func mergeDoc(old rule.Rule, patch []byte) ([]byte, error) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal(patch, &p); err != nil || p == nil {
		return nil, &InvalidError{Errors: []rule.Issue{{Code: rule.CodeType, Message: "must be an object"}}}
	}
	base, err := json.Marshal(old)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(base, &m); err != nil {
		return nil, err
	}
	for _, f := range docFields {
		if v, ok := p[f]; ok {
			m[f] = v
		}
	}
	return json.Marshal(m)
}

// catalog answers the existence checks from the actuator and sensor configs.
func (s *Service) catalog() rule.Catalog { return catalog{s} }

type catalog struct{ s *Service }

func (c catalog) DeviceConfigured(espID string) bool {
	return len(c.s.d.Actuators.ByDevice(espID))+len(c.s.d.Sensors.ByDevice(espID)) > 0
}

func (c catalog) ActuatorExists(espID string, gpio int) bool {
	_, err := c.s.d.Actuators.Get(espID, gpio)
	return err == nil
}

func (c catalog) SensorExists(espID string, gpio int, sensorType string) bool {
	for _, sc := range c.s.d.Sensors.ByDevice(espID) {
		if sc.GPIO != gpio {
			continue
		}
		if k, _ := processor.NormaliseType(sc.SensorType); sensorType == "" || k == sensorType {
			return true
		}
	}
	return false
}
