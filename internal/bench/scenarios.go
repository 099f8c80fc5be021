package bench

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/broker"
	"github.com/kaiserhub/kaiser/internal/hub"
	"github.com/kaiserhub/kaiser/internal/sim"
)

// RoundTrip is a latency scenario's outcome.
type RoundTrip struct {
	Scenario   string      `json:"scenario"`
	Devices    int         `json:"devices"`
	Ours       Percentiles `json:"ours"`
	Baseline   Percentiles `json:"baseline"`
	OursPS     float64     `json:"ours_per_s"`
	BaselinePS float64     `json:"baseline_per_s"`
	Ratio      float64     `json:"ratio"`
}

// heartbeatRTT has each device send a heartbeat and wait for its ack.
func heartbeatRTT(addr string, devices int, d time.Duration) (Percentiles, float64, error) {
	var mu sync.Mutex
	var lat []int64
	var total atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	errs := make(chan error, devices)
	start := time.Now()
	for i := 0; i < devices; i++ {
		id := fmt.Sprintf("HB_%06X", i)
		acks := make(chan struct{}, 1)
		w, err := sim.DialWire(addr, sim.WireOptions{ClientID: id, OnMessage: func(string, []byte) {
			select {
			case acks <- struct{}{}:
			default:
			}
		}})
		if err != nil {
			return Percentiles{}, 0, err
		}
		if err := w.Subscribe("kaiser/god/esp/" + id + "/system/heartbeat/ack"); err != nil {
			return Percentiles{}, 0, err
		}
		wg.Add(1)
		go func(w *sim.Wire) {
			defer wg.Done()
			defer w.Kill()
			topic := "kaiser/god/esp/" + id + "/system/heartbeat"
			for up := 61; ctx.Err() == nil; up++ {
				t0 := time.Now()
				_ = w.Publish(topic, []byte(fmt.Sprintf(`{"ts":0,"uptime":%d,"heap_free":187432,"wifi_rssi":-61}`, up)), false)
				_ = w.Flush()
				select {
				case <-acks:
				case <-time.After(5 * time.Second):
					errs <- fmt.Errorf("%s: no ack", id)
					return
				case <-ctx.Done():
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(t0).Microseconds())
				mu.Unlock()
				total.Add(1)
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return Percentiles{}, 0, err
	}
	return micros(lat), float64(total.Load()) / time.Since(start).Seconds(), nil
}

// Heartbeat measures the heartbeat → ack round trip; the baseline is the
// bare broker with an inline subscriber that publishes an ack at once.
func Heartbeat(ctx context.Context, devices int, d time.Duration) (RoundTrip, error) {
	res := RoundTrip{Scenario: "heartbeat", Devices: devices}
	h, stop, err := tempHub(ctx, hub.Config{})
	if err != nil {
		return res, err
	}
	res.Ours, res.OursPS, err = heartbeatRTT(h.MQTTAddr(), devices, d)
	stop()
	if err != nil {
		return res, err
	}
	b, err := broker.NewEmbedded(broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return res, err
	}
	ack := []byte(`{"status":"pending_approval","config_available":false,"server_time":0,` +
		`"handover_epoch":1,"ack_type":"heartbeat","contract_version":2}`)
	if err := b.Subscribe([]string{"kaiser/+/esp/+/system/heartbeat"}, func(topic string, _ []byte, _, _ bool) {
		_ = b.Publish(context.Background(), topic+"/ack", ack, 1, false)
	}); err != nil {
		return res, err
	}
	if err := b.Start(); err != nil {
		return res, err
	}
	defer b.Close()
	res.Baseline, res.BaselinePS, err = heartbeatRTT(b.Addr(), devices, d)
	if res.BaselinePS > 0 {
		res.Ratio = res.OursPS / res.BaselinePS
	}
	return res, err
}

// Fanout measures readings delivered to K live-feed (WebSocket) clients;
// the baseline delivers the same readings to K MQTT subscribers of the bare
// broker. The WebSocket rate limit is off so capacity is measured.
func Fanout(ctx context.Context, clients int, rate float64, d time.Duration) (RoundTrip, error) {
	res := RoundTrip{Scenario: "fanout", Devices: clients}
	h, stop, err := tempHub(ctx, hub.Config{BcryptCost: 4, WS: api.WSConfig{Rate: -1, QueueMax: 100000}})
	if err != nil {
		return res, err
	}
	defer stop()
	if _, err := Provision(ctx, h, 10, 1, "FAN_"); err != nil {
		return res, err
	}
	admin := auth.NewUser{Username: "bench", Email: "bench@example.org", Password: "Bench-pass1"}
	_, tokens, err := h.Auth.Setup(ctx, admin)
	if err != nil {
		return res, err
	}
	var got atomic.Int64
	var wg sync.WaitGroup
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < clients; i++ {
		url := fmt.Sprintf("ws://%s/api/v1/ws/realtime/c%d?token=%s", h.HTTPAddr(), i, tokens.AccessToken)
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			return res, err
		}
		c.SetReadLimit(1 << 20)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.CloseNow()
			for {
				_, data, err := c.Read(cctx)
				if err != nil {
					return
				}
				if strings.Contains(string(data), `"type":"sensor_data"`) {
					got.Add(1)
				}
			}
		}()
	}
	publish := func(addr string) (int64, error) {
		ids := make([]string, 10)
		for i := range ids {
			ids[i] = fmt.Sprintf("FAN_%06X", i)
		}
		l := &load{
			addr:     addr,
			ids:      ids,
			sensors:  1,
			tsBase:   time.Now().Unix() - 86000,
			inFlight: func(string, int64) int64 { return 0 },
		}
		pctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		err := l.run(pctx, rate, 1<<40)
		return l.sent.Load(), err
	}
	start := time.Now()
	sent, err := publish(h.MQTTAddr())
	if err != nil {
		return res, err
	}
	time.Sleep(500 * time.Millisecond)
	res.OursPS = float64(got.Load()) / time.Since(start).Seconds()
	cancel()
	wg.Wait()
	res.Ours = Percentiles{Rate: rate, Achieved: float64(got.Load()) / float64(max(sent, 1)) / float64(clients)}

	b, err := broker.NewEmbedded(broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return res, err
	}
	if err := b.Start(); err != nil {
		return res, err
	}
	defer b.Close()
	var bgot atomic.Int64
	var subs []*sim.Wire
	for i := 0; i < clients; i++ {
		w, err := sim.DialWire(b.Addr(), sim.WireOptions{
			ClientID:  fmt.Sprintf("sub%d", i),
			OnMessage: func(string, []byte) { bgot.Add(1) },
		})
		if err != nil {
			return res, err
		}
		if err := w.Subscribe("kaiser/+/esp/+/sensor/+/data"); err != nil {
			return res, err
		}
		subs = append(subs, w)
	}
	start = time.Now()
	bsent, err := publish(b.Addr())
	if err != nil {
		return res, err
	}
	time.Sleep(500 * time.Millisecond)
	res.BaselinePS = float64(bgot.Load()) / time.Since(start).Seconds()
	res.Baseline = Percentiles{Rate: rate, Achieved: float64(bgot.Load()) / float64(max(bsent, 1)) / float64(clients)}
	for _, w := range subs {
		w.Kill()
	}
	if res.BaselinePS > 0 {
		res.Ratio = res.OursPS / res.BaselinePS
	}
	return res, nil
}
