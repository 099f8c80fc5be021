package broker

import (
	"io"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The hub's retained server/status outlives mochi's message expiry (an
// hour): it is still retained, unchanged, hours later, while a device's
// retained message of the same age is gone.
func TestHubRetainedMessagesOutliveTheExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, err := NewEmbedded(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		if err := e.server.Serve(); err != nil { // the event loop, no listener
			t.Fatal(err)
		}
		const status = "kaiser/god/server/status"
		const device = "kaiser/god/esp/ESP_X/system/heartbeat"
		payload := []byte(`{"status":"online","timestamp":1767600900}`)
		if err := e.Publish(t.Context(), status, payload, 1, true); err != nil {
			t.Fatal(err)
		}
		cl := e.server.NewClient(nil, "test", "ESP_X", false)
		cl.Properties.ProtocolVersion = 4
		cl.State.Inflight.ResetReceiveQuota(16)
		if err := e.server.InjectPacket(cl, packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
			TopicName:   device,
			Payload:     []byte(`{"ts":0}`),
		}); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.server.Topics.Retained.Get(device); !ok {
			t.Fatal("the device's retained message was not stored")
		}

		time.Sleep(5 * time.Hour) // the expiry runs every second
		synctest.Wait()

		pk, ok := e.server.Topics.Retained.Get(status)
		if !ok || string(pk.Payload) != string(payload) {
			t.Fatalf("server/status after 5 h: retained %v, payload %q", ok, pk.Payload)
		}
		if _, ok := e.server.Topics.Retained.Get(device); ok {
			t.Fatal("a device's retained message outlived the expiry: the bound must still hold for devices")
		}
		if n, _ := e.retained.held(); n != 1 {
			t.Fatalf("retained store books %d messages, want 1", n)
		}
	})
}
