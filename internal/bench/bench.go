// Package bench is `kaiser bench`: end-to-end measurements of the hub over
// real MQTT, each with a baseline measured in the same run (the same
// publishers against the bare embedded broker with an inline subscriber that
// only counts), reported as ours/baseline.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kaiserhub/kaiser/internal/broker"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/hub"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sim"
	"github.com/kaiserhub/kaiser/internal/store"
)

// IngestConfig sizes the ingest scenario.
type IngestConfig struct {
	Devices  int           // publishers, one MQTT connection each
	Sensors  int           // sensors per device
	Duration time.Duration // per measurement
	Window   int           // readings in flight at most (published, not yet durable)
	Console  io.Writer
}

// Percentiles are latency quantiles in milliseconds.
type Percentiles struct {
	Rate          float64 `json:"offered_per_s"`
	Achieved      float64 `json:"achieved_per_s"`
	P50, P95, P99 float64 `json:"-"`
	P50ms         float64 `json:"p50_ms"`
	P95ms         float64 `json:"p95_ms"`
	P99ms         float64 `json:"p99_ms"`
}

// IngestResult is the scenario's outcome.
type IngestResult struct {
	Scenario          string        `json:"scenario"`
	Devices           int           `json:"devices"`
	SensorsPerDevice  int           `json:"sensors_per_device"`
	ProcessedEcho     bool          `json:"processed_echo"`
	DurableReadingsPS float64       `json:"durable_readings_per_s"`
	BaselinePS        float64       `json:"baseline_messages_per_s"`
	Ratio             float64       `json:"ratio"`
	Lost              int64         `json:"lost"`
	Latency           []Percentiles `json:"latency"`
}

// tempHub starts an in-process hub in a temporary data directory; stop
// stops it and removes the directory.
func tempHub(ctx context.Context, cfg hub.Config) (h *hub.Hub, stop func(), err error) {
	dir, err := os.MkdirTemp("", "kaiser-bench-")
	if err != nil {
		return nil, nil, err
	}
	cfg.DataDir, cfg.HTTPAddr, cfg.MQTTAddr = dir, "127.0.0.1:0", "127.0.0.1:0"
	if cfg.LogLevel == 0 {
		cfg.LogLevel = slog.LevelWarn
	}
	cfg.NoProcessedEcho, cfg.DiscoveryPerMin = true, 100000
	// The bench's fleets connect all at once; the door's connect rate
	// (docs/decisions/0012) would spread 1,000 CONNECTs over 20 s.
	cfg.MQTT.ConnectRate, cfg.MQTT.MaxClients = benchConnectRate, benchMaxClients
	h, err = hub.Start(ctx, cfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return h, func() { _ = h.Stop(context.Background()); os.RemoveAll(dir) }, nil
}

// benchConnectRate and benchMaxClients let a bench fleet of up to 10,000
// connections connect at once, without the door's pacing.
const (
	benchConnectRate = 1e6
	benchMaxClients  = 10000
)

// Provision registers approved devices with pi_enhanced pH sensors on
// GPIO 32, 33, ... so readings are processed and stored.
func Provision(ctx context.Context, h *hub.Hub, devices, sensors int, prefix string) ([]string, error) {
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%06X", prefix, i)
		reg := device.Registration{DeviceID: ids[i], HardwareType: "ESP32_WROOM"}
		if _, err := h.Devices.Register(ctx, reg, "bench"); err != nil {
			return nil, err
		}
		for s := 0; s < sensors; s++ {
			if _, _, err := h.Sensors.Upsert(ctx, sensor.Config{
				EspID:      ids[i],
				GPIO:       sensorPin(s),
				SensorType: "ph",
				Enabled:    true,
			}); err != nil {
				return nil, err
			}
		}
	}
	return ids, nil
}

// sensorPin spreads sensors over ADC-capable pins.
func sensorPin(i int) int { return []int{32, 33, 34, 35, 36, 39, 25, 26, 27, 14, 13, 15, 4}[i%13] }

// reading formats a firmware sensor message into buf.
func reading(buf []byte, id string, gpio int, raw int, ts int64) []byte {
	buf = append(buf[:0], `{"esp_id":"`...)
	buf = append(buf, id...)
	buf = append(buf, `","zone_id":"","subzone_id":"","gpio":`...)
	buf = strconv.AppendInt(buf, int64(gpio), 10)
	buf = append(buf, `,"sensor_type":"ph","raw":`...)
	buf = strconv.AppendInt(buf, int64(raw), 10)
	buf = append(buf, `,"value":`...)
	buf = strconv.AppendInt(buf, int64(raw), 10)
	buf = append(buf, `.00,"unit":"raw","quality":"fair","ts":`...)
	buf = strconv.AppendInt(buf, ts, 10)
	return append(buf, `,"raw_mode":true}`...)
}

// load drives publishers: rate > 0 paces to that total rate, else as fast
// as the window allows. inFlight reports published-minus-done.
type load struct {
	addr    string
	ids     []string
	sensors int
	prefix  string
	seq     atomic.Int64
	sent    atomic.Int64
	tsBase  int64
	// inFlight reports a device's readings published but not yet handled.
	inFlight func(id string, sent int64) int64
	// connected counts the publishers connected in the current run.
	connected atomic.Int64
}

// allConnected reports whether every publisher of the run is connected.
func (l *load) allConnected() bool { return l.connected.Load() == int64(len(l.ids)) }

func (l *load) run(ctx context.Context, rate float64, window int64) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(l.ids))
	perConn := rate / float64(len(l.ids))
	l.connected.Store(0)
	for i, id := range l.ids {
		w, err := sim.DialWire(l.addr, sim.WireOptions{ClientID: id})
		if err != nil {
			return err
		}
		l.connected.Add(1)
		wg.Add(1)
		go func(i int, id string, w *sim.Wire) {
			defer wg.Done()
			defer w.Kill()
			buf := make([]byte, 0, 256)
			topics := make([]string, l.sensors)
			for s := range topics {
				topics[s] = fmt.Sprintf("kaiser/god/esp/%s/sensor/%d/data", id, sensorPin(s))
			}
			start := time.Now()
			var n int64
			for ctx.Err() == nil {
				if perConn > 0 {
					if due := start.Add(time.Duration(float64(n) / perConn * float64(time.Second))); time.Until(due) > 0 {
						_ = w.Flush()
						time.Sleep(time.Until(due))
					}
				}
				// The window also guards paced runs: a burst never overfills
				// the device's ingest queue, so nothing is dropped.
				if n%16 == 0 && l.inFlight(id, n) > window {
					_ = w.Flush()
					time.Sleep(100 * time.Microsecond)
					continue
				}
				s := int(n % int64(l.sensors))
				k := l.seq.Add(1)
				// A reading's time is tsBase plus the rounds its device has
				// published over its sensors: one second per round, so each
				// series' times are distinct and, from a day back, stay in
				// the past that the hub keeps (readings older than 24 h are
				// too_old; more than 30 s ahead, the hub's time,
				// docs/protocol.md §5.3) for 86,000 rounds.
				ts := l.tsBase + n/int64(l.sensors)
				buf = reading(buf, id, sensorPin(s), 1500+int(k%1000), ts)
				if err := w.Publish(topics[s], buf, true); err != nil {
					errs <- err
					return
				}
				l.sent.Add(1)
				n++
				if n%32 == 0 {
					_ = w.Flush()
				}
			}
			_ = w.Flush()
		}(i, id, w)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// hubLoad is a load against a hub whose closed loop counts what the hub's
// ingest handled per device, so that a burst never overfills a device's
// ingest queue and nothing is dropped.
type hubLoad struct {
	*load
	h      *hub.Hub
	mu     sync.Mutex
	before map[string]int64 // each device's handled count when the phase began
}

func newHubLoad(h *hub.Hub, ids []string, sensors int) *hubLoad {
	l := &hubLoad{h: h, before: map[string]int64{}}
	l.load = &load{
		addr:    h.MQTTAddr(),
		ids:     ids,
		sensors: sensors,
		tsBase:  time.Now().Unix() - 86000,
		inFlight: func(id string, sent int64) int64 {
			l.mu.Lock()
			prev := l.before[id]
			l.mu.Unlock()
			return prev + sent - h.Ingest.DeviceCounters(id).Processed
		},
	}
	return l
}

// phase runs the publishers until ctx ends; the in-flight count restarts
// from the devices' counters, because every phase counts its own sent.
func (l *hubLoad) phase(ctx context.Context, rate float64, window int64) error {
	l.mu.Lock()
	for _, id := range l.ids {
		l.before[id] = l.h.Ingest.DeviceCounters(id).Processed
	}
	l.mu.Unlock()
	return l.run(ctx, rate, window)
}

// handled is the readings the hub's ingest handled for the load's devices.
func (l *hubLoad) handled() int64 {
	var n int64
	for _, id := range l.ids {
		n += l.h.Ingest.DeviceCounters(id).Processed
	}
	return n
}

// Ingest runs the ingest scenario: max sustained durable readings/s, then
// publish → durable latency at 25/50/75 % of that rate, then the baseline.
func Ingest(ctx context.Context, cfg IngestConfig) (IngestResult, error) {
	if cfg.Devices <= 0 {
		cfg.Devices = 20
	}
	if cfg.Sensors <= 0 {
		cfg.Sensors = 5
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Window <= 0 {
		// Per device, inside the ingest queue bound (256): the closed loop
		// must never make the hub drop telemetry.
		cfg.Window = 200
	}
	say := func(format string, a ...any) {
		if cfg.Console != nil {
			fmt.Fprintf(cfg.Console, format+"\n", a...)
		}
	}
	res := IngestResult{Scenario: "ingest", Devices: cfg.Devices, SensorsPerDevice: cfg.Sensors}
	h, stop, err := tempHub(ctx, hub.Config{})
	if err != nil {
		return res, err
	}
	defer stop()
	ids, err := Provision(ctx, h, cfg.Devices, cfg.Sensors, "BENCH_")
	if err != nil {
		return res, err
	}
	var latMu sync.Mutex
	var lats []int64
	recording := atomic.Bool{}
	h.Readings.OnCommit(func(rows []store.Reading, at time.Time) {
		if !recording.Load() {
			return
		}
		ms := at.UnixMilli()
		latMu.Lock()
		for _, r := range rows {
			lats = append(lats, ms-r.ReceivedAt)
		}
		latMu.Unlock()
	})
	base := h.Readings.Committed()
	l := newHubLoad(h, ids, cfg.Sensors)
	runPhase := func(ctx context.Context, rate float64) error { return l.phase(ctx, rate, int64(cfg.Window)) }

	// 1. Maximum sustained rate, closed loop (no loss by construction).
	say("ingest: %d devices × %d sensors, max rate for %s ...", cfg.Devices, cfg.Sensors, cfg.Duration)
	mctx, cancel := context.WithTimeout(ctx, cfg.Duration+2*time.Second)
	go func() { _ = runPhase(mctx, 0) }()
	time.Sleep(2 * time.Second) // warm-up
	c0, t0 := h.Readings.Committed(), time.Now()
	<-mctx.Done()
	cancel()
	res.DurableReadingsPS = float64(h.Readings.Committed()-c0) / time.Since(t0).Seconds()
	say("  durable: %.0f readings/s", res.DurableReadingsPS)
	if err := waitDrained(h, l.load, base); err != nil {
		return res, err
	}

	// 2. Latency at fixed fractions of the maximum.
	for _, frac := range []float64{0.25, 0.5, 0.75} {
		rate := res.DurableReadingsPS * frac
		latMu.Lock()
		lats = lats[:0]
		latMu.Unlock()
		recording.Store(true)
		before := h.Readings.Committed()
		pctx, cancel := context.WithTimeout(ctx, cfg.Duration/2)
		start := time.Now()
		_ = runPhase(pctx, rate)
		cancel()
		elapsed := time.Since(start)
		if err := waitDrained(h, l.load, base); err != nil {
			return res, err
		}
		recording.Store(false)
		latMu.Lock()
		p := percentiles(lats)
		latMu.Unlock()
		p.Rate = rate
		p.Achieved = float64(h.Readings.Committed()-before) / elapsed.Seconds()
		res.Latency = append(res.Latency, p)
		say("  at %.0f%% (%.0f/s): p50 %.1f ms, p95 %.1f ms, p99 %.1f ms", frac*100, rate, p.P50ms, p.P95ms, p.P99ms)
	}
	res.Lost = l.sent.Load() - (h.Readings.Committed() - base)

	// 3. Baseline: the same publishers against the bare embedded broker.
	bl, err := Baseline(ctx, cfg.Devices, cfg.Sensors, cfg.Duration, int64(cfg.Window))
	if err != nil {
		return res, err
	}
	res.BaselinePS = bl
	if bl > 0 {
		res.Ratio = res.DurableReadingsPS / bl
	}
	say("  baseline (bare broker, counting subscriber): %.0f msg/s; ratio %.2f", bl, res.Ratio)
	return res, nil
}

func waitDrained(h *hub.Hub, l *load, base int64) error {
	deadline := time.Now().Add(20 * time.Second)
	for l.sent.Load() > h.Readings.Committed()-base {
		if time.Now().After(deadline) {
			drops := map[string]int64{}
			for _, id := range l.ids {
				for k, v := range h.Ingest.DeviceCounters(id).Dropped {
					drops[k] += v
				}
			}
			missing := l.sent.Load() - (h.Readings.Committed() - base)
			return fmt.Errorf("hub did not store %d readings (ingest drops %v)", missing, drops)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func percentiles(ms []int64) Percentiles {
	if len(ms) == 0 {
		return Percentiles{}
	}
	s := append([]int64(nil), ms...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(f float64) float64 { return float64(s[int(f*float64(len(s)-1))]) }
	return Percentiles{P50ms: q(0.50), P95ms: q(0.95), P99ms: q(0.99)}
}

// micros is the quantiles of latencies in microseconds, in milliseconds.
func micros(us []int64) Percentiles {
	p := percentiles(us)
	p.P50ms, p.P95ms, p.P99ms = p.P50ms/1000, p.P95ms/1000, p.P99ms/1000
	return p
}

// Baseline measures the same publishers against the bare embedded broker
// with an inline subscriber that only counts.
func Baseline(ctx context.Context, devices, sensors int, d time.Duration, window int64) (float64, error) {
	b, count, err := countingBroker()
	if err != nil {
		return 0, err
	}
	defer b.Close()
	l := bareLoad(b.Addr(), devices, sensors, count)
	bctx, cancel := context.WithTimeout(ctx, d+2*time.Second)
	defer cancel()
	go func() { _ = l.run(bctx, 0, window) }()
	time.Sleep(2 * time.Second)
	c0, t0 := count.Load(), time.Now()
	<-bctx.Done()
	return float64(count.Load()-c0) / time.Since(t0).Seconds(), nil
}

// countingBroker starts the bare embedded broker with an inline subscriber
// that counts sensor readings.
func countingBroker() (*broker.Embedded, *atomic.Int64, error) {
	b, err := broker.NewEmbedded(broker.Config{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
		Limits: broker.Limits{ConnectRate: benchConnectRate, MaxClients: benchMaxClients},
	})
	if err != nil {
		return nil, nil, err
	}
	count := new(atomic.Int64)
	onData := func(string, []byte, bool, bool) { count.Add(1) }
	if err := b.Subscribe([]string{"kaiser/+/esp/+/sensor/+/data"}, onData); err != nil {
		return nil, nil, err
	}
	if err := b.Start(); err != nil {
		return nil, nil, err
	}
	return b, count, nil
}

// bareLoad is the publishers of devices × sensors against a counting
// broker; its window is the same per-device bound as against the hub.
func bareLoad(addr string, devices, sensors int, count *atomic.Int64) *load {
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("BASE_%06X", i)
	}
	l := &load{
		addr:    addr,
		ids:     ids,
		sensors: sensors,
		tsBase:  time.Now().Unix(),
	}
	l.inFlight = func(string, int64) int64 { return (l.sent.Load() - count.Load()) / int64(devices) }
	return l
}
