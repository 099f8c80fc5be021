package logic

import (
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/rule"
)

// Conflict manager of docs/domain.md §6.8.
const (
	lockTTL        = 60 * time.Second
	keptConflicts  = 100
	safetyPriority = -1000
)

// lockWant is one actuator lock a rule asks for.
type lockWant struct {
	key    string
	safety bool
}

// locksOf lists the locks of the command actions from index from up to the
// next delay; a target any of them marks safety-critical is safety-critical.
func locksOf(actions []rule.Action, from int) []lockWant {
	var out []lockWant
	for _, a := range actions[from:] {
		if a.Delay != nil {
			break
		}
		if a.Command == nil {
			continue
		}
		k := a.Command.Target.Key()
		found := false
		for i := range out {
			if out[i].key == k {
				out[i].safety = out[i].safety || a.Command.IsSafetyCritical
				found = true
			}
		}
		if !found {
			out = append(out, lockWant{key: k, safety: a.Command.IsSafetyCritical})
		}
	}
	return out
}

type holder struct {
	ruleID   string
	priority int
	safety   bool
	at       time.Time
}

// effective is the priority a lock contest compares: lower wins.
func (h holder) effective() int {
	if h.safety {
		return safetyPriority
	}
	return h.priority
}

// Conflict is one lost lock contest.
type Conflict struct {
	Key        string    `json:"key"`
	RuleID     string    `json:"rule_id"`
	HolderRule string    `json:"holder_rule_id"`
	At         time.Time `json:"at"`
}

type conflicts struct {
	mu     sync.Mutex
	locks  map[string]holder
	recent []Conflict
}

func newConflicts() *conflicts { return &conflicts{locks: map[string]holder{}} }

// take tries one lock: a free, expired or own lock is taken (renewed); a
// held one goes to the newcomer only if it wins the contest.
func (c *conflicts) take(key string, h holder) (ok bool, lost *Conflict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, held := c.locks[key]
	if held && h.at.Sub(cur.at) > lockTTL {
		held = false
	}
	wins := !held || cur.ruleID == h.ruleID || h.effective() < cur.effective() ||
		(h.effective() == cur.effective() && h.ruleID < cur.ruleID)
	if wins {
		c.locks[key] = h
		return true, nil
	}
	cf := Conflict{Key: key, RuleID: h.ruleID, HolderRule: cur.ruleID, At: h.at}
	c.recent = append(c.recent, cf)
	if len(c.recent) > keptConflicts {
		c.recent = c.recent[len(c.recent)-keptConflicts:]
	}
	return false, &cf
}

func (c *conflicts) release(key, ruleID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.locks[key]; ok && cur.ruleID == ruleID {
		delete(c.locks, key)
	}
}

// Recent returns the kept conflicts, oldest first.
func (c *conflicts) Recent() []Conflict {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Conflict(nil), c.recent...)
}

// batch holds the locks taken while one trigger's rules run.
type batch struct {
	c     *conflicts
	taken []lockWant
	owner map[string]string
}

func (c *conflicts) batch() *batch { return &batch{c: c, owner: map[string]string{}} }

// acquire takes every lock of one rule; on the first lost one it gives
// back those it took for this rule and reports the conflict.
func (b *batch) acquire(ruleID string, priority int, want []lockWant, now time.Time) *Conflict {
	var fresh []string
	for _, w := range want {
		prev, had := b.owner[w.key]
		ok, lost := b.c.take(w.key, holder{ruleID: ruleID, priority: priority, safety: w.safety, at: now})
		if !ok {
			for _, k := range fresh {
				b.c.release(k, ruleID)
				delete(b.owner, k)
			}
			return lost
		}
		if !had || prev != ruleID {
			fresh = append(fresh, w.key)
		}
		b.owner[w.key] = ruleID
	}
	return nil
}

// release gives back every lock the batch's rules hold.
func (b *batch) release() {
	for k, id := range b.owner {
		b.c.release(k, id)
	}
	b.owner = map[string]string{}
}

// limiter is the token buckets of docs/domain.md §6.9.
type limiter struct {
	mu      sync.Mutex
	hub     bucket
	devices map[string]*bucket
}

type bucket struct {
	tokens, rate, capacity float64
	last                   time.Time
}

func (b *bucket) refill(now time.Time) {
	if b.last.IsZero() {
		b.tokens, b.last = b.capacity, now
		return
	}
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = min(b.capacity, b.tokens+d*b.rate)
		b.last = now
	}
}

func newLimiter() *limiter {
	return &limiter{hub: bucket{rate: 100, capacity: 150}, devices: map[string]*bucket{}}
}

// take takes a token from the hub bucket and from the bucket of every
// target device, or none when any is empty.
func (l *limiter) take(now time.Time, devices []string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hub.refill(now)
	if l.hub.tokens < 1 {
		return false
	}
	var bs []*bucket
	for _, d := range devices {
		b := l.devices[d]
		if b == nil {
			b = &bucket{rate: 20, capacity: 30}
			l.devices[d] = b
		}
		b.refill(now)
		if b.tokens < 1 {
			return false
		}
		bs = append(bs, b)
	}
	l.hub.tokens--
	for _, b := range bs {
		b.tokens--
	}
	return true
}
