package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

func TestReadyAndHeartbeatAckForUnknownDevice(t *testing.T) {
	h := startHub(t, Config{})
	defer stopHub(t, h)
	resp, err := http.Get("http://" + h.HTTPAddr() + "/api/v1/health/ready/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ready: %v %v", resp, err)
	}
	resp.Body.Close()

	dev := mustDial(t, h.MQTTAddr(), "ESP_A1B2C3")
	dev.subscribe(t, "kaiser/+/esp/ESP_A1B2C3/system/heartbeat/ack")
	cases := []struct {
		kaiser string
		retain bool
	}{{"god", false}, {"", false}, {"god", true}}
	for i, c := range cases {
		topic := contract.DeviceTopic(c.kaiser, "ESP_A1B2C3", "system/heartbeat")
		if err := dev.publish(topic, heartbeat(61+i*60), c.retain); err != nil {
			t.Fatal(err)
		}
		m := dev.next(t, 5*time.Second)
		if m.topic != contract.DeviceTopic(c.kaiser, "ESP_A1B2C3", "system/heartbeat/ack") {
			t.Fatalf("ack on %q, want kaiser id %q", m.topic, c.kaiser)
		}
		var ack map[string]any
		err := json.Unmarshal([]byte(m.payload), &ack)
		if err != nil || ack["status"] != "pending_approval" || ack["handover_epoch"] != 1.0 {
			t.Fatalf("ack %s", m.payload)
		}
		if !strings.Contains(m.payload, `"status":"pending_approval"`) {
			t.Fatalf("ack must be compact: %s", m.payload)
		}
	}
	if err := h.Store.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	devs, err := h.Store.LoadDevices(context.Background())
	if err != nil || len(devs) != 1 || devs[0].Status != device.StatusPending || devs[0].DeviceID != "ESP_A1B2C3" {
		t.Fatalf("store: %+v %v", devs, err)
	}
	if n := devs[0].Metadata["heartbeat_count"]; n != 3.0 {
		t.Fatalf("heartbeat_count %v", n)
	}
	l := metricLine(scrape(t, h), `god_kaiser_mqtt_messages_received_total{kind="heartbeat"}`)
	if !strings.HasSuffix(l, " 3") {
		t.Fatalf("metrics: %q", l)
	}
}

func TestIdentityEnforcedOnWrites(t *testing.T) {
	h := startHub(t, Config{})
	defer stopHub(t, h)
	sniffer := mustDial(t, h.MQTTAddr(), "sniffer")
	sniffer.subscribe(t, "kaiser/#")
	dev := mustDial(t, h.MQTTAddr(), "ESP_A1B2C3")

	for _, topic := range []string{
		"kaiser/god/esp/ESP_OTHER1/system/heartbeat",
		"kaiser/god/esp/ESP_A1B2C3/config",
		"kaiser/god/esp/ESP_A1B2C3/actuator/5/command",
		"kaiser/god/esp/ESP_A1B2C3/system/heartbeat/ack",
		"kaiser/broadcast/emergency",
		"kaiser/god/server/status",
	} {
		if err := dev.publish(topic, heartbeat(61), false); err == nil {
			t.Errorf("publish to %s was accepted", topic)
		}
	}
	// Its own topic passes, and is the only thing the sniffer sees from it.
	if err := dev.publish("kaiser/god/esp/ESP_A1B2C3/system/heartbeat", heartbeat(61), false); err != nil {
		t.Fatal(err)
	}
	for {
		m := sniffer.next(t, 5*time.Second)
		if strings.Contains(m.topic, "ESP_OTHER1") ||
			strings.HasSuffix(m.topic, "/config") ||
			strings.HasSuffix(m.topic, "/command") {
			t.Fatalf("forged message delivered: %s", m.topic)
		}
		if m.topic == "kaiser/god/esp/ESP_A1B2C3/system/heartbeat" {
			break
		}
	}
	if c := h.Ingest.DeviceCounters("ESP_OTHER1"); c.Received != 0 {
		t.Fatalf("forged message reached ingest: %+v", c)
	}
	// A will naming another device is refused at connect.
	_, err := dial(t, h.MQTTAddr(), "ESP_A1B2C4", &paho.WillMessage{
		Topic:   "kaiser/god/esp/ESP_OTHER1/system/will",
		QoS:     1,
		Retain:  true,
		Payload: []byte(`{"status":"offline"}`),
	})
	if err == nil {
		t.Fatal("forged will accepted")
	}
}

// 200 devices × 50 messages over real MQTT, interleaved: per-device order
// kept, nothing lost, no goroutine left after shutdown.
func TestFleetOrderNoLossNoLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const devices, perDevice = 200, 50
	dir := t.TempDir()
	// The test is about order and loss, not shutdown speed: on a loaded
	// machine the 10,000 heartbeats' writes may take longer than the
	// default shutdown deadline to commit.
	h := startHub(t, Config{DataDir: dir, ShutdownTimeout: time.Minute})
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	clients := make([]*client, devices)
	for i := range clients {
		clients[i] = mustDial(t, h.MQTTAddr(), fmt.Sprintf("ESP_%06X", i))
	}
	start := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func(i int, c *client) {
			defer wg.Done()
			<-start
			id := fmt.Sprintf("ESP_%06X", i)
			for n := 1; n <= perDevice; n++ {
				if err := c.publish(contract.DeviceTopic("god", id, "system/heartbeat"), heartbeat(n), false); err != nil {
					errs <- fmt.Errorf("%s #%d: %w", id, n, err)
					return
				}
			}
		}(i, c)
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, c := range clients {
		c.close()
	}
	stopHub(t, h)

	st, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	for i := 0; i < devices; i++ {
		id := fmt.Sprintf("ESP_%06X", i)
		ups, err := st.HeartbeatUptimes(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(ups) != perDevice {
			t.Fatalf("%s: %d heartbeats stored, want %d", id, len(ups), perDevice)
		}
		for n, u := range ups {
			if u != int64(n+1) {
				t.Fatalf("%s: heartbeat %d stored out of order (uptime %d)", id, n, u)
			}
		}
	}
}

// A retained heartbeat delivered from the broker's retained store on a
// (re)subscribe is a replay: not acked, not liveness, counted as replay.
func TestRetainedReplayIsNotAcked(t *testing.T) {
	h := startHub(t, Config{})
	defer stopHub(t, h)
	dev := mustDial(t, h.MQTTAddr(), "ESP_A1B2C3")
	dev.subscribe(t, "kaiser/+/esp/ESP_A1B2C3/system/heartbeat/ack")
	if err := dev.publish("kaiser/god/esp/ESP_A1B2C3/system/heartbeat", heartbeat(61), true); err != nil {
		t.Fatal(err)
	}
	dev.next(t, 5*time.Second) // the live retained heartbeat is acked
	before := h.Ingest.DeviceCounters("ESP_A1B2C3")

	// Re-subscribe as the hub does after a reconnect: the broker replays.
	if err := h.Broker.Subscribe([]string{"kaiser/+/esp/+/system/heartbeat"}, h.Ingest.Submit); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.Ingest.DeviceCounters("ESP_A1B2C3").Dropped[contract.ReasonReplay] == before.Dropped[contract.ReasonReplay] {
		if time.Now().After(deadline) {
			t.Fatal("replay not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A live heartbeat now reaches the hub through both subscriptions; the
	// next ack must belong to it, not to the replay.
	if err := dev.publish("kaiser/god/esp/ESP_A1B2C3/system/heartbeat", heartbeat(999), false); err != nil {
		t.Fatal(err)
	}
	dev.next(t, 5*time.Second)
	c := h.Ingest.DeviceCounters("ESP_A1B2C3")
	if c.Replays != 1 || c.Dropped[contract.ReasonReplay] != 1 {
		t.Fatalf("counters %+v", c)
	}
}

func TestLivenessTimeoutLWTAndRecovery(t *testing.T) {
	h := startHub(t, Config{HeartbeatTimeout: time.Second})
	defer stopHub(t, h)
	events := h.Events.Subscribe(256)
	defer h.Events.Unsubscribe(events)
	ctx := context.Background()

	dev := mustDial(t, h.MQTTAddr(), "ESP_A1B2C3")
	hb := "kaiser//esp/ESP_A1B2C3/system/heartbeat"
	if err := dev.publish(hb, heartbeat(61), false); err != nil {
		t.Fatal(err)
	}
	awaitEvent(t, events, 5*time.Second, statusIs("ESP_A1B2C3", device.StatusPending, "discovered"))
	if _, err := h.Devices.Approve(ctx, "ESP_A1B2C3", "tester", ""); err != nil {
		t.Fatal(err)
	}
	dev.subscribe(t, "kaiser/+/esp/ESP_A1B2C3/system/heartbeat/ack")
	if err := dev.publish(hb, heartbeat(121), false); err != nil {
		t.Fatal(err)
	}
	if m := dev.next(t, 5*time.Second); !strings.Contains(m.payload, `"status":"online"`) {
		t.Fatalf("ack after approval: %s", m.payload)
	}
	awaitEvent(t, events, 5*time.Second, statusIs("ESP_A1B2C3", device.StatusOnline, "heartbeat"))

	// Silent with the connection kept → offline by timeout.
	awaitEvent(t, events, 5*time.Second, statusIs("ESP_A1B2C3", device.StatusOffline, "heartbeat_timeout"))
	if err := dev.publish(hb, heartbeat(181), false); err != nil {
		t.Fatal(err)
	}
	awaitEvent(t, events, 5*time.Second, statusIs("ESP_A1B2C3", device.StatusOnline, "heartbeat"))
	dev.close()

	// A device with the firmware's will, killed abruptly → offline by LWT at once.
	will := &paho.WillMessage{
		Topic:   "kaiser//esp/ESP_A1B2C3/system/will",
		QoS:     1,
		Retain:  true,
		Payload: []byte(`{"status":"offline","reason":"unexpected_disconnect","timestamp":1767597330}`),
	}
	dev2, err := dial(t, h.MQTTAddr(), "ESP_A1B2C3", will)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev2.publish(hb, heartbeat(241), false); err != nil {
		t.Fatal(err)
	}
	dev2.conn.Close()
	awaitEvent(t, events, 900*time.Millisecond, statusIs("ESP_A1B2C3", device.StatusOffline, "lwt"))

	tr, err := waitTransitions(h, "ESP_A1B2C3", 5)
	if err != nil {
		t.Fatal(err)
	}
	causes := []string{}
	for _, x := range tr {
		causes = append(causes, x.Cause)
	}
	want := "discovered,approved,heartbeat,heartbeat_timeout,heartbeat,lwt"
	if strings.Join(causes, ",") != want {
		t.Fatalf("transition causes %v, want %s", causes, want)
	}
}

func waitTransitions(h *Hub, id string, _ int) ([]sqliteTransition, error) {
	if err := h.Store.Flush(context.Background()); err != nil {
		return nil, err
	}
	return h.SQLite.Transitions(context.Background(), id)
}
