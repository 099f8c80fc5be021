package hub

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kaiserhub/kaiser/internal/broker/mosquitto"
)

// BenchmarkHeartbeatAck measures the heartbeat → ack round trip over real
// MQTT, without and with a WebSocket client that never reads while events
// flood the live feed (issue 3: the stalled client must not slow ingest).
func BenchmarkHeartbeatAck(b *testing.B) {
	for _, stalled := range []bool{false, true} {
		name := "baseline"
		if stalled {
			name = "stalled_ws_client"
		}
		b.Run(name, func(b *testing.B) {
			t := &testing.T{}
			h, c := apiHub(t, Config{})
			defer h.Stop(context.Background())
			r := c.do("POST", "/api/v1/auth/setup", "", map[string]any{
				"username": "admin",
				"email":    "admin@example.org",
				"password": adminPW,
			})
			tok := r.body["tokens"].(map[string]any)["access_token"].(string)
			stop := make(chan struct{})
			defer close(stop)
			if stalled {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				conn, _, err := websocket.Dial(ctx, "ws://"+h.HTTPAddr()+"/api/v1/ws/realtime/stalled?token="+tok, nil)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				defer conn.CloseNow()
				go func() { // a steady flood of live events
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						h.Events.Publish(eventFor(i))
						if i%100 == 0 {
							time.Sleep(time.Millisecond)
						}
					}
				}()
			}
			heartbeatAcks(b, t, h.MQTTAddr())
			if stalled {
				b.ReportMetric(float64(h.API.WSStats()["slow_client_disconnects"].(int64)), "slow_disconnects")
			}
		})
	}
}

// heartbeatAcks measures b.N heartbeat → ack round trips of one device
// connected to the broker at addr, and reports p50 and p99.
func heartbeatAcks(b *testing.B, t *testing.T, addr string) {
	dev, err := dial(t, addr, "ESP_BENCH1", nil)
	if err != nil {
		b.Fatal(err)
	}
	dev.subscribe(t, "kaiser/+/esp/ESP_BENCH1/system/heartbeat/ack")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := dev.publish("kaiser/god/esp/ESP_BENCH1/system/heartbeat", heartbeat(61+i), false); err != nil {
			b.Fatal(err)
		}
		select {
		case <-dev.msgs:
		case <-time.After(5 * time.Second):
			b.Fatal("no ack")
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_µs")
}

// BenchmarkHeartbeatAckExternal is BenchmarkHeartbeatAck's baseline with
// the hub as a client of a Mosquitto started for it: device → Mosquitto →
// hub → Mosquitto (the ack's PUBACK awaited) → device
// (docs/decisions/0023-external-broker.md), with Mosquitto's TCP_NODELAY
// and with its default, Nagle's algorithm.
func BenchmarkHeartbeatAckExternal(b *testing.B) {
	for name, nagle := range map[string]bool{"set_tcp_nodelay": false, "mosquitto_default": true} {
		b.Run(name, func(b *testing.B) {
			m := mosquitto.Start(b, mosquitto.Options{Nagle: nagle})
			t := &testing.T{}
			h, _ := apiHub(t, externalConfig(m, Config{}))
			defer h.Stop(context.Background())
			heartbeatAcks(b, t, m.Addr())
		})
	}
}

// BenchmarkQoS1ReadingPuback measures one device's QoS 1 reading →
// PUBACK round trip over real MQTT; the PUBACK waits for the reading's
// commit (docs/decisions/0015-durable-ack.md), so this is the pace of a
// QoS 1 publisher on one connection.
func BenchmarkQoS1ReadingPuback(b *testing.B) {
	t := &testing.T{}
	h, c := apiHub(t, Config{})
	defer h.Stop(context.Background())
	r := c.do("POST", "/api/v1/auth/setup", "", map[string]any{
		"username": "admin",
		"email":    "admin@example.org",
		"password": adminPW,
	})
	tok := r.body["tokens"].(map[string]any)["access_token"].(string)
	const id = "ESP_BENCH1"
	registerDevice(t, c, tok, id)
	dev, err := dial(t, h.MQTTAddr(), id, nil)
	if err != nil {
		b.Fatal(err)
	}
	base := time.Now().Unix() - 23*3600
	b.ResetTimer()
	for i := range b.N {
		if err := dev.publish(readingTopic(id), readingAt(id, i, base+int64(i)), false); err != nil {
			b.Fatal(err)
		}
	}
}
