package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/kaiserhub/kaiser/internal/broker"
	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
)

// MessageBus is the MQTT broker the hub publishes to and hears its devices
// through: the embedded broker (*broker.Embedded, the default) or the
// hub's client of an external broker (*broker.External,
// docs/decisions/0023-external-broker.md). Both take the subscription in
// startIngest, each in its own way.
type MessageBus interface {
	Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error
	// Connected: serving (embedded) or connected and subscribed (external).
	Connected() bool
	// Addr is the embedded listener's address or the external broker's host:port.
	Addr() string
	Stopping() bool
	// Start opens the listener (embedded) or connects (external).
	Start() error
	// StopAccepting ends inbound messages before the pipeline drains.
	StopAccepting(ctx context.Context) error
	Close() error
}

var (
	_ MessageBus = (*broker.Embedded)(nil)
	_ MessageBus = (*broker.External)(nil)
)

// connectExternal prepares the client of the external broker; it connects
// in openToDevices. Its will is the hub's retained server/status "offline",
// and every connect announces the hub again (docs/protocol.md §3.2.11).
func (h *Hub) connectExternal() error {
	cfg := h.cfg.MQTTBroker
	cfg.ClientID = hubClientID(h.cfg.KaiserID)
	// A standby speaks for no hub: no will and no announcement, which
	// would tell the devices the hub is offline while the primary serves,
	// or clear a broadcast stop (docs/decisions/0029-replicas.md).
	standby := h.cfg.role() == RoleStandby
	if !standby {
		will, err := contract.Marshal(contract.ServerStatus{Status: "offline", Reason: "unexpected_disconnect"})
		if err != nil {
			return err
		}
		cfg.Will = &broker.Message{Topic: contract.ServerStatusTopic(h.cfg.KaiserID), Payload: will, QoS: 1, Retain: true}
	}
	cfg.OnConnect = func(ctx context.Context) {
		if !standby {
			h.announce(ctx)
		}
		h.systemEvent("mqtt_connected", "connected to the MQTT broker")
	}
	cfg.OnConnectionLost = func() {
		h.systemEvent("mqtt_disconnected", "connection to the MQTT broker lost; reconnecting")
	}
	cfg.Logger, cfg.Registerer = h.Log, h.Registry
	x, err := broker.NewExternal(cfg)
	if err != nil {
		return err
	}
	h.External, h.Bus = x, x
	if t := h.cfg.term; t != nil {
		h.Bus = termBus{MessageBus: x, term: t}
	}
	return nil
}

// subscribeExternal makes the external client hand deliveries to d: QoS 0
// ones and replays through Submit, live QoS 1 ones through SubmitAwaited,
// acknowledged to the broker once committed (docs/protocol.md M3).
func (h *Hub) subscribeExternal(d *ingest.Dispatcher) {
	h.External.Subscribe(contract.SharedSubscriptions, contract.OrderedSubscriptions(), d.Submit,
		func(topic string, payload []byte, retain bool) func(context.Context) (string, error) {
			return d.SubmitAwaited(topic, payload, retain).Wait
		})
}

// announce clears a retained broadcast stop, which would stop every
// baseline device at connect (docs/protocol.md §5.6), and publishes the
// retained server/status "online": once at start with the embedded broker,
// after every connect with an external one.
func (h *Hub) announce(ctx context.Context) {
	if err := h.Bus.Publish(ctx, contract.BroadcastEmergencyTopic, nil, 1, true); err != nil {
		h.Log.Warn("clearing retained broadcast emergency failed", "error", err)
	}
	h.publishServerStatus(ctx, contract.ServerStatus{Status: "online", Timestamp: time.Now().Unix()})
}

func (h *Hub) systemEvent(name, msg string) {
	h.Events.Publish(event.Event{Data: event.SystemEvent{
		Event:     name,
		Message:   msg,
		Timestamp: time.Now().Unix(),
	}})
}

// hubClientID is the hub's MQTT client id, which no esp_id can equal
// (docs/protocol.md §1.2): hub-{kaiser_id}-{random}.
func hubClientID(kaiserID string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "hub-" + kaiserID + "-" + hex.EncodeToString(b)
}
