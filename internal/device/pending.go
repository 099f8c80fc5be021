package device

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
)

// The bounds on devices nobody has approved (docs/decisions/0020-long-run-bounds.md):
// discovery admits up to 100 new ids a minute for as long as the hub runs,
// so without them the registry, its table and the payloads kept for
// inspection grow with every id that ever sent one heartbeat.
const (
	// defaultMaxPending caps the discovered devices awaiting approval. A
	// heartbeat of an unknown id beyond it is acked pending_approval and
	// counted pending_limit; the id registers once a place is free.
	defaultMaxPending = 1000

	// defaultPendingExpiry forgets a discovered device not heard from for
	// this long: its record, transitions and heartbeats are removed, and
	// its next heartbeat discovers it again.
	defaultPendingExpiry = 24 * time.Hour

	// PendingSweepEvery is how often ExpirePending runs.
	PendingSweepEvery = 10 * time.Minute

	// maxHeldBytes bounds the payloads kept for inspection per pending or
	// rejected device, beside maxHeldTopics.
	maxHeldBytes = 16 << 10
)

// awaiting reports a device that is pending since its discovery: never
// approved and not set pending by an operator. Only these count against
// the cap and expire; an operator's set-pending device keeps its record.
func awaiting(e *entry) bool {
	return e != nil && e.rec.Status == StatusPending && e.rec.ApprovedAt == nil &&
		e.rec.Metadata["set_pending_by"] == nil
}

// countAwaiting sets the number of awaiting devices; s.mu is held.
func (s *Service) countAwaiting() {
	s.awaitingN = 0
	for _, e := range s.devices {
		if awaiting(e) {
			s.awaitingN++
		}
	}
}

// track adjusts the awaiting count after e changed, given whether it was
// awaiting before; s.mu is held.
func (s *Service) track(e *entry, was bool) {
	switch now := awaiting(e); {
	case was && !now:
		s.awaitingN--
	case !was && now:
		s.awaitingN++
	}
}

// errPendingLimit refuses a discovery while the cap is reached.
var errPendingLimit = ingest.Drop(contract.ReasonPendingLimit,
	"cap on devices awaiting approval reached; device registers once a place is free")

// hold keeps the last payload of a pending or rejected device's topic for
// inspection, within maxHeldTopics topics and maxHeldBytes bytes. A payload
// that does not fit is not kept, and its topic's older one goes too, so
// what is kept is never older than what arrived; s.mu is held.
func (e *entry) hold(topic string, payload []byte) {
	if e.lastPayloads == nil {
		e.lastPayloads = map[string][]byte{}
	}
	old, had := e.lastPayloads[topic]
	delete(e.lastPayloads, topic)
	e.heldBytes -= len(old)
	if (!had && len(e.lastPayloads) >= maxHeldTopics) || e.heldBytes+len(payload) > maxHeldBytes {
		return
	}
	e.lastPayloads[topic] = append([]byte(nil), payload...)
	e.heldBytes += len(payload)
}

// release frees the payloads kept for inspection; s.mu is held.
func (e *entry) release() { e.lastPayloads, e.heldBytes = nil, 0 }

// lastHeard is when a device was last heard from, or registered.
func (e *entry) lastHeard() time.Time {
	switch {
	case e.rec.LastSeen != nil:
		return *e.rec.LastSeen
	case e.rec.DiscoveredAt != nil:
		return *e.rec.DiscoveredAt
	}
	return e.rec.CreatedAt
}

// ExpirePending forgets devices awaiting approval that have not been heard
// from for the expiry (docs/decisions/0020-long-run-bounds.md): their
// record, transitions and heartbeats are removed from the store, then from
// the registry, with a device_status event to deleted (reason
// pending_expired) for the audit log. A device heard from meanwhile keeps
// its record. It is a scheduler job (PendingSweepEvery).
func (s *Service) ExpirePending(ctx context.Context) error {
	type candidate struct {
		e       *entry
		version int64
	}
	cut := s.now().Add(-s.cfg.PendingExpiry)
	var cands []candidate
	s.mu.Lock()
	// Recounted here too: an operator's metadata patch can make a device
	// stop (or start) awaiting without a status change.
	s.countAwaiting()
	for _, e := range s.devices {
		if awaiting(e) && e.lastHeard().Before(cut) {
			cands = append(cands, candidate{e, e.rec.Version})
		}
	}
	s.mu.Unlock()

	var errs []error
	for _, c := range cands {
		id := c.e.rec.DeviceID
		// The store first: once it has committed, a heartbeat that
		// arrives stamps a newer version, whose save inserts the record
		// again, so the registry and the store agree either way.
		if err := s.store.PurgeDevice(ctx, id, c.version); err != nil {
			errs = append(errs, fmt.Errorf("expire pending device %s: %w", id, err))
			continue
		}
		now := s.now()
		s.mu.Lock()
		if s.devices[id] != c.e || c.e.rec.Version != c.version || !awaiting(c.e) {
			s.mu.Unlock()
			continue // heard from or changed since: it stays
		}
		delete(s.devices, id)
		delete(s.perID, id)
		s.awaitingN--
		c.e.release()
		c.e.rec.Status = StatusDeleted
		ev := statusEvent(c.e, StatusPending, "pending_expired", now)
		s.mu.Unlock()

		s.publish([]event.Event{ev})
		s.log.Info("pending device expired", "esp_id", id, "last_heard", c.e.lastHeard(), "after", s.cfg.PendingExpiry)
	}
	return errors.Join(errs...)
}
