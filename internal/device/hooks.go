package device

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// PushResult is a config push as the push hooks see it.
type PushResult struct {
	EspID         string
	CorrelationID string
	Trigger       string
	// Status is PushPending when the push was just published, else its
	// settled state: PushApplied, PushFailed or PushTimedOut.
	Status string
	// Sections maps each section the push carried (sensor, actuator) to its
	// state; a section the push had no items for is absent.
	Sections map[string]string
	// Actuators is what the push sent, removals included; empty for a push
	// without an actuator section (docs/protocol.md C5: a successful
	// actuator section re-created the listed actuators).
	Actuators []contract.ActuatorConfigItem
}

// pushHooks are the callers told about pushes (the emergency stop re-safes
// a latched device after a push and unlatches on a clear by
// re-configuration, docs/protocol.md E7).
type pushHooks struct {
	mu        sync.Mutex
	published []func(PushResult)
	settled   []func(PushResult)
}

// OnPushPublished registers fn to be called after every published push,
// outside the registry's locks, on the goroutine that pushed.
func (s *Service) OnPushPublished(fn func(PushResult)) {
	s.hooks.mu.Lock()
	s.hooks.published = append(s.hooks.published, fn)
	s.hooks.mu.Unlock()
}

// OnPushResult registers fn to be called when a push settles, outside the
// registry's locks.
func (s *Service) OnPushResult(fn func(PushResult)) {
	s.hooks.mu.Lock()
	s.hooks.settled = append(s.hooks.settled, fn)
	s.hooks.mu.Unlock()
}

func (s *Service) notifyPush(settled bool, espID string, p *Push) {
	s.push.mu.Lock()
	r := PushResult{
		EspID:         espID,
		CorrelationID: p.CorrelationID,
		Trigger:       p.Trigger,
		Status:        p.Status,
		Sections:      maps.Clone(p.Sections),
		Actuators:     slices.Clone(p.SentActuators),
	}
	s.push.mu.Unlock()

	s.hooks.mu.Lock()
	fns := s.hooks.published
	if settled {
		fns = s.hooks.settled
	}
	fns = slices.Clone(fns)
	s.hooks.mu.Unlock()

	for _, fn := range fns {
		fn(r)
	}
}

// deleteHooks are the callers told about a committed deletion (the device's
// MQTT credentials are removed with it, docs/decisions/0018-device-credentials.md).
type deleteHooks struct {
	mu  sync.Mutex
	fns []func(ctx context.Context, espID string)
}

// OnDeleted registers fn to be called after each deletion is committed,
// outside the registry's locks, on the goroutine that deleted.
func (s *Service) OnDeleted(fn func(ctx context.Context, espID string)) {
	s.deleted.mu.Lock()
	s.deleted.fns = append(s.deleted.fns, fn)
	s.deleted.mu.Unlock()
}

func (s *Service) notifyDeleted(ctx context.Context, espID string) {
	s.deleted.mu.Lock()
	fns := slices.Clone(s.deleted.fns)
	s.deleted.mu.Unlock()
	for _, fn := range fns {
		fn(ctx, espID)
	}
}
