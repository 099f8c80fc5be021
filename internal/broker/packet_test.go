package broker

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/sim"
)

// A PUBLISH declaring 100 MB closes the connection on its fixed header:
// nothing of it is read or allocated (four such publishes took the hub to
// 4.97 GB), and it is one bounded log line.
func TestPacketOverTheLimitClosesTheConnectionUnread(t *testing.T) {
	e, logs := startBroker(t, Config{})
	rc, code := dialRaw(t, e.Addr(), "ESP_A1B2C3")
	if code != 0 {
		t.Fatalf("connack %d", code)
	}
	declared := 100 << 20
	header := mqttLength([]byte{0x30}, declared)
	rc.send(t, append(header, mqttString(nil, "kaiser/god/esp/ESP_A1B2C3/sensor/4/data")...))

	rc.awaitClosed(t)
	line := logs.await(t, "over the limit")
	if len(line) > 512 || !strings.Contains(line, `"client_id":"ESP_A1B2C3"`) {
		t.Fatalf("log line of %d bytes, want one short line naming the client: %s", len(line), line)
	}
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedPacketTooLarge)); n != 1 {
		t.Fatalf("refused packet_too_large = %v, want 1", n)
	}
	if n := len(logs.with("over the limit")); n != 1 {
		t.Fatalf("%d lines about the packet, want 1", n)
	}
}

// A device payload over the 4096-byte inbound limit but inside the packet
// limit reaches ingest and is a counted `oversize` drop; the device stays
// connected (docs/protocol.md M5, §5.2 step 2).
func TestOversizedDevicePayloadInsideThePacketLimitIsAnIngestDrop(t *testing.T) {
	d := ingest.New(ingest.Config{}, nil, slog.New(slog.DiscardHandler))
	d.Start()
	defer func() { _ = d.Stop(context.Background()) }()
	e, _ := startBroker(t, Config{})
	delivered := make(chan string, 4)
	err := e.Subscribe(contract.HubSubscriptions, func(topic string, payload []byte, retain, replay bool) {
		d.Submit(topic, payload, retain, replay)
		delivered <- topic
	})
	if err != nil {
		t.Fatal(err)
	}
	w, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: "ESP_A1B2C3"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Kill()

	topic := "kaiser/god/esp/ESP_A1B2C3/sensor/4/data"
	big := bytes.Repeat([]byte("x"), contract.MaxInboundPayload+904)
	for _, p := range [][]byte{big, []byte(`{"raw":1}`)} {
		if err := w.Publish(topic, p, true); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		awaitDelivery(t, delivered)
	}
	c := d.DeviceCounters("ESP_A1B2C3")
	if c.Dropped[contract.ReasonOversize] != 1 || c.Received != 2 {
		t.Fatalf("counters %+v, want 2 received, 1 oversize", c)
	}
	if n := testutil.ToFloat64(e.refused.WithLabelValues(refusedPacketTooLarge)); n != 0 {
		t.Fatalf("refused packet_too_large = %v, want 0", n)
	}
}

func awaitDelivery(t *testing.T, delivered <-chan string) string {
	t.Helper()
	select {
	case topic := <-delivered:
		return topic
	case <-time.After(waitLimit):
		t.Fatal("no delivery")
	}
	return ""
}

// A refused QoS 1 publish makes mochi log the packet; the line carries a
// summary, never the payload (a refused 26.7 MB publish was one 26.7 MB
// line).
func TestRefusedPublishIsLoggedWithoutItsPayload(t *testing.T) {
	e, logs := startBroker(t, Config{})
	rc, code := dialRaw(t, e.Addr(), "ESP_A1B2C3")
	if code != 0 {
		t.Fatalf("connack %d", code)
	}
	payload := bytes.Repeat([]byte("y"), 12000)
	rc.send(t, publishPacket("kaiser/god/esp/ESP_B00000/config", payload, 1, false))
	rc.awaitClosed(t) // MQTT 3.1.1 has no refused PUBACK: mochi disconnects

	line := logs.await(t, "error processing packet")
	if !strings.Contains(line, `"payload_bytes":12000`) {
		t.Fatalf("packet summary missing: %s", line)
	}
	logs.await(t, "mqtt publish refused")
	for _, l := range logs.all() {
		if len(l) > 1024 || strings.Contains(l, "yyyyyyyy") {
			t.Fatalf("log line of %d bytes carries the payload: %.300s", len(l), l)
		}
	}
}

// Strings the network controls are clipped in every broker line.
func TestBrokerLogLinesClipLongStrings(t *testing.T) {
	e, logs := startBroker(t, Config{})
	rc, code := dialRaw(t, e.Addr(), "dash")
	if code != 0 {
		t.Fatalf("connack %d", code)
	}
	topic := "junk/" + strings.Repeat("z", 10000)
	rc.send(t, publishPacket(topic, []byte("1"), 0, false))
	line := logs.await(t, "mqtt publish refused")
	if len(line) > 1024 || !strings.Contains(line, "(10005 bytes)") {
		t.Fatalf("line of %d bytes, want the topic clipped: %.400s", len(line), line)
	}
}
