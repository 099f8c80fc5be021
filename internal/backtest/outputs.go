package backtest

import (
	"fmt"
	"math"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/rule"
)

// defaultMaxRuntime is the max runtime of an actuator without a config
// (docs/domain.md §4.2's default).
const defaultMaxRuntime = 3600

// output is one actuator's replayed state: every accepted command is
// taken as acknowledged at once, so the confirmed state is the commanded
// one.
type output struct {
	target     rule.Target
	cfg        actuator.Config
	configured bool

	on    bool
	value float64
	onAt  time.Time
	// autoOff is when the running command's auto-off fires; gen tells a
	// pending auto-off from one a newer command replaced.
	autoOff *time.Time
	gen     int
	// bound is set when the running command's duration is the max runtime.
	bound   bool
	lastOff *time.Time

	stats  ActuatorReport
	recent []time.Time // switch-ons of the trailing hour
}

func newOutput(t rule.Target, a Actuators) *output {
	o := &output{target: t}
	if cfg, err := a.Get(t.EspID, t.GPIO); err == nil {
		o.cfg, o.configured = cfg, true
	}
	if o.cfg.MaxRuntimeSeconds <= 0 {
		o.cfg.MaxRuntimeSeconds = defaultMaxRuntime
	}
	return o
}

// verdict is a command's modelled outcome.
type verdict struct {
	cmd       string // resolved: ON, OFF or PWM
	value     float64
	accepted  bool
	code, msg string
	duration  *int64
	autoOffAt *time.Time
}

// unchanged is the engine's skip of a timer-triggered command whose target
// already is in the commanded state (docs/domain.md §6.4); an ON is
// repeated when less than two timer intervals of its bound remain.
func (o *output) unchanged(c *rule.Command, now time.Time, interval time.Duration) (string, bool) {
	switch c.Command {
	case "OFF":
		return "already off", !o.on
	case "ON":
		if !o.on || o.value < 0.99 {
			return "", false
		}
	case "PWM":
		if !o.on || math.Abs(o.value-c.Value) > 0.005 {
			return "", false
		}
	default:
		return "", false
	}
	if o.autoOff != nil && o.autoOff.Sub(now) < 2*interval {
		return "", false
	}
	if c.Command == "PWM" {
		return "already pwm", true
	}
	return "already on", true
}

// command applies one command at now: the config-dependent checks of
// docs/domain.md §4.4 (rows 8–11), the clamp to the max runtime (row 12)
// and the auto-off it arms (docs/domain.md §4.8).
func (o *output) command(p *replay, asked string, value float64, duration int) verdict {
	v := o.resolve(asked, value)
	if v.cmd != "OFF" {
		if code, msg := o.refuse(asked, v.value, p.now); code != "" {
			o.stats.Blocked++
			if code == actuator.CodeCooldown {
				p.note(WarnActCooldown, o.target.Key())
			} else {
				p.note(WarnBlocked, o.target.Key())
			}
			v.code, v.msg = code, msg
			return v
		}
	}
	v.accepted = true
	o.stats.Commands++
	if v.cmd == "OFF" || v.value <= 0 {
		o.switchOff(p.now)
		return v
	}
	d := int64(duration)
	maxRT := int64(o.cfg.MaxRuntimeSeconds)
	o.bound = d == 0 || d > maxRT
	if d > maxRT {
		o.stats.DurationClamped++
		p.note(WarnClamped, o.target.Key())
	}
	if o.bound {
		d = maxRT
	}
	at := p.now.Add(time.Duration(d) * time.Second)
	v.duration, v.autoOffAt = &d, &at
	o.switchOn(p, v.value)
	o.autoOff = &at
	o.gen++
	gen := o.gen
	p.schedule(at, func() { o.expire(p, gen) })
	return v
}

// resolve is row 3: ON and OFF force their value, TOGGLE follows the
// (replayed) state.
func (o *output) resolve(asked string, value float64) verdict {
	switch asked {
	case "ON":
		return verdict{cmd: "ON", value: 1}
	case "PWM":
		return verdict{cmd: "PWM", value: value}
	case "TOGGLE":
		if o.on {
			return verdict{cmd: "OFF"}
		}
		return verdict{cmd: "ON", value: 1}
	}
	return verdict{cmd: "OFF"}
}

// refuse is rows 8–11 for a configured actuator.
func (o *output) refuse(asked string, value float64, now time.Time) (code, msg string) {
	if !o.configured {
		return "", ""
	}
	c := o.cfg
	class := c.Class()
	switch {
	case !c.Enabled:
		return actuator.CodeDisabled, "the actuator is disabled; only OFF is accepted"
	case asked == "PWM" && class != actuator.ClassPWM && class != actuator.ClassServo,
		asked == "TOGGLE" && class == actuator.ClassServo:
		return actuator.CodeNotSupported, fmt.Sprintf("%s is not supported by a %s actuator", asked, c.Type)
	case value < c.MinValue || value > c.MaxValue:
		return actuator.CodeValueOutOfRange, fmt.Sprintf("value %g is outside the actuator's range %g-%g",
			value, c.MinValue, c.MaxValue)
	}
	if c.CooldownSeconds > 0 && o.lastOff != nil {
		if left := o.lastOff.Add(time.Duration(c.CooldownSeconds) * time.Second).Sub(now); left > 0 {
			return actuator.CodeCooldown, fmt.Sprintf("cooldown active for %.0f more seconds", math.Ceil(left.Seconds()))
		}
	}
	return "", ""
}

func (o *output) switchOn(p *replay, value float64) {
	o.value = value
	if o.on {
		return // a repeated ON restarts the bound only
	}
	o.on, o.onAt = true, p.now
	o.stats.SwitchOns++
	hour := p.now.Add(-time.Hour)
	keep := o.recent[:0]
	for _, t := range o.recent {
		if t.After(hour) {
			keep = append(keep, t)
		}
	}
	o.recent = append(keep, p.now)
	o.stats.MaxOnsPerHour = max(o.stats.MaxOnsPerHour, len(o.recent))
	if len(o.recent) > p.req.Chatter {
		p.note(WarnChattering, o.target.Key())
	}
}

func (o *output) switchOff(now time.Time) {
	o.gen++
	o.autoOff = nil
	if !o.on {
		return
	}
	o.stats.OnSeconds += now.Sub(o.onAt).Seconds()
	o.on, o.value = false, 0
	o.stats.SwitchOffs++
	at := now
	o.lastOff = &at
}

// expire is the auto-off of the command of generation gen: its own
// duration, or the max-runtime bound.
func (o *output) expire(p *replay, gen int) {
	if gen != o.gen || !o.on {
		return
	}
	bound := o.bound
	o.switchOff(p.now)
	if bound {
		o.stats.MaxRuntimeOffs++
		p.note(WarnMaxRuntime, o.target.Key())
	} else {
		o.stats.DurationOffs++
	}
}

// close ends the replay at end: an output still on counts until then.
func (o *output) close(end time.Time) ActuatorReport {
	r := o.stats
	r.EspID, r.GPIO = o.target.EspID, o.target.GPIO
	r.Configured = o.configured
	r.MaxRuntimeSeconds = o.cfg.MaxRuntimeSeconds
	r.FinalState = "off"
	if o.on {
		r.OnSeconds += end.Sub(o.onAt).Seconds()
		r.FinalState = "on"
	}
	r.SwitchCount = r.SwitchOns + r.SwitchOffs
	return r
}
