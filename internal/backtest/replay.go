package backtest

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/store"
)

// replay is one backtest's state: the replay clock and everything the
// live engine keeps for a rule, in memory.
type replay struct {
	s       *Service
	r       *rule.Rule
	req     Request
	streams []*stream
	now     time.Time

	hyst          map[string]rule.HysteresisState
	latest        map[int64]store.Sample // newest stored value per series
	keys          map[int64]store.SeriesKey
	refs          map[rule.SensorRef][]int64
	maxAge        map[int64]time.Duration
	lastTriggered *time.Time
	runs          []time.Time // starts of gate 6 in the trailing hour
	limits        *rule.RateLimits
	cont          *continuation

	agenda  agenda
	outputs map[rule.Target]*output
	byKey   map[string]*output
	order   []rule.Target
	seqs    map[string]*seqRun

	firings   []*Firing
	truncated bool
	sum       Summary
	notes     map[noteKey]*Warning
	noteOrder []noteKey
}

type noteKey struct{ code, target string }

func newReplay(s *Service, r *rule.Rule, req Request, streams []*stream) *replay {
	p := &replay{
		s:       s,
		r:       r,
		req:     req,
		streams: streams,
		now:     req.Start,
		hyst:    map[string]rule.HysteresisState{},
		latest:  map[int64]store.Sample{},
		keys:    map[int64]store.SeriesKey{},
		refs:    map[rule.SensorRef][]int64{},
		maxAge:  map[int64]time.Duration{},
		limits:  rule.NewRateLimits(),
		outputs: map[rule.Target]*output{},
		byKey:   map[string]*output{},
		seqs:    map[string]*seqRun{},
		notes:   map[noteKey]*Warning{},
	}
	for _, st := range streams {
		p.keys[st.series] = st.key
		for _, ref := range r.Sensors() {
			if matches(ref, st.key) {
				p.refs[ref] = append(p.refs[ref], st.series)
			}
		}
	}
	for _, t := range r.Targets(true) {
		p.output(t)
	}
	return p
}

// output is the replayed state of target t.
func (p *replay) output(t rule.Target) *output {
	o := p.outputs[t]
	if o == nil {
		o = newOutput(t, p.s.d.Actuators)
		p.outputs[t] = o
		p.byKey[t.Key()] = o
		p.order = append(p.order, t)
		if !o.configured {
			p.note(WarnNoConfig, t.Key())
		}
	}
	return o
}

// note counts one occurrence of a warning.
func (p *replay) note(code, target string) {
	k := noteKey{code, target}
	w := p.notes[k]
	if w == nil {
		at := p.now
		w = &Warning{Code: code, Target: target, FirstAt: &at}
		p.notes[k] = w
		p.noteOrder = append(p.noteOrder, k)
	}
	w.Count++
}

// schedule runs fn at the replay time at.
func (p *replay) schedule(at time.Time, fn func()) { p.agenda.add(at, fn) }

// What runs next at one instant: scheduled work, then a reading, then
// the timer.
const (
	nextNone = iota
	nextAgenda
	nextSample
	nextTimer
)

// run replays [Start, End) in time order.
func (p *replay) run(ctx context.Context) error {
	interval := p.s.opt.TimerInterval
	tick := p.firstTick()
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		st, x, err := p.nextSample(ctx)
		if err != nil {
			return err
		}
		kind, at := p.pick(x, tick)
		if kind == nextNone {
			break
		}
		p.now = at
		switch kind {
		case nextAgenda:
			p.agenda.pop()()
		case nextSample:
			st.pos++
			if err := p.sample(st, *x); err != nil {
				return err
			}
		case nextTimer:
			tick = tick.Add(interval)
			p.sum.TimerTriggers++
			p.evaluate(rule.Trigger{Kind: rule.TriggerTimer})
		}
	}
	p.now = p.req.End
	return nil
}

// firstTick is the timer's first run in the range, at a multiple of its
// interval since the epoch; zero for a rule without a time leaf (the
// timer does not evaluate it).
func (p *replay) firstTick() time.Time {
	if !p.r.HasTimeLeaf() {
		return time.Time{}
	}
	step := p.s.opt.TimerInterval.Milliseconds()
	return time.UnixMilli((p.req.Start.UnixMilli() + step - 1) / step * step).UTC()
}

// pick chooses what runs next, before the range end: scheduled work, then
// the next stored value x, then the timer's tick.
func (p *replay) pick(x *store.Sample, tick time.Time) (int, time.Time) {
	end := p.req.End
	kind, at := nextNone, end
	if x != nil {
		kind, at = nextSample, time.UnixMilli(x.TS).UTC()
	}
	if !tick.IsZero() && (kind == nextNone || tick.Before(at)) {
		kind, at = nextTimer, tick
	}
	if a, ok := p.agenda.next(); ok && (kind == nextNone || !a.After(at)) {
		kind, at = nextAgenda, a
	}
	if !at.Before(end) {
		return nextNone, end
	}
	return kind, at
}

// nextSample is the oldest next value over all streams (ties by series id).
func (p *replay) nextSample(ctx context.Context) (*stream, *store.Sample, error) {
	var best *stream
	var bx *store.Sample
	for _, st := range p.streams {
		x, err := st.peek(ctx, p.s.d.History)
		if err != nil {
			return nil, nil, err
		}
		if x != nil && (bx == nil || x.TS < bx.TS) {
			best, bx = st, x
		}
	}
	return best, bx, nil
}

// sample stores one value as the newest of its series and, when usable
// (docs/domain.md §2.2), triggers the rule with it.
func (p *replay) sample(st *stream, x store.Sample) error {
	p.sum.Samples++
	st.src.Samples++
	if p.sum.Samples > MaxSamples {
		return &LimitError{Msg: fmt.Sprintf(
			"the range holds more than %d stored values of the rule's sensors; replay a shorter range", MaxSamples)}
	}
	p.latest[st.series] = x
	if !usable(x) {
		return nil
	}
	p.sum.SensorTriggers++
	p.evaluate(rule.SensorTrigger(st.key.EspID, st.key.GPIO, st.key.SensorType, *x.Value, p.now))
	return nil
}

func usable(x store.Sample) bool {
	return x.Value != nil && x.Quality != "error" && x.Quality != "suspect"
}

// evaluate is the engine's run of one rule for one trigger, gated in the
// order of docs/domain.md §6.7; the conflict locks (gate 5) are not replayed.
func (p *replay) evaluate(trig rule.Trigger) {
	res := rule.Evaluate(p.r, rule.Context{
		Now:     p.now,
		Trigger: trig,
		Zone:    p.s.opt.Zone,
		Data:    data{p},
		States:  states(p.hyst),
	})
	for _, c := range res.Changes {
		p.hyst[c.Path] = c.After
	}
	if res.Deactivated() {
		p.hysteresisOff(trig, res.Leaves)
		return
	}
	if !res.Matched {
		return
	}
	p.sum.Matched++
	switch {
	case p.cont != nil:
		p.sum.AlreadyRunning++
		p.note(WarnRunning, "")
	case p.inCooldown():
		p.sum.Cooldown++
		p.note(WarnCooldown, "")
	case !p.admit():
		p.sum.RateLimited++
		p.note(WarnRateLimited, "")
	default:
		p.fire(trig, res.Leaves)
	}
}

// inCooldown is gate 3; no replayed trigger bypasses it.
func (p *replay) inCooldown() bool {
	cd := time.Duration(p.r.CooldownSeconds) * time.Second
	return cd > 0 && p.lastTriggered != nil && p.now.Sub(*p.lastTriggered) <= cd
}

// admit is gate 4 (docs/domain.md §6.9).
func (p *replay) admit() bool {
	hour := p.now.Add(-time.Hour)
	keep := p.runs[:0]
	for _, t := range p.runs {
		if t.After(hour) {
			keep = append(keep, t)
		}
	}
	p.runs = keep
	if m := p.r.MaxExecutionsPerHour; m != nil && len(p.runs) >= *m {
		return false
	}
	var devices []string
	for _, t := range p.r.Targets(true) {
		if !slices.Contains(devices, t.EspID) {
			devices = append(devices, t.EspID)
		}
	}
	return p.limits.Take(p.now, devices)
}

// fire is gate 6: the actions run and last_triggered is now.
func (p *replay) fire(trig rule.Trigger, leaves []rule.LeafResult) {
	p.runs = append(p.runs, p.now)
	at := p.now
	p.lastTriggered = &at
	p.sum.Firings++
	f := p.record(KindFired, trig, leaves)
	p.runActions(f, 0, &run{trigger: trig})
}

// record lists a firing, up to MaxFirings; nil past them (the replay and
// its counts go on).
func (p *replay) record(kind string, trig rule.Trigger, leaves []rule.LeafResult) *Firing {
	if len(p.firings) >= MaxFirings {
		if !p.truncated {
			p.truncated = true
			p.note(WarnTruncated, "")
		}
		return nil
	}
	f := &Firing{
		At:         p.now,
		Kind:       kind,
		Trigger:    trig,
		Conditions: leaves,
	}
	p.firings = append(p.firings, f)
	return f
}

// add appends an action outcome to f and returns its position (-1 when f
// is not listed).
func (f *Firing) add(a ActionOutcome) int {
	if f == nil {
		return -1
	}
	f.Actions = append(f.Actions, a)
	return len(f.Actions) - 1
}

// run is what an action list carries across its delays: its trigger and
// the actuators it switched on and did not switch off again.
type run struct {
	trigger    rule.Trigger
	switchedOn []rule.Target
}

func (r *run) switched(t rule.Target, on bool) {
	for i, x := range r.switchedOn {
		if x == t {
			if !on {
				r.switchedOn = append(r.switchedOn[:i], r.switchedOn[i+1:]...)
			}
			return
		}
	}
	if on {
		r.switchedOn = append(r.switchedOn, t)
	}
}

// runActions runs the actions from index from in list order until the end
// or a delay (docs/domain.md §6.4); it reports whether one of them failed.
func (p *replay) runActions(f *Firing, from int, ru *run) (failed bool) {
	for i := from; i < len(p.r.Actions); i++ {
		a := p.r.Actions[i]
		switch {
		case a.Delay != nil:
			p.suspend(f, i, ru)
			return failed
		case a.Command != nil:
			if !p.command(f, i, a.Command, ru) {
				failed = true
			}
		case a.Notification != nil:
			n := a.Notification
			f.add(ActionOutcome{
				At:      p.now,
				Index:   i,
				Type:    rule.TypeNotification,
				Target:  n.Channel + ":" + n.Target,
				Status:  StatusSucceeded,
				Message: "would be sent (" + n.Severity + ")",
			})
		case a.Sequence != nil:
			p.startSequence(f, i, a.Sequence, ru.trigger)
		}
	}
	return failed
}

// command is one actuator command action; it reports whether the command
// passed (or was skipped as unchanged).
func (p *replay) command(f *Firing, i int, c *rule.Command, ru *run) bool {
	o := p.output(c.Target)
	out := p.outcome(i, rule.TypeCommand, c.Target.Key())
	if ru.trigger.Kind == rule.TriggerTimer {
		if why, same := o.unchanged(c, p.now, p.s.opt.TimerInterval); same {
			o.stats.NoChange++
			out.Status, out.Message = StatusNoChange, why
			f.add(out)
			return true
		}
	}
	v := o.command(p, c.Command, c.Value, c.DurationSeconds)
	fill(&out, v)
	if v.accepted {
		ru.switched(c.Target, v.cmd != "OFF")
	}
	f.add(out)
	return v.accepted
}

// outcome starts an action result at the replay time; index -1 is an
// action outside the rule's list (a cleanup OFF, a sequence step).
func (p *replay) outcome(index int, typ, target string) ActionOutcome {
	return ActionOutcome{At: p.now, Index: index, Type: typ, Target: target}
}

// fill copies a verdict into an outcome.
func fill(out *ActionOutcome, v verdict) {
	out.Command = v.cmd
	if v.cmd != "OFF" {
		val := v.value
		out.Value = &val
	}
	out.DurationSeconds, out.AutoOffAt = v.duration, v.autoOffAt
	if !v.accepted {
		out.Status, out.Code, out.Message = StatusBlocked, v.code, v.msg
		return
	}
	out.Status = StatusSucceeded
}

// hysteresisOff is a deactivation edge (docs/domain.md §6.3.3): OFF to
// every target of the rule's command actions, bypassing cooldown and rate
// limits; a pending delay continuation ends.
func (p *replay) hysteresisOff(trig rule.Trigger, leaves []rule.LeafResult) {
	p.sum.HysteresisOffs++
	p.cancel("hysteresis_off", false)
	trig.Reason = "hysteresis_off"
	f := p.record(KindHysteresisOff, trig, leaves)
	for i, t := range p.r.Targets(false) {
		out := p.outcome(i, rule.TypeCommand, t.Key())
		fill(&out, p.output(t).command(p, "OFF", 0, 0))
		f.add(out)
	}
}

// offTargets sends OFF to targets, as outcomes of f (the cleanup OFFs of
// docs/domain.md §6.5).
func (p *replay) offTargets(f *Firing, targets []rule.Target, reason string) {
	for _, t := range targets {
		out := p.outcome(-1, rule.TypeCommand, t.Key())
		fill(&out, p.output(t).command(p, "OFF", 0, 0))
		out.Message = reason
		f.add(out)
	}
}

// continuation is the rest of an action list after a delay.
type continuation struct {
	next  int
	run   *run
	f     *Firing
	delay int // the delay's outcome in f
}

// suspend ends this part of the action list at the delay at index i.
func (p *replay) suspend(f *Firing, i int, ru *run) {
	due := p.now.Add(time.Duration(p.r.Actions[i].Delay.Seconds) * time.Second)
	c := &continuation{next: i + 1, run: ru, f: f}
	c.delay = f.add(ActionOutcome{
		At:      p.now,
		Index:   i,
		Type:    rule.TypeDelay,
		Status:  StatusPending,
		Message: "the remaining actions run at " + due.UTC().Format(time.RFC3339),
	})
	p.cont = c
	p.schedule(due, func() { p.resume(c) })
}

// resume runs a due continuation; a failed one ends with the cleanup OFFs.
func (p *replay) resume(c *continuation) {
	if p.cont != c {
		return // cancelled meanwhile
	}
	p.cont = nil
	p.sum.Continuations++
	c.settle(StatusSucceeded, "", "")
	if p.runActions(c.f, c.next, c.run) {
		p.cancel("continuation_failed", false)
		p.offTargets(c.f, c.run.switchedOn, "sequence_abort")
		c.run.switchedOn = nil
	}
}

// cancel ends the pending continuation, with its cleanup OFFs when cleanup.
func (p *replay) cancel(reason string, cleanup bool) {
	c := p.cont
	if c == nil {
		return
	}
	p.cont = nil
	c.settle(StatusFailed, "cancelled", "cancelled: "+reason)
	if cleanup {
		p.offTargets(c.f, c.run.switchedOn, "sequence_abort")
		c.run.switchedOn = nil
	}
}

func (c *continuation) settle(status, code, msg string) {
	if c.f == nil || c.delay < 0 {
		return
	}
	a := &c.f.Actions[c.delay]
	a.Status, a.Code = status, code
	if msg != "" {
		a.Message = msg
	}
}

// data answers the leaves that do not read the trigger from the replayed
// history: the newest stored value of the sensor so far.
type data struct{ p *replay }

// Latest mirrors the engine: the newest value of each matching series, a
// series whose newest value is unusable giving none.
func (d data) Latest(ref rule.SensorRef) (rule.Reading, bool) {
	var best rule.Reading
	found := false
	for _, id := range d.p.refs[ref] {
		x, ok := d.p.latest[id]
		if !ok || !usable(x) {
			continue
		}
		at := time.UnixMilli(x.TS).UTC()
		if found && !at.After(best.At) {
			continue
		}
		best = rule.Reading{Value: *x.Value, At: at, MaxAge: d.p.freshness(id)}
		found = true
	}
	return best, found
}

// Online is the replay's assumption: every device is online.
func (d data) Online(string) bool { return true }

// freshness is a series' default freshness (docs/domain.md §6.3.1): an
// on-demand sensor's measurement freshness, else 300 s.
func (p *replay) freshness(id int64) time.Duration {
	if d, ok := p.maxAge[id]; ok {
		return d
	}
	k := p.keys[id]
	d := rule.DefaultMaxAge
	for _, c := range p.s.d.Sensors.ByDevice(k.EspID) {
		if c.GPIO != k.GPIO || normalised(c.SensorType) != k.SensorType || c.OperatingMode != "on_demand" {
			continue
		}
		hours := 24.0
		if c.FreshnessHours != nil && *c.FreshnessHours > 0 {
			hours = *c.FreshnessHours
		}
		d = time.Duration(hours * float64(time.Hour))
	}
	p.maxAge[id] = d
	return d
}

type states map[string]rule.HysteresisState

func (m states) Hysteresis(path string) rule.HysteresisState { return m[path] }

// agenda is the scheduled work in time order, ties in the order scheduled.
type agenda struct {
	items agendaHeap
	seq   int
}

type agendaItem struct {
	at  time.Time
	seq int
	fn  func()
}

type agendaHeap []agendaItem

func (h agendaHeap) Len() int { return len(h) }
func (h agendaHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h agendaHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *agendaHeap) Push(x any)   { *h = append(*h, x.(agendaItem)) }
func (h *agendaHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (a *agenda) add(at time.Time, fn func()) {
	a.seq++
	heap.Push(&a.items, agendaItem{at: at, seq: a.seq, fn: fn})
}

func (a *agenda) next() (time.Time, bool) {
	if len(a.items) == 0 {
		return time.Time{}, false
	}
	return a.items[0].at, true
}

func (a *agenda) pop() func() { return heap.Pop(&a.items).(agendaItem).fn }
