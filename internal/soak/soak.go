// Package soak is `kaiser soak`: days of fleet traffic at accelerated time
// against an in-process hub, closed-loop (each device's window is released
// by the processed echo), with goroutines, heap, RSS and open files sampled
// to CSV and a PNG, and a per-device reconciliation of readings published
// against readings stored. It is the proof that the reference server's
// "fails after hours" defect is gone.
package soak

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/hub"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sim"
)

// Config sizes a soak run.
type Config struct {
	Devices     int
	Sensors     int
	Interval    time.Duration // device measurement interval (simulated)
	Simulated   time.Duration // simulated span, e.g. 48h
	MaxWall     time.Duration // stop publishing after this much real time (0 = none)
	SampleEvery time.Duration
	Window      int // readings in flight per device
	DataDir     string
	CSV, PNG    string
	Console     io.Writer
}

// Sample is one resource sample.
type Sample struct {
	At         time.Duration
	Goroutines int
	HeapMB     float64
	RSSMB      float64
	FDs        int
	Published  int64
	Stored     int64
}

// Result is the soak's outcome.
type Result struct {
	Wall           time.Duration
	SimulatedSpan  time.Duration
	Published      int64
	Stored         int64
	Lost           int64
	LossByDevice   map[string]int64
	Errors         map[string]int64
	Growth         map[string]float64
	Samples        []Sample
	ReadingsPerSec float64
	Pass           bool
}

func (c *Config) defaults() {
	if c.Devices <= 0 {
		c.Devices = 100
	}
	if c.Sensors <= 0 {
		c.Sensors = 5
	}
	if c.Interval <= 0 {
		c.Interval = 5 * time.Second
	}
	if c.Simulated <= 0 {
		c.Simulated = 48 * time.Hour
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 2 * time.Second
	}
	if c.Window <= 0 {
		c.Window = 64
	}
}

type player struct {
	id        string
	wire      *sim.Wire
	published atomic.Int64
	echoed    atomic.Int64
	wake      chan struct{}
}

// soakPins are the GPIOs the simulated sensors sit on, in order of use.
var soakPins = []int{32, 33, 34, 35, 36, 39, 25, 26, 27, 14}

// run is one soak in progress: the hub under test, its simulated fleet and
// what has been measured so far.
type run struct {
	cfg     Config
	h       *hub.Hub
	players []*player
	start   time.Time
	samples []Sample
}

// Run plays the traffic and reconciles: start a hub, connect the fleet,
// play while sampling, let the hub store what is in flight, then count
// what each device published against what was stored.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.defaults()
	res := Result{
		LossByDevice: map[string]int64{},
		Errors:       map[string]int64{},
		Growth:       map[string]float64{},
	}
	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "kaiser-soak-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}

	r := &run{cfg: cfg}
	if err := r.startHub(ctx); err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = r.h.Stop(context.Background())
		}
	}()

	if err := r.connectFleet(ctx); err != nil {
		return res, err
	}

	r.start = time.Now()
	r.playAndSample(ctx)

	res.Published = r.published()
	if err := r.drain(ctx, res.Published); err != nil {
		return res, err
	}
	res.Wall = time.Since(r.start)

	if err := r.reconcile(ctx, &res); err != nil {
		return res, err
	}

	stopped = true
	if err := r.h.Stop(context.Background()); err != nil {
		res.Errors["shutdown"]++
	}

	r.verdict(&res)
	return res, r.writeOutputs()
}

func (r *run) say(format string, a ...any) {
	if r.cfg.Console != nil {
		fmt.Fprintf(r.cfg.Console, format+"\n", a...)
	}
}

func (r *run) startHub(ctx context.Context) error {
	h, err := hub.Start(ctx, hub.Config{
		DataDir:          r.cfg.DataDir,
		HTTPAddr:         "127.0.0.1:0",
		MQTTAddr:         "127.0.0.1:0",
		LogLevel:         slog.LevelWarn,
		DiscoveryPerMin:  100000,
		HeartbeatTimeout: 180 * time.Second,
	})
	if err != nil {
		return err
	}
	r.h = h
	return nil
}

// connectFleet registers every device with its sensors and connects it as
// a firmware-like client that counts its processed echoes.
func (r *run) connectFleet(ctx context.Context) error {
	r.players = make([]*player, r.cfg.Devices)
	for i := range r.players {
		id := fmt.Sprintf("SOAK_%06X", i)
		if err := r.register(ctx, id); err != nil {
			return err
		}
		p, err := r.connect(id)
		if err != nil {
			return err
		}
		r.players[i] = p
	}
	return nil
}

func (r *run) register(ctx context.Context, id string) error {
	reg := device.Registration{DeviceID: id, HardwareType: "ESP32_WROOM"}
	if _, err := r.h.Devices.Register(ctx, reg, "soak"); err != nil {
		return err
	}
	for s := 0; s < r.cfg.Sensors; s++ {
		c := sensor.Config{
			EspID:      id,
			GPIO:       soakPins[s%len(soakPins)],
			SensorType: "ph",
			Enabled:    true,
		}
		if _, _, err := r.h.Sensors.Upsert(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) connect(id string) (*player, error) {
	p := &player{id: id, wake: make(chan struct{}, 1)}
	onEcho := func(string, []byte) {
		p.echoed.Add(1)
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	var err error
	p.wire, err = sim.DialWire(r.h.MQTTAddr(), sim.WireOptions{
		ClientID:    id,
		WillTopic:   "kaiser/god/esp/" + id + "/system/will",
		WillPayload: []byte(`{"status":"offline","reason":"unexpected_disconnect","timestamp":0}`),
		WillQoS:     1,
		WillRetain:  true,
		OnMessage:   onEcho,
	})
	if err != nil {
		return nil, err
	}
	if err := p.wire.Subscribe("kaiser/god/esp/" + id + "/sensor/+/processed"); err != nil {
		return nil, err
	}
	return p, nil
}

// playAndSample runs every device's traffic and the resource sampler until
// the simulated span is played or the wall-clock limit is reached.
func (r *run) playAndSample(ctx context.Context) {
	steps := int64(r.cfg.Simulated / r.cfg.Interval)
	r.say("soak: %d devices × %d sensors, interval %s, simulated %s = %d readings",
		r.cfg.Devices, r.cfg.Sensors, r.cfg.Interval, r.cfg.Simulated, steps*int64(r.cfg.Devices*r.cfg.Sensors))

	pctx, stopPlay := context.WithCancel(ctx)
	if r.cfg.MaxWall > 0 {
		pctx, stopPlay = context.WithTimeout(ctx, r.cfg.MaxWall)
	}
	defer stopPlay()

	var wg sync.WaitGroup
	for _, p := range r.players {
		wg.Add(1)
		go func(p *player) {
			defer wg.Done()
			r.play(pctx, p, steps)
		}(p)
	}

	sampDone := make(chan struct{})
	go func() {
		defer close(sampDone)
		r.sampleUntil(pctx)
	}()

	wg.Wait()
	stopPlay()
	<-sampDone
}

// play publishes one device's heartbeats and readings in simulated time,
// never more than Window readings ahead of the hub's echoes.
func (r *run) play(ctx context.Context, p *player, steps int64) {
	simStart := r.start.Unix()
	hbEvery := int64(60 * time.Second / r.cfg.Interval)
	buf := make([]byte, 0, 256)
	for k := int64(0); k < steps && ctx.Err() == nil; k++ {
		simTS := simStart + int64(time.Duration(k)*r.cfg.Interval/time.Second)
		if k%hbEvery == 0 {
			uptime := 60 + k*int64(r.cfg.Interval/time.Second)
			_ = p.wire.Publish("kaiser/god/esp/"+p.id+"/system/heartbeat", heartbeat(p.id, simTS, uptime, r.cfg.Sensors), false)
		}
		for s := 0; s < r.cfg.Sensors; s++ {
			if !r.waitForWindow(ctx, p) {
				return
			}
			pin := soakPins[s%len(soakPins)]
			buf = reading(buf[:0], p.id, pin, 1800+(k*7+int64(s)*13)%600, simTS)
			if err := p.wire.Publish(fmt.Sprintf("kaiser/god/esp/%s/sensor/%d/data", p.id, pin), buf, true); err != nil {
				return
			}
			p.published.Add(1)
		}
		if k%4 == 0 {
			_ = p.wire.Flush()
		}
	}
	_ = p.wire.Flush()
}

// waitForWindow blocks while the device has Window readings in flight; it
// reports false when the play is over.
func (r *run) waitForWindow(ctx context.Context, p *player) bool {
	for p.published.Load()-p.echoed.Load() >= int64(r.cfg.Window) {
		_ = p.wire.Flush()
		select {
		case <-p.wake:
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func heartbeat(id string, ts, uptime int64, sensors int) []byte {
	return fmt.Appendf(nil, `{"esp_id":"%s","zone_id":"","master_zone_id":"","zone_assigned":false,`+
		`"ts":%d,"uptime":%d,"heap_free":187432,"wifi_rssi":-61,"sensor_count":%d,"actuator_count":0}`,
		id, ts, uptime, sensors)
}

// reading appends the baseline firmware's raw-mode reading to buf without
// fmt, because it is the soak's hot loop.
func reading(buf []byte, id string, gpio int, raw, ts int64) []byte {
	buf = append(buf, `{"esp_id":"`...)
	buf = append(buf, id...)
	buf = append(buf, `","zone_id":"","subzone_id":"","gpio":`...)
	buf = strconv.AppendInt(buf, int64(gpio), 10)
	buf = append(buf, `,"sensor_type":"ph","raw":`...)
	buf = strconv.AppendInt(buf, raw, 10)
	buf = append(buf, `,"value":0.00,"unit":"raw","quality":"fair","ts":`...)
	buf = strconv.AppendInt(buf, ts, 10)
	return append(buf, `,"raw_mode":true}`...)
}

func (r *run) published() int64 {
	var n int64
	for _, p := range r.players {
		n += p.published.Load()
	}
	return n
}

// sampleUntil records the process's resources every SampleEvery; only
// this goroutine appends to r.samples until playAndSample returns.
func (r *run) sampleUntil(ctx context.Context) {
	t := time.NewTicker(r.cfg.SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := sample(r.start)
		s.Published, s.Stored = r.published(), r.h.Readings.Committed()
		r.samples = append(r.samples, s)
		r.say("  %6.0fs  published %d  stored %d  goroutines %d  heap %.1f MB  rss %.1f MB  fds %d",
			s.At.Seconds(), s.Published, s.Stored, s.Goroutines, s.HeapMB, s.RSSMB, s.FDs)
	}
}

// drain lets the hub store everything in flight (bounded by two minutes;
// a reading still missing then counts as lost).
func (r *run) drain(ctx context.Context, published int64) error {
	deadline := time.Now().Add(2 * time.Minute)
	for r.h.Readings.Committed() < published && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for r.h.Ingest.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return r.h.Readings.Flush(ctx)
}

// reconcile counts each device's stored readings against its published
// ones and collects every drop reason the hub recorded.
func (r *run) reconcile(ctx context.Context, res *Result) error {
	for _, p := range r.players {
		var stored int64
		for _, id := range r.h.Sensors.SeriesIDs(p.id, -1, "") {
			n, err := r.h.Store.CountReadings(ctx, id, 0)
			if err != nil {
				return err
			}
			stored += n
		}
		res.Stored += stored
		if lost := p.published.Load() - stored; lost != 0 {
			res.LossByDevice[p.id] = lost
		}
		for reason, n := range r.h.Ingest.DeviceCounters(p.id).Dropped {
			if reason != contract.ReasonEmpty {
				res.Errors[reason] += n
			}
		}
		p.wire.Kill()
	}
	return nil
}

// verdict fails the soak on any loss, any error or resource growth.
func (r *run) verdict(res *Result) {
	res.Lost = res.Published - res.Stored
	res.Samples = r.samples
	res.SimulatedSpan = time.Duration(res.Published/int64(r.cfg.Devices*r.cfg.Sensors)) * r.cfg.Interval
	res.ReadingsPerSec = float64(res.Published) / res.Wall.Seconds()
	res.Growth = growth(r.samples)
	res.Pass = res.Lost == 0 && len(res.Errors) == 0
	for _, name := range GatedResources {
		if res.Growth[name] > 0.10 {
			res.Pass = false
		}
	}
}

func (r *run) writeOutputs() error {
	if r.cfg.CSV != "" {
		if err := writeCSV(r.cfg.CSV, r.samples); err != nil {
			return err
		}
	}
	if r.cfg.PNG != "" {
		if err := plotPNG(r.cfg.PNG, r.samples); err != nil {
			return err
		}
	}
	return nil
}

// GatedResources fail the soak when they grow by more than 10 % after
// warm-up. RSS is reported, not gated: it follows the SQLite page cache
// filling up to its fixed size, which is bounded by configuration.
var GatedResources = []string{"goroutines", "heap", "fds"}

// sample reads the process's resources; the heap is measured live (after a GC).
func sample(start time.Time) Sample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := Sample{At: time.Since(start), Goroutines: runtime.NumGoroutine(), HeapMB: float64(ms.HeapAlloc) / (1 << 20)}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			pages, _ := strconv.ParseFloat(f[1], 64)
			s.RSSMB = pages * float64(os.Getpagesize()) / (1 << 20)
		}
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.FDs = len(ents)
	}
	return s
}

// growth compares the mean of the last quarter of the samples with the mean
// of the quarter after warm-up (the first fifth is warm-up).
func growth(s []Sample) map[string]float64 {
	out := map[string]float64{}
	if len(s) < 10 {
		return out
	}
	body := s[len(s)/5:]
	q := len(body) / 4
	early, late := body[:q], body[len(body)-q:]
	mean := func(xs []Sample, f func(Sample) float64) float64 {
		t := 0.0
		for _, x := range xs {
			t += f(x)
		}
		return t / float64(len(xs))
	}
	for name, f := range map[string]func(Sample) float64{
		"goroutines": func(x Sample) float64 { return float64(x.Goroutines) },
		"heap":       func(x Sample) float64 { return x.HeapMB },
		"fds":        func(x Sample) float64 { return float64(x.FDs) },
		"rss":        func(x Sample) float64 { return x.RSSMB },
	} {
		if e := mean(early, f); e > 0 {
			out[name] = mean(late, f)/e - 1
		}
	}
	return out
}

func writeCSV(path string, s []Sample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	_ = w.Write([]string{"seconds", "goroutines", "heap_mb", "rss_mb", "fds", "published", "stored"})
	for _, x := range s {
		_ = w.Write([]string{strconv.FormatFloat(x.At.Seconds(), 'f', 1, 64), strconv.Itoa(x.Goroutines),
			strconv.FormatFloat(x.HeapMB, 'f', 2, 64), strconv.FormatFloat(x.RSSMB, 'f', 2, 64), strconv.Itoa(x.FDs),
			strconv.FormatInt(x.Published, 10), strconv.FormatInt(x.Stored, 10)})
	}
	w.Flush()
	return w.Error()
}
