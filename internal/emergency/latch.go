package emergency

import (
	"context"
	"slices"
	"time"

	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// unsavedAlertKey is the alert raised while a latch is held only in memory.
const unsavedAlertKey = "emergency_latch_unpersisted"

// maxAttempts bounds the clear attempts kept per latch.
const maxAttempts = 50

// latchLocked sets, or refreshes for a repeated stop, the latch of scope
// (docs/api.md §8.4 idempotence: reason, activated_by and activated_at are
// refreshed, and the guard counts from the new stop message); s.mu is held.
func (s *Service) latchLocked(scope, espID string, st stopRecord) {
	l := s.latches[scope]
	if l == nil {
		l = &store.EmergencyLatch{Scope: scope, EspID: espID}
		s.latches[scope] = l
	}
	l.Active = true
	l.IncidentCorrelationID = st.incident
	l.Reason = st.reason
	l.ActivatedBy = st.user
	l.ActivatedAt = st.at
	l.StopPublishedAt = nil
	l.ClearedBy, l.ClearedAt = "", nil
	l.RulesPaused = false
	s.touchLocked(l, st.at)
}

// touchLocked marks l changed: a new version that is not committed yet; s.mu is held.
func (s *Service) touchLocked(l *store.EmergencyLatch, now time.Time) {
	l.UpdatedAt = now
	l.Version++
	s.unsaved[l.Scope] = true
}

// attemptLocked appends a clear attempt to l, keeping the latest
// maxAttempts; s.mu is held.
func (s *Service) attemptLocked(l *store.EmergencyLatch, a store.EmergencyClearAttempt) {
	l.ClearAttempts = append(l.ClearAttempts, a)
	if n := len(l.ClearAttempts); n > maxAttempts {
		l.ClearAttempts = slices.Clone(l.ClearAttempts[n-maxAttempts:])
	}
	s.touchLocked(l, a.At)
}

// commit writes every latch change not committed yet and waits for the
// commit (docs/domain.md §5.2 step 1). On failure the latches stay in force
// from memory, the write is retried every RetryEvery, a critical alert is
// raised and the service reports not ready until a write succeeds.
func (s *Service) commit(ctx context.Context) error {
	s.mu.Lock()
	recs := make([]store.EmergencyLatch, 0, len(s.unsaved))
	for scope := range s.unsaved {
		cp := *s.latches[scope]
		cp.ClearAttempts = slices.Clone(cp.ClearAttempts)
		recs = append(recs, cp)
	}
	s.mu.Unlock()
	if len(recs) == 0 {
		return nil
	}

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitWait)
	err := s.store.SaveLatches(cctx, recs)
	cancel()

	s.mu.Lock()
	wasReady := !s.failing
	if err == nil {
		for _, r := range recs {
			if cur := s.latches[r.Scope]; cur != nil && cur.Version == r.Version {
				delete(s.unsaved, r.Scope)
			}
		}
	}
	s.failing = err != nil || (s.failing && len(s.unsaved) > 0)
	ready := !s.failing
	onReady := s.onReady
	s.mu.Unlock()

	if err != nil {
		s.log.Error("emergency latch not committed; enforced from memory and retried", "error", err)
		s.ensureRetry()
		s.raiseUnsaved(err)
	}
	if ready && !wasReady {
		s.log.Info("emergency latches committed")
		s.goSafe(func() {
			if cerr := s.alerts.Clear(context.Background(), unsavedAlertKey); cerr != nil {
				s.log.Warn("resolving the latch alert failed", "error", cerr)
			}
		})
	}
	if onReady != nil && ready != wasReady {
		onReady(ready)
	}
	return err
}

// ensureRetry starts the retry loop unless it runs.
func (s *Service) ensureRetry() {
	s.mu.Lock()
	if s.retrying {
		s.mu.Unlock()
		return
	}
	s.retrying = true
	s.mu.Unlock()

	s.goSafe(func() {
		t := time.NewTicker(RetryEvery)
		defer t.Stop()
		for {
			select {
			case <-s.closed:
				return
			case <-t.C:
			}
			_ = s.commit(context.Background())

			// Decided under the lock: a failure after this point finds
			// retrying false and starts a new loop.
			s.mu.Lock()
			if len(s.unsaved) == 0 {
				s.retrying = false
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
		}
	})
}

// raiseUnsaved opens the critical alert of a latch held only in memory.
func (s *Service) raiseUnsaved(cause error) {
	s.goSafe(func() {
		err := s.alerts.Raise(context.Background(), notify.Spec{
			Key:      unsavedAlertKey,
			Severity: "critical",
			Category: "system",
			Source:   "emergency",
			Title:    "Emergency latch not stored",
			Body: "An emergency-stop latch could not be written to the database. It is enforced from memory " +
				"and the write is retried every second; a hub restart before it succeeds would lose it.",
			Metadata: map[string]any{"error": cause.Error()},
		})
		if err != nil {
			s.log.Warn("raising the latch alert failed", "error", err)
		}
	})
}

// snapshot returns a copy of the latch of scope, or nil.
func (s *Service) snapshot(scope string) *store.EmergencyLatch {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l := s.latches[scope]
	if l == nil {
		return nil
	}
	cp := *l
	cp.ClearAttempts = slices.Clone(l.ClearAttempts)
	return &cp
}
