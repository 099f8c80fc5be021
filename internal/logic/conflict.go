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
	cur, wins := c.contestLocked(key, h)
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

// peek reports who would hold key after take(key, h), changing nothing
// (the dry-run's lock outcome): "" when h would get it.
func (c *conflicts) peek(key string, h holder) (holderRule string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, wins := c.contestLocked(key, h); !wins {
		return cur.ruleID
	}
	return ""
}

// contestLocked is docs/domain.md §6.8's contest for key between its
// holder and h: a free, expired or own lock goes to h, a held one only if h
// wins; c.mu is held.
func (c *conflicts) contestLocked(key string, h holder) (cur holder, wins bool) {
	cur, held := c.locks[key]
	if held && h.at.Sub(cur.at) > lockTTL {
		held = false
	}
	return cur, !held || cur.ruleID == h.ruleID || h.effective() < cur.effective() ||
		(h.effective() == cur.effective() && h.ruleID < cur.ruleID)
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

// limiter is the token buckets of docs/domain.md §6.9 (rule.RateLimits)
// behind a mutex: triggers of different devices are evaluated concurrently.
type limiter struct {
	mu     sync.Mutex
	limits *rule.RateLimits
}

func newLimiter() *limiter { return &limiter{limits: rule.NewRateLimits()} }

// take takes a token from the hub bucket and from the bucket of every
// target device, or none when any is empty.
func (l *limiter) take(now time.Time, devices []string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limits.Take(now, devices)
}

// takeDevice takes a token from one device's bucket only (a sequence
// step's command, docs/domain.md §6.9).
func (l *limiter) takeDevice(now time.Time, espID string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limits.TakeDevice(now, espID)
}

// wouldTake reports whether take would succeed, changing nothing (the
// dry-run's rate_limited gate).
func (l *limiter) wouldTake(now time.Time, devices []string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limits.WouldTake(now, devices)
}
