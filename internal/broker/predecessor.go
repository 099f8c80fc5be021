package broker

import (
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// reconnectMargin is what a CONNECT waits beyond the acknowledgement
// deadline for the previous connection of its client id: that connection's
// end may wait for a QoS 1 settlement in progress (AckDeadline), then fires
// its will and does its bookkeeping.
const reconnectMargin = 2 * time.Second

// orderReconnect lets the connections of one client id start one after
// the other, each after mochi has finished with the one before.
//
// mochi cleans a clean session up on the way out of the connection's
// goroutine: it removes the session's subscriptions and then deletes the
// client id from its client list, both by id. A node that reconnects in
// between (after a revoked credential, a dropped link, a reboot with a
// half-open socket) gets its new subscriptions removed, or its new client
// deleted from the list, and then hears nothing: no heartbeat ack, no
// actuator command, no emergency stop, while its session looks connected.
// And mochi's takeover (look up the id, take over, add the new client) is
// not atomic, so two CONNECTs of one id must not run it at the same time.
//
// So a CONNECT first takes its id's turn, which the connection before it
// holds until its session is established, then ends the previous
// connection if mochi is still busy with it and waits for that end. The
// wait is bounded; past it mochi's own takeover goes on as before.
func (e *Embedded) orderReconnect(cl *mqtt.Client) {
	deadline := time.Now().Add(e.limits.AckDeadline + reconnectMargin)
	if !e.turns.take(cl.ID, cl.Net.Conn, deadline, e.stop) {
		e.log.Warn("mqtt connect of a client id went ahead without waiting for the one before it",
			"client_id", cl.ID,
			"remote", cl.Net.Remote)
		return
	}
	e.awaitPredecessor(cl, deadline)
}

// awaitPredecessor ends the previous connection of cl's client id, if
// mochi is still busy with it, and waits until mochi has finished with it.
// A persistent session whose connection is already over is left to
// mochi's takeover: no goroutine of it is left to race.
func (e *Embedded) awaitPredecessor(cl *mqtt.Client, deadline time.Time) {
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
	// Stop closes the socket without writing to it: a DISCONNECT could
	// block on a half-open socket until the keepalive ran out.
	prev.Stop(packets.ErrSessionTakenOver)

	wait := time.NewTimer(time.Until(deadline))
	defer wait.Stop()
	select {
	case <-v.(chan struct{}):
	case <-e.stop:
	case <-wait.C:
		e.log.Warn("mqtt previous connection of a reconnecting client id did not end in time; taking its session over anyway",
			"client_id", cl.ID,
			"remote", cl.Net.Remote)
	}
}

// idTurns gives each client id to one connecting network connection at a
// time.
type idTurns struct {
	mu     sync.Mutex
	byID   map[string]*turn
	byConn map[net.Conn]*turn
}

type turn struct {
	id   string
	done chan struct{} // closed when the turn ends
}

// take waits until no other connection holds id's turn and gives it to
// conn. False when deadline passed or stop closed first.
func (t *idTurns) take(id string, conn net.Conn, deadline time.Time, stop <-chan struct{}) bool {
	var wait *time.Timer
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	for {
		t.mu.Lock()
		cur := t.byID[id]
		if cur == nil {
			if t.byID == nil {
				t.byID, t.byConn = map[string]*turn{}, map[net.Conn]*turn{}
			}
			mine := &turn{id: id, done: make(chan struct{})}
			t.byID[id], t.byConn[conn] = mine, mine
			t.mu.Unlock()
			return true
		}
		t.mu.Unlock()

		if wait == nil {
			wait = time.NewTimer(time.Until(deadline))
		}
		select {
		case <-cur.done:
		case <-stop:
			return false
		case <-wait.C:
			return false
		}
	}
}

// end ends the turn conn holds, if any: once its session is established,
// or when mochi is done with the connection (a CONNACK that failed never
// established it).
func (t *idTurns) end(conn net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	mine := t.byConn[conn]
	if mine == nil {
		return
	}
	delete(t.byConn, conn)
	if t.byID[mine.id] == mine {
		delete(t.byID, mine.id)
	}
	close(mine.done)
}
