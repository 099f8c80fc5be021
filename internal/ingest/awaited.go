package ingest

import (
	"context"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// Awaited is the outcome of a message handed over with SubmitAwaited, known
// once its handler ran and its writes are committed.
type Awaited struct {
	kind   contract.Kind
	settle *settlement // nil when the message ended at hand-over
	reason string      // the counted drop reason of a message that ended there
}

// SubmitAwaited hands over a QoS 1 delivery from an external broker, whose
// acknowledgement waits for the outcome (docs/protocol.md M3,
// docs/decisions/0023-external-broker.md). Unlike SubmitSettled it returns
// as soon as the message is queued, so the caller (the client's one
// delivery goroutine) hands messages over in arrival order and never waits
// for a commit; the wait is Awaited.Wait, in another goroutine.
//
// A full device queue gets the kind's policy of Submit, bounded by
// Config.BlockingWait (one connection carries every device, so it must not
// wait until an acknowledgement deadline); once queued, the message is never
// evicted by drop-oldest.
func (d *Dispatcher) SubmitAwaited(rawTopic string, payload []byte, retain bool) *Awaited {
	m, reason, ok := d.accept(rawTopic, payload, retain, false)
	if !ok {
		return &Awaited{reason: reason}
	}
	m.settle = newSettlement()
	if reason := d.enqueue(m); reason != "" {
		return &Awaited{kind: m.Topic.Kind, reason: reason}
	}
	return &Awaited{kind: m.Topic.Kind, settle: m.settle}
}

// Wait returns "" once the handler succeeded and every write it queued is
// committed, or the counted drop reason; an error wrapping ErrUnsettled when
// ctx ends first, or ErrNotStored when a write failed.
func (a *Awaited) Wait(ctx context.Context) (string, error) {
	if a.settle == nil {
		return a.reason, nil
	}
	return a.settle.wait(ctx, a.kind)
}
