package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/sim"
)

// FailoverConfig sizes the failover scenario: two replicas run the
// footprint's fleet; the primary is SIGKILLed Repeat times.
type FailoverConfig struct {
	Devices  int     // fleet devices, one pH sensor each
	Rate     float64 // readings per second in total
	Repeat   int     // kills (default 3)
	Warmup   time.Duration
	Settle   time.Duration // after the killed replica stands by again, before the next kill
	Binary   string
	HubArgs  []string
	HubEnv   []string
	Database string // as FootprintConfig's: a server to create a scratch database on
	Broker   string // mqtt://host[:port]
	Console  io.Writer
}

// FailoverRun is one SIGKILL of the primary, its times counted from the kill.
type FailoverRun struct {
	Killed int `json:"killed_hub"`
	// TakeoverS: until the other replica reports role primary.
	TakeoverS float64 `json:"takeover_s"`
	// StoredS: until the new primary has committed a reading (the standby's
	// hub stopped and the primary's started in its place).
	StoredS float64 `json:"readings_stored_again_s"`
	// CommandS: until a pump command posted through the surviving replica
	// is accepted (sent to the node); AckedS until it is acknowledged.
	CommandS float64 `json:"command_accepted_s"`
	AckedS   float64 `json:"command_acknowledged_s"`
	// RestartS is how long the killed replica, started again, took to
	// stand by.
	RestartS float64 `json:"restart_to_standby_s"`
	// Published and Lost are the fleet's readings from just before the kill
	// to a few seconds after the new primary stores, and those of them not
	// stored (approximate: readings in flight at either end).
	Published int64 `json:"published"`
	Lost      int64 `json:"lost"`
}

// Spread is the minimum, median and maximum of a series.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// FailoverResult is the scenario's outcome.
type FailoverResult struct {
	Scenario string        `json:"scenario"`
	Binary   string        `json:"binary"`
	HubArgs  string        `json:"hub_args"`
	Broker   string        `json:"mqtt_broker"`
	Devices  int           `json:"devices"`
	Rate     float64       `json:"offered_per_s"`
	Runs     []FailoverRun `json:"runs"`
	Takeover Spread        `json:"takeover_s"`
	Stored   Spread        `json:"readings_stored_again_s"`
	Command  Spread        `json:"command_accepted_s"`
	Acked    Spread        `json:"command_acknowledged_s"`
	Lost     Spread        `json:"lost"`
}

const failoverPump = "ESP_FA0001"

// Failover starts two replicas on one PostgreSQL and one broker, the
// footprint's fleet publishing and a simulated node with a pump, and then
// Repeat times: SIGKILLs the primary, measures until the other replica
// leads, stores readings and accepts a command, and starts the killed
// replica again, as its supervisor would, until it stands by.
func Failover(ctx context.Context, cfg FailoverConfig) (FailoverResult, error) {
	if cfg.Devices <= 0 {
		cfg.Devices = 200
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 200
	}
	if cfg.Repeat <= 0 {
		cfg.Repeat = 3
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 10 * time.Second
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.Database == "" || cfg.Broker == "" {
		return FailoverResult{}, errors.New("failover: the replicas need a PostgreSQL database and an MQTT broker " +
			"(--database, --mqtt-broker)")
	}
	if cfg.Rate > float64(cfg.Devices) {
		return FailoverResult{}, fmt.Errorf("rate %.0f/s exceeds one reading per device per second", cfg.Rate)
	}
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return FailoverResult{}, err
		}
		cfg.Binary = exe
	}
	res := FailoverResult{Scenario: "failover", Binary: cfg.Binary, HubArgs: strings.Join(cfg.HubArgs, " "),
		Broker: cfg.Broker, Devices: cfg.Devices, Rate: cfg.Rate}
	fc := FootprintConfig{Devices: cfg.Devices, Sensors: 1, Rate: cfg.Rate, Binary: cfg.Binary,
		HubArgs: cfg.HubArgs, HubEnv: cfg.HubEnv, Replicas: 2, Database: cfg.Database, Broker: cfg.Broker,
		ProbeEvery: 1}
	s, token, ids, closeSite, err := openSite(ctx, fc, "kaiser-failover-")
	if err != nil {
		return res, err
	}
	defer closeSite()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	pump, err := startFailoverPump(runCtx, s, token)
	if err != nil {
		return res, err
	}
	defer func() { stopRun(); <-pump.Stopped() }()
	// The standby starts after the registration, which it loads.
	if err := s.startStandbys(ctx); err != nil {
		return res, err
	}
	for _, c := range s.hubs {
		fmt.Fprintf(cfg.Console, "hub %d: %s, pid %d, http %s\n", c.index, c.role, c.cmd.Process.Pid, c.httpAddr)
	}
	fleet := &footprintFleet{cfg: fc, ids: ids, addr: s.mqttAddr, m: newFootprintMeter()}
	if err := fleet.connect(); err != nil {
		return res, err
	}
	defer fleet.close()
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- fleet.run(runCtx) }()
	fmt.Fprintf(cfg.Console, "%d devices at %.0f readings/s and a pump node; warm-up %s\n", len(ids), cfg.Rate, cfg.Warmup)
	if err := sleepCtx(ctx, cfg.Warmup); err != nil {
		return res, err
	}

	for r := 0; r < cfg.Repeat; r++ {
		select {
		case err := <-fleetDone:
			return res, fmt.Errorf("fleet stopped: %w", err)
		default:
		}
		primary, survivor := s.hubs[0], s.hubs[1]
		if primary.role != "primary" {
			primary, survivor = survivor, primary
		}
		run, err := killPrimary(ctx, s, primary, survivor, fleet)
		if err != nil {
			return res, fmt.Errorf("failover %d: %w", r+1, err)
		}
		fmt.Fprintf(cfg.Console, "failover %d: hub %d killed; hub %d primary after %.2f s, stores after %.2f s, "+
			"accepts a command after %.2f s (acknowledged %.2f s); hub %d stood by %.1f s after its restart; "+
			"%d of %d readings lost\n", r+1, primary.index, survivor.index, run.TakeoverS, run.StoredS,
			run.CommandS, run.AckedS, primary.index, run.RestartS, run.Lost, run.Published)
		res.Runs = append(res.Runs, run)
		if r < cfg.Repeat-1 {
			if err := sleepCtx(ctx, cfg.Settle); err != nil {
				return res, err
			}
		}
	}
	pick := func(f func(FailoverRun) float64) Spread {
		var v []float64
		for _, r := range res.Runs {
			v = append(v, f(r))
		}
		return spread(v)
	}
	res.Takeover = pick(func(r FailoverRun) float64 { return r.TakeoverS })
	res.Stored = pick(func(r FailoverRun) float64 { return r.StoredS })
	res.Command = pick(func(r FailoverRun) float64 { return r.CommandS })
	res.Acked = pick(func(r FailoverRun) float64 { return r.AckedS })
	res.Lost = pick(func(r FailoverRun) float64 { return float64(r.Lost) })
	stopRun()
	<-fleetDone
	fleet.close()
	return res, s.stop()
}

// startFailoverPump registers a baseline-firmware node with a pump through
// the primary and waits until the pump reports off.
func startFailoverPump(ctx context.Context, s *site, token string) (*sim.Node, error) {
	c := s.hubs[0]
	if err := c.call(ctx, "POST", "/esp/devices", token, map[string]any{"device_id": failoverPump}, nil); err != nil {
		return nil, fmt.Errorf("register the pump node: %w", err)
	}
	n := sim.NewNode(sim.NodeConfig{EspID: failoverPump, Broker: s.mqttAddr, Quirks: nodeQuirks})
	go func() { _ = n.Run(ctx) }()
	pollErr := func(what string, ok func() (bool, error)) error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			done, err := ok()
			if done {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s within 30 s (last error %v)", what, err)
			}
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return err
			}
		}
	}
	if err := pollErr("the pump node online", func() (bool, error) {
		var d struct {
			Status string `json:"status"`
		}
		err := c.call(ctx, "GET", "/esp/devices/"+failoverPump, token, nil, &d)
		return d.Status == "online", err
	}); err != nil {
		return n, err
	}
	path := fmt.Sprintf("/actuators/%s/%d", failoverPump, pumpGPIO)
	pumpCfg := map[string]any{"actuator_type": "pump", "name": "Failover pump", "max_runtime_seconds": 3600}
	if err := c.call(ctx, "POST", path, token, pumpCfg, nil); err != nil {
		return n, fmt.Errorf("configure the pump: %w", err)
	}
	return n, pollErr("the pump off and applied", func() (bool, error) {
		var a struct {
			ConfigStatus string `json:"config_status"`
			State        string `json:"state"`
		}
		err := c.call(ctx, "GET", path, token, nil, &a)
		return a.ConfigStatus == "applied" && a.State == "off", err
	})
}

// failoverTimeout bounds each measurement of one failover: the lease's TTL
// (10 s) and a start, many times over.
const failoverTimeout = 90 * time.Second

// killPrimary SIGKILLs primary and measures the takeover by survivor: its
// role, its first stored reading, a command through it; then starts the
// killed replica again and waits until it stands by.
func killPrimary(ctx context.Context, s *site, primary, survivor *hubChild, fleet *footprintFleet) (FailoverRun, error) {
	run := FailoverRun{Killed: primary.index}
	token, err := survivor.login(ctx)
	if err != nil {
		return run, fmt.Errorf("login: %w", err)
	}
	stored0, err := s.db.readings(ctx)
	if err != nil {
		return run, err
	}
	sent0 := fleet.sent.Load()

	mctx, cancel := context.WithTimeout(ctx, failoverTimeout)
	defer cancel()
	killed := time.Now()
	if err := primary.cmd.Process.Kill(); err != nil {
		return run, fmt.Errorf("SIGKILL hub %d: %w", primary.index, err)
	}
	<-primary.exited

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		// The role first; then the primary's counter, which starts at zero
		// in the hub that leads (the standby's hub and its registry are gone).
		st, err := survivor.awaitRole(mctx, failoverTimeout, func(st replicaStatus) bool { return st.Role == "primary" })
		if err != nil {
			errs <- err
			return
		}
		run.TakeoverS = time.Since(killed).Seconds()
		survivor.role, survivor.holder = st.Role, st.Holder
		for {
			if m, err := survivor.metrics(); err == nil && m["god_kaiser_sensor_readings_total"] > 0 {
				run.StoredS = time.Since(killed).Seconds()
				return
			}
			if err := sleepCtx(mctx, 20*time.Millisecond); err != nil {
				errs <- fmt.Errorf("no reading stored by the new primary: %w", err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		id, err := commandThrough(mctx, survivor, token, "ON")
		if err != nil {
			errs <- err
			return
		}
		run.CommandS = time.Since(killed).Seconds()
		if err := awaitAcknowledged(mctx, survivor, token, id); err != nil {
			errs <- err
			return
		}
		run.AckedS = time.Since(killed).Seconds()
	}()
	wg.Wait()
	close(errs)
	if err := errors.Join(<-errs, <-errs); err != nil {
		return run, err
	}
	// The pump off again for the next failover.
	id, err := commandThrough(mctx, survivor, token, "OFF")
	if err == nil {
		err = awaitAcknowledged(mctx, survivor, token, id)
	}
	if err != nil {
		return run, fmt.Errorf("the OFF after the failover: %w", err)
	}

	// Readings in flight settle; the count then is the loss of the gap.
	if err := sleepCtx(ctx, 3*time.Second); err != nil {
		return run, err
	}
	stored1, err := s.db.readings(ctx)
	if err != nil {
		return run, err
	}
	run.Published = fleet.sent.Load() - sent0
	run.Lost = run.Published - (stored1 - stored0)

	restarted := time.Now()
	if err := primary.start(ctx); err != nil {
		return run, err
	}
	st, err := primary.awaitRole(ctx, failoverTimeout, func(st replicaStatus) bool {
		return st.Role == "standby" && st.Primary != nil && st.Primary.Holder == survivor.holder
	})
	if err != nil {
		return run, err
	}
	primary.role, primary.holder = st.Role, st.Holder
	run.RestartS = time.Since(restarted).Seconds()
	return run, nil
}

// commandThrough posts cmd to the pump through c until it is accepted
// (sent to the node); it returns the command's id. While the primary is
// gone the standby answers 502 or 503, and while it changes roles nothing
// listens.
func commandThrough(ctx context.Context, c *hubChild, token, cmd string) (string, error) {
	path := fmt.Sprintf("/actuators/%s/%d/command", failoverPump, pumpGPIO)
	var last error
	for {
		var r struct {
			CommandID   string `json:"command_id"`
			Status      string `json:"status"`
			CommandSent bool   `json:"command_sent"`
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.call(cctx, "POST", path, token, map[string]any{"command": cmd}, &r)
		cancel()
		if err == nil && r.CommandSent {
			return r.CommandID, nil
		}
		if err == nil {
			err = fmt.Errorf("command %s, not sent", r.Status)
		}
		last = err
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return "", fmt.Errorf("%s through hub %d not accepted (last: %v): %w", cmd, c.index, last, err)
		}
	}
}

// awaitAcknowledged polls the command until the node has acknowledged it.
func awaitAcknowledged(ctx context.Context, c *hubChild, token, id string) error {
	var last string
	for {
		var st struct {
			Status string `json:"status"`
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.call(cctx, "GET", "/actuators/commands/"+id, token, nil, &st)
		cancel()
		if err == nil {
			last = st.Status
			if st.Status == "acknowledged" {
				return nil
			}
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("command %s %q, not acknowledged: %w", id, last, err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func spread(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Spread{Min: v[0], Median: med, Max: v[len(v)-1]}
}
