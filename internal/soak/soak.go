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

// Run plays the traffic and reconciles.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.defaults()
	say := func(format string, a ...any) {
		if cfg.Console != nil {
			fmt.Fprintf(cfg.Console, format+"\n", a...)
		}
	}
	res := Result{LossByDevice: map[string]int64{}, Errors: map[string]int64{}, Growth: map[string]float64{}}
	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "kaiser-soak-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	h, err := hub.Start(ctx, hub.Config{DataDir: cfg.DataDir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		LogLevel: slog.LevelWarn, DiscoveryPerMin: 100000, HeartbeatTimeout: 180 * time.Second})
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = h.Stop(context.Background())
		}
	}()
	pins := []int{32, 33, 34, 35, 36, 39, 25, 26, 27, 14}
	players := make([]*player, cfg.Devices)
	for i := range players {
		id := fmt.Sprintf("SOAK_%06X", i)
		if _, err := h.Devices.Register(ctx, device.Registration{DeviceID: id, HardwareType: "ESP32_WROOM"}, "soak"); err != nil {
			return res, err
		}
		for s := 0; s < cfg.Sensors; s++ {
			if _, _, err := h.Sensors.Upsert(ctx, sensor.Config{EspID: id, GPIO: pins[s%len(pins)], SensorType: "ph", Enabled: true}); err != nil {
				return res, err
			}
		}
		p := &player{id: id, wake: make(chan struct{}, 1)}
		will := []byte(`{"status":"offline","reason":"unexpected_disconnect","timestamp":0}`)
		p.wire, err = sim.DialWire(h.MQTTAddr(), sim.WireOptions{ClientID: id, WillTopic: "kaiser/god/esp/" + id + "/system/will",
			WillPayload: will, WillQoS: 1, WillRetain: true, OnMessage: func(string, []byte) {
				p.echoed.Add(1)
				select {
				case p.wake <- struct{}{}:
				default:
				}
			}})
		if err != nil {
			return res, err
		}
		if err := p.wire.Subscribe("kaiser/god/esp/" + id + "/sensor/+/processed"); err != nil {
			return res, err
		}
		players[i] = p
	}
	steps := int64(cfg.Simulated / cfg.Interval)
	start := time.Now()
	simStart := start.Unix()
	say("soak: %d devices × %d sensors, interval %s, simulated %s = %d readings", cfg.Devices, cfg.Sensors, cfg.Interval,
		cfg.Simulated, steps*int64(cfg.Devices*cfg.Sensors))

	pctx, stopPlay := context.WithCancel(ctx)
	if cfg.MaxWall > 0 {
		pctx, stopPlay = context.WithTimeout(ctx, cfg.MaxWall)
	}
	defer stopPlay()
	var wg sync.WaitGroup
	hbEvery := int64(60 * time.Second / cfg.Interval)
	for _, p := range players {
		wg.Add(1)
		go func(p *player) {
			defer wg.Done()
			buf := make([]byte, 0, 256)
			for k := int64(0); k < steps && pctx.Err() == nil; k++ {
				simTS := simStart + int64(time.Duration(k)*cfg.Interval/time.Second)
				if k%hbEvery == 0 {
					hb := fmt.Sprintf(`{"esp_id":"%s","zone_id":"","master_zone_id":"","zone_assigned":false,"ts":%d,"uptime":%d,"heap_free":187432,"wifi_rssi":-61,"sensor_count":%d,"actuator_count":0}`,
						p.id, simTS, 60+k*int64(cfg.Interval/time.Second), cfg.Sensors)
					_ = p.wire.Publish("kaiser/god/esp/"+p.id+"/system/heartbeat", []byte(hb), false)
				}
				for s := 0; s < cfg.Sensors; s++ {
					for p.published.Load()-p.echoed.Load() >= int64(cfg.Window) {
						_ = p.wire.Flush()
						select {
						case <-p.wake:
						case <-time.After(5 * time.Second):
						case <-pctx.Done():
							return
						}
					}
					buf = append(buf[:0], `{"esp_id":"`...)
					buf = append(buf, p.id...)
					buf = append(buf, `","zone_id":"","subzone_id":"","gpio":`...)
					buf = strconv.AppendInt(buf, int64(pins[s%len(pins)]), 10)
					buf = append(buf, `,"sensor_type":"ph","raw":`...)
					buf = strconv.AppendInt(buf, 1800+(k*7+int64(s)*13)%600, 10)
					buf = append(buf, `,"value":0.00,"unit":"raw","quality":"fair","ts":`...)
					buf = strconv.AppendInt(buf, simTS, 10)
					buf = append(buf, `,"raw_mode":true}`...)
					if err := p.wire.Publish(fmt.Sprintf("kaiser/god/esp/%s/sensor/%d/data", p.id, pins[s%len(pins)]), buf, true); err != nil {
						return
					}
					p.published.Add(1)
				}
				if k%4 == 0 {
					_ = p.wire.Flush()
				}
			}
			_ = p.wire.Flush()
		}(p)
	}

	// Sampler.
	var samples []Sample
	var sampMu sync.Mutex
	sampDone := make(chan struct{})
	published := func() int64 {
		var n int64
		for _, p := range players {
			n += p.published.Load()
		}
		return n
	}
	go func() {
		defer close(sampDone)
		t := time.NewTicker(cfg.SampleEvery)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
			s := sample(start)
			s.Published, s.Stored = published(), h.Readings.Committed()
			sampMu.Lock()
			samples = append(samples, s)
			sampMu.Unlock()
			say("  %6.0fs  published %d  stored %d  goroutines %d  heap %.1f MB  rss %.1f MB  fds %d",
				s.At.Seconds(), s.Published, s.Stored, s.Goroutines, s.HeapMB, s.RSSMB, s.FDs)
		}
	}()
	playersDone := make(chan struct{})
	go func() { wg.Wait(); close(playersDone) }()
	select {
	case <-playersDone:
	case <-pctx.Done():
		<-playersDone
	}
	stopPlay()
	<-sampDone

	// Let the hub store everything in flight, then reconcile.
	res.Published = published()
	deadline := time.Now().Add(2 * time.Minute)
	for h.Readings.Committed() < res.Published && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for h.Ingest.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := h.Readings.Flush(ctx); err != nil {
		return res, err
	}
	res.Wall = time.Since(start)
	for _, p := range players {
		var stored int64
		for _, id := range h.Sensors.SeriesIDs(p.id, -1, "") {
			n, err := h.Store.CountReadings(ctx, id, 0)
			if err != nil {
				return res, err
			}
			stored += n
		}
		res.Stored += stored
		if lost := p.published.Load() - stored; lost != 0 {
			res.LossByDevice[p.id] = lost
		}
		for reason, n := range h.Ingest.DeviceCounters(p.id).Dropped {
			if reason != contract.ReasonEmpty {
				res.Errors[reason] += n
			}
		}
		p.wire.Kill()
	}
	stopped = true
	if err := h.Stop(context.Background()); err != nil {
		res.Errors["shutdown"]++
	}
	res.Lost = res.Published - res.Stored
	res.Samples = samples
	res.SimulatedSpan = time.Duration(res.Published/int64(cfg.Devices*cfg.Sensors)) * cfg.Interval
	res.ReadingsPerSec = float64(res.Published) / res.Wall.Seconds()
	res.Growth = growth(samples)
	res.Pass = res.Lost == 0 && len(res.Errors) == 0
	for _, name := range GatedResources {
		if res.Growth[name] > 0.10 {
			res.Pass = false
		}
	}
	if cfg.CSV != "" {
		if err := writeCSV(cfg.CSV, samples); err != nil {
			return res, err
		}
	}
	if cfg.PNG != "" {
		if err := plotPNG(cfg.PNG, samples); err != nil {
			return res, err
		}
	}
	return res, nil
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
