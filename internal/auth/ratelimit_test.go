package auth

import (
	"strconv"
	"testing"
	"time"
)

func TestLimiterSlidingWindow(t *testing.T) {
	clk := &clock{t: time.Now()}
	l := NewLimiter(3, time.Minute)
	l.now = clk.Now
	start := clk.Now()

	// Each step happens at offset at from the start; a denied request is not
	// counted, so it never extends the window.
	steps := []struct {
		at        time.Duration
		key       string
		ok        bool
		remaining int
		retry     time.Duration
	}{
		{
			at:        0,
			key:       "10.0.0.1",
			ok:        true,
			remaining: 2,
		},
		{
			at:        10 * time.Second,
			key:       "10.0.0.1",
			ok:        true,
			remaining: 1,
		},
		{
			at:        20 * time.Second,
			key:       "10.0.0.1",
			ok:        true,
			remaining: 0,
		},
		{
			at:    30 * time.Second,
			key:   "10.0.0.1",
			ok:    false,
			retry: 30 * time.Second,
		},
		{
			at:        30 * time.Second,
			key:       "10.0.0.2",
			ok:        true,
			remaining: 2,
		},
		{
			at:    59 * time.Second,
			key:   "10.0.0.1",
			ok:    false,
			retry: time.Second,
		},
		// The first request leaves the window exactly one window later.
		{
			at:        60 * time.Second,
			key:       "10.0.0.1",
			ok:        true,
			remaining: 0,
		},
		{
			at:    61 * time.Second,
			key:   "10.0.0.1",
			ok:    false,
			retry: 9 * time.Second,
		},
		{
			at:        5 * time.Minute,
			key:       "10.0.0.1",
			ok:        true,
			remaining: 2,
		},
	}
	for _, st := range steps {
		t.Run(st.key+"@"+st.at.String(), func(t *testing.T) {
			clk.Set(start.Add(st.at))
			ok, remaining, retry := l.Allow(st.key)
			if ok != st.ok || remaining != st.remaining || retry != st.retry {
				t.Fatalf("Allow = %v, %d, %v; want %v, %d, %v", ok, remaining, retry, st.ok, st.remaining, st.retry)
			}
		})
	}
}

func TestLimiterForgetsIdleKeys(t *testing.T) {
	clk := &clock{t: time.Now()}
	l := NewLimiter(1, time.Minute)
	l.now = clk.Now

	const idle = 10000
	for i := range idle {
		l.Allow("idle-" + strconv.Itoa(i))
	}
	clk.Advance(30 * time.Second)
	l.Allow("recent")
	clk.Advance(31 * time.Second)

	// The idle keys' windows are empty now; the next key past the bound drops them.
	if ok, _, _ := l.Allow("new"); !ok {
		t.Fatal("a new key was refused")
	}
	if len(l.hits) != 2 {
		t.Fatalf("%d keys kept, want the 2 with requests inside the window", len(l.hits))
	}
	if ok, _, _ := l.Allow("recent"); ok {
		t.Fatal("dropping idle keys reset a key still inside its window")
	}
}
