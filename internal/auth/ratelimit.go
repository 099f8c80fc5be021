package auth

import (
	"sync"
	"time"
)

// Limiter is a sliding-window request limiter per key (client IP). Memory
// is bounded: keys whose window is empty are dropped as others arrive.
type Limiter struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	hits   map[string][]time.Time
	now    func() time.Time
}

// NewLimiter allows limit requests per window per key.
func NewLimiter(limit int, window time.Duration) *Limiter {
	return &Limiter{
		limit:  limit,
		window: window,
		hits:   map[string][]time.Time{},
		now:    time.Now,
	}
}

// Allow records a request and reports whether it is within the limit; when
// it is not, retryAfter says when the oldest counted request leaves the window.
func (l *Limiter) Allow(key string) (ok bool, remaining int, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	cut := now.Add(-l.window)
	h := l.hits[key]
	i := 0
	for i < len(h) && !h[i].After(cut) {
		i++
	}
	h = h[i:]
	if len(h) >= l.limit {
		l.hits[key] = h
		return false, 0, h[0].Add(l.window).Sub(now)
	}
	h = append(h, now)
	l.hits[key] = h
	if len(l.hits) > 10000 {
		for k, v := range l.hits {
			if len(v) == 0 || !v[len(v)-1].After(cut) {
				delete(l.hits, k)
			}
		}
	}
	return true, l.limit - len(h), 0
}
