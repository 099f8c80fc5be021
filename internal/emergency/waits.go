package emergency

import (
	"sync"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
)

// waits are the pending operations that device messages complete: a
// clear's answer, a clear by re-configuration's push result, a token
// provisioning's answers. One clear per device runs at a time.
type waits struct {
	mu     sync.Mutex
	clears map[string]chan contract.EmergencyReply
	pushes map[string]chan device.PushResult
	tokens map[string]chan contract.EmergencyReply
	locks  map[string]*sync.Mutex
}

func newWaits() waits {
	return waits{
		clears: map[string]chan contract.EmergencyReply{},
		pushes: map[string]chan device.PushResult{},
		tokens: map[string]chan contract.EmergencyReply{},
		locks:  map[string]*sync.Mutex{},
	}
}

// lock is espID's clear lock.
func (w *waits) lock(espID string) *sync.Mutex {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.locks[espID]
	if l == nil {
		l = &sync.Mutex{}
		w.locks[espID] = l
	}
	return l
}

// expect registers a wait in m for espID; done removes it.
func expect[T any](w *waits, m map[string]chan T, espID string, size int) (chan T, func()) {
	ch := make(chan T, size)
	w.mu.Lock()
	m[espID] = ch
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		if m[espID] == ch {
			delete(m, espID)
		}
		w.mu.Unlock()
	}
}

// deliver hands v to espID's wait in m without blocking; false if none waits.
func deliver[T any](w *waits, m map[string]chan T, espID string, v T) bool {
	w.mu.Lock()
	ch := m[espID]
	w.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case ch <- v:
	default:
	}
	return true
}
