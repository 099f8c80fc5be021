package healthapi

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cpuSampler measures the process's CPU use between two calls from
// /proc/self/stat; the first call has nothing to compare with.
type cpuSampler struct {
	mu    sync.Mutex
	ticks float64
	at    time.Time
}

const clockTicks = 100 // USER_HZ on Linux

func (c *cpuSampler) percent() (float64, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	prevT, prevAt := c.ticks, c.at
	c.ticks, c.at = ut+st, now
	if prevAt.IsZero() || now.Sub(prevAt) < 100*time.Millisecond {
		return 0, false
	}
	return (ut + st - prevT) / clockTicks / now.Sub(prevAt).Seconds() * 100, true
}
