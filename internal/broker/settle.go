package broker

import (
	"context"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// Settle receives a QoS ≥1 PUBLISH of a network client on a settled
// subscription before the broker acknowledges it (docs/protocol.md M3). It
// returns once the message is committed (""), or dropped with a counted
// reason (the reason); an error when the message could not be settled
// before ctx ended, or was not stored. It runs in the publishing client's
// read goroutine, so waiting there slows only that client.
type Settle func(ctx context.Context, topic string, payload []byte, retain bool) (dropReason string, err error)

// refusedAckWithheld counts QoS 1 PUBLISHes the hub could not settle: no
// PUBACK, the client is disconnected.
const refusedAckWithheld = "ack_withheld"

// settledSub is one in-process subscription whose QoS ≥1 messages from
// network clients are settled in the hook, before the PUBACK. mochi writes
// the PUBACK before it calls in-process subscribers, so they would only
// ever see a message already acknowledged.
type settledSub struct {
	filters []string
	settle  Settle
	marks   settledMarks
}

// SubscribeSettled is Subscribe for a subscriber that must settle QoS ≥1
// messages before they are acknowledged: such a message from a network
// client goes to settle, in the publishing client's read goroutine before
// its PUBACK, instead of to deliver after it. QoS 0 messages, retained
// replays and the hub's own publishes still go to deliver. Other MQTT
// subscribers receive every message as before, once it is acknowledged.
// An external broker client can offer the same by acknowledging a QoS 1
// delivery only once settle returns (manual acknowledgement).
func (e *Embedded) SubscribeSettled(filters []string, deliver Deliver, settle Settle) error {
	sub := &settledSub{filters: append([]string(nil), filters...), settle: settle}
	e.settledMu.Lock()
	e.settledSubs = append(e.settledSubs, sub)
	e.settledMu.Unlock()
	return e.subscribe(filters, func(topic string, payload []byte, qos byte, retain, replay bool) {
		if !replay && qos > 0 && sub.marks.take(payload) {
			return // settled before the PUBACK
		}
		deliver(topic, payload, retain, replay)
	})
}

// settledFor returns the settled subscriptions whose filters match topic.
func (e *Embedded) settledFor(topic string) []*settledSub {
	e.settledMu.RLock()
	defer e.settledMu.RUnlock()
	var out []*settledSub
	for _, s := range e.settledSubs {
		for _, f := range s.filters {
			if filterMatches(f, topic) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// settlePublish settles a network client's QoS ≥1 PUBLISH with every
// matching settled subscription before mochi acknowledges it. It returns
// nil to let mochi acknowledge and deliver it, a reason code for an MQTT 5
// negative PUBACK, or ErrRejectPacket when the PUBACK is withheld.
func (e *Embedded) settlePublish(cl *mqtt.Client, pk *packets.Packet) error {
	subs := e.settledFor(pk.TopicName)
	if len(subs) == 0 {
		return nil
	}
	e.settling.Add(1)
	defer e.settling.Add(-1)
	ctx, cancel := context.WithTimeout(e.stopCtx, e.limits.AckDeadline)
	defer cancel()
	var settled []*settledSub
	for _, s := range subs {
		reason, err := s.settle(ctx, pk.TopicName, pk.Payload, pk.FixedHeader.Retain)
		if err != nil {
			for _, done := range settled {
				done.marks.drop(pk.Payload)
			}
			e.withholdAck(cl, pk, err)
			return packets.ErrRejectPacket
		}
		if code, refused := ackCode(reason); refused && cl.Properties.ProtocolVersion == 5 {
			for _, done := range settled {
				done.marks.drop(pk.Payload)
			}
			return code
		}
		s.marks.add(pk.Payload, cl)
		settled = append(settled, s)
	}
	return nil
}

// Settling is the number of QoS ≥1 PUBLISHes waiting for their
// settlement, one at most per publishing client.
func (e *Embedded) Settling() int { return int(e.settling.Load()) }

// withholdAck ends a client's session without acknowledging its PUBLISH:
// MQTT 3.1.1 has no negative PUBACK, and an unacknowledged message would
// hold a slot of the client's in-flight window for good; the client learns
// that the message was not taken and may send it again on a new session.
// At shutdown every client is being disconnected anyway: a settlement cut
// short there is neither a refusal nor worth a warning.
func (e *Embedded) withholdAck(cl *mqtt.Client, pk *packets.Packet, err error) {
	if e.stopping.Load() {
		e.log.Debug("mqtt publish not acknowledged: the hub is stopping", "client_id", cl.ID, "topic", pk.TopicName)
		_ = e.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
		return
	}
	e.refused.WithLabelValues(refusedAckWithheld).Inc()
	e.log.Warn("mqtt publish not acknowledged: not settled; client disconnected",
		"client_id", cl.ID,
		"topic", pk.TopicName,
		"error", err.Error())
	_ = e.server.DisconnectClient(cl, packets.ErrServerBusy)
}

// ackCode is the MQTT 5 PUBACK reason code of a drop reason; refused is
// false for an outcome that is not an error (stored, an empty retained
// clear, a duplicate or a replay).
func ackCode(reason string) (packets.Code, bool) {
	switch reason {
	case "", contract.ReasonEmpty, contract.ReasonDuplicate, contract.ReasonReplay:
		return packets.CodeSuccess, false
	case contract.ReasonQueueOverflow:
		return packets.ErrQuotaExceeded, true
	}
	return packets.ErrUnspecifiedError, true
}

// settledMarks holds the live packets a subscription settled in the hook,
// by the address of their payload (every packet read gets a buffer of its
// own), until its in-process delivery arrives and is skipped. A mark whose
// delivery never comes (the PUBACK could not be written) is removed when
// its client disconnects.
type settledMarks struct {
	mu sync.Mutex
	m  map[*byte]*mqtt.Client
}

func (s *settledMarks) add(payload []byte, cl *mqtt.Client) {
	if len(payload) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[*byte]*mqtt.Client{}
	}
	s.m[&payload[0]] = cl
}

// take reports whether payload belongs to a settled packet, and forgets it.
func (s *settledMarks) take(payload []byte) bool {
	if len(payload) == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[&payload[0]]; !ok {
		return false
	}
	delete(s.m, &payload[0])
	return true
}

func (s *settledMarks) drop(payload []byte) { s.take(payload) }

// forget removes the marks of a client that left.
func (s *settledMarks) forget(cl *mqtt.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, c := range s.m {
		if c == cl {
			delete(s.m, p)
		}
	}
}

// filterMatches reports whether an MQTT topic filter matches a topic name:
// `+` is one level (an empty one too), a trailing `#` the rest, its parent
// level included; wildcards at the first level never match `$` topics.
func filterMatches(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) {
			return false
		}
		if f != "+" && f != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}
