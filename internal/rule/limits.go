package rule

import "time"

// RateLimits are the token buckets of docs/domain.md §6.9: one hub-wide
// (100 tokens/s, capacity 150) and one per target device (20/s, capacity
// 30), each created full and refilled from the clock it is given, so the
// live engine and a replay (the backtest) count the same way. It is not
// safe for concurrent use; the live engine serialises its calls.
type RateLimits struct {
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

// NewRateLimits returns full buckets.
func NewRateLimits() *RateLimits {
	return &RateLimits{hub: bucket{rate: 100, capacity: 150}, devices: map[string]*bucket{}}
}

// Take takes a token from the hub bucket and from the bucket of every
// target device, or none when any of them is empty.
func (l *RateLimits) Take(now time.Time, devices []string) bool {
	l.hub.refill(now)
	if l.hub.tokens < 1 {
		return false
	}
	var bs []*bucket
	for _, d := range devices {
		b := l.device(d)
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

// TakeDevice takes a token from one device's bucket only (a sequence
// step's command).
func (l *RateLimits) TakeDevice(now time.Time, espID string) bool {
	b := l.device(espID)
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// WouldTake reports whether Take would succeed, changing nothing (the
// dry-run's rate_limited gate).
func (l *RateLimits) WouldTake(now time.Time, devices []string) bool {
	hub := l.hub
	hub.refill(now)
	if hub.tokens < 1 {
		return false
	}
	for _, d := range devices {
		b := bucket{rate: 20, capacity: 30}
		if cur := l.devices[d]; cur != nil {
			b = *cur
		}
		b.refill(now)
		if b.tokens < 1 {
			return false
		}
	}
	return true
}

// device is espID's bucket, created full.
func (l *RateLimits) device(espID string) *bucket {
	b := l.devices[espID]
	if b == nil {
		b = &bucket{rate: 20, capacity: 30}
		l.devices[espID] = b
	}
	return b
}
