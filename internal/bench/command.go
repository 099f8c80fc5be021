package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/hub"
	"github.com/kaiserhub/kaiser/internal/sim"
)

// CommandConfig sizes the command scenario.
type CommandConfig struct {
	Devices    int           // commanded nodes, one pump each, each commanded in turn
	Duration   time.Duration // per phase
	Interval   time.Duration // from one command of a node to its next
	Background float64       // readings/s of the loaded phase
	// Shape is the background's shape: ShapeFastClock (default) or ShapeSite.
	Shape   string
	Console io.Writer
}

// Background shapes of the loaded phase.
const (
	// ShapeSite is a site's fleet: 1,000 devices × 20 sensors, each series
	// reporting once a second of device time (the firmware's timestamps
	// have one-second resolution), so every reading updates its series'
	// current minute, hour and day buckets.
	ShapeSite = "site"
	// ShapeFastClock is the ingest scenario's publishers: 20 devices × 5
	// sensors whose device clock runs as fast as the readings (one second
	// per reading of a series, from a day back), so a series opens a new
	// minute bucket every 60 readings, far more often than a real one. (It
	// once gave every reading a minute of its own; since device times more
	// than 30 s ahead are the hub's, docs/protocol.md §5.3, no clock can
	// run that fast for long inside the hub's 24 h window.)
	ShapeFastClock = "fast-clock"
)

// background is a shape's fleet.
type background struct {
	devices, sensors int
}

func (c CommandConfig) background() background {
	if c.Shape == ShapeSite {
		return background{devices: 1000, sensors: 20}
	}
	return background{devices: 20, sensors: 5}
}

// CommandPhase is one phase's latencies, the hub's and the bare broker's.
type CommandPhase struct {
	Name string `json:"name"` // idle or background
	// BackgroundPS is the background readings/s achieved: handled by the
	// hub's ingest, counted by the baseline's subscriber.
	BackgroundPS         float64     `json:"background_readings_per_s"`
	BaselineBackgroundPS float64     `json:"baseline_background_readings_per_s"`
	Commands             int         `json:"commands"`
	ToDevice             Percentiles `json:"to_device"`    // REST command → command on the device's topic
	Acknowledged         Percentiles `json:"acknowledged"` // REST command → command_status acknowledged
	ToDeviceON           Percentiles `json:"to_device_on"` // the ONs alone: they commit before the publish
	ToDeviceOFF          Percentiles `json:"to_device_off"`
	BaselineToDevice     Percentiles `json:"baseline_to_device"`
	BaselineRoundTrip    Percentiles `json:"baseline_round_trip"`
	RatioToDeviceP99     float64     `json:"ratio_to_device_p99"`
	RatioAcknowledgedP99 float64     `json:"ratio_acknowledged_p99"`
}

// CommandResult is the command scenario's outcome.
type CommandResult struct {
	Scenario   string         `json:"scenario"`
	Devices    int            `json:"devices"`
	IntervalMS float64        `json:"interval_ms"`
	Background float64        `json:"background_offered_per_s"`
	Shape      string         `json:"background_shape"`
	Phases     []CommandPhase `json:"phases"`
}

// bgWindow bounds each background device's readings in flight.
const (
	bgWindow = 200
	pumpGPIO = 5
)

// Command measures REST command → the command on the device's topic and →
// acknowledged, idle and under background ingest; the baseline, in the same
// run, is the bare broker: an MQTT client publishes the same command to a
// subscriber (→ device), which answers status, response, status as the
// baseline firmware does (round trip: → the response back at the client).
func Command(ctx context.Context, cfg CommandConfig) (CommandResult, error) {
	cfg = cfg.withDefaults()
	res := CommandResult{
		Scenario:   "command",
		Devices:    cfg.Devices,
		IntervalMS: float64(cfg.Interval) / float64(time.Millisecond),
		Background: cfg.Background,
		Shape:      cfg.Shape,
	}
	phases, err := hubCommands(ctx, cfg)
	if err != nil {
		return res, err
	}
	if err := bareCommands(ctx, cfg, phases); err != nil {
		return res, err
	}
	for i := range phases {
		p := &phases[i]
		if p.BaselineToDevice.P99ms > 0 {
			p.RatioToDeviceP99 = p.ToDevice.P99ms / p.BaselineToDevice.P99ms
		}
		if p.BaselineRoundTrip.P99ms > 0 {
			p.RatioAcknowledgedP99 = p.Acknowledged.P99ms / p.BaselineRoundTrip.P99ms
		}
	}
	res.Phases = phases
	return res, nil
}

func (c CommandConfig) withDefaults() CommandConfig {
	if c.Devices <= 0 {
		c.Devices = 2
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Millisecond
	}
	if c.Background <= 0 {
		c.Background = 20000
	}
	if c.Shape != ShapeSite {
		c.Shape = ShapeFastClock
	}
	return c
}

func (c CommandConfig) say(format string, a ...any) {
	if c.Console != nil {
		fmt.Fprintf(c.Console, format+"\n", a...)
	}
}

// timings pairs an id with the moment something happened to it; either
// side may come first (a device answers before its REST reply is read).
type timings struct {
	mu      sync.Mutex
	seen    map[string]time.Time
	waiters map[string]chan time.Time
	// every, when set, also hears each mark, for commands whose id the
	// waiter cannot know (a rule's).
	every chan time.Time
}

func newTimings() *timings {
	return &timings{seen: map[string]time.Time{}, waiters: map[string]chan time.Time{}}
}

func (t *timings) mark(id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.every != nil {
		select {
		case t.every <- at:
		default:
		}
	}
	if ch, ok := t.waiters[id]; ok {
		delete(t.waiters, id)
		ch <- at
		return
	}
	t.seen[id] = at
}

func (t *timings) wait(ctx context.Context, id string, timeout time.Duration) (time.Time, error) {
	t.mu.Lock()
	if at, ok := t.seen[id]; ok {
		delete(t.seen, id)
		t.mu.Unlock()
		return at, nil
	}
	ch := make(chan time.Time, 1)
	t.waiters[id] = ch
	t.mu.Unlock()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case at := <-ch:
		return at, nil
	case <-timer.C:
	case <-ctx.Done():
	}
	t.mu.Lock()
	delete(t.waiters, id)
	t.mu.Unlock()
	return time.Time{}, fmt.Errorf("%s: nothing within %s", id, timeout)
}

// correlationOf reads a command payload's correlation id.
func correlationOf(payload []byte) string {
	var c struct {
		CorrelationID string `json:"correlation_id"`
	}
	_ = json.Unmarshal(payload, &c)
	return c.CorrelationID
}

// sample is one command's latencies in microseconds.
type sample struct {
	on             bool
	toDevice, done int64
}

// issuer sends one command and reports its sample.
type issuer func(ctx context.Context, device int, on bool) (sample, error)

// drive has every device issue a command each interval, alternating ON and
// OFF, one at a time per device, for d. A command issued is always seen to
// its end: one cut off would still be in flight when the next phase begins.
func drive(ctx context.Context, d time.Duration, devices int, interval time.Duration, issue issuer) ([]sample, error) {
	var mu sync.Mutex
	var out []sample
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	end := time.Now().Add(d)
	for dev := 0; dev < devices; dev++ {
		wg.Add(1)
		go func(dev int) {
			defer wg.Done()
			next := time.Now()
			for i := 0; ctx.Err() == nil && time.Now().Before(end); i++ {
				s, err := issue(ctx, dev, i%2 == 0)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				out = append(out, s)
				mu.Unlock()
				next = next.Add(interval)
				if wait := time.Until(next); wait > 0 {
					time.Sleep(wait)
				} else {
					next = time.Now()
				}
			}
		}(dev)
	}
	wg.Wait()
	close(errs)
	return out, <-errs
}

// quantiles turns samples into the two latency distributions, with the
// commands per second offered by the phase and achieved over it.
func quantiles(ss []sample, cfg CommandConfig) (toDevice, done Percentiles) {
	a, b := make([]int64, len(ss)), make([]int64, len(ss))
	for i, s := range ss {
		a[i], b[i] = s.toDevice, s.done
	}
	return cfg.rated(micros(a), len(ss)), cfg.rated(micros(b), len(ss))
}

// byCommand is the → device quantiles of the ONs and of the OFFs alone.
func byCommand(ss []sample, cfg CommandConfig) (on, off Percentiles) {
	var a, b []int64
	for _, s := range ss {
		if s.on {
			a = append(a, s.toDevice)
		} else {
			b = append(b, s.toDevice)
		}
	}
	half := cfg
	half.Interval *= 2 // every other command
	return half.rated(micros(a), len(a)), half.rated(micros(b), len(b))
}

// rated fills in the commands per second offered and the n achieved.
func (c CommandConfig) rated(p Percentiles, n int) Percentiles {
	p.Rate = float64(c.Devices) / c.Interval.Seconds()
	p.Achieved = float64(n) / c.Duration.Seconds()
	return p
}

// withBackground runs measure alone, then while load publishes at rate; it
// returns both phases' samples and the background rate each achieved.
func withBackground(
	ctx context.Context, cfg CommandConfig, measure func(ctx context.Context, d time.Duration) ([]sample, error),
	load func(ctx context.Context, rate float64) error, handled func() int64, connected func() bool,
) (phases [2][]sample, bgPS float64, err error) {
	cfg.say("  idle, %s ...", cfg.Duration)
	if phases[0], err = measure(ctx, cfg.Duration); err != nil {
		return phases, 0, err
	}

	cfg.say("  with %.0f readings/s background, %s ...", cfg.Background, cfg.Duration)
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan error, 1)
	go func() { loadDone <- load(lctx, cfg.Background) }()
	for !connected() { // the publishers dial one after another
		select {
		case lerr := <-loadDone:
			stopLoad()
			return phases, 0, fmt.Errorf("background load: %w", lerr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(min(time.Second, cfg.Duration/2)) // the background reaches its pace
	h0, t0 := handled(), time.Now()
	phases[1], err = measure(ctx, cfg.Duration)
	bgPS = float64(handled()-h0) / time.Since(t0).Seconds()
	stopLoad()
	if lerr := <-loadDone; err == nil && lerr != nil && !errors.Is(lerr, context.Canceled) {
		err = fmt.Errorf("background load: %w", lerr)
	}
	return phases, bgPS, err
}

// hubCommands is the hub's side: an in-process hub, baseline-firmware
// nodes with a pump each, and an operator commanding them over REST.
func hubCommands(ctx context.Context, cfg CommandConfig) ([]CommandPhase, error) {
	h, stop, err := tempHub(ctx, hub.Config{BcryptCost: 4})
	if err != nil {
		return nil, err
	}
	defer stop()
	token, err := operatorToken(ctx, h)
	if err != nil {
		return nil, err
	}
	shape := cfg.background()
	bgIDs, err := Provision(ctx, h, shape.devices, shape.sensors, "BGL_")
	if err != nil {
		return nil, err
	}

	received := newTimings()
	ids, err := Provision(ctx, h, cfg.Devices, 0, "CMD_")
	if err != nil {
		return nil, err
	}
	nodesCtx, stopNodes := context.WithCancel(ctx)
	var nodes []*sim.Node
	defer func() {
		stopNodes()
		for _, n := range nodes {
			<-n.Stopped()
		}
	}()
	for _, id := range ids {
		n, err := startPumpNode(nodesCtx, h, token, id, received)
		if n != nil {
			nodes = append(nodes, n)
		}
		if err != nil {
			return nil, err
		}
	}

	acked := newTimings()
	sub := h.Events.Subscribe(4096, event.TypeCommandStatus)
	defer h.Events.Unsubscribe(sub)
	go func() {
		for {
			select {
			case <-nodesCtx.Done():
				return
			case e := <-sub.C:
				if cs, ok := e.Data.(event.CommandStatus); ok && cs.Status == actuator.StatusAcknowledged {
					acked.mark(cs.CommandID, time.Now())
				}
			}
		}
	}()

	c := &restClient{base: "http://" + h.HTTPAddr(), token: token, http: &http.Client{Timeout: 10 * time.Second}}
	issue := func(ctx context.Context, d int, on bool) (sample, error) {
		t0 := time.Now()
		r, err := c.command(ctx, ids[d], pumpGPIO, on)
		if err != nil {
			return sample{}, err
		}
		at, err := received.wait(ctx, r.CorrelationID, 5*time.Second)
		if err != nil {
			return sample{}, fmt.Errorf("command never reached %s: %w", ids[d], err)
		}
		done, err := acked.wait(ctx, r.CommandID, 5*time.Second)
		if err != nil {
			return sample{}, fmt.Errorf("command on %s never acknowledged: %w", ids[d], err)
		}
		return sample{on: on, toDevice: at.Sub(t0).Microseconds(), done: done.Sub(t0).Microseconds()}, nil
	}
	measure := func(ctx context.Context, d time.Duration) ([]sample, error) {
		return drive(ctx, d, cfg.Devices, cfg.Interval, issue)
	}
	bg := newHubLoad(h, bgIDs, shape.sensors)
	load := func(ctx context.Context, rate float64) error { return bg.phase(ctx, rate, bgWindow) }

	cfg.say("command: %d node(s), a command every %s each; hub", cfg.Devices, cfg.Interval)
	samples, bgPS, err := withBackground(ctx, cfg, measure, load, bg.handled, bg.allConnected)
	if err != nil {
		return nil, err
	}
	phases := []CommandPhase{{Name: "idle"}, {Name: "background", BackgroundPS: bgPS}}
	for i := range phases {
		phases[i].Commands = len(samples[i])
		phases[i].ToDevice, phases[i].Acknowledged = quantiles(samples[i], cfg)
		phases[i].ToDeviceON, phases[i].ToDeviceOFF = byCommand(samples[i], cfg)
		cfg.say("    %s: %d commands, → device p50 %.2f / p99 %.2f ms (ON p99 %.2f, OFF p99 %.2f), "+
			"→ acknowledged p50 %.2f / p99 %.2f ms",
			phases[i].Name, phases[i].Commands, phases[i].ToDevice.P50ms, phases[i].ToDevice.P99ms,
			phases[i].ToDeviceON.P99ms, phases[i].ToDeviceOFF.P99ms,
			phases[i].Acknowledged.P50ms, phases[i].Acknowledged.P99ms)
	}
	return phases, nil
}

// operatorToken creates an admin and an operator and logs the operator in.
func operatorToken(ctx context.Context, h *hub.Hub) (string, error) {
	admin := auth.NewUser{Username: "bench", Email: "bench@example.org", Password: "Bench-pass1"}
	if _, _, err := h.Auth.Setup(ctx, admin); err != nil {
		return "", fmt.Errorf("admin: %w", err)
	}
	op := auth.NewUser{
		Username: "operator",
		Email:    "operator@example.org",
		Password: "Operator-pass1",
		Role:     auth.RoleOperator,
	}
	if _, err := h.Auth.CreateUser(ctx, op); err != nil {
		return "", fmt.Errorf("operator: %w", err)
	}
	_, tokens, err := h.Auth.Login(ctx, op.Username, op.Password, false)
	if err != nil {
		return "", fmt.Errorf("operator login: %w", err)
	}
	return tokens.AccessToken, nil
}

// nodeQuirks are the baseline firmware's, except that the node has its
// kaiser id and sends its first heartbeat at once, so that it is online
// without a minute's wait.
var nodeQuirks = sim.Quirks{
	Retain:           true,
	NoResubscribe:    true,
	EmergencyRouting: true,
	IgnoreDuration:   true,
	TwoStatuses:      true,
}

// startPumpNode runs a baseline-firmware node for the approved device id,
// waits until it is online, configures a pump on it over REST and waits
// for the node's first status. Commands the node receives are marked in
// received by correlation id.
func startPumpNode(ctx context.Context, h *hub.Hub, token, id string, received *timings) (*sim.Node, error) {
	n := sim.NewNode(sim.NodeConfig{
		EspID:  id,
		Broker: h.MQTTAddr(),
		Quirks: nodeQuirks,
		Observe: func(m sim.Message) {
			if m.Direction == "in" && strings.HasSuffix(m.Topic, fmt.Sprintf("/actuator/%d/command", pumpGPIO)) {
				received.mark(correlationOf([]byte(m.Payload)), m.Timestamp)
			}
		},
	})
	go func() { _ = n.Run(ctx) }()
	if err := await(ctx, func() bool {
		d, err := h.Devices.Get(id)
		return err == nil && d.Status == device.StatusOnline
	}); err != nil {
		return n, fmt.Errorf("%s never online: %w", id, err)
	}

	c := &restClient{base: "http://" + h.HTTPAddr(), token: token, http: &http.Client{Timeout: 10 * time.Second}}
	pump := map[string]any{"actuator_type": "pump", "name": "Bench pump", "max_runtime_seconds": 60}
	if err := c.post(ctx, fmt.Sprintf("/api/v1/actuators/%s/%d", id, pumpGPIO), pump, nil); err != nil {
		return n, fmt.Errorf("configure pump on %s: %w", id, err)
	}
	if err := await(ctx, func() bool {
		st, err := h.Actuators.State(id, pumpGPIO)
		return err == nil && st.State == "off"
	}); err != nil {
		return n, fmt.Errorf("pump on %s never reported: %w", id, err)
	}
	return n, nil
}

// await polls ok for up to 10 s.
func await(ctx context.Context, ok func() bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// restClient is an operator talking to the REST API.
type restClient struct {
	base, token string
	http        *http.Client
}

type commandReply struct {
	CommandID     string `json:"command_id"`
	CorrelationID string `json:"correlation_id"`
	Status        string `json:"status"`
}

// command posts ON with a 20 s duration, or OFF, and wants it sent.
func (c *restClient) command(ctx context.Context, espID string, gpio int, on bool) (commandReply, error) {
	body := map[string]any{"command": "OFF"}
	if on {
		body = map[string]any{"command": "ON", "duration": 20}
	}
	var r commandReply
	if err := c.post(ctx, fmt.Sprintf("/api/v1/actuators/%s/%d/command", espID, gpio), body, &r); err != nil {
		return r, err
	}
	if r.Status != actuator.StatusSent {
		return r, fmt.Errorf("command on %s is %q, not sent", espID, r.Status)
	}
	return r, nil
}

func (c *restClient) post(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// bareCommands is the baseline: the same commands published by the bare
// broker's inline client to device subscribers, which answer at once
// (status, response, status) to an inline subscriber; the background load is the same publishers
// against the same broker, counted by an inline subscriber.
func bareCommands(ctx context.Context, cfg CommandConfig, phases []CommandPhase) error {
	b, count, err := countingBroker()
	if err != nil {
		return err
	}
	defer b.Close()

	received, answered := newTimings(), newTimings()
	var devices []*sim.Wire
	defer func() {
		for _, w := range devices {
			w.Kill()
		}
	}()
	for d := 0; d < cfg.Devices; d++ {
		w, err := bareDevice(b.Addr(), fmt.Sprintf("BASE_CMD_%06X", d), received)
		if err != nil {
			return err
		}
		devices = append(devices, w)
	}
	// The hub publishes commands and hears answers as the broker's inline
	// client (only it may write hub→device topics); so does the baseline.
	onResponse := func(_ string, payload []byte, _, _ bool) { answered.mark(correlationOf(payload), time.Now()) }
	if err := b.Subscribe([]string{"kaiser/+/esp/+/actuator/+/response"}, onResponse); err != nil {
		return err
	}

	var seq atomic.Int64
	issue := func(ctx context.Context, d int, on bool) (sample, error) {
		cmd, dur := "OFF", int64(0)
		if on {
			cmd, dur = "ON", 20
		}
		corr := fmt.Sprintf("bench-%d", seq.Add(1))
		t0 := time.Now()
		payload, err := contract.Marshal(contract.NewActuatorCommand(cmd, 1, dur, t0, corr))
		if err != nil {
			return sample{}, err
		}
		topic := fmt.Sprintf("kaiser/god/esp/BASE_CMD_%06X/actuator/%d/command", d, pumpGPIO)
		if err := b.Publish(ctx, topic, payload, 1, false); err != nil {
			return sample{}, err
		}
		at, err := received.wait(ctx, corr, 5*time.Second)
		if err != nil {
			return sample{}, err
		}
		back, err := answered.wait(ctx, corr, 5*time.Second)
		if err != nil {
			return sample{}, err
		}
		return sample{on: on, toDevice: at.Sub(t0).Microseconds(), done: back.Sub(t0).Microseconds()}, nil
	}
	measure := func(ctx context.Context, d time.Duration) ([]sample, error) {
		return drive(ctx, d, cfg.Devices, cfg.Interval, issue)
	}
	shape := cfg.background()
	bg := bareLoad(b.Addr(), shape.devices, shape.sensors, count)
	load := func(ctx context.Context, rate float64) error { return bg.run(ctx, rate, bgWindow) }

	cfg.say("  bare broker")
	samples, bgPS, err := withBackground(ctx, cfg, measure, load, count.Load, bg.allConnected)
	if err != nil {
		return err
	}
	phases[1].BaselineBackgroundPS = bgPS
	for i := range phases {
		phases[i].BaselineToDevice, phases[i].BaselineRoundTrip = quantiles(samples[i], cfg)
		cfg.say("    %s: %d commands, → device p50 %.2f / p99 %.2f ms, round trip p50 %.2f / p99 %.2f ms",
			phases[i].Name, len(samples[i]), phases[i].BaselineToDevice.P50ms, phases[i].BaselineToDevice.P99ms,
			phases[i].BaselineRoundTrip.P50ms, phases[i].BaselineRoundTrip.P99ms)
	}
	return nil
}

// bareDevice subscribes to its commands and answers each at once like the
// baseline firmware, status, response, status, the response carrying the
// correlation id so that the round trip can be matched.
func bareDevice(addr, id string, received *timings) (*sim.Wire, error) {
	var w *sim.Wire
	prefix := "kaiser/god/esp/" + id + fmt.Sprintf("/actuator/%d/", pumpGPIO)
	answer := func(_ string, payload []byte) {
		at := time.Now()
		var c struct {
			Command       string `json:"command"`
			CorrelationID string `json:"correlation_id"`
		}
		_ = json.Unmarshal(payload, &c)
		received.mark(c.CorrelationID, at)
		on := c.Command == "ON"
		status := fmt.Appendf(nil, `{"esp_id":%q,"ts":0,"gpio":%d,"type":"pump","state":%t,"pwm":0,`+
			`"runtime_ms":0,"emergency":"normal"}`, id, pumpGPIO, on)
		response := fmt.Appendf(nil, `{"esp_id":%q,"ts":0,"gpio":%d,"command":%q,"value":1.000,"duration":0,`+
			`"success":true,"message":"Command executed","correlation_id":%q}`, id, pumpGPIO, c.Command, c.CorrelationID)
		_ = w.Publish(prefix+"status", status, true)
		_ = w.Publish(prefix+"response", response, true)
		_ = w.Publish(prefix+"status", status, true)
		_ = w.Flush()
	}
	w, err := sim.DialWire(addr, sim.WireOptions{ClientID: id, OnMessage: answer})
	if err != nil {
		return nil, err
	}
	if err := w.Subscribe(prefix + "command"); err != nil {
		w.Kill()
		return nil, err
	}
	return w, nil
}
