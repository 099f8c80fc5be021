package actuator

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// failSafeParallel bounds the OFFs of FailSafe in flight at once: enough
// that a site's outputs are all sent within a lease's grace, few enough
// not to flood the broker connection.
const failSafeParallel = 16

// failSafeOff is one OFF of FailSafe.
type failSafeOff struct {
	espID string
	gpio  int
	topic string
	// published is closed once the unit's publishes under way when the
	// fail-safe began are done; nil when there were none.
	published <-chan struct{}
}

// FailSafeResult is what FailSafe did.
type FailSafeResult struct {
	Sent   int   // OFFs the broker accepted
	Failed int   // outputs whose OFF was not accepted, or not sent in time
	Err    error // the first failure
}

// count adds one output's outcome.
func (r *FailSafeResult) count(err error) {
	if err == nil {
		r.Sent++
		return
	}
	r.Failed++
	if r.Err == nil {
		r.Err = err
	}
}

// FailSafe sends one OFF to every output that may be running: confirmed
// on, switched on by its configuration's default state, an ON in flight or
// not yet acknowledged, a pending auto-off, or a hub OFF not yet
// confirmed. A primary replica calls it when it could not renew its lease
// (docs/decisions/0031-lease-fail-safe.md): until the next primary starts,
// no replica bounds an output, and the store is probably unreachable. So
// the OFFs are neither recorded nor tracked (the process stops next); they
// go out through pub, in parallel, until ctx ends. An output with a
// publish of its own under way gets its OFF again once that is done, so
// that an ON that was already on its way cannot overtake it.
func (s *Service) FailSafe(ctx context.Context, pub Publisher) FailSafeResult {
	offs, res := s.failSafeOffs()

	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		slot = make(chan struct{}, failSafeParallel)
	)
	note := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		res.count(err)
	}
	for i, o := range offs {
		if !takeSlot(ctx, slot) {
			for range offs[i:] {
				note(fmt.Errorf("fail-safe OFF not sent in time: %w", ctx.Err()))
			}
			break
		}
		wg.Go(func() {
			defer func() { <-slot }()
			note(s.sendFailSafe(ctx, pub, o))
		})
	}
	wg.Wait()
	return res
}

// takeSlot waits for a free slot; false once ctx has ended, also when a
// slot is free.
func takeSlot(ctx context.Context, slot chan struct{}) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case slot <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// failSafeOffs lists the OFFs of FailSafe; the result counts the outputs
// that may run on a device the registry no longer knows.
func (s *Service) failSafeOffs() ([]failSafeOff, FailSafeResult) {
	type running struct {
		k         key
		published <-chan struct{}
	}
	var units []running
	s.mu.Lock()
	for k, u := range s.units {
		if !u.mayRunLocked() {
			continue
		}
		r := running{k: k}
		if u.publishing > 0 {
			r.published = u.published
		}
		units = append(units, r)
	}
	s.mu.Unlock()

	var (
		offs []failSafeOff
		res  FailSafeResult
	)
	for _, r := range units {
		// The root of the device's last live message, as every command
		// uses (docs/protocol.md A2); empty is a valid root.
		d, err := s.devices.Get(r.k.esp)
		if err != nil {
			res.count(fmt.Errorf("fail-safe OFF %s/%d: %w", r.k.esp, r.k.gpio, err))
			continue
		}
		offs = append(offs, failSafeOff{
			espID:     r.k.esp,
			gpio:      r.k.gpio,
			topic:     contract.DeviceTopic(d.KaiserID, r.k.esp, fmt.Sprintf("actuator/%d/command", r.k.gpio)),
			published: r.published,
		})
	}
	return offs, res
}

// mayRunLocked reports an output the hub cannot rule out as energised;
// s.mu is held.
func (u *unit) mayRunLocked() bool {
	st := u.st
	return isOn(st) ||
		st.OnSince != nil ||
		st.AutoOff != nil ||
		st.OnCandidate != nil ||
		st.PendingOff != nil ||
		u.inflightLocked() != nil
}

// sendFailSafe publishes o, and once more after the unit's publishes under
// way, if any, are done.
func (s *Service) sendFailSafe(ctx context.Context, pub Publisher, o failSafeOff) error {
	err := s.publishFailSafe(ctx, pub, o)
	if o.published == nil {
		return err
	}
	select {
	case <-o.published:
		return s.publishFailSafe(ctx, pub, o)
	case <-ctx.Done():
		return fmt.Errorf("fail-safe OFF %s/%d after a publish under way: %w", o.espID, o.gpio, ctx.Err())
	}
}

// publishFailSafe publishes one OFF as every hub OFF looks on the wire,
// with a correlation id that names it in the device's answer.
func (s *Service) publishFailSafe(ctx context.Context, pub Publisher, o failSafeOff) error {
	corr := "failsafe-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:24]
	payload, err := contract.Marshal(contract.NewActuatorCommand("OFF", 0, 0, s.now(), corr))
	if err == nil {
		err = pub.Publish(ctx, o.topic, payload, 1, false)
	}
	if err != nil {
		s.log.Debug("fail-safe OFF not sent", "esp_id", o.espID, "gpio", o.gpio, "error", err)
		return fmt.Errorf("fail-safe OFF %s/%d: %w", o.espID, o.gpio, err)
	}
	s.log.Warn("fail-safe OFF sent", "esp_id", o.espID, "gpio", o.gpio, "correlation_id", corr)
	return nil
}
