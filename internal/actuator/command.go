package actuator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Rejection codes of docs/domain.md §4.4.
const (
	CodeInvalidCommand  = "invalid_command"
	CodeValueOutOfRange = "value_out_of_range"
	CodeDeviceNotFound  = "device_not_found"
	CodeNotFound        = "actuator_not_found"
	CodeStateUnknown    = "state_unknown"
	CodeEmergencyStop   = "emergency_stop_active"
	CodeLatched         = "actuator_latched"
	CodeNotApproved     = "device_not_approved"
	CodeOffline         = "device_offline"
	CodeUnreachable     = "device_unreachable"
	CodeDisabled        = "actuator_disabled"
	CodeNotSupported    = "command_not_supported"
	CodeCooldown        = "cooldown_active"
)

// Lifecycle states (docs/api.md §8.3); rejected is the history status of a
// command refused by the checks.
const (
	StatusQueued       = "queued"
	StatusSent         = "sent"
	StatusAcknowledged = "acknowledged"
	StatusFailed       = "failed"
	StatusTimeout      = "timeout"
	StatusExpired      = "expired"
	StatusRejected     = "rejected"
)

// Rejection is a command refused by a check of docs/domain.md §4.4; Row is
// the check's row, which tells value_out_of_range of row 1 (422) from row 10
// (400). Reason carries the why of device_unreachable.
type Rejection struct {
	Row     int
	Code    string
	Message string
	Reason  string
	Field   string // the request field a row-1 rejection is about
}

func (r *Rejection) Error() string { return r.Code + ": " + r.Message }

func reject(row int, code, format string, args ...any) *Rejection {
	return &Rejection{Row: row, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Request is a command as a caller issues it (docs/api.md §8.2).
type Request struct {
	EspID    string
	GPIO     int
	Command  string   // ON, OFF, PWM or TOGGLE, any case
	Value    *float64 // 0–1; required for PWM
	Duration *int64   // seconds 0–86400; 0 or nil = until OFF, bounded by the max runtime
	IssuedBy string   // user:{name}, logic:{rule}, …
	Metadata map[string]any
}

// Result is what a command did at once.
type Result struct {
	CommandID     string
	CorrelationID string
	Status        string // queued, sent, failed, expired …
	Published     bool
	Message       string

	Command  string // what the device gets: ON, OFF or PWM (a TOGGLE resolved)
	Value    float64
	Duration int64 // the wire duration
	Warnings []string
	IssuedAt time.Time
}

// OffRequest is a hub-issued OFF (docs/domain.md §4.5: never superseded, retried while not confirmed off).
type OffRequest struct {
	EspID       string
	GPIO        int
	IssuedBy    string         // "emergency:{user}", "system:{reason}"
	CommandType string         // "OFF" or "EMERGENCY_STOP" (history command_type)
	Metadata    map[string]any // e.g. incident_correlation_id, reason
}

// plan is a command that passed the checks, resolved.
type plan struct {
	req      Request
	k        key
	cfg      Config
	dev      device.Device
	asked    string // the requested command, upper-cased
	cmd      string // what the device gets
	value    float64
	duration int64
	warnings []string
}

// running reports a command that switches the output on and so carries a
// duration and arms an auto-off (K3, K4).
func running(cmd string, value float64) bool {
	return cmd == "ON" || (cmd == "PWM" && value > 0)
}

func isApproved(status string) bool {
	switch status {
	case device.StatusPending, device.StatusRejected, device.StatusDeleted:
		return false
	}
	return true
}

// Command validates and issues a command (docs/domain.md §4.3–§4.5). A
// refusal is a *Rejection, recorded in the history like every command.
func (s *Service) Command(ctx context.Context, req Request) (Result, error) {
	now := s.now()
	p, rej := s.check(req, now)
	if rej != nil {
		s.recordRejection(ctx, p, rej, now)
		return Result{Status: StatusRejected, Message: rej.Message, IssuedAt: now}, rej
	}
	if p.cmd == "OFF" {
		return s.userOff(ctx, p, now)
	}
	return s.userOn(ctx, p)
}

// Check runs the checks of docs/domain.md §4.4 on req exactly as Command
// would, and nothing else: no command, no history row, no event (the
// dry-run's safety verdict, docs/domain.md §6.12). A refusal is a
// *Rejection; otherwise the result tells what the device would get
// (Command, Value, the wire Duration, Warnings) and its Status is empty.
func (s *Service) Check(req Request) (Result, error) {
	now := s.now()
	p, rej := s.check(req, now)
	if rej != nil {
		return Result{Status: StatusRejected, Message: rej.Message, IssuedAt: now}, rej
	}
	return Result{
		Command:  p.cmd,
		Value:    p.value,
		Duration: p.duration,
		Warnings: p.warnings,
		IssuedAt: now,
	}, nil
}

// check runs the checks of docs/domain.md §4.4 in their order; the first
// failure rejects.
func (s *Service) check(req Request, now time.Time) (plan, *Rejection) {
	p := plan{
		req:   req,
		k:     key{req.EspID, req.GPIO},
		asked: strings.ToUpper(strings.TrimSpace(req.Command)),
	}
	if rej := validate(req, p.asked); rej != nil {
		return p, rej
	}

	d, err := s.devices.Get(req.EspID)
	if err != nil {
		return p, reject(2, CodeDeviceNotFound, "ESP device '%s' not found", req.EspID)
	}
	p.dev = d
	s.mu.Lock()
	u := s.units[p.k]
	if u == nil {
		s.mu.Unlock()
		return p, reject(2, CodeNotFound, "no actuator on %s GPIO %d", req.EspID, req.GPIO)
	}
	p.cfg, p.value = u.cfg, 1
	st := u.st
	busy := len(u.sent) > 0 || u.queued != nil
	s.mu.Unlock()

	if rej := p.resolve(st, busy, d); rej != nil {
		return p, rej
	}
	if rej := s.checkGates(p, st, d, now); rej != nil {
		return p, rej
	}
	p.clamp()
	return p, nil
}

// validate is row 1: the command, the value on the 0–1 scale, the duration.
func validate(req Request, asked string) *Rejection {
	field := func(r *Rejection, f string) *Rejection {
		r.Field = f
		return r
	}
	switch asked {
	case "ON", "OFF", "PWM", "TOGGLE":
	default:
		return field(reject(1, CodeInvalidCommand, "command must be ON, OFF, PWM or TOGGLE, not %q", req.Command),
			"command")
	}
	if v := req.Value; v != nil && (math.IsNaN(*v) || *v < 0 || *v > 1) {
		return field(reject(1, CodeValueOutOfRange, "value %g is out of range: values are 0.0-1.0, not 0-255", *v),
			"value")
	}
	if asked == "PWM" && req.Value == nil {
		return field(reject(1, CodeInvalidCommand, "PWM needs a value 0.0-1.0"), "value")
	}
	if d := req.Duration; d != nil && (*d < 0 || *d > 86400) {
		return field(reject(1, CodeValueOutOfRange, "duration %d is out of range: 0-86400 s", *d), "duration")
	}
	return nil
}

// resolve is row 3: ON and OFF force their value, TOGGLE follows the
// confirmed state (docs/domain.md §4.3).
func (p *plan) resolve(st State, busy bool, d device.Device) *Rejection {
	switch p.asked {
	case "ON":
		p.cmd, p.value = "ON", 1
	case "OFF":
		p.cmd, p.value = "OFF", 0
	case "PWM":
		p.cmd, p.value = "PWM", *p.req.Value
	case "TOGGLE":
		stale := st.Stale || d.Status != device.StatusOnline
		switch {
		case busy:
			return reject(3, CodeStateUnknown, "a command for the actuator is in flight")
		case stale || (st.State != "on" && st.State != "off" && st.State != "pwm"):
			return reject(3, CodeStateUnknown, "the confirmed state is %s%s", st.State, staleNote(stale))
		case isOn(st):
			p.cmd, p.value = "OFF", 0
		default:
			p.cmd, p.value = "ON", 1
		}
	}
	return nil
}

func staleNote(stale bool) string {
	if stale {
		return " and stale"
	}
	return ""
}

// checkGates are rows 4–11.
func (s *Service) checkGates(p plan, st State, d device.Device, now time.Time) *Rejection {
	off := p.cmd == "OFF"
	if rej := s.latchCheck(p.k, off, st); rej != nil {
		return rej
	}
	if !isApproved(d.Status) {
		return reject(6, CodeNotApproved, "ESP device '%s' is %s", d.DeviceID, d.Status)
	}
	if rej := reachable(d); rej != nil {
		return rej
	}
	c := p.cfg
	switch {
	case !off && !c.Enabled:
		return reject(8, CodeDisabled, "the actuator is disabled; only OFF is accepted")
	case !allows(c.Class(), p.asked):
		return reject(9, CodeNotSupported, "%s is not supported by a %s actuator (%s class)", p.asked, c.Type, c.Class())
	case !off && (p.value < c.MinValue || p.value > c.MaxValue):
		return reject(10, CodeValueOutOfRange, "value %g is outside the actuator's range %g-%g",
			p.value, c.MinValue, c.MaxValue)
	}
	if !off && c.CooldownSeconds > 0 && st.LastOffAt != nil {
		if left := st.LastOffAt.Add(s.secs(int64(c.CooldownSeconds))).Sub(now); left > 0 {
			return reject(11, CodeCooldown, "cooldown active for %.0f more seconds", math.Ceil(left.Seconds()))
		}
	}
	return nil
}

// latchCheck is rows 4 and 5: only OFF passes a hub latch or a device latch.
func (s *Service) latchCheck(k key, off bool, st State) *Rejection {
	if off {
		return nil
	}
	if s.hubLatched(k.esp) {
		return reject(4, CodeEmergencyStop, "an emergency stop is active for %s", k.esp)
	}
	if st.DeviceLatched {
		return reject(5, CodeLatched, "the actuator on GPIO %d is latched by the device's emergency stop", k.gpio)
	}
	return nil
}

// reachable is row 7.
func reachable(d device.Device) *Rejection {
	switch {
	case d.Status != device.StatusOnline:
		return reject(7, CodeOffline, "ESP device '%s' is %s", d.DeviceID, d.Status)
	case d.SubscriptionsLost:
		r := reject(7, CodeUnreachable, "ESP device '%s' has lost its subscriptions and needs a power cycle",
			d.DeviceID)
		r.Reason = "subscriptions_lost"
		return r
	case d.RebootRequired:
		r := reject(7, CodeUnreachable, "ESP device '%s' must reboot before it hears the hub again", d.DeviceID)
		r.Reason = "reboot_required"
		return r
	}
	return nil
}

// clamp is row 12: every ON is bounded by the max runtime (K3).
func (p *plan) clamp() {
	if !running(p.cmd, p.value) {
		p.duration = 0
		return
	}
	maxRT := int64(p.cfg.MaxRuntimeSeconds)
	var asked int64
	if p.req.Duration != nil {
		asked = *p.req.Duration
	}
	switch {
	case asked == 0:
		p.duration = maxRT
	case asked > maxRT:
		p.duration = maxRT
		p.warnings = append(p.warnings, "duration_clamped")
	default:
		p.duration = asked
	}
}

func (s *Service) recordRejection(ctx context.Context, p plan, rej *Rejection, now time.Time) {
	f := false
	var dur int64
	if p.req.Duration != nil {
		dur = *p.req.Duration
	}
	var v float64
	if p.req.Value != nil {
		v = *p.req.Value
	}
	commandType := p.asked
	if commandType == "" {
		commandType = strings.TrimSpace(p.req.Command)
	}
	rec := store.ActuatorCommand{
		ID:           uuid.NewString(),
		EspID:        p.req.EspID,
		GPIO:         p.req.GPIO,
		ActuatorType: p.cfg.Type,
		CommandType:  commandType,
		Command:      p.cmd,
		Value:        v,
		Duration:     dur,
		IssuedBy:     p.req.IssuedBy,
		Status:       StatusRejected,
		Success:      &f,
		Error:        rej.Code + ": " + rej.Message,
		Metadata:     withEntry(p.req.Metadata, "rejection", rej.Code),
		IssuedAt:     now,
		Version:      1,
	}
	if err := s.store.QueueActuatorCommand(ctx, rec); err != nil {
		s.log.Error("recording a rejected command failed", "esp_id", p.req.EspID, "error", err)
	}
}

func withEntry(md map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(md)+1)
	for mk, mv := range md {
		out[mk] = mv
	}
	out[k] = v
	return out
}

// newCommandLocked is a queued command for u from p; s.mu is held.
func (s *Service) newCommandLocked(u *unit, p plan, now time.Time) *command {
	id := uuid.NewString()
	md := p.req.Metadata
	if len(p.warnings) > 0 {
		md = withEntry(md, "warnings", p.warnings)
	}
	c := &command{rec: store.ActuatorCommand{
		ID:            id,
		EspID:         u.cfg.EspID,
		GPIO:          u.cfg.GPIO,
		ActuatorType:  u.cfg.Type,
		CommandType:   p.asked,
		Command:       p.cmd,
		Value:         p.value,
		Duration:      p.duration,
		IssuedBy:      p.req.IssuedBy,
		CorrelationID: id,
		Status:        StatusQueued,
		Metadata:      md,
		IssuedAt:      now,
	}}
	s.byCorr[id] = c
	return c
}

// newHubOffLocked is a queued attempt of a hub OFF; s.mu is held.
func (s *Service) newHubOffLocked(u *unit, in offIntent, now time.Time) *command {
	c := s.newCommandLocked(u, plan{
		req:   Request{IssuedBy: in.IssuedBy, Metadata: in.Metadata},
		asked: in.CommandType,
		cmd:   "OFF",
	}, now)
	c.hubOff = true
	return c
}

// result is what c did so far; s.mu is held.
func (c *command) result(msg string) Result {
	r := Result{
		CommandID:     c.rec.ID,
		CorrelationID: c.rec.CorrelationID,
		Status:        c.rec.Status,
		Published:     c.rec.SentAt != nil,
		Message:       msg,
		Command:       c.rec.Command,
		Value:         c.rec.Value,
		Duration:      c.rec.Duration,
		IssuedAt:      c.rec.IssuedAt,
	}
	if w, ok := c.rec.Metadata["warnings"].([]string); ok {
		r.Warnings = w
	}
	return r
}

// supersedeLocked ends u's queued non-OFF command: an OFF, or a newer
// request, replaces it (K5); s.mu is held.
func (s *Service) supersedeLocked(u *unit, fx *effects, now time.Time, reason string) {
	if q := u.queued; q != nil {
		u.queued = nil
		s.finishLocked(u, q, StatusExpired, nil, "", reason, now, fx)
	}
}

// finishLocked ends c in a terminal state; a finished command in flight
// lets the queued one go next; s.mu is held (u may be nil: deleted).
func (s *Service) finishLocked(
	u *unit, c *command, status string, success *bool, response, errMsg string, now time.Time, fx *effects,
) {
	s.stopTimerLocked(&c.timer)
	c.rec.Status, c.rec.Success, c.rec.ResponseMessage, c.rec.Error = status, success, response, errMsg
	t := now
	c.rec.CompletedAt = &t
	fx.cmd(c, now)
	if u == nil {
		delete(s.byCorr, c.rec.CorrelationID)
		return
	}

	wasInflight := false
	for i, o := range u.sent {
		if o == c {
			u.sent = append(u.sent[:i], u.sent[i+1:]...)
			wasInflight = c.rec.Command != "OFF"
			break
		}
	}
	for i, o := range u.pendingOffs {
		if o == c {
			u.pendingOffs = append(u.pendingOffs[:i], u.pendingOffs[i+1:]...)
			break
		}
	}
	u.recent = append(u.recent, c)
	if len(u.recent) > recentPerActuator {
		delete(s.byCorr, u.recent[0].rec.CorrelationID)
		u.recent = u.recent[1:]
	}
	if wasInflight && u.queued != nil {
		fx.next = append(fx.next, u.queued)
	}
}

// userOff publishes an OFF at once, whatever is in flight (K5).
func (s *Service) userOff(ctx context.Context, p plan, now time.Time) (Result, error) {
	s.mu.Lock()
	u := s.units[p.k]
	if u == nil {
		s.mu.Unlock()
		return Result{}, reject(2, CodeNotFound, "no actuator on %s GPIO %d", p.k.esp, p.k.gpio)
	}
	fx := &effects{}
	s.supersedeLocked(u, fx, now, "superseded")
	c := s.newCommandLocked(u, p, now)
	s.mu.Unlock()
	s.run(ctx, fx, now)
	return s.publishOff(ctx, c, p.dev.KaiserID), nil
}

// userOn issues a non-OFF command under the device's gate: the latch is
// checked again there (Fence), pending hub OFFs go first, then the command
// goes out, or waits while another non-OFF is in flight (K5).
func (s *Service) userOn(ctx context.Context, p plan) (Result, error) {
	g := s.gate(p.k.esp)
	g.Lock()
	defer g.Unlock()

	now := s.now()
	s.mu.Lock()
	u := s.units[p.k]
	var st State
	if u != nil {
		st = u.st
	}
	s.mu.Unlock()
	if u == nil {
		rej := reject(2, CodeNotFound, "no actuator on %s GPIO %d", p.k.esp, p.k.gpio)
		s.recordRejection(ctx, p, rej, now)
		return Result{Status: StatusRejected, Message: rej.Message, IssuedAt: now}, rej
	}
	if rej := s.latchCheck(p.k, false, st); rej != nil {
		s.recordRejection(ctx, p, rej, now)
		return Result{Status: StatusRejected, Message: rej.Message, IssuedAt: now}, rej
	}
	s.flushPending(ctx, p.k.esp)

	s.mu.Lock()
	fx := &effects{}
	s.supersedeLocked(u, fx, now, "superseded")
	c := s.newCommandLocked(u, p, now)
	if u.inflightLocked() != nil {
		u.queued = c
		c.timer = s.afterLocked(s.secs(queueExpiry), func() { s.expireQueuedCommand(c) })
		fx.cmd(c, now)
		res := c.result("queued behind the command in flight")
		s.mu.Unlock()
		s.run(ctx, fx, now)
		return res, nil
	}
	s.mu.Unlock()
	s.run(ctx, fx, now)
	return s.publishRunning(ctx, c, p.dev.KaiserID)
}

// expireQueuedCommand ends a command still queued after 30 s (docs/domain.md §4.5).
func (s *Service) expireQueuedCommand(c *command) {
	now := s.now()
	s.mu.Lock()
	u := s.units[c.key()]
	if u == nil || u.queued != c {
		s.mu.Unlock()
		return
	}
	c.timer = nil
	u.queued = nil
	fx := &effects{}
	s.finishLocked(u, c, StatusExpired, nil, "", fmt.Sprintf("not sent within %d s", queueExpiry), now, fx)
	s.mu.Unlock()
	s.run(context.Background(), fx, now)
}

// dequeue publishes a queued command whose turn came, after the checks that
// may have changed since it was accepted; it takes the device's gate.
func (s *Service) dequeue(ctx context.Context, c *command) {
	g := s.gate(c.rec.EspID)
	g.Lock()
	defer g.Unlock()

	s.mu.Lock()
	u := s.units[c.key()]
	if u == nil || u.queued != c || u.inflightLocked() != nil {
		s.mu.Unlock()
		return
	}
	u.queued = nil
	s.stopTimerLocked(&c.timer)
	st, cfg := u.st, u.cfg
	s.mu.Unlock()

	now := s.now()
	d, err := s.devices.Get(c.rec.EspID)
	var rej *Rejection
	if err != nil {
		rej = reject(2, CodeDeviceNotFound, "ESP device '%s' not found", c.rec.EspID)
	} else {
		p := plan{k: c.key(), cfg: cfg, asked: c.rec.CommandType, cmd: c.rec.Command, value: c.rec.Value}
		rej = s.checkGates(p, st, d, now)
	}
	if rej != nil {
		s.mu.Lock()
		fx := &effects{}
		s.finishLocked(u, c, StatusExpired, nil, "", rej.Code+": "+rej.Message, now, fx)
		s.mu.Unlock()
		s.run(ctx, fx, now)
		return
	}

	s.flushPending(ctx, c.rec.EspID)
	if _, err := s.publishRunning(ctx, c, d.KaiserID); err != nil {
		s.log.Error("queued command not sent", "command_id", c.rec.ID, "error", err)
	}
}

// commitBeforePublish commits an ON's record and the state with its
// deadline. Both wait for the store's one writer, which commits what is
// queued together: issued at once they share a commit, where one after the
// other the second waits for a commit of its own (the ON's latency).
func (s *Service) commitBeforePublish(ctx context.Context, c store.ActuatorCommand, st store.ActuatorState) error {
	cmdErr := make(chan error, 1)
	go func() { cmdErr <- s.store.SaveActuatorCommand(ctx, c) }()
	stErr := s.store.SaveActuatorState(ctx, st)
	return errors.Join(<-cmdErr, stErr)
}

// ErrNotCommitted is a command not published because its auto-off deadline
// could not be committed first (docs/domain.md §4.8).
var ErrNotCommitted = errors.New("command not published: its auto-off deadline could not be committed")

// publishRunning publishes a non-OFF command under the device's gate. The
// auto-off deadline and the on-time candidate are committed before the
// publish (docs/domain.md §4.8); the auto-off is armed once it is sent and
// replaces the earlier one (K4).
func (s *Service) publishRunning(ctx context.Context, c *command, root string) (Result, error) {
	now := s.now()
	k := c.key()
	s.mu.Lock()
	u := s.units[k]
	if u == nil {
		fx := &effects{}
		s.finishLocked(nil, c, StatusExpired, nil, "", "actuator deleted", now, fx)
		res := c.result("actuator deleted")
		s.mu.Unlock()
		s.run(ctx, fx, now)
		return res, nil
	}
	prevAuto, prevCand := u.st.AutoOff, u.st.OnCandidate
	if c.rec.Duration > 0 {
		u.st.AutoOff = &mark{CommandID: c.rec.ID, At: now.Add(s.secs(c.rec.Duration))}
		u.st.OnCandidate = &mark{CommandID: c.rec.ID, At: now}
	}
	stRec, cRec := u.stateRecLocked(now), c.snapshotLocked()
	u.beginPublishLocked()
	s.mu.Unlock()

	err := s.commitBeforePublish(ctx, cRec, stRec)
	if err == nil {
		err = s.publishCommand(ctx, root, c, now)
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrPublish, err)
		}
	} else {
		err = fmt.Errorf("%w: %w", ErrNotCommitted, err)
	}

	fx := &effects{}
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		s.run(ctx, fx, now)
		s.endPublish(u)
	}()
	if err != nil {
		if u.st.AutoOff != nil && u.st.AutoOff.CommandID == c.rec.ID {
			u.st.AutoOff, u.st.OnCandidate = prevAuto, prevCand
			fx.state(u, now)
		}
		s.finishLocked(u, c, StatusFailed, nil, "", err.Error(), now, fx)
		if errors.Is(err, ErrPublish) {
			return c.result(err.Error()), nil
		}
		return c.result(err.Error()), err
	}

	s.markSentLocked(u, c, root, now, fx)
	if c.rec.Duration > 0 {
		s.stopTimerLocked(&u.autoOff)
		id := c.rec.ID
		u.autoOff = s.afterLocked(u.st.AutoOff.At.Sub(now), func() { s.autoOffDue(k, id) })
	}
	// A newer command reached the device: the retry of an earlier hub OFF
	// ends (its own auto-off now bounds the output, docs/decisions/0006).
	u.st.PendingOff = nil
	fx.state(u, now)
	return c.result("command sent"), nil
}

// ErrPublish is a command the broker did not accept.
var ErrPublish = errors.New("publish failed")

// markSentLocked records c as sent and starts its timeout; s.mu is held.
func (s *Service) markSentLocked(u *unit, c *command, root string, now time.Time, fx *effects) {
	t := now
	c.rec.Status, c.rec.SentAt = StatusSent, &t
	u.sent = append(u.sent, c)
	u.root = root
	c.timer = s.afterLocked(s.secs(commandTimeout), func() { s.timeout(c) })
	u.st.LastCommand, u.st.LastCommandAt = c.rec.Command, &t
	fx.cmd(c, now)
}

func (s *Service) publishCommand(ctx context.Context, root string, c *command, now time.Time) error {
	payload, err := contract.Marshal(contract.NewActuatorCommand(
		c.rec.Command, c.rec.Value, c.rec.Duration, now, c.rec.CorrelationID))
	if err != nil {
		return err
	}
	topic := contract.DeviceTopic(root, c.rec.EspID, fmt.Sprintf("actuator/%d/command", c.rec.GPIO))
	return s.bus.Publish(ctx, topic, payload, 1, false)
}

// publishOff publishes an OFF (never waiting behind other commands). A hub
// OFF whose publish failed is tried again after 10 s (K8); a valve's OFF
// starts its travel (Q14).
func (s *Service) publishOff(ctx context.Context, c *command, root string) Result {
	s.mu.Lock()
	publishing := s.units[c.key()]
	if publishing != nil {
		publishing.beginPublishLocked()
	}
	s.mu.Unlock()
	now := s.now()
	err := s.publishCommand(ctx, root, c, now)

	fx := &effects{}
	s.mu.Lock()
	u := s.units[c.key()]
	if u != nil {
		u.handedLocked(c)
	}
	msg := "command sent"
	switch {
	case err != nil:
		msg = "publish failed: " + err.Error()
		s.finishLocked(u, c, StatusFailed, nil, "", msg, now, fx)
		if c.hubOff && u != nil {
			s.armRetryLocked(u)
		}
	case u == nil: // deleted meanwhile: the answer can still match it
		t := now
		c.rec.Status, c.rec.SentAt = StatusSent, &t
		c.timer = s.afterLocked(s.secs(commandTimeout), func() { s.timeout(c) })
		fx.cmd(c, now)
	default:
		s.markSentLocked(u, c, root, now, fx)
		if u.cfg.Type == "valve" {
			s.closing[u.key()] = now.Add(u.cfg.travel(s.second))
		}
		fx.state(u, now)
	}
	res := c.result(msg)
	s.mu.Unlock()
	s.run(ctx, fx, now)
	if publishing != nil {
		s.endPublish(publishing)
	}
	return res
}

// endPublish ends a publish once its effects ("sent" among them) are out:
// an answer that waited for it (awaitPublishes) then comes after them, so
// command_status events keep the lifecycle's order.
func (s *Service) endPublish(u *unit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u.endPublishLocked()
}

// armRetryLocked tries the unit's hub OFF again after 10 s; s.mu is held.
func (s *Service) armRetryLocked(u *unit) {
	s.stopTimerLocked(&u.retry)
	esp := u.cfg.EspID
	u.retry = s.afterLocked(s.secs(offRetry), func() { s.flushPending(context.Background(), esp) })
}

// timeout ends a command without an answer in 10 s. A hub OFF is retried at
// once with a new correlation id while the state is not confirmed off (K8).
func (s *Service) timeout(c *command) {
	now := s.now()
	ctx := context.Background()
	s.mu.Lock()
	if c.rec.Status != StatusSent {
		s.mu.Unlock()
		return
	}
	c.timer = nil
	u := s.units[c.key()]
	fx := &effects{}
	s.finishLocked(u, c, StatusTimeout, nil, "", fmt.Sprintf("no response within %d s", commandTimeout), now, fx)
	retry := false
	if c.hubOff && u != nil && u.st.PendingOff != nil {
		if confirmedOff(u.st) {
			u.st.PendingOff = nil
			fx.state(u, now)
		} else {
			retry = true
		}
	}
	s.mu.Unlock()
	s.run(ctx, fx, now)
	if retry {
		s.flushPending(ctx, c.rec.EspID)
	}
}

// Off issues a hub OFF (docs/domain.md §4.5): it passes every latch and
// every check but the actuator's existence, supersedes a queued non-OFF
// command, and is kept, retried every 10 s while not confirmed off, and
// sent first when the device is back (K5, K8). Its record and the intent
// are committed before it returns; an error says they were not, the OFF
// was tried all the same.
func (s *Service) Off(ctx context.Context, r OffRequest) (Result, error) {
	return s.off(ctx, r, "")
}

// off is Off; autoOffID clears the auto-off of that command in the same
// commit, so a crash can lose neither the deadline nor its OFF.
func (s *Service) off(ctx context.Context, r OffRequest, autoOffID string) (Result, error) {
	now := s.now()
	k := key{r.EspID, r.GPIO}
	if r.CommandType == "" {
		r.CommandType = "OFF"
	}

	s.mu.Lock()
	u := s.units[k]
	if u == nil {
		s.mu.Unlock()
		return Result{}, ErrNotFound
	}
	fx := &effects{}
	s.supersedeLocked(u, fx, now, "superseded")
	if autoOffID != "" && u.st.AutoOff != nil && u.st.AutoOff.CommandID == autoOffID {
		u.st.AutoOff = nil
	}
	in := offIntent{IssuedBy: r.IssuedBy, CommandType: r.CommandType, Metadata: r.Metadata, Since: now}
	u.st.PendingOff = &in
	c := s.newHubOffLocked(u, in, now)
	u.takeLocked(c)
	cRec, stRec := c.snapshotLocked(), u.stateRecLocked(now)
	fx.events = append(fx.events, c.statusEvent(now))
	s.mu.Unlock()
	s.run(ctx, fx, now)

	commitErr := s.store.SaveActuatorCommand(ctx, cRec)
	if err := s.store.SaveActuatorState(ctx, stRec); commitErr == nil {
		commitErr = err
	}
	if commitErr != nil {
		commitErr = fmt.Errorf("hub OFF %s/%d not committed: %w", r.EspID, r.GPIO, commitErr)
		s.log.Error("hub OFF not committed; publishing it anyway", "error", commitErr)
	}

	d, err := s.devices.Get(r.EspID)
	if err != nil || d.Status != device.StatusOnline {
		s.mu.Lock()
		if u := s.units[k]; u != nil {
			u.handedLocked(c)
			u.pendingOffs = append(u.pendingOffs, c)
		}
		res := c.result("device not online: the OFF is sent first when it is back")
		s.mu.Unlock()
		return res, commitErr
	}
	return s.publishOff(ctx, c, d.KaiserID), commitErr
}

// flushPending publishes the device's waiting hub OFFs, and a new attempt
// for every OFF intent without one, when the device is online.
func (s *Service) flushPending(ctx context.Context, espID string) {
	s.mu.Lock()
	waiting := false
	for k, u := range s.units {
		if k.esp == espID && (len(u.pendingOffs) > 0 || (u.st.PendingOff != nil && !u.hasHubOffLocked())) {
			waiting = true
			break
		}
	}
	s.mu.Unlock()
	if !waiting {
		return
	}
	d, err := s.devices.Get(espID)
	if err != nil || d.Status != device.StatusOnline {
		return
	}

	now := s.now()
	fx := &effects{}
	var todo []*command
	s.mu.Lock()
	for k, u := range s.units {
		if k.esp != espID {
			continue
		}
		need := u.st.PendingOff != nil && !u.hasHubOffLocked()
		for _, c := range u.pendingOffs {
			u.takeLocked(c)
		}
		todo = append(todo, u.pendingOffs...)
		u.pendingOffs = nil
		if need {
			c := s.newHubOffLocked(u, *u.st.PendingOff, now)
			c.rec.Metadata = withEntry(c.rec.Metadata, "retry", true)
			u.takeLocked(c)
			fx.cmd(c, now)
			todo = append(todo, c)
		}
		s.stopTimerLocked(&u.retry)
	}
	s.mu.Unlock()
	s.run(ctx, fx, now)

	for _, c := range todo {
		s.publishOff(ctx, c, d.KaiserID)
	}
}

// ExpireQueued ends the device's queued non-OFF commands expired (an
// emergency stop, docs/domain.md §5.2 step 2); hub OFFs stay.
func (s *Service) ExpireQueued(ctx context.Context, espID, reason string) {
	now := s.now()
	fx := &effects{}
	s.mu.Lock()
	for k, u := range s.units {
		if k.esp == espID {
			s.supersedeLocked(u, fx, now, reason)
		}
	}
	s.mu.Unlock()
	s.run(ctx, fx, now)
}

// autoOffDue sends the OFF of an expired duration (K4: the baseline ignores
// `duration`, so this is the bound on the output).
func (s *Service) autoOffDue(k key, commandID string) {
	s.mu.Lock()
	u := s.units[k]
	due := u != nil && u.st.AutoOff != nil && u.st.AutoOff.CommandID == commandID
	if due {
		u.autoOff = nil
	}
	s.mu.Unlock()
	if !due {
		return
	}
	_, err := s.off(context.Background(), OffRequest{
		EspID:    k.esp,
		GPIO:     k.gpio,
		IssuedBy: "system:duration",
		Metadata: map[string]any{"command_id": commandID},
	}, commandID)
	if err != nil {
		s.log.Error("auto-off", "esp_id", k.esp, "gpio", k.gpio, "error", err)
	}
}

// sendOffOnce publishes one OFF through the lifecycle, without the retry of
// a hub OFF (an actuator about to be deleted has nothing to retry on).
func (s *Service) sendOffOnce(ctx context.Context, c Config, d device.Device, issuedBy string) (Result, error) {
	now := s.now()
	s.mu.Lock()
	u := s.units[key{c.EspID, c.GPIO}]
	if u == nil {
		s.mu.Unlock()
		return Result{}, ErrNotFound
	}
	fx := &effects{}
	s.supersedeLocked(u, fx, now, "actuator deleted")
	cmd := s.newCommandLocked(u, plan{
		req:   Request{IssuedBy: issuedBy, Metadata: map[string]any{"reason": "actuator_deleted"}},
		asked: "OFF",
		cmd:   "OFF",
	}, now)
	s.mu.Unlock()
	s.run(ctx, fx, now)
	return s.publishOff(ctx, cmd, d.KaiserID), nil
}
