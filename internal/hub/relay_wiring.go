package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/relay"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
)

// standbyEvents are what a standby relays to the primary: the events of
// the readings it ingests (docs/decisions/0029-replicas.md).
var standbyEvents = []event.Type{event.TypeSensorData, event.TypeSensorHealth, event.TypeNotification}

// startRelay links the replica with the others through PostgreSQL: its
// event bus (a standby sends its readings' events, the primary receives
// them: its live feed, rule engine and latest values take remote events)
// and the committed changes of devices and sensor configs
// (postgres.Store.WatchChanges). A hub alone has neither.
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
		Received:   h.applyRemote,
		Logger:     h.Log.With("component", "relay"),
		Registerer: h.Registry,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.Run(ctx) })
	wg.Go(func() {
		_ = h.Postgres.WatchChanges(ctx, func(c postgres.Change) { h.applyChange(ctx, c) })
	})
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	h.relayStop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(relayStopWait):
			h.Log.Warn("relay still busy with the database after the stop; not waiting for it")
		}
	}
	return nil
}

// relayStopWait bounds the stop of the relay and the change listener,
// whose database calls end with their contexts but may be slow to.
const relayStopWait = 5 * time.Second

// applyRemote folds a reading another replica stored into this one's
// latest values before the bus hands it on, so rule conditions read it.
func (h *Hub) applyRemote(e event.Event) {
	if d, ok := e.Data.(event.SensorData); ok {
		h.Sensors.ApplyRemote(d)
	}
}

// applyChange follows a committed change another replica made. A standby
// reloads the device or its sensor configs; the primary, which writes the
// registry itself, only learns of the series and configs others wrote
// (a reload of a device it just changed in memory could undo it).
func (h *Hub) applyChange(ctx context.Context, c postgres.Change) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	standby := h.cfg.role() == RoleStandby
	var err error
	switch c.Kind {
	case postgres.ChangeDevice:
		if standby {
			err = h.Devices.Refresh(ctx, c.EspID)
		}
	case postgres.ChangeSensors:
		err = h.Sensors.RefreshDevice(ctx, c.EspID)
	case postgres.ChangeAll:
		if standby {
			err = h.Devices.RefreshAll(ctx)
		}
		err = errors.Join(err, h.Sensors.RefreshAll(ctx))
	}
	if err != nil {
		h.Log.Warn("change of another replica not applied; the next change or reconnect reloads it",
			"kind", c.Kind, "esp_id", c.EspID, "error", err)
	}
}

// stopRelay ends the relay once nothing more is ingested: a standby's
// sender still sends what it has queued.
func (h *Hub) stopRelay() {
	if h.relayStop != nil {
		h.relayStop()
		h.relayStop = nil
	}
}
