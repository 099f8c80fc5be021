package logic

import (
	"context"
	"sort"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/sensor/processor"
)

// job is one unit of work on a worker.
type job func(ctx context.Context)

// Worker queues. Readings of one device go to that device's worker, so a
// slow rule delays neither ingest (the queue is never waited on) nor the
// rules of other devices.
const (
	workerQueue   = 256
	timerWorker   = "\x00timer"
	controlWorker = "\x00control"
	controlBuffer = 4096
)

// Start subscribes to the triggers (docs/domain.md §6.6): stored readings,
// device reconnects and offline transitions, command outcomes and
// emergency stops. The timer trigger is Tick, run by the scheduler.
func (s *Service) Start() {
	// Readings stored by standby replicas trigger rules too
	// (docs/decisions/0029-replicas.md); every other trigger is the
	// primary's own.
	// A reading only looks up its rules and queues a batch for its
	// device's worker, never waiting: a tap does that on the publisher's
	// goroutine (docs/decisions/0032-fewer-hand-offs.md).
	s.readings = s.d.Events.TapWithRemote(func(e event.Event) {
		if d, ok := e.Data.(event.SensorData); ok {
			s.onReading(d)
		}
	}, event.TypeSensorData)
	control := s.d.Events.Subscribe(controlBuffer, event.TypeDeviceStatus, event.TypeCommandStatus,
		event.TypeEmergency)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.d.Events.Unsubscribe(control)
		for {
			select {
			case <-s.stop:
				return
			case e := <-control.C:
				s.onControl(e)
			}
		}
	}()
	s.resumeContinuations()
}

// Stop ends the subscriptions, the workers and the timers, and waits for
// running work.
func (s *Service) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	if s.readings != nil {
		s.d.Events.Unsubscribe(s.readings)
	}
	close(s.stop)
	s.cancel()
	for _, t := range s.pending {
		if t.timer != nil && t.timer.Stop() {
			s.wg.Done()
		}
	}
	s.mu.Unlock()
	// Entries are locked outside s.mu: a rule's run takes s.mu under its own lock.
	for _, e := range s.entries() {
		e.mu.Lock()
		if c := e.cont; c != nil {
			s.mu.Lock()
			if c.timer != nil && c.timer.Stop() {
				s.wg.Done()
			}
			c.timer = nil
			s.mu.Unlock()
		}
		e.mu.Unlock()
	}
	s.wg.Wait()
}

// enqueue hands j to the worker of key. A reading's job is dropped (and
// counted) when the worker is behind; must waits for room instead.
func (s *Service) enqueue(key string, j job, must bool) bool {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return false
	}
	ch := s.workers[key]
	if ch == nil {
		ch = make(chan job, workerQueue)
		s.workers[key] = ch
		s.wg.Add(1)
		go s.work(ch)
	}
	s.mu.Unlock()
	select {
	case ch <- j:
		return true
	default:
	}
	if !must {
		s.metrics.dropped.Inc()
		s.mu.Lock()
		loud := time.Since(s.droppedLog) >= 10*time.Second
		if loud {
			s.droppedLog = time.Now()
		}
		s.mu.Unlock()
		if loud {
			s.log.Warn("rule trigger dropped: the engine is behind (counted in kaiser_logic_triggers_dropped_total)",
				"worker", key)
		}
		return false
	}
	select {
	case ch <- j:
		return true
	case <-s.stop:
		return false
	}
}

func (s *Service) work(ch chan job) {
	defer s.wg.Done()
	ctx := context.Background()
	for {
		select {
		case <-s.stop:
			return
		case j := <-ch:
			j(ctx)
		}
	}
}

// usableReading is docs/domain.md §2.2's test on the event of a stored reading.
func usableReading(d event.SensorData) bool {
	return d.ProcessedValue != nil && d.Quality != "error" && d.Quality != "suspect"
}

// onReading matches a stored reading to the enabled rules with a sensor
// or hysteresis leaf on its pin and queues their batch on its device's
// worker.
func (s *Service) onReading(d event.SensorData) {
	if !usableReading(d) {
		return
	}
	// Every stored reading passes here, on its ingest worker: most read by
	// no rule, they cost a shared lock and a map lookup, nothing more.
	s.mu.RLock()
	onPin := s.bySensor[rule.Target{EspID: d.EspID, GPIO: d.GPIO}]
	if len(onPin) == 0 {
		s.mu.RUnlock()
		return
	}
	key, _ := processor.NormaliseType(d.SensorType)
	trig := rule.SensorTrigger(d.EspID, d.GPIO, key, d.Value, time.Unix(d.Timestamp, 0).UTC())
	var matched []*entry
	for _, e := range onPin {
		if readsTrigger(e.idx.sensors, trig) {
			matched = append(matched, e)
		}
	}
	s.mu.RUnlock()
	if len(matched) > 0 {
		s.enqueue(d.EspID, func(ctx context.Context) { s.runBatch(ctx, trig, matched) }, false)
	}
}

// readsTrigger reports a leaf of e reading the triggering sensor: same
// device and pin (the index), and a type that is absent or equal.
func readsTrigger(sensors []rule.SensorRef, trig rule.Trigger) bool {
	for _, ref := range sensors {
		if ref.EspID == trig.EspID && ref.GPIO == *trig.GPIO && (ref.SensorType == "" || ref.SensorType == trig.SensorType) {
			return true
		}
	}
	return false
}

// Tick is the timer trigger (docs/domain.md §6.6): every enabled rule with
// a time leaf runs once. It returns once the batch is queued.
func (s *Service) Tick(context.Context) error {
	s.mu.Lock()
	matched := append([]*entry(nil), s.timed...)
	s.mu.Unlock()
	if len(matched) > 0 {
		trig := rule.Trigger{Kind: rule.TriggerTimer}
		s.enqueue(timerWorker, func(ctx context.Context) { s.runBatch(ctx, trig, matched) }, true)
	}
	return nil
}

// ruleUpdated runs a created, enabled or changed rule once (rule_update).
func (s *Service) ruleUpdated(e *entry) {
	trig := rule.Trigger{Kind: rule.TriggerRuleUpdate}
	s.enqueue(controlWorker, func(ctx context.Context) { s.runBatch(ctx, trig, []*entry{e}) }, true)
}

// onControl handles the device, command and emergency events.
func (s *Service) onControl(e event.Event) {
	switch d := e.Data.(type) {
	case event.DeviceStatus:
		switch {
		case d.Status == device.StatusOnline && d.PreviousStatus == device.StatusOffline:
			s.reconnected(d.EspID)
		case d.Status == device.StatusOffline:
			espID := d.EspID
			s.enqueue(espID, func(ctx context.Context) { s.sourceOffline(ctx, espID) }, true)
		}
	case event.CommandStatus:
		s.commandStatus(d.CommandID, d.Status, d.Error)
	case event.Emergency:
		if d.Action == "stop" {
			espID := ""
			if d.EspID != nil {
				espID = *d.EspID
			}
			s.enqueue(controlWorker, func(ctx context.Context) { s.emergencyStop(ctx, espID) }, true)
		}
	}
}

// reconnected runs the rules with leaves or targets on a device that is
// back (the reconnect trigger, bypassing cooldown).
func (s *Service) reconnected(espID string) {
	s.mu.Lock()
	var matched []*entry
	for _, e := range s.rules {
		if e.idx.enabled && containsString(e.idx.devices, espID) {
			matched = append(matched, e)
		}
	}
	s.mu.Unlock()
	if len(matched) > 0 {
		trig := rule.Trigger{Kind: rule.TriggerReconnect, EspID: espID}
		s.enqueue(espID, func(ctx context.Context) { s.runBatch(ctx, trig, matched) }, true)
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runBatch runs the rules matched by one trigger in ascending priority, ties
// by id (docs/domain.md §6.6), holding the conflict locks they take until
// the batch ends (docs/domain.md §6.8).
func (s *Service) runBatch(ctx context.Context, trig rule.Trigger, matched []*entry) {
	// Each rule's key is read once, under its lock, not at every comparison.
	order := make([]ordered, len(matched))
	for i, e := range matched {
		order[i] = ordered{e, e.snapshotKey()}
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := order[i].key, order[j].key
		if a.priority != b.priority {
			return a.priority < b.priority
		}
		return a.id < b.id
	})
	b := s.conflicts.batch()
	defer b.release()
	for _, o := range order {
		s.runRule(ctx, o.e, trig, b)
	}
}

type ordered struct {
	e   *entry
	key orderKey
}

type orderKey struct {
	priority int
	id       string
}

func (e *entry) snapshotKey() orderKey {
	e.mu.Lock()
	defer e.mu.Unlock()
	return orderKey{e.rule.Priority, e.rule.ID}
}

// runRule evaluates one rule and, when it fires, gates it in the order of
// docs/domain.md §6.7 and runs its actions.
func (s *Service) runRule(ctx context.Context, e *entry, trig rule.Trigger, b *batch) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone || !e.rule.Enabled {
		return
	}
	now := s.now()
	res := rule.Evaluate(&e.rule, s.evalContext(now, trig, e))
	s.applyChanges(ctx, e, res.Changes)

	// 1. Conditions; a hysteresis deactivation sends its OFF instead.
	if res.Deactivated() {
		off := trig
		off.Reason = "hysteresis_off"
		s.hysteresisOff(ctx, e, off, res.Leaves, b)
		return
	}
	if !res.Matched {
		return
	}
	// 2. Already running: a delay continuation is pending.
	if e.cont != nil {
		s.log.Debug("rule skipped: already running", "rule_id", e.rule.ID)
		return
	}
	// 3. Cooldown, bypassed by reconnect and rule_update.
	if s.inCooldown(e, trig, now) {
		return
	}
	// Every target offline: skip before the tokens (the SHOULD of docs/domain.md §6.7).
	if s.allTargetsOffline(&e.rule) {
		if now.Sub(e.offlineNoted) >= 30*time.Second {
			e.offlineNoted = now
			s.recordSkip(ctx, e, trig, res.Leaves, now, codeTargetOffline, "every actuator target is offline")
		}
		return
	}
	// 4. Rate limits.
	if !s.admit(e, now) {
		if now.Sub(e.rateNoted) >= time.Minute {
			e.rateNoted = now
			s.recordSkip(ctx, e, trig, res.Leaves, now, codeRateLimited, "rate limit reached")
		}
		return
	}
	// 5. Conflict locks of the actions up to the first delay.
	if lost := b.acquire(e.rule.ID, e.rule.Priority, locksOf(e.rule.Actions, 0), now); lost != nil {
		s.conflictLost(ctx, e, trig, res.Leaves, now, lost)
		return
	}
	// 6. Actions; 7. the record, finalised when every outcome is known.
	e.runs = append(e.runs, now)
	t := now.UTC()
	e.rule.LastTriggered = &t
	if err := s.d.Store.SetRuleTriggered(ctx, e.rule.ID, t); err != nil {
		s.log.Error("rule last_triggered not stored", "rule_id", e.rule.ID, "error", err)
	}
	x := s.newExecution(e, trig, res.Leaves, now)
	s.runActions(ctx, e, x, 0, newRun(trig))
}

// evalContext is the evaluator's input for e; e.mu is held.
func (s *Service) evalContext(now time.Time, trig rule.Trigger, e *entry) rule.Context {
	return rule.Context{
		Now:     now,
		Trigger: trig,
		Zone:    s.opt.Zone,
		Data:    liveData{s},
		States:  states(e.hyst),
	}
}

// applyChanges keeps and persists the hysteresis transitions; e.mu is held.
func (s *Service) applyChanges(ctx context.Context, e *entry, changes []rule.Change) {
	for _, c := range changes {
		e.hyst[c.Path] = c.After
		if err := s.d.Store.SaveHysteresis(ctx, storeState(e.rule.ID, c.Path, c.After)); err != nil {
			s.log.Error("hysteresis state not stored", "rule_id", e.rule.ID, "path", c.Path, "error", err)
		}
	}
}

// inCooldown is gate 3 (docs/domain.md §6.7); e.mu is held.
func (s *Service) inCooldown(e *entry, trig rule.Trigger, now time.Time) bool {
	if trig.Kind == rule.TriggerReconnect || trig.Kind == rule.TriggerRuleUpdate {
		return false
	}
	cd := time.Duration(e.rule.CooldownSeconds) * time.Second
	last := e.rule.LastTriggered
	return cd > 0 && last != nil && now.Sub(*last) <= cd
}

// allTargetsOffline reports a rule whose actions drive only actuators on
// devices that are not online; a rule without actuator targets never is.
func (s *Service) allTargetsOffline(r *rule.Rule) bool {
	targets := r.Targets(true)
	if len(targets) == 0 {
		return false
	}
	for _, t := range targets {
		if d, err := s.d.Devices.Get(t.EspID); err == nil && d.Status == device.StatusOnline {
			return false
		}
	}
	return true
}

// admit is gate 4, the rate limits of docs/domain.md §6.9; e.mu is held.
func (s *Service) admit(e *entry, now time.Time) bool {
	hour := now.Add(-time.Hour)
	keep := e.runs[:0]
	for _, t := range e.runs {
		if t.After(hour) {
			keep = append(keep, t)
		}
	}
	e.runs = keep
	if m := e.rule.MaxExecutionsPerHour; m != nil && len(e.runs) >= *m {
		return false
	}
	var devices []string
	for _, t := range e.rule.Targets(true) {
		if !containsString(devices, t.EspID) {
			devices = append(devices, t.EspID)
		}
	}
	return s.limits.take(now, devices)
}

// liveData reads the latest stored readings and device states for leaves
// that do not read the trigger.
type liveData struct{ s *Service }

func (l liveData) Latest(ref rule.SensorRef) (rule.Reading, bool) {
	var best rule.Reading
	found := false
	for _, v := range l.s.d.Sensors.Latest(ref.EspID, ref.GPIO, ref.SensorType) {
		r := v.Reading
		if r.Processed == nil || r.Quality == "error" || r.Quality == "suspect" {
			continue
		}
		at := time.UnixMilli(r.TS)
		if found && !at.After(best.At) {
			continue
		}
		best = rule.Reading{Value: *r.Processed, At: at, MaxAge: l.maxAge(ref.EspID, v.Key.GPIO, v.Key.SensorType)}
		found = true
	}
	return best, found
}

// maxAge is a sensor's default freshness (docs/domain.md §6.3.1): the
// measurement freshness of an on-demand sensor, else 300 s.
func (l liveData) maxAge(espID string, gpio int, key string) time.Duration {
	for _, c := range l.s.d.Sensors.ByDevice(espID) {
		k, _ := processor.NormaliseType(c.SensorType)
		if c.GPIO != gpio || k != key || c.OperatingMode != "on_demand" {
			continue
		}
		hours := 24.0
		if c.FreshnessHours != nil && *c.FreshnessHours > 0 {
			hours = *c.FreshnessHours
		}
		return time.Duration(hours * float64(time.Hour))
	}
	return rule.DefaultMaxAge
}

func (l liveData) Online(espID string) bool {
	d, err := l.s.d.Devices.Get(espID)
	return err == nil && d.Status == device.StatusOnline
}
