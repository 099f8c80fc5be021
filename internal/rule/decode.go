package rule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/sensor/processor"
)

// Issue is one finding in a rule document, located by its path from the
// document root (docs/domain.md §6.10: every error is reported).
type Issue struct {
	Loc     []any  `json:"loc"` // field names and list indexes
	Code    string `json:"type"`
	Message string `json:"msg"`
}

// Path is the location written with dots: "conditions.1.gpio".
func (i Issue) Path() string {
	parts := make([]string, len(i.Loc))
	for k, p := range i.Loc {
		parts[k] = fmt.Sprint(p)
	}
	return strings.Join(parts, ".")
}

func (i Issue) Error() string { return i.Path() + ": " + i.Message }

// Issue codes.
const (
	CodeMissing      = "missing"
	CodeType         = "type_error"
	CodeRange        = "out_of_range"
	CodeUnknownType  = "unknown_type"
	CodeInconsistent = "inconsistent"
	CodeTimezone     = "unknown_timezone"
	CodeTooDeep      = "too_deep"
	CodeTooMany      = "too_many"
	CodeNotFound     = "not_found"
	CodeLoop         = "loop"
	CodeDuplicate    = "duplicate"
	CodeEnum         = "enum"
	CodeFormat       = "format"
)

// object reads the fields of one JSON object, recording every problem
// under its path instead of stopping at the first.
type object struct {
	raw    map[string]json.RawMessage
	loc    []any
	issues *[]Issue
}

func (o object) at(name any) []any { return append(slices.Clip(o.loc), name) }

// fail records an issue at field name of o (nil: at o itself), or, with
// more names, at the path o.name.more….
func (o object) fail(name any, code, format string, args ...any) {
	loc := o.loc
	if name != nil {
		loc = o.at(name)
	}
	o.failAt(loc, code, format, args...)
}

func (o object) failAt(loc []any, code, format string, args ...any) {
	*o.issues = append(*o.issues, Issue{Loc: slices.Clip(loc), Code: code, Message: fmt.Sprintf(format, args...)})
}

// openObject decodes raw as an object; a non-object is an issue at loc.
func openObject(raw json.RawMessage, loc []any, issues *[]Issue) (object, bool) {
	o := object{loc: slices.Clip(loc), issues: issues}
	if err := json.Unmarshal(raw, &o.raw); err != nil || o.raw == nil {
		o.fail(nil, CodeType, "must be an object")
		return o, false
	}
	return o, true
}

// has reports a field that is present and not null.
func (o object) has(name string) bool {
	v, ok := o.raw[name]
	return ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

func (o object) str(name string, maxLen int) (string, bool) {
	if !o.has(name) {
		return "", false
	}
	var s string
	if err := json.Unmarshal(o.raw[name], &s); err != nil {
		o.fail(name, CodeType, "must be a string")
		return "", false
	}
	s = strings.TrimSpace(s)
	if maxLen > 0 && len(s) > maxLen {
		o.fail(name, CodeRange, "at most %d characters", maxLen)
		return "", false
	}
	return s, true
}

func (o object) number(name string) (float64, bool) {
	if !o.has(name) {
		return 0, false
	}
	var v float64
	if err := json.Unmarshal(o.raw[name], &v); err != nil {
		o.fail(name, CodeType, "must be a number")
		return 0, false
	}
	return v, true
}

// numberIn reads a number within [lo, hi].
func (o object) numberIn(name string, lo, hi float64) (float64, bool) {
	v, ok := o.number(name)
	if ok && (v < lo || v > hi) {
		o.fail(name, CodeRange, "must be %g–%g", lo, hi)
		return 0, false
	}
	return v, ok
}

// integer reads an integral number (34 or 34.0) within [lo, hi].
func (o object) integer(name string, lo, hi int) (int, bool) {
	v, ok := o.number(name)
	if !ok {
		return 0, false
	}
	return o.integral(name, v, lo, hi)
}

func (o object) integral(name string, v float64, lo, hi int) (int, bool) {
	if v != math.Trunc(v) {
		o.fail(name, CodeType, "must be an integer")
		return 0, false
	}
	if v < float64(lo) || v > float64(hi) {
		o.fail(name, CodeRange, "must be %d–%d", lo, hi)
		return 0, false
	}
	return int(v), true
}

// gpio reads a pin that may be written as a number or a numeric string
// (docs/domain.md §0: "34" equals 34).
func (o object) gpio(name string) (int, bool) {
	if !o.has(name) {
		o.fail(name, CodeMissing, "required")
		return 0, false
	}
	var s string
	if json.Unmarshal(o.raw[name], &s) == nil {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			o.fail(name, CodeType, "must be a pin number")
			return 0, false
		}
		return o.integral(name, v, 0, 39)
	}
	return o.integer(name, 0, 39)
}

func (o object) boolean(name string) (bool, bool) {
	if !o.has(name) {
		return false, false
	}
	var b bool
	if err := json.Unmarshal(o.raw[name], &b); err != nil {
		o.fail(name, CodeType, "must be true or false")
		return false, false
	}
	return b, true
}

// list reads an array of lo–hi items.
func (o object) list(name string, lo, hi int) ([]json.RawMessage, bool) {
	if !o.has(name) {
		if lo > 0 {
			o.fail(name, CodeMissing, "required")
		}
		return nil, false
	}
	var items []json.RawMessage
	if err := json.Unmarshal(o.raw[name], &items); err != nil {
		o.fail(name, CodeType, "must be a list")
		return nil, false
	}
	if len(items) < lo || len(items) > hi {
		o.fail(name, CodeRange, "must have %d–%d items", lo, hi)
	}
	return items, true
}

// required reports a missing field.
func (o object) required(names ...string) bool {
	ok := true
	for _, n := range names {
		if !o.has(n) {
			o.fail(n, CodeMissing, "required")
			ok = false
		}
	}
	return ok
}

// enum reads a string from a set after fold (nil: as written).
func (o object) enum(name string, def string, fold func(string) string, allowed ...string) string {
	s, ok := o.str(name, 0)
	if !ok {
		return def
	}
	if fold != nil {
		s = fold(s)
	}
	if !slices.Contains(allowed, s) {
		o.fail(name, CodeEnum, "must be one of %s", strings.Join(allowed, ", "))
		return def
	}
	return s
}

// Document limits (docs/domain.md §6.1, §6.3.4, §6.5).
const (
	maxConditions = 10
	maxActions    = 10
	maxDepth      = 3
	maxLeaves     = 20
	maxSteps      = 50
)

// Decode reads a whole rule document (docs/api.md §10.2), filling the
// defaults of docs/domain.md §6.1. Every problem of the document comes back
// as an issue; the rule is usable only when there are none. Existence of
// targets and loops need the other rules: see Check.
func Decode(data []byte) (Rule, []Issue) {
	var issues []Issue
	r := Rule{
		Enabled:         true,
		Priority:        DefaultPriority,
		LogicOperator:   DefaultLogic,
		CooldownSeconds: DefaultCooldown,
	}
	o, ok := openObject(data, nil, &issues)
	if !ok {
		return r, issues
	}
	decodeHeader(o, &r)
	r.Conditions = decodeConditionList(o, "conditions", 1)
	r.Actions = decodeActions(o)
	if n := countLeaves(r.Conditions); n > maxLeaves {
		o.fail("conditions", CodeTooMany, "%d leaf conditions; at most %d per rule", n, maxLeaves)
	}
	return r, issues
}

func decodeHeader(o object, r *Rule) {
	if o.required("name") {
		if name, ok := o.str("name", 0); ok {
			if n := len([]rune(name)); n < 3 || n > 100 {
				o.fail("name", CodeRange, "must be 3–100 characters")
			}
			r.Name = name
		}
	}
	if d, ok := o.str("description", 500); ok {
		r.Description = &d
	}
	if b, ok := o.boolean("enabled"); ok {
		r.Enabled = b
	}
	if p, ok := o.integer("priority", 1, 100); ok {
		r.Priority = p
	}
	r.LogicOperator = o.enum("logic_operator", DefaultLogic, strings.ToUpper, "AND", "OR")
	if c, ok := o.integer("cooldown_seconds", 0, 86400); ok {
		r.CooldownSeconds = c
	}
	if m, ok := o.integer("max_executions_per_hour", 1, 60); ok {
		r.MaxExecutionsPerHour = &m
	}
}

// decodeConditionList reads the list field name of o; depth 1 is the rule's
// own list, and a compound at depth d holds members at depth d+1.
func decodeConditionList(o object, name string, depth int) []Condition {
	items, ok := o.list(name, 1, maxConditions)
	if !ok {
		return nil
	}
	out := make([]Condition, 0, len(items))
	for i, raw := range items {
		c, ok := decodeCondition(o.child(name, i, raw), depth)
		if ok {
			out = append(out, c)
		}
	}
	if len(out) != len(items) {
		return nil
	}
	return out
}

// child opens the object at list item name[i].
func (o object) child(name string, i int, raw json.RawMessage) *object {
	c, ok := openObject(raw, append(o.at(name), i), o.issues)
	if !ok {
		return nil
	}
	return &c
}

func decodeCondition(o *object, depth int) (Condition, bool) {
	if o == nil {
		return Condition{}, false
	}
	typ, _ := o.str("type", 0)
	kind := Canonical(strings.ToLower(typ))
	if typ == "" && o.has("logic") && o.has("conditions") {
		kind = TypeCompound
	}
	before := len(*o.issues)
	c := Condition{Type: typ}
	switch kind {
	case TypeThreshold:
		c.Threshold = decodeThreshold(*o)
	case TypeTime:
		c.Window = decodeWindow(*o)
	case TypeHysteresis:
		c.Hysteresis = decodeHysteresis(*o)
	case TypeCompound:
		if depth > maxDepth {
			o.fail(nil, CodeTooDeep, "compound conditions nest at most %d levels", maxDepth)
			return c, false
		}
		c.Compound = &Compound{
			Logic:      o.enum("logic", DefaultLogic, strings.ToUpper, "AND", "OR"),
			Conditions: decodeConditionList(*o, "conditions", depth+1),
		}
		o.required("logic")
	case "":
		if typ == "" {
			o.fail("type", CodeMissing, "required")
		} else {
			o.fail("type", CodeUnknownType, "unknown condition type %q", typ)
		}
	default:
		o.fail("type", CodeUnknownType, "%q is not a condition type", typ)
	}
	return c, len(*o.issues) == before && c.Kind() != ""
}

// sensorRef reads the device, pin and optional type a leaf reads.
func sensorRef(o object) SensorRef {
	var s SensorRef
	if o.required("esp_id") {
		s.EspID = espID(o, "esp_id")
	}
	s.GPIO, _ = o.gpio("gpio")
	if t, ok := o.str("sensor_type", 50); ok && t != "" {
		s.SensorType, _ = processor.NormaliseType(t)
	}
	return s
}

// espID reads a device id (docs/domain.md §0).
func espID(o object, name string) string {
	id, ok := o.str(name, 0)
	if ok && !espIDPattern.MatchString(id) {
		o.fail(name, CodeFormat, "device ids are 1–31 characters of A–Z, a–z, 0–9, _ and -")
	}
	return id
}

var espIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,31}$`)

// Threshold operators.
var operators = []string{">", ">=", "<", "<=", "==", "!=", "between"}

func decodeThreshold(o object) *Threshold {
	t := &Threshold{SensorRef: sensorRef(o)}
	if o.required("operator") {
		t.Operator = o.enum("operator", "", nil, operators...)
	}
	if t.Operator == "between" {
		if o.required("min", "max") {
			lo, ok1 := o.number("min")
			hi, ok2 := o.number("max")
			if ok1 && ok2 {
				if lo > hi {
					lo, hi = hi, lo
				}
				t.Min, t.Max = &lo, &hi
			}
		}
	} else if t.Operator != "" && o.required("value") {
		if v, ok := o.number("value"); ok {
			t.Value = &v
		}
	}
	if a, ok := o.integer("max_age_seconds", 1, 7*86400); ok {
		t.MaxAgeSeconds = &a
	}
	return t
}

// decodeWindow reads a time window (docs/domain.md §6.3.2).
func decodeWindow(o object) *Window {
	w := &Window{
		Start: windowEdge(o, "start", 0),
		End:   windowEdge(o, "end", 24*60),
	}
	if w.Start == w.End {
		o.fail("end_time", CodeInconsistent, "start and end are the same time; the window would be empty")
	}
	if tz, ok := o.str("timezone", 64); ok && tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil || tz == "Local" {
			o.fail("timezone", CodeTimezone, "unknown time zone %q (an IANA name such as Europe/Berlin)", tz)
		} else {
			w.Timezone, w.loc = tz, loc
		}
	}
	w.Days = weekdays(o)
	return w
}

// windowEdge reads one end of a window as minutes of the day, from
// {edge}_time "HH:MM" or {edge}_hour and {edge}_minute; both forms must
// agree when both are given.
func windowEdge(o object, edge string, def int) int {
	maxHour := 23
	if edge == "end" {
		maxHour = 24
	}
	fromClock, okClock := clockField(o, edge+"_time", maxHour)
	h, okH := o.integer(edge+"_hour", 0, maxHour)
	m, okM := o.integer(edge+"_minute", 0, 59)
	if okM && !okH && !o.has(edge+"_hour") {
		o.fail(edge+"_hour", CodeMissing, "required with %s_minute", edge)
	}
	fromParts := h*60 + m
	if okH && h == 24 && m != 0 {
		o.fail(edge+"_minute", CodeRange, "24:MM is allowed only as 24:00")
	}
	switch {
	case okClock && okH && fromClock != fromParts:
		o.fail(edge+"_time", CodeInconsistent, "%s_time and %s_hour/%s_minute disagree", edge, edge, edge)
		return fromClock
	case okClock:
		return fromClock
	case okH:
		return fromParts
	}
	return def
}

// clockField reads "HH:MM".
func clockField(o object, name string, maxHour int) (int, bool) {
	s, ok := o.str(name, 0)
	if !ok {
		return 0, false
	}
	hs, ms, found := strings.Cut(s, ":")
	h, err1 := strconv.Atoi(hs)
	m, err2 := strconv.Atoi(ms)
	switch {
	case !found || err1 != nil || err2 != nil || len(hs) != 2 || len(ms) != 2:
		o.fail(name, CodeFormat, `must be "HH:MM"`)
	case h < 0 || h > maxHour || m < 0 || m > 59 || (h == 24 && m != 0):
		latest := "23:59"
		if maxHour == 24 {
			latest = "24:00"
		}
		o.fail(name, CodeRange, "must be 00:00–%s", latest)
	default:
		return h*60 + m, true
	}
	return 0, false
}

// weekdays reads days_of_week: distinct 0–6, sorted; absent means every day.
func weekdays(o object) []int {
	items, ok := o.list("days_of_week", 0, 7)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		o.fail("days_of_week", CodeRange, "must list at least one day (0 = Monday … 6 = Sunday), or be left out")
		return nil
	}
	var days []int
	for i, raw := range items {
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil || v != math.Trunc(v) || v < 0 || v > 6 {
			o.failAt(append(o.at("days_of_week"), i), CodeRange, "days are 0–6, 0 = Monday … 6 = Sunday")
			continue
		}
		if !slices.Contains(days, int(v)) {
			days = append(days, int(v))
		}
	}
	slices.Sort(days)
	return days
}

func decodeHysteresis(o object) *Hysteresis {
	h := &Hysteresis{SensorRef: sensorRef(o)}
	num := func(name string) *float64 {
		if v, ok := o.number(name); ok {
			return &v
		}
		return nil
	}
	cooling := o.has("activate_above") || o.has("deactivate_below")
	heating := o.has("activate_below") || o.has("deactivate_above")
	switch {
	case cooling && heating:
		o.fail(nil, CodeInconsistent, "either activate_above + deactivate_below (cooling) or activate_below + deactivate_above (heating), not both")
	case cooling:
		if o.required("activate_above", "deactivate_below") {
			h.ActivateAbove, h.DeactivateBelow = num("activate_above"), num("deactivate_below")
			if h.ActivateAbove != nil && h.DeactivateBelow != nil && *h.ActivateAbove <= *h.DeactivateBelow {
				o.fail("deactivate_below", CodeInconsistent, "activate_above must be greater than deactivate_below")
			}
		}
	case heating:
		if o.required("activate_below", "deactivate_above") {
			h.ActivateBelow, h.DeactivateAbove = num("activate_below"), num("deactivate_above")
			if h.ActivateBelow != nil && h.DeactivateAbove != nil && *h.DeactivateAbove <= *h.ActivateBelow {
				o.fail("deactivate_above", CodeInconsistent, "deactivate_above must be greater than activate_below")
			}
		}
	default:
		o.fail(nil, CodeMissing, "needs activate_above + deactivate_below (cooling) or activate_below + deactivate_above (heating)")
	}
	return h
}

func decodeActions(o object) []Action {
	items, ok := o.list("actions", 1, maxActions)
	if !ok {
		return nil
	}
	out := make([]Action, 0, len(items))
	for i, raw := range items {
		if a, ok := decodeAction(o.child("actions", i, raw), true); ok {
			out = append(out, a)
		}
	}
	if len(out) != len(items) {
		return nil
	}
	return out
}

// decodeAction reads one action; topLevel is false for a sequence step's
// action, which may only be a command or a notification (docs/domain.md §6.5).
func decodeAction(o *object, topLevel bool) (Action, bool) {
	if o == nil {
		return Action{}, false
	}
	before := len(*o.issues)
	typ, _ := o.str("type", 0)
	kind := Canonical(strings.ToLower(typ))
	a := Action{Type: typ}
	if !topLevel && (kind == TypeDelay || kind == TypeSequence) {
		o.fail("type", CodeInconsistent, "a sequence step's action is an actuator_command or a notification")
		return a, false
	}
	switch kind {
	case TypeCommand:
		a.Command = decodeCommand(*o)
	case TypeDelay:
		if o.required("seconds") {
			s, _ := o.integer("seconds", 1, 3600)
			a.Delay = &Delay{Seconds: s}
		}
	case TypeNotification:
		a.Notification = decodeNotification(*o)
	case TypeSequence:
		a.Sequence = decodeSequence(*o)
	case TypeThreshold, TypeTime, TypeHysteresis, TypeCompound:
		o.fail("type", CodeUnknownType, "%q is a condition type, not an action type", typ)
	default:
		if typ == "" {
			o.fail("type", CodeMissing, "required")
		} else {
			o.fail("type", CodeUnknownType, "%q is not an action type", typ)
		}
	}
	return a, len(*o.issues) == before && a.Kind() != ""
}

// Actuator commands (docs/domain.md §4.3).
var commands = []string{"ON", "OFF", "PWM", "TOGGLE"}

func decodeCommand(o object) *Command {
	c := &Command{Command: "ON", Value: 1.0}
	if o.required("esp_id") {
		c.EspID = espID(o, "esp_id")
	}
	c.GPIO, _ = o.gpio("gpio")
	c.Command = o.enum("command", "ON", strings.ToUpper, commands...)
	if v, ok := o.number("value"); ok {
		if v < 0 || v > 1 {
			o.fail("value", CodeRange, "values are 0.0–1.0, not 0–255")
		} else {
			c.Value = v
		}
	}
	d1, ok1 := o.integer("duration_seconds", 0, 86400)
	d2, ok2 := o.integer("duration", 0, 86400)
	switch {
	case ok1 && ok2 && d1 != d2:
		o.fail("duration", CodeInconsistent, "duration and duration_seconds disagree")
	case ok1:
		c.DurationSeconds = d1
	case ok2:
		c.DurationSeconds = d2
	}
	c.IsSafetyCritical, _ = o.boolean("is_safety_critical")
	return c
}

var severities = []string{"info", "warning", "critical"}

func decodeNotification(o object) *Notification {
	n := &Notification{Severity: "info"}
	if o.required("channel") {
		n.Channel = o.enum("channel", "", strings.ToLower, ChannelWebSocket, ChannelEmail, ChannelWebhook)
	}
	if o.required("target") {
		n.Target, _ = o.str("target", 500)
		checkRecipient(o, n)
	}
	if o.required("message_template") {
		n.MessageTemplate, _ = o.str("message_template", 1000)
	}
	n.Severity = o.enum("severity", "info", strings.ToLower, severities...)
	return n
}

var emailPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

// checkRecipient checks a notification target against its channel
// (docs/api.md §10.2); allowed webhook hosts are the engine's setting.
func checkRecipient(o object, n *Notification) {
	switch {
	case n.Target == "":
		o.fail("target", CodeMissing, "required")
	case n.Channel == ChannelWebhook:
		u, err := url.Parse(n.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			o.fail("target", CodeFormat, "webhook targets are http or https URLs")
		}
	case n.Channel == ChannelEmail:
		if !emailPattern.MatchString(n.Target) {
			o.fail("target", CodeFormat, "email targets are email addresses")
		}
	}
}

func decodeSequence(o object) *Sequence {
	s := &Sequence{AbortOnFailure: true, MaxDurationSeconds: 3600}
	s.SequenceID, _ = o.str("sequence_id", 100)
	s.Description, _ = o.str("description", 500)
	if b, ok := o.boolean("abort_on_failure"); ok {
		s.AbortOnFailure = b
	}
	if d, ok := o.integer("max_duration_seconds", 1, 3600); ok {
		s.MaxDurationSeconds = d
	}
	items, ok := o.list("steps", 1, maxSteps)
	if !ok {
		return s
	}
	for i, raw := range items {
		if st := o.child("steps", i, raw); st != nil {
			s.Steps = append(s.Steps, decodeStep(*st))
		}
	}
	return s
}

func decodeStep(o object) Step {
	st := Step{TimeoutSeconds: 30, RetryDelaySeconds: 1.0}
	st.Name, _ = o.str("name", 100)
	if d, ok := o.integer("delay_seconds", 0, 3600); ok {
		st.DelaySeconds = &d
	}
	st.DelayBeforeSeconds, _ = o.integer("delay_before_seconds", 0, 3600)
	st.DelayAfterSeconds, _ = o.integer("delay_after_seconds", 0, 3600)
	if t, ok := o.integer("timeout_seconds", 1, 300); ok {
		st.TimeoutSeconds = t
	}
	st.RetryCount, _ = o.integer("retry_count", 0, 3)
	if d, ok := o.numberIn("retry_delay_seconds", 0, 60); ok {
		st.RetryDelaySeconds = d
	}
	if o.has("on_failure") {
		st.OnFailure = o.enum("on_failure", "", strings.ToLower, "abort", "continue")
	}
	switch {
	case o.has("action") && o.has("delay_seconds"):
		o.fail("delay_seconds", CodeInconsistent, "a step has an action or delay_seconds, not both")
	case o.has("action"):
		if child, ok := openObject(o.raw["action"], o.at("action"), o.issues); ok {
			if a, ok := decodeAction(&child, false); ok {
				st.Action = &a
			}
		}
	case !o.has("delay_seconds"):
		o.fail("action", CodeMissing, "a step needs an action or delay_seconds")
	}
	return st
}

func countLeaves(cs []Condition) int {
	n := 0
	for _, c := range cs {
		if c.Compound != nil {
			n += countLeaves(c.Compound.Conditions)
		} else {
			n++
		}
	}
	return n
}
