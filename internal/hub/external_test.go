package hub

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/broker"
	"github.com/kaiserhub/kaiser/internal/broker/mosquitto"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/sim"
	"github.com/kaiserhub/kaiser/internal/store"
)

// The external broker mode (docs/decisions/0023-external-broker.md) end to
// end: a real Mosquitto started by the test, the hub as its MQTT 5 client,
// firmware-faithful simulated nodes connected to Mosquitto.

// externalConfig is a hub on Mosquitto m that reconnects quickly (the
// tests restart m; production backs off 1–60 s).
func externalConfig(m *mosquitto.Broker, cfg Config) Config {
	cfg.MQTTBroker = broker.ExternalConfig{
		URL:     m.URL(false),
		Backoff: func(int) time.Duration { return 50 * time.Millisecond },
	}
	return cfg
}

// startSensorNode runs a node with one pH sensor (a reading every 5 s of
// its clock, which runs at the tests' scale) against broker.
func startSensorNode(t *testing.T, broker, id, quirks string) *simNode {
	t.Helper()
	q, err := sim.ParseQuirks(quirks)
	if err != nil {
		t.Fatal(err)
	}
	return runSimNode(t, sim.NodeConfig{
		EspID:    id,
		Broker:   broker,
		Quirks:   q,
		Interval: 5 * time.Second,
		Sensors:  []sim.SensorSpec{{GPIO: 34, Type: "ph", Base: 2048, Pattern: "random", Range: 20}},
	})
}

// awaitReading waits for the next sensor_data event of id.
func awaitReading(t *testing.T, events *event.Subscription, id string) {
	t.Helper()
	awaitEvent(t, events, 10*time.Second, func(e event.Event) bool {
		d, ok := sensorData(e)
		return ok && d.EspID == id
	})
}

func storedReadings(t *testing.T, h *Hub, id string) int {
	t.Helper()
	flushReadings(t, h)
	rows, err := h.Store.QueryReadings(context.Background(),
		store.RawQuery{Series: h.Sensors.SeriesIDs(id, 34, "ph"), Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return len(rows)
}

func systemEventIs(name string) func(event.Event) bool {
	return func(e event.Event) bool {
		s, ok := e.Data.(event.SystemEvent)
		return ok && s.Event == name
	}
}

// A simulated node through Mosquitto: registered, approved, its readings
// stored; a REST command reaches it and goes sent → acknowledged. The
// broker restarts: the hub is not ready meanwhile, reconnects, subscribes
// again, readings are stored again and a command is acknowledged again.
// /health/detailed names the broker.
func TestExternalBrokerEndToEnd(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	h, c := apiHub(t, externalConfig(m, Config{ActuatorSecond: accSecond}))
	t.Cleanup(func() { stopHub(t, h) })
	r := &rig{t: t, api: c, mqtt: m.Addr()}
	r.admin, r.operator, r.viewer = setupUsers(t, c)
	if h.Broker != nil || !h.Bus.Connected() {
		t.Fatalf("embedded broker %v, connected %v", h.Broker, h.Bus.Connected())
	}
	events := h.Events.Subscribe(4096, event.TypeSensorData, event.TypeCommandStatus, event.TypeSystemEvent)
	defer h.Events.Unsubscribe(events)

	n := startSensorNode(t, m.Addr(), "ESP_EB0001", newerFW)
	r.admit(n)
	awaitReading(t, events, n.id)
	if got := storedReadings(t, h, n.id); got == 0 {
		t.Fatal("no reading stored")
	}

	r.pump(n, 5)
	command := func() {
		t.Helper()
		from := n.Mark()
		id := r.command(n.id, 5, map[string]any{"command": "ON", "duration": 20})
		n.Await(t, from, "the ON", commandIn(5, "ON"))
		var seen []string
		awaitEvent(t, events, 10*time.Second, func(e event.Event) bool {
			cs, ok := e.Data.(event.CommandStatus)
			if ok && cs.CommandID == id {
				seen = append(seen, cs.Status)
			}
			return ok && cs.CommandID == id && cs.Status == "acknowledged"
		})
		if strings.Join(seen, ",") != "sent,acknowledged" {
			t.Fatalf("command states %v, want sent then acknowledged", seen)
		}
		rec := r.commandRecord(id, commandIs("acknowledged"))
		if rec["sent_at"] == nil {
			t.Fatalf("acknowledged without sent_at: %v", rec)
		}
		r.state(n.id, 5, fresh("on"))
		r.command(n.id, 5, map[string]any{"command": "OFF"})
		r.state(n.id, 5, fresh("off"))
	}
	command()

	detailed := r.api.do("GET", "/api/v1/health/detailed", r.viewer, nil)
	mq, _ := detailed.body["mqtt"].(map[string]any)
	if mq["broker_host"] != "127.0.0.1" || mq["broker_port"] != float64(m.Port) || mq["connected"] != true {
		t.Fatalf("health mqtt %v", mq)
	}

	m.Stop()
	awaitEvent(t, events, 10*time.Second, systemEventIs("mqtt_disconnected"))
	if ready := r.api.do("GET", "/api/v1/health/ready", "", nil); ready.status != 503 ||
		ready.body["checks"].(map[string]any)["mqtt"] != false {
		t.Fatalf("ready while the broker is down: %d %s", ready.status, ready.raw)
	}
	before := storedReadings(t, h, n.id)

	m.Restart()
	awaitEvent(t, events, 10*time.Second, systemEventIs("mqtt_connected"))
	if ready := r.api.do("GET", "/api/v1/health/ready", "", nil); ready.status != 200 {
		t.Fatalf("not ready after the reconnect: %s", ready.raw)
	}
	awaitReading(t, events, n.id) // the node reconnected, the hub subscribed again
	if after := storedReadings(t, h, n.id); after <= before {
		t.Fatalf("readings %d after the restart, %d before", after, before)
	}
	// Mosquitto sends the wills of its clients as it stops, so the node may
	// be offline (lwt) until its next heartbeat (docs/protocol.md L4).
	n.HeartbeatNow()
	r.waitDevice(n.id, "online")
	command() // the newer node subscribed again too; responses reach the hub
	if !strings.Contains(scrape(t, h), "kaiser_broker_connections_lost_total 1") {
		t.Fatal("the lost connection is not counted")
	}
}

// Replays are recognised by the RETAIN flag (docs/protocol.md §5.6): a
// heartbeat a device publishes with RETAIN=1 is live and acked; the same
// message replayed by Mosquitto to the next hub is a counted replay and is
// not acked. The retained server/status reads online while the hub runs
// and graceful_shutdown after it stopped.
func TestExternalBrokerRetainedReplay(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	dir := t.TempDir()
	h1 := startHub(t, externalConfig(m, Config{DataDir: dir}))

	const id = "ESP_EB0002"
	acks := mustDial(t, m.Addr(), "ack-watcher")
	acks.subscribe(t, "kaiser/+/esp/"+id+"/system/heartbeat/ack", "kaiser/god/server/status")
	if st := acks.next(t, 5*time.Second); st.topic != "kaiser/god/server/status" || !strings.Contains(st.payload, `"online"`) {
		t.Fatalf("server status while running: %+v", st)
	}
	dev := mustDial(t, m.Addr(), id)
	if err := dev.publish("kaiser/god/esp/"+id+"/system/heartbeat", heartbeat(100), true); err != nil {
		t.Fatal(err)
	}
	if a := acks.next(t, 5*time.Second); a.topic != "kaiser/god/esp/"+id+"/system/heartbeat/ack" {
		t.Fatalf("live retained heartbeat: %+v, want its ack", a)
	}
	stopHub(t, h1)
	if st := acks.next(t, 5*time.Second); st.topic != "kaiser/god/server/status" ||
		!strings.Contains(st.payload, `"graceful_shutdown"`) {
		t.Fatalf("server status after stop: %+v", st)
	}

	h2 := startHub(t, externalConfig(m, Config{DataDir: dir}))
	defer stopHub(t, h2)
	if st := acks.next(t, 5*time.Second); !strings.Contains(st.payload, `"online"`) {
		t.Fatalf("server status after the restart: %+v", st)
	}
	// The broker replays the retained heartbeat right after the SUBACK, so
	// ahead of this live one (on the empty root, whose ack goes there, G2).
	if err := dev.publish("kaiser//esp/"+id+"/system/heartbeat", heartbeat(160), false); err != nil {
		t.Fatal(err)
	}
	if a := acks.next(t, 5*time.Second); a.topic != "kaiser//esp/"+id+"/system/heartbeat/ack" {
		t.Fatalf("first ack after the restart: %+v; the replay must not be acked", a)
	}
	waitIngestIdle(t, h2)
	if c := h2.Ingest.DeviceCounters(id); c.Replays != 1 || c.Dropped["replay"] != 1 {
		t.Fatalf("counters %+v, want one replay", c)
	}
	if line := metricLine(scrape(t, h2), `kaiser_ingest_messages_dropped_total{kind="heartbeat",reason="replay"}`); !strings.HasSuffix(line, " 1") {
		t.Fatalf("replay metric %q", line)
	}
}

// A QoS 1 reading through Mosquitto is stored, and acknowledged to the
// broker once committed: nothing is left waiting.
func TestExternalBrokerQoS1ReadingIsStored(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	h, c := apiHub(t, externalConfig(m, Config{}))
	defer stopHub(t, h)
	admin, _, _ := setupUsers(t, c)
	const id = "ESP_EB0003"
	dev := mustDial(t, m.Addr(), id)
	if err := dev.publish("kaiser/god/esp/"+id+"/system/heartbeat", heartbeat(100), false); err != nil {
		t.Fatal(err)
	}
	events := h.Events.Subscribe(256, event.TypeDeviceStatus, event.TypeSensorData)
	defer h.Events.Unsubscribe(events)
	deadline := time.Now().Add(5 * time.Second)
	for c.do("POST", "/api/v1/esp/devices/"+id+"/approve", admin, nil).status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("device never registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 5 {
		if err := dev.publish(readingTopic(id), readingAt(id, 2000+i, time.Now().Unix()-10+int64(i)), false); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		awaitReading(t, events, id)
	}
	if got := storedReadings(t, h, id); got != 5 {
		t.Fatalf("stored %d of 5 QoS 1 readings", got)
	}
	// The acknowledgements follow the commits.
	for deadline := time.Now().Add(5 * time.Second); h.External.Settling() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries still wait for their acknowledgement", h.External.Settling())
		}
	}
}

// With a password the hub logs in; /auth/mqtt/status names its user, never
// the password, and /health/ready follows the connection.
func TestExternalBrokerLogin(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{Users: map[string]string{"kaiser-hub": "pw-from-a-file"}})
	cfg := externalConfig(m, Config{})
	cfg.MQTTBroker.Username, cfg.MQTTBroker.Password = "kaiser-hub", "pw-from-a-file"
	h, c := apiHub(t, cfg)
	defer stopHub(t, h)
	_, operator, viewer := setupUsers(t, c)
	if ready := c.do("GET", "/api/v1/health/ready", "", nil); ready.status != 200 {
		t.Fatalf("not ready with the right password: %s", ready.raw)
	}
	// Device credentials are the external broker's business.
	if r := c.do("POST", "/api/v1/esp/devices/ESP_EB0004/mqtt-credentials", operator, nil); r.status != 409 ||
		!strings.Contains(r.raw, "INVALID_STATE") {
		t.Fatalf("credentials with an external broker: %d %s", r.status, r.raw)
	}
	if d := c.do("GET", "/api/v1/health/detailed", viewer, nil); strings.Contains(d.raw, "authentication is off") {
		t.Fatalf("the embedded broker's auth warning with an external broker: %s", d.raw)
	}
	st := c.do("GET", "/api/v1/auth/mqtt/status", viewer, nil)
	if st.body["enabled"] != true || st.body["username"] != "kaiser-hub" || st.body["broker_connected"] != true ||
		st.body["tls_enabled"] != false || strings.Contains(st.raw, "pw-from-a-file") {
		t.Fatalf("mqtt status %s", st.raw)
	}
}

// A hub started before its broker runs, not ready, and becomes ready once
// the broker is up: it keeps trying.
func TestExternalBrokerStartsBeforeItsBroker(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	m.Stop()
	cfg := externalConfig(m, Config{})
	cfg.MQTTBroker.ConnectWait = 100 * time.Millisecond
	h, c := apiHub(t, cfg)
	defer stopHub(t, h)
	events := h.Events.Subscribe(64, event.TypeSystemEvent)
	defer h.Events.Unsubscribe(events)
	if ready := c.do("GET", "/api/v1/health/ready", "", nil); ready.status != 503 ||
		ready.body["checks"].(map[string]any)["mqtt"] != false {
		t.Fatalf("ready without a broker: %d %s", ready.status, ready.raw)
	}
	m.Restart()
	awaitEvent(t, events, 10*time.Second, systemEventIs("mqtt_connected"))
	if ready := c.do("GET", "/api/v1/health/ready", "", nil); ready.status != 200 {
		t.Fatalf("not ready once the broker is up: %s", ready.raw)
	}
}
