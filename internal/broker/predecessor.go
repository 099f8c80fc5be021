package broker

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// predecessorWait bounds how long a CONNECT waits for the previous
// connection of its client id to finish. That connection's end is a few
// steps of bookkeeping and its will; only a stuck one takes longer.
const predecessorWait = 5 * time.Second

// awaitPredecessor ends the previous connection of cl's client id, if mochi
// is still busy with it, and waits until mochi has finished with it.
//
// mochi cleans a clean session up on the way out of the connection's
// goroutine: it removes the session's subscriptions and then deletes the
// client id from its client list, both by id. A node that reconnects in
// between (after a revoked credential, a dropped link, a reboot with a
// half-open socket) gets its new subscriptions removed, or its new client
// deleted from the list, and then hears nothing: no heartbeat ack, no
// actuator command, no emergency stop, while its session looks connected.
// Waiting here, before mochi takes the session over, orders the old end
// before the new start. A persistent session whose connection is already
// over is left to mochi's takeover: no goroutine of it is left to race.
func (e *Embedded) awaitPredecessor(cl *mqtt.Client) {
	prev, ok := e.server.Clients.Get(cl.ID)
	if !ok || prev == cl || prev.Net.Inline {
		return
	}
	v, running := e.attached.Load(prev.Net.Conn)
	if !running {
		return
	}
	e.log.Debug("mqtt client id reconnected before its previous connection ended: ending that one first",
		"client_id", cl.ID,
		"remote", cl.Net.Remote,
		"previous_remote", prev.Net.Remote)
	_ = e.server.DisconnectClient(prev, packets.ErrSessionTakenOver)

	select {
	case <-v.(chan struct{}):
	case <-time.After(predecessorWait):
		e.log.Warn("mqtt previous connection of a reconnecting client id did not end in time; taking its session over anyway",
			"client_id", cl.ID,
			"remote", cl.Net.Remote,
			"waited", predecessorWait)
	}
}
