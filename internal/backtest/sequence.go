package backtest

import (
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/rule"
)

// seqRun is a replayed sequence (docs/domain.md §6.5). Every step's command
// is acknowledged at once, so a step takes exactly its delays; only a
// command a modelled safety check refuses fails a step.
type seqRun struct {
	p        *replay
	id       string
	q        *rule.Sequence
	f        *Firing
	ru       *run
	step     int
	waited   bool // the current step's leading delay has passed
	attempts int  // retries of the current step so far
	done     bool
}

// startSequence is a sequence action: started in the background, its
// steps scheduled on the replay clock.
func (p *replay) startSequence(f *Firing, i int, q *rule.Sequence, trig rule.Trigger) {
	id := q.SequenceID
	if id == "" {
		owner := p.r.ID
		if owner == "" {
			owner = "unsaved"
		}
		id = fmt.Sprintf("seq-%s-%d", owner, p.now.Unix())
	}
	out := p.outcome(i, rule.TypeSequence, "")
	out.SequenceID = id
	if p.seqs[id] != nil {
		out.Status, out.Code, out.Message = StatusFailed, "sequence_failed", "a sequence with this id is running"
		f.add(out)
		return
	}
	out.Status = StatusStarted
	f.add(out)
	p.sum.SequencesStarted++
	sr := &seqRun{
		p:  p,
		id: id,
		q:  q,
		f:  f,
		ru: &run{trigger: trig},
	}
	p.seqs[id] = sr
	limit := q.MaxDurationSeconds
	if limit <= 0 {
		limit = 3600
	}
	p.schedule(p.now.Add(time.Duration(limit)*time.Second), func() { sr.finish("timeout") })
	sr.advance()
}

// advance runs the sequence from its current step until a step has to wait.
func (sr *seqRun) advance() {
	p := sr.p
	for !sr.done {
		if sr.step >= len(sr.q.Steps) {
			sr.finish("completed")
			return
		}
		st := sr.q.Steps[sr.step]
		if !sr.waited {
			sr.waited = true
			wait := st.DelayBeforeSeconds
			if st.Action == nil && st.DelaySeconds != nil {
				wait += *st.DelaySeconds
			}
			if wait > 0 {
				p.schedule(p.now.Add(time.Duration(wait)*time.Second), sr.advance)
				return
			}
		}
		if st.Action != nil && !sr.act(st.Action) {
			if sr.attempts < st.RetryCount {
				sr.attempts++
				p.schedule(p.now.Add(time.Duration(st.RetryDelaySeconds*float64(time.Second))), sr.advance)
				return
			}
			if st.OnFailure == "abort" || (st.OnFailure == "" && sr.q.AbortOnFailure) {
				sr.finish("failed")
				return
			}
		}
		sr.step, sr.waited, sr.attempts = sr.step+1, false, 0
		if st.DelayAfterSeconds > 0 {
			p.schedule(p.now.Add(time.Duration(st.DelayAfterSeconds)*time.Second), sr.advance)
			return
		}
	}
}

// act runs one step's action and reports its success.
func (sr *seqRun) act(a *rule.Action) bool {
	p := sr.p
	step := sr.step
	out := p.outcome(-1, a.Kind(), "")
	out.SequenceID, out.Step = sr.id, &step
	switch {
	case a.Command != nil:
		c := a.Command
		out.Target = c.Target.Key()
		v := p.output(c.Target).command(p, c.Command, c.Value, c.DurationSeconds)
		fill(&out, v)
		if v.accepted {
			sr.ru.switched(c.Target, v.cmd != "OFF")
		}
		sr.f.add(out)
		return v.accepted
	case a.Notification != nil:
		out.Target = a.Notification.Channel + ":" + a.Notification.Target
		out.Status, out.Message = StatusSucceeded, "would be sent"
	default:
		out.Status, out.Code, out.Message = StatusFailed, "not_supported", "a step may not hold this action"
	}
	sr.f.add(out)
	return out.Status == StatusSucceeded
}

// finish ends the sequence; one that did not complete switches off what it
// switched on (docs/domain.md §6.5).
func (sr *seqRun) finish(status string) {
	if sr.done {
		return
	}
	sr.done = true
	p := sr.p
	delete(p.seqs, sr.id)
	out := p.outcome(-1, rule.TypeSequence, "")
	out.SequenceID, out.Status, out.Message = sr.id, StatusSucceeded, "sequence "+status
	if status != "completed" {
		out.Status, out.Code = StatusFailed, status
		p.offTargets(sr.f, sr.ru.switchedOn, "sequence_abort")
		sr.ru.switchedOn = nil
	}
	sr.f.add(out)
}
