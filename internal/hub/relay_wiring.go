package hub

import (
	"context"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/relay"
)

// standbyEvents are what a standby relays to the primary: the events of
// the readings it ingests (docs/decisions/0029-replicas.md).
var standbyEvents = []event.Type{event.TypeSensorData, event.TypeSensorHealth, event.TypeNotification}

// startRelay links the replica's event bus with the others' through
// PostgreSQL: a standby sends its readings' events, the primary receives
// them (its live feed, rule engine and latest values take remote events).
// A hub alone has no relay.
func (h *Hub) startRelay(context.Context) error {
	role := h.cfg.role()
	if role == RoleSolo {
		return nil
	}
	r, err := relay.New(relay.Config{
		DSN:        h.cfg.Database,
		Password:   h.cfg.DatabasePassword,
		Origin:     h.cfg.link.holder,
		Bus:        h.Events,
		Types:      standbyEvents,
		NoSend:     role == RolePrimary,
		NoListen:   role == RoleStandby,
		Logger:     h.Log.With("component", "relay"),
		Registerer: h.Registry,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	h.relayStop = func() {
		cancel()
		<-done
	}
	return nil
}

// stopRelay ends the relay once nothing more is ingested: a standby's
// sender still sends what it has queued.
func (h *Hub) stopRelay() {
	if h.relayStop != nil {
		h.relayStop()
		h.relayStop = nil
	}
}
