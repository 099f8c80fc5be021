package actuator

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// failSafeParallel bounds the OFFs of FailSafe in flight at once: enough
// that a site's outputs are all sent within a lease's margin, few enough
// not to flood the broker connection.
const failSafeParallel = 16

// failSafeOff is one OFF of FailSafe.
type failSafeOff struct {
	espID string
	gpio  int
	topic string
}

// FailSafe sends one OFF to every output that may be running: confirmed
// on, an ON in flight or not yet acknowledged, a pending auto-off, or a hub
// OFF not yet confirmed. A primary replica calls it when it could not renew
// its lease (docs/decisions/0031-lease-fail-safe.md): until the next
// primary starts, no replica bounds an output, and the store is probably
// unreachable. So the OFFs are neither recorded nor tracked (the process
// stops next); they go out through pub, in parallel, until ctx ends. It
// returns how many the broker accepted and the error of each other one.
func (s *Service) FailSafe(ctx context.Context, pub Publisher) (sent int, err error) {
	offs, unrouted := s.failSafeOffs()

	var (
		mu   sync.Mutex
		errs = unrouted
		wg   sync.WaitGroup
		slot = make(chan struct{}, failSafeParallel)
	)
	for _, o := range offs {
		slot <- struct{}{}
		wg.Go(func() {
			defer func() { <-slot }()
			perr := s.publishFailSafe(ctx, pub, o)

			mu.Lock()
			defer mu.Unlock()
			if perr != nil {
				errs = append(errs, perr)
				return
			}
			sent++
		})
	}
	wg.Wait()
	return sent, errors.Join(errs...)
}

// failSafeOffs lists the OFFs of FailSafe, and an error for each output
// that may run on a device the registry no longer knows.
func (s *Service) failSafeOffs() ([]failSafeOff, []error) {
	var running []key
	s.mu.Lock()
	for k, u := range s.units {
		if u.mayRunLocked() {
			running = append(running, k)
		}
	}
	s.mu.Unlock()

	var (
		offs     []failSafeOff
		unrouted []error
	)
	for _, k := range running {
		// The root of the device's last live message, as every command
		// uses (docs/protocol.md A2); empty is a valid root.
		d, err := s.devices.Get(k.esp)
		if err != nil {
			unrouted = append(unrouted, fmt.Errorf("fail-safe OFF %s/%d: %w", k.esp, k.gpio, err))
			continue
		}
		offs = append(offs, failSafeOff{
			espID: k.esp,
			gpio:  k.gpio,
			topic: contract.DeviceTopic(d.KaiserID, k.esp, fmt.Sprintf("actuator/%d/command", k.gpio)),
		})
	}
	return offs, unrouted
}

// mayRunLocked reports an output the hub cannot rule out as energised;
// s.mu is held.
func (u *unit) mayRunLocked() bool {
	st := u.st
	return isOn(st) ||
		st.AutoOff != nil ||
		st.OnCandidate != nil ||
		st.PendingOff != nil ||
		u.inflightLocked() != nil
}

func (s *Service) publishFailSafe(ctx context.Context, pub Publisher, o failSafeOff) error {
	payload, err := contract.Marshal(contract.NewActuatorCommand("OFF", 0, 0, s.now(), uuid.NewString()))
	if err == nil {
		err = pub.Publish(ctx, o.topic, payload, 1, false)
	}
	if err != nil {
		s.log.Error("fail-safe OFF not sent", "esp_id", o.espID, "gpio", o.gpio, "error", err)
		return fmt.Errorf("fail-safe OFF %s/%d: %w", o.espID, o.gpio, err)
	}
	s.log.Warn("fail-safe OFF sent", "esp_id", o.espID, "gpio", o.gpio)
	return nil
}
