package rule

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Catalog answers what the hub has configured, for the existence checks of
// docs/domain.md §6.10.
type Catalog interface {
	// DeviceConfigured reports a known device with at least one sensor or
	// actuator configured; a missing target on any other device is only a
	// warning (its configuration may not have been written yet).
	DeviceConfigured(espID string) bool
	ActuatorExists(espID string, gpio int) bool
	// SensorExists reports a sensor on the pin; sensorType "" matches any.
	SensorExists(espID string, gpio int, sensorType string) bool
}

// Findings are the results of Check: errors reject the rule, warnings are
// returned with it.
type Findings struct {
	Errors   []Issue
	Warnings []Issue
}

// maxLoopDepth bounds the loop search (docs/domain.md §6.10).
const maxLoopDepth = 10

// Check runs the checks that need the rest of the hub (docs/domain.md §6.10):
// targets and sensors exist, no loop through the enabled rules, and no
// duplicate of another rule. others are the stored rules; a stored version
// of r (same id) is replaced by r.
func Check(r *Rule, cat Catalog, others []Rule) Findings {
	var f Findings
	checkSensors(r, cat, &f)
	checkTargets(r, cat, &f)
	if chain := FindLoop(r, others); chain != nil {
		f.Errors = append(f.Errors, Issue{
			Loc:     []any{"actions"},
			Code:    CodeLoop,
			Message: "the rule's actions re-trigger rules in a cycle: " + chainText(chain),
		})
	}
	if dup := duplicateOf(r, others); dup != nil {
		f.Warnings = append(f.Warnings, Issue{
			Loc:     []any{"conditions"},
			Code:    CodeDuplicate,
			Message: fmt.Sprintf("same conditions and actions as rule %q (%s)", dup.Name, dup.ID),
		})
	}
	return f
}

// missing files a missing target as an error, or a warning when its device
// has no configuration yet.
func (f *Findings) missing(cat Catalog, espID string, loc []any, msg string) {
	i := Issue{Loc: loc, Code: CodeNotFound, Message: msg}
	if cat.DeviceConfigured(espID) {
		f.Errors = append(f.Errors, i)
		return
	}
	i.Message += " (device " + espID + " has no configuration yet)"
	f.Warnings = append(f.Warnings, i)
}

func checkSensors(r *Rule, cat Catalog, f *Findings) {
	for _, l := range r.Leaves() {
		ref, ok := l.Condition.sensor()
		if !ok || cat.SensorExists(ref.EspID, ref.GPIO, ref.SensorType) {
			continue
		}
		msg := fmt.Sprintf("no sensor on %s gpio %d", ref.EspID, ref.GPIO)
		if ref.SensorType != "" {
			msg = fmt.Sprintf("no %s sensor on %s gpio %d", ref.SensorType, ref.EspID, ref.GPIO)
		}
		f.missing(cat, ref.EspID, conditionLoc(l.Path), msg)
	}
}

func checkTargets(r *Rule, cat Catalog, f *Findings) {
	for i, a := range r.Actions {
		if a.Command != nil {
			checkTarget(cat, f, a.Command.Target, []any{"actions", i})
		}
		if a.Sequence == nil {
			continue
		}
		for j, st := range a.Sequence.Steps {
			if st.Action != nil && st.Action.Command != nil {
				checkTarget(cat, f, st.Action.Command.Target, []any{"actions", i, "steps", j, "action"})
			}
		}
	}
}

func checkTarget(cat Catalog, f *Findings, t Target, loc []any) {
	if !cat.ActuatorExists(t.EspID, t.GPIO) {
		f.missing(cat, t.EspID, loc, fmt.Sprintf("no actuator on %s gpio %d", t.EspID, t.GPIO))
	}
}

// conditionLoc turns a leaf path "1.2" into its document location
// conditions.1.conditions.2.
func conditionLoc(path string) []any {
	var loc []any
	for _, p := range strings.Split(path, ".") {
		n, _ := strconv.Atoi(p)
		loc = append(loc, "conditions", n)
	}
	return loc
}

// FindLoop searches the trigger graph of the enabled rules from r
// (docs/domain.md §6.10): A → B when an actuator A drives (sequence steps
// included) is a pin a sensor or hysteresis leaf of B reads. It returns
// the first cycle met within maxLoopDepth hops, as the rules along it
// ending with the rule it closes on, or nil. A disabled r cannot loop.
func FindLoop(r *Rule, others []Rule) []*Rule {
	if !r.Enabled {
		return nil
	}
	graph := []*Rule{r}
	for i := range others {
		if others[i].Enabled && others[i].ID != r.ID {
			graph = append(graph, &others[i])
		}
	}
	var path []*Rule
	var walk func(n *Rule) []*Rule
	walk = func(n *Rule) []*Rule {
		if i := slices.Index(path, n); i >= 0 {
			return append(slices.Clone(path[i:]), n)
		}
		if len(path) >= maxLoopDepth {
			return nil
		}
		path = append(path, n)
		defer func() { path = path[:len(path)-1] }()
		for _, next := range graph {
			if triggers(n, next) {
				if c := walk(next); c != nil {
					return c
				}
			}
		}
		return nil
	}
	return walk(r)
}

// triggers reports an edge a → b.
func triggers(a, b *Rule) bool {
	pins := b.SensorPins()
	for _, t := range a.Targets(true) {
		if slices.Contains(pins, t) {
			return true
		}
	}
	return false
}

func chainText(chain []*Rule) string {
	names := make([]string, len(chain))
	for i, r := range chain {
		names[i] = fmt.Sprintf("%q", r.Name)
	}
	return strings.Join(names, " → ")
}

// duplicateOf finds another rule with the same conditions and actions.
func duplicateOf(r *Rule, others []Rule) *Rule {
	mine, err := json.Marshal([]any{r.LogicOperator, r.Conditions, r.Actions})
	if err != nil {
		return nil
	}
	for i := range others {
		o := &others[i]
		if o.ID == r.ID {
			continue
		}
		theirs, err := json.Marshal([]any{o.LogicOperator, o.Conditions, o.Actions})
		if err == nil && string(theirs) == string(mine) {
			return o
		}
	}
	return nil
}

// Leaf is a leaf condition with its path.
type Leaf struct {
	Path      string
	Condition Condition
}

// Leaves lists the rule's leaf conditions in document order.
func (r *Rule) Leaves() []Leaf {
	var out []Leaf
	var walk func(prefix string, cs []Condition)
	walk = func(prefix string, cs []Condition) {
		for i, c := range cs {
			p := prefix + strconv.Itoa(i)
			if c.Compound != nil {
				walk(p+".", c.Compound.Conditions)
				continue
			}
			out = append(out, Leaf{Path: p, Condition: c})
		}
	}
	walk("", r.Conditions)
	return out
}

// sensor returns the sensor a triggering leaf reads (docs/domain.md §6.6:
// threshold and hysteresis leaves).
func (c Condition) sensor() (SensorRef, bool) {
	switch {
	case c.Threshold != nil:
		return c.Threshold.SensorRef, true
	case c.Hysteresis != nil:
		return c.Hysteresis.SensorRef, true
	}
	return SensorRef{}, false
}

// Sensors lists the sensors of the rule's triggering leaves.
func (r *Rule) Sensors() []SensorRef {
	var out []SensorRef
	for _, l := range r.Leaves() {
		if s, ok := l.Condition.sensor(); ok && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// SensorPins lists the pins of the rule's triggering leaves.
func (r *Rule) SensorPins() []Target {
	var out []Target
	for _, s := range r.Sensors() {
		if t := (Target{EspID: s.EspID, GPIO: s.GPIO}); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// HasTimeLeaf reports a time window leaf (the timer trigger's rules,
// docs/domain.md §6.6).
func (r *Rule) HasTimeLeaf() bool {
	for _, l := range r.Leaves() {
		if l.Condition.Window != nil {
			return true
		}
	}
	return false
}

// HasHysteresis reports a hysteresis leaf.
func (r *Rule) HasHysteresis() bool {
	for _, l := range r.Leaves() {
		if l.Condition.Hysteresis != nil {
			return true
		}
	}
	return false
}

// Targets lists the actuators of the rule's command actions in order,
// with those of sequence steps when steps is set.
func (r *Rule) Targets(steps bool) []Target {
	var out []Target
	add := func(t Target) {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	for _, a := range r.Actions {
		if a.Command != nil {
			add(a.Command.Target)
		}
		if a.Sequence == nil || !steps {
			continue
		}
		for _, st := range a.Sequence.Steps {
			if st.Action != nil && st.Action.Command != nil {
				add(st.Action.Command.Target)
			}
		}
	}
	return out
}

// Devices lists every device the rule reads or drives (the reconnect
// trigger's match, docs/domain.md §6.6).
func (r *Rule) Devices() []string {
	var out []string
	add := func(id string) {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	for _, s := range r.Sensors() {
		add(s.EspID)
	}
	for _, t := range r.Targets(true) {
		add(t.EspID)
	}
	return out
}
