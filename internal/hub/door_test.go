package hub

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/broker"
	"github.com/kaiserhub/kaiser/internal/device"
)

// The broker's door asks the registry which ids are known: past the
// connect rate a registered device, approved or rejected, is admitted
// (delayed), an unknown id is refused (docs/protocol.md M5).
func TestConnectRateAdmitsRegisteredDevicesOnly(t *testing.T) {
	h := startHub(t, Config{MQTT: broker.Limits{ConnectRate: 0.001, ConnectDelay: time.Millisecond}})
	defer stopHub(t, h)
	ctx := context.Background()
	for _, id := range []string{"ESP_A1B2C3", "ESP_D4E5F6"} {
		if _, err := h.Devices.Register(ctx, device.Registration{DeviceID: id}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Devices.SetPending(ctx, "ESP_D4E5F6", "test", "back to review"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Devices.Reject(ctx, "ESP_D4E5F6", "test", "not ours"); err != nil {
		t.Fatal(err)
	}

	for _, id := range []string{"ESP_A1B2C3", "ESP_D4E5F6"} {
		c, err := dial(t, h.MQTTAddr(), id, nil)
		if err != nil {
			t.Fatalf("registered device %s refused: %v", id, err)
		}
		defer c.close()
	}
	if c, err := dial(t, h.MQTTAddr(), "ESP_0000AA", nil); err == nil {
		c.close()
		t.Fatal("unknown id admitted past the connect rate")
	}
	body := scrape(t, h)
	if l := metricLine(body, `kaiser_broker_refused_total{reason="connect_rate"}`); !strings.HasSuffix(l, " 1") {
		t.Fatalf("refusal not counted: %q", l)
	}
	if l := metricLine(body, "kaiser_broker_connects_delayed_total"); !strings.HasSuffix(l, " 2") {
		t.Fatalf("delays not counted: %q", l)
	}
}
