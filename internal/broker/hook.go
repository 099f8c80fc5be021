package broker

import (
	"bytes"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// Refusal reasons: the label values of kaiser_broker_refused_total.
const (
	refusedPacketTooLarge = "packet_too_large"
	refusedNotWritable    = "topic_not_writable"
	refusedWill           = "will_not_writable"
	refusedConnectRate    = "connect_rate"
	refusedClientLimit    = "client_limit"
	refusedConnectTimeout = "connect_timeout"
)

// hook enforces device identity on writes (in devices mode the device
// credentials and the ACL on reads and writes too, auth.go), the door's
// limits, and restores device subscriptions.
type hook struct {
	mqtt.HookBase
	e *Embedded
}

func (h *hook) ID() string { return "kaiser" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect,
		mqtt.OnConnectAuthenticate,
		mqtt.OnACLCheck,
		mqtt.OnSessionEstablish,
		mqtt.OnSessionEstablished,
		mqtt.OnSubscribed,
		mqtt.OnUnsubscribed,
		mqtt.OnDisconnect,
		mqtt.OnPublish,
		mqtt.OnWill,
		mqtt.OnRetainMessage,
		mqtt.OnRetainedExpired,
	}, []byte{b})
}

// OnSessionEstablish records the connection's client id for the listener's
// log line (the session set took the client at authentication), then
// waits for its id's turn and for the id's previous connection to end
// completely before mochi hands the session on (predecessor.go).
func (h *hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	if h.e.listener != nil {
		h.e.listener.established(cl.Net.Conn, cl.ID)
	}
	h.e.orderReconnect(cl)
}

// OnDisconnect forgets the client.
func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.e.sessions.remove(cl)
	h.e.settledMu.RLock()
	defer h.e.settledMu.RUnlock()
	for _, s := range h.e.settledSubs {
		s.marks.forget(cl)
	}
}

// OnConnect applies the connect rate and the client limit before the
// CONNACK. A refused client gets CONNACK "server unavailable" (MQTT 5:
// "connection rate exceeded" or "server busy").
func (h *hook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if cl.Net.Inline {
		return nil
	}
	reason := h.e.admit(cl)
	if reason == "" {
		return nil
	}
	code := packets.ErrServerUnavailable // the only such code MQTT 3.1.1 has
	if cl.Properties.ProtocolVersion == 5 {
		code = packets.ErrServerBusy
		if reason == refusedConnectRate {
			code = packets.ErrConnectionRateExceeded
		}
	}
	_ = h.e.server.SendConnack(cl, code, false, nil)
	return code
}

// OnConnectAuthenticate admits anonymous clients in off mode (the
// firmware's default) and applies the device credentials in devices mode
// (docs/decisions/0018-device-credentials.md). Either way it refuses a will
// the client could not publish itself, so nobody can plant a forged LWT for
// another device. A refused client never touches the session of the id it
// claimed: mochi takes a session over only after this hook said yes.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if h.e.stopping.Load() {
		return false
	}
	var g grant
	devices := h.e.cfg.Auth == AuthDevices
	if devices {
		var ok bool
		if g, ok = h.e.authenticate(cl, pk); !ok {
			return false
		}
	}
	if pk.Connect.WillFlag && !h.e.mayWill(cl, g, pk.Connect.WillTopic) {
		h.e.refused.WithLabelValues(refusedWill).Inc()
		h.e.log.Warn("mqtt connect refused: will topic not writable by client",
			"client_id", cl.ID,
			"will_topic", pk.Connect.WillTopic)
		return false
	}
	h.e.sessions.add(cl, g)
	if devices && !h.e.stillCurrent(cl, g) {
		h.e.sessions.remove(cl)
		return false
	}
	return true
}

func (e *Embedded) mayWill(cl *mqtt.Client, g grant, topic string) bool {
	if e.cfg.Auth == AuthDevices {
		return e.mayWriteAs(g, topic, contract.KindWill)
	}
	return e.mayWrite(cl.ID, topic)
}

// OnACLCheck: in off mode reads are open and writes are checked; devices
// mode checks both against the session's grant. mochi asks for reads at
// SUBSCRIBE (the filter) and at each delivery (the topic).
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	devices := h.e.cfg.Auth == AuthDevices
	if !write {
		if !devices || h.e.mayRead(h.e.sessions.grant(cl), topic) {
			return true
		}
		h.e.refused.WithLabelValues(refusedNotReadable).Inc()
		h.e.log.Warn("mqtt subscription or delivery refused", "client_id", cl.ID, "topic", topic)
		return false
	}
	if devices && h.e.mayWriteAs(h.e.sessions.grant(cl), topic, contract.KindHeartbeat) ||
		!devices && h.e.mayWrite(cl.ID, topic) {
		return true
	}
	h.e.refused.WithLabelValues(refusedNotWritable).Inc()
	h.e.log.Warn("mqtt publish refused", "client_id", cl.ID, "topic", topic)
	return false
}

// OnPublish settles a network client's QoS ≥1 PUBLISH on a settled
// subscription, before mochi writes the PUBACK (docs/protocol.md M3); an
// empty payload is a retained clear with nothing to commit and is not
// settled. A message that goes on is stored as retained only while the
// retained store has room; beyond it the message is delivered live
// (docs/protocol.md M5). A refused one books nothing there: mochi neither
// stores nor delivers it.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos > 0 && !cl.Net.Inline && len(pk.Payload) > 0 {
		if err := h.e.settlePublish(cl, &pk); err != nil {
			return pk, err
		}
	}
	if pk.FixedHeader.Retain {
		pk.FixedHeader.Retain = h.e.keepRetained(pk.TopicName, len(pk.Payload), cl.Net.Inline)
	}
	return pk, nil
}

// OnWill applies the retained bound to a retained will (D2: device wills are).
func (h *hook) OnWill(_ *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.Retain {
		will.Retain = h.e.keepRetained(will.TopicName, len(will.Payload), false)
	}
	return will, nil
}

// OnRetainMessage remembers the hub's own retained messages (ownRetained).
func (h *hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, _ int64) {
	if cl.Net.Inline {
		h.e.own.note(pk)
	}
}

// OnRetainedExpired frees the booking of a retained message mochi expired
// and stores the hub's own one again: it stays retained while the hub runs.
func (h *hook) OnRetainedExpired(topic string) {
	h.e.retained.expired(topic)
	h.e.renewOwn(topic)
}

// OnSessionEstablished restores a known device's firmware subscriptions on
// its recorded root, so a baseline device that reconnects without
// subscribing (Q3) still hears the hub (docs/protocol.md M4).
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	// A resumed session brings its subscriptions back.
	defer h.e.audience.changed()
	if cl.Net.Inline {
		return
	}
	// The session is in mochi's list: the id's next connection may go on.
	h.e.turns.end(cl.Net.Conn)
	if h.e.cfg.Roots == nil {
		return
	}
	// In devices mode only an authenticated device hears its hub topics.
	if h.e.cfg.Auth == AuthDevices && h.e.sessions.grant(cl).generation == 0 {
		return
	}
	root, ok := h.e.cfg.Roots(cl.ID)
	if !ok {
		return
	}
	for _, f := range contract.DeviceSubscriptions(root, cl.ID) {
		sub := packets.Subscription{Filter: f, Qos: 0}
		cl.State.Subscriptions.Add(f, sub)
		h.e.server.Topics.Subscribe(cl.ID, sub)
	}
	h.e.restored.Inc()
}

// OnSubscribed and OnUnsubscribed tell the audience that who hears what
// changed.
func (h *hook) OnSubscribed(*mqtt.Client, packets.Packet, []byte) { h.e.audience.changed() }

func (h *hook) OnUnsubscribed(*mqtt.Client, packets.Packet) { h.e.audience.changed() }

// mayWrite is the write rule: under `kaiser/`, a client may publish only
// device→hub topics of the device whose id equals its client id; hub→device
// topics and everything else there belong to the hub. Outside `kaiser/` a
// client may publish only under a prefix the operator allowed.
func (e *Embedded) mayWrite(clientID, topic string) bool {
	if !strings.HasPrefix(topic, "kaiser/") {
		for _, p := range e.limits.AllowPrefixes {
			if strings.HasPrefix(topic, p) {
				return true
			}
		}
		return false
	}
	if contract.IsHubToDevice(topic) {
		return false
	}
	parts := strings.SplitN(topic, "/", 5)
	return len(parts) == 5 && parts[2] == "esp" && parts[3] == clientID && parts[4] != ""
}

// admit applies the client limit and the connect rate to a CONNECT and
// returns the refusal reason, or "" to go on. Past the rate a CONNACK
// waits for the client's turn, at most Limits.ConnectDelay: a baseline node
// gives up after 10 failed attempts (Q8), and one refused at its first
// connect never subscribes (Q3). A known device is never refused
// (docs/protocol.md M5).
func (e *Embedded) admit(cl *mqtt.Client) string {
	known := e.cfg.Known != nil && e.cfg.Known(cl.ID)
	reason := ""
	if !known && e.overClientLimit(cl.ID) {
		reason = refusedClientLimit
	} else if d, ok := e.connects.reserve(e.now(), known); !ok {
		reason = refusedConnectRate
	} else if d > 0 {
		e.delayed.Inc()
		e.wait(d, e.stop)
	}
	if reason != "" {
		e.refused.WithLabelValues(reason).Inc()
		e.log.Warn("mqtt connect refused", "reason", reason, "client_id", cl.ID, "remote", cl.Net.Remote)
	}
	return reason
}

// overClientLimit reports whether a client that is not a known device
// would hold one session too many. A client taking over its own session
// adds none.
func (e *Embedded) overClientLimit(clientID string) bool {
	sessions := e.server.Clients.Len() - 1 // the inline client
	if sessions < e.limits.MaxClients {
		return false
	}
	if _, ok := e.server.Clients.Get(clientID); ok {
		return false
	}
	fleet := 0
	if e.cfg.Fleet != nil {
		fleet = e.cfg.Fleet()
	}
	return sessions >= max(e.limits.MaxClients, 2*fleet)
}

// keepRetained books a retained message and reports whether it may be
// stored. One that does not fit also removes its topic's stored copy, so
// the store never replays a message older than one delivered since.
func (e *Embedded) keepRetained(topic string, payloadLen int, hub bool) bool {
	ok, evict := e.retained.admit(topic, payloadLen, hub)
	if ok {
		return true
	}
	if evict {
		e.server.Topics.RetainMessage(packets.Packet{TopicName: topic})
		atomic.StoreInt64(&e.server.Info.Retained, int64(e.server.Topics.Retained.Len()))
	}
	e.notStored.Inc()
	e.log.Warn("mqtt retained store full: message delivered live, not stored",
		"topic", topic,
		"payload_bytes", payloadLen)
	return false
}

// refusedHere reports a connection end the hook already logged and counted.
func (e *Embedded) refusedHere(err error) bool {
	for _, c := range []packets.Code{
		packets.ErrServerUnavailable,
		packets.ErrServerBusy,
		packets.ErrConnectionRateExceeded,
		packets.ErrBadUsernameOrPassword,
		packets.ErrNotAuthorized,
	} {
		if errors.Is(err, c) {
			return true
		}
	}
	return false
}

// waitUnlessStopped waits d or until stop is closed.
func waitUnlessStopped(d time.Duration, stop <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}
