package bench

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/kaiserhub/kaiser/internal/sim"
)

// FootprintConfig sizes the footprint scenario: a real-time fleet against a
// `kaiser serve` child process, whose resources are measured alone.
type FootprintConfig struct {
	Devices  int           // MQTT connections, one per device
	Sensors  int           // sensors per device (each series reports at most once a second)
	Rate     float64       // readings per second in total
	Duration time.Duration // measured time after the warm-up
	Warmup   time.Duration // time after the fleet is connected before samples count
	Sample   time.Duration // sampling period of the resource series
	// Binary is the kaiser executable started as `kaiser serve` (default:
	// this executable), so that two builds can be compared by one bench.
	Binary string
	// HubArgs are extra arguments of `kaiser serve`; HubEnv extra
	// KAISER_* variables (an older binary ignores variables it does not know).
	HubArgs []string
	HubEnv  []string
	// ProbeEvery makes every n-th device publish at QoS 1: its PUBACK,
	// withheld until the commit (docs/decisions/0015-durable-ack.md),
	// times reading → durable. 0 = 100.
	ProbeEvery int
	// NoWebSocket leaves the live-feed client out.
	NoWebSocket bool
	Console     io.Writer
	// CSV, if set, receives the resource samples as they are taken.
	CSV string
	// Replicas is the number of `kaiser serve` children (default 1); more
	// than one needs Database and Broker, and makes them replicas of one
	// site (docs/decisions/0029-replicas.md): the first is started first
	// and becomes the primary, the others stand by.
	Replicas int
	// Database, a postgres:// URL, puts the hubs on PostgreSQL: the bench
	// creates a scratch database on that server for the run (the URL's
	// user needs CREATEDB) and drops it afterwards; its password comes
	// from the URL, PGPASSWORD or ~/.pgpass. Empty: SQLite in the child's
	// data directory.
	Database string
	// Broker, mqtt://host[:port], is an external MQTT broker: every child
	// connects to it (KAISER_MQTT_BROKER; --mqtt-broker in HubArgs wins)
	// and so does the fleet. Empty: the fleet connects to the embedded
	// broker of the (single) child.
	Broker string
	// AlsoMeasure are the PIDs of other processes on this machine whose CPU,
	// with their children's, is reported beside the hubs': the PostgreSQL
	// postmaster and Mosquitto the hubs share.
	AlsoMeasure []int
}

// FootprintSample is one reading of the hub process's resources.
type FootprintSample struct {
	ElapsedS   float64 `json:"elapsed_s"`
	RSSMB      float64 `json:"rss_mb"`
	HeapMB     float64 `json:"go_heap_inuse_mb"`
	Goroutines int     `json:"goroutines"`
	CPUPct     float64 `json:"cpu_pct_one_core"`
	DBMB       float64 `json:"db_mb"`
	WALMB      float64 `json:"wal_mb"`
	Stored     int64   `json:"readings_stored"`
	Published  int64   `json:"readings_published"`
	// HubCPUPct is each child's CPU, in the order of FootprintResult.Hubs,
	// when there is more than one (CPUPct is their sum).
	HubCPUPct []float64 `json:"hub_cpu_pct_one_core,omitempty"`
}

// FootprintResult is the scenario's outcome.
type FootprintResult struct {
	Scenario      string  `json:"scenario"`
	Binary        string  `json:"binary"`
	HubArgs       string  `json:"hub_args"`
	Devices       int     `json:"devices"`
	Sensors       int     `json:"sensors_per_device"`
	Rate          float64 `json:"offered_per_s"`
	AchievedPS    float64 `json:"stored_per_s"`
	DurationS     float64 `json:"measured_s"`
	ProcessingOff bool    `json:"firmware_http_processing_call_off"`
	WSRateOff     bool    `json:"ws_rate_limit_off"`
	// Resources over the measured time: the last sample, the peak and
	// the CPU of the whole measured time.
	RSSMB        float64 `json:"rss_mb_last"`
	RSSMaxMB     float64 `json:"rss_mb_max"`
	RSSWarmMB    float64 `json:"rss_mb_after_warmup"`
	HeapMB       float64 `json:"go_heap_inuse_mb_last"`
	HeapMaxMB    float64 `json:"go_heap_inuse_mb_max"`
	Goroutines   int     `json:"goroutines_last"`
	CPUPct       float64 `json:"cpu_pct_one_core"`
	WALMaxMB     float64 `json:"wal_mb_max"`
	Durable      Percentiles
	DurableProbe int               `json:"durable_probes"`
	WS           Percentiles       `json:"ws"`
	WSDelivered  float64           `json:"ws_delivered_share"`
	Stored       int64             `json:"readings_stored"`
	DBBytes      int64             `json:"db_bytes"`
	BytesPer     float64           `json:"db_bytes_per_reading"`
	TableBytes   int64             `json:"reading_table_bytes"`
	TablePer     float64           `json:"reading_and_rollup_bytes_per_reading"`
	Tables       []TableSize       `json:"tables,omitempty"`
	Samples      []FootprintSample `json:"samples"`

	// Replicas is the number of hubs; Store "sqlite" or "postgresql";
	// Broker the external broker's URL ("" for the embedded one). With
	// more than one hub the resources above are all hubs' together (RSS,
	// heap and goroutines summed, CPUPct the sum of shares of one core);
	// Hubs has them per hub.
	Replicas int    `json:"replicas"`
	Store    string `json:"store"`
	Broker   string `json:"mqtt_broker,omitempty"`
	// CPUSeconds is the CPU (user + system) of all hubs over the measured
	// time; CPUPer1k that per thousand readings the hubs stored in it.
	CPUSeconds float64            `json:"cpu_seconds"`
	CPUPer1k   float64            `json:"cpu_seconds_per_1k_readings"`
	Hubs       []FootprintHub     `json:"hubs"`
	Others     []FootprintProcess `json:"other_processes,omitempty"`
}

// FootprintHub is one hub's share of the measured time.
type FootprintHub struct {
	Role       string  `json:"role"` // solo, primary or standby, at the start
	PID        int     `json:"pid"`
	CPUPct     float64 `json:"cpu_pct_one_core"`
	CPUSeconds float64 `json:"cpu_seconds"`
	RSSMB      float64 `json:"rss_mb_last"`
	RSSMaxMB   float64 `json:"rss_mb_max"`
	HeapMB     float64 `json:"go_heap_inuse_mb_last"`
	Goroutines int     `json:"goroutines_last"`
	// Stored is the readings this hub committed in the measured time;
	// Share its part of all hubs' (the shared subscription's split).
	Stored int64   `json:"readings_stored_measured"`
	Share  float64 `json:"readings_share"`
}

// FootprintProcess is the CPU of a process of AlsoMeasure and its children
// over the measured time.
type FootprintProcess struct {
	PID        int     `json:"pid"`
	Name       string  `json:"name"`
	CPUPct     float64 `json:"cpu_pct_one_core"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

// TableSize is one table or index's share of the database file.
type TableSize struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	Unused int64  `json:"unused_bytes"`
}

// Footprint runs the fleet against `kaiser serve` children (one, or
// Replicas of one site): devices are registered over REST, then publish
// pi_enhanced pH readings in real time (QoS 0 with RETAIN, as the firmware
// does; on the embedded broker every ProbeEvery-th device at QoS 1), send
// a heartbeat a minute and keep their MQTT sessions; one WebSocket client
// of the first hub with its rate limit off receives sensor_data. The
// publishers never make the firmware's HTTP processing call. Each child's
// RSS and CPU come from /proc, its Go heap, goroutines and stored readings
// from its /metrics.
func Footprint(ctx context.Context, cfg FootprintConfig) (FootprintResult, error) {
	if cfg.Devices <= 0 {
		cfg.Devices = 1000
	}
	if cfg.Sensors <= 0 {
		cfg.Sensors = 1
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 1000
	}
	if cfg.Rate > float64(cfg.Devices*cfg.Sensors) {
		return FootprintResult{}, fmt.Errorf("rate %.0f/s exceeds one reading per series per second (%d series)",
			cfg.Rate, cfg.Devices*cfg.Sensors)
	}
	if cfg.Sample <= 0 {
		cfg.Sample = 30 * time.Second
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = 100
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Replicas > 1 && (cfg.Database == "" || cfg.Broker == "") {
		return FootprintResult{}, errors.New("replicas share one PostgreSQL database and one MQTT broker: " +
			"give both (--database, --mqtt-broker)")
	}
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return FootprintResult{}, err
		}
		cfg.Binary = exe
	}
	res := FootprintResult{
		Scenario: "footprint", Binary: cfg.Binary, HubArgs: strings.Join(cfg.HubArgs, " "),
		Devices: cfg.Devices, Sensors: cfg.Sensors, Rate: cfg.Rate, ProcessingOff: true, WSRateOff: true,
		Replicas: cfg.Replicas, Store: "sqlite", Broker: cfg.Broker,
	}
	if cfg.Database != "" {
		res.Store = "postgresql"
	}
	others, err := otherProcesses(cfg.AlsoMeasure)
	if err != nil {
		return res, err
	}
	s, token, ids, closeSite, err := openSite(ctx, cfg, "kaiser-footprint-")
	if err != nil {
		return res, err
	}
	defer closeSite()
	fmt.Fprintf(cfg.Console, "%d devices with %d sensor(s) each registered\n", len(ids), cfg.Sensors)
	// The standbys start after the registration, which they load.
	if err := s.startStandbys(ctx); err != nil {
		return res, err
	}
	for _, c := range s.hubs {
		fmt.Fprintf(cfg.Console, "hub %d: %s, pid %d, http %s, data %s, log %s\n",
			c.index, c.role, c.cmd.Process.Pid, c.httpAddr, c.dir, c.logPath)
	}

	m := newFootprintMeter()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var wsDone chan struct{}
	if !cfg.NoWebSocket {
		wsDone, err = m.watch(runCtx, s.hubs[0].httpAddr, token)
		if err != nil {
			return res, err
		}
	}
	// On an external broker a PUBACK is the broker's, not the hub's
	// commit: no probes.
	fleet := &footprintFleet{cfg: cfg, ids: ids, addr: s.mqttAddr, m: m, probes: cfg.Broker == ""}
	if err := fleet.connect(); err != nil {
		return res, err
	}
	defer fleet.close()
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- fleet.run(runCtx) }()
	fmt.Fprintf(cfg.Console, "fleet connected; warm-up %s, then %s measured\n", cfg.Warmup, cfg.Duration)

	var csvW *csv.Writer
	if cfg.CSV != "" {
		f, err := os.Create(cfg.CSV)
		if err != nil {
			return res, err
		}
		defer f.Close()
		csvW = csv.NewWriter(f)
		head := []string{"elapsed_s", "rss_mb", "go_heap_inuse_mb", "goroutines", "cpu_pct_one_core",
			"db_mb", "wal_mb", "readings_stored", "readings_published"}
		if len(s.hubs) > 1 {
			for _, c := range s.hubs {
				head = append(head, fmt.Sprintf("cpu_pct_hub%d", c.index))
			}
		}
		_ = csvW.Write(head)
	}
	exited := s.exits(runCtx)
	start := time.Now()
	prev, err := s.sample(start, fleet, others)
	if err != nil {
		return res, err
	}
	record := func(smp FootprintSample) {
		res.Samples = append(res.Samples, smp)
		if csvW != nil {
			row := []string{f1(smp.ElapsedS), f1(smp.RSSMB), f1(smp.HeapMB), strconv.Itoa(smp.Goroutines),
				f1(smp.CPUPct), f1(smp.DBMB), f1(smp.WALMB), strconv.FormatInt(smp.Stored, 10),
				strconv.FormatInt(smp.Published, 10)}
			for _, p := range smp.HubCPUPct {
				row = append(row, f1(p))
			}
			_ = csvW.Write(row)
			csvW.Flush()
		}
		per := ""
		if len(smp.HubCPUPct) > 1 {
			parts := make([]string, len(smp.HubCPUPct))
			for i, p := range smp.HubCPUPct {
				parts[i] = fmt.Sprintf("%.1f", p)
			}
			per = " (" + strings.Join(parts, " + ") + ")"
		}
		fmt.Fprintf(cfg.Console, "t=%6.0fs rss %6.1f MB heap %5.1f MB goroutines %5d cpu %5.1f%%%s wal %5.1f MB stored %d\n",
			smp.ElapsedS, smp.RSSMB, smp.HeapMB, smp.Goroutines, smp.CPUPct, per, smp.WALMB, smp.Stored)
	}
	record(prev.FootprintSample)
	end := start.Add(cfg.Warmup + cfg.Duration)
	var warm *siteSample
	hubMax := make([]FootprintHub, len(s.hubs))
	if cfg.Warmup <= 0 {
		w := prev
		warm = &w
		m.measure.Store(true)
		res.RSSWarmMB = prev.RSSMB
	}
	tick := time.NewTicker(cfg.Sample)
	defer tick.Stop()
	warmTimer := time.NewTimer(max(cfg.Warmup, 0))
	defer warmTimer.Stop()
	if warm != nil {
		warmTimer.Stop()
	}
	endTimer := time.NewTimer(time.Until(end))
	defer endTimer.Stop()
	running := true
	for running {
		takeWarm := false
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case err := <-fleetDone:
			return res, fmt.Errorf("fleet stopped: %w", err)
		case c := <-exited:
			return res, fmt.Errorf("hub %d (kaiser serve) exited early: %s", c.index, c.logTail())
		case <-warmTimer.C:
			takeWarm = true
		case <-tick.C:
		case <-endTimer.C:
			running = false
		}
		smp, err := s.sample(start, fleet, others)
		if err != nil {
			return res, err
		}
		if takeWarm {
			// The warm-up's end is a mark, not a row of the series.
			w := smp
			warm = &w
			m.measure.Store(true)
			res.RSSWarmMB = smp.RSSMB
			continue
		}
		smp.CPUPct, smp.HubCPUPct = s.cpuPct(prev, smp)
		prev = smp
		record(smp.FootprintSample)
		if warm != nil {
			res.RSSMaxMB = max(res.RSSMaxMB, smp.RSSMB)
			res.HeapMaxMB = max(res.HeapMaxMB, smp.HeapMB)
			for i, h := range smp.hubs {
				hubMax[i].RSSMaxMB = max(hubMax[i].RSSMaxMB, h.RSSMB)
			}
		}
		res.WALMaxMB = max(res.WALMaxMB, smp.WALMB)
	}
	m.measure.Store(false)
	last := prev
	res.RSSMB, res.HeapMB, res.Goroutines = last.RSSMB, last.HeapMB, last.Goroutines
	res.CPUPct, _ = s.cpuPct(*warm, last)
	res.DurationS = last.at.Sub(warm.at).Seconds()
	measured := last.Stored - warm.Stored
	res.AchievedPS = float64(measured) / max(res.DurationS, 1e-9)
	res.CPUSeconds = float64(last.cpuTicks-warm.cpuTicks) / clockTicks
	if measured > 0 {
		res.CPUPer1k = res.CPUSeconds / (float64(measured) / 1000)
	}
	for i, c := range s.hubs {
		w, l := warm.hubs[i], last.hubs[i]
		h := FootprintHub{
			Role: c.role, PID: c.cmd.Process.Pid, CPUPct: c.cpuPct(w, l),
			CPUSeconds: float64(l.cpuTicks-w.cpuTicks) / clockTicks,
			RSSMB:      l.RSSMB, RSSMaxMB: hubMax[i].RSSMaxMB, HeapMB: l.HeapMB, Goroutines: l.Goroutines,
			Stored: l.Stored - w.Stored,
		}
		if measured > 0 {
			h.Share = float64(h.Stored) / float64(measured)
		}
		res.Hubs = append(res.Hubs, h)
	}
	for i, o := range others {
		ticks := last.others[i] - warm.others[i]
		res.Others = append(res.Others, FootprintProcess{PID: o.pid, Name: o.name,
			CPUSeconds: float64(ticks) / clockTicks, CPUPct: float64(ticks) / clockTicks / max(res.DurationS, 1e-9) * 100})
	}
	res.Durable, res.DurableProbe = m.durable()
	var sent int64
	res.WS, sent = m.ws()
	if sent > 0 {
		res.WSDelivered = float64(len(m.wsLat)) / float64(sent)
	}
	stopRun()
	<-fleetDone
	if wsDone != nil {
		<-wsDone
	}
	fleet.close()
	if err := s.stop(); err != nil {
		return res, err
	}
	if s.db != nil {
		// The database's size is SQLite's measurement; PostgreSQL's
		// files are the server's, shared with whatever else it holds.
		res.Stored, err = s.db.readings(ctx)
		return res, err
	}
	if err := res.measureDB(ctx, filepath.Join(s.hubs[0].dir, "kaiser.db")); err != nil {
		return res, err
	}
	return res, nil
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// measureDB sizes the stopped hub's database: the file per stored reading,
// and the readings and rollup tables (with their indexes) per reading.
func (r *FootprintResult) measureDB(ctx context.Context, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	r.DBBytes = st.Size()
	if wal, err := os.Stat(path + "-wal"); err == nil {
		r.DBBytes += wal.Size()
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM readings`).Scan(&r.Stored); err != nil {
		return fmt.Errorf("count readings: %w", err)
	}
	if r.Stored > 0 {
		r.BytesPer = float64(r.DBBytes) / float64(r.Stored)
	}
	rows, err := db.QueryContext(ctx, `SELECT name, SUM(pgsize), SUM(unused) FROM dbstat GROUP BY name ORDER BY 2 DESC`)
	if err != nil {
		return nil // dbstat not compiled in: the file size stands alone
	}
	defer rows.Close()
	for rows.Next() {
		var t TableSize
		if err := rows.Scan(&t.Name, &t.Bytes, &t.Unused); err != nil {
			return err
		}
		r.Tables = append(r.Tables, t)
		if strings.HasPrefix(t.Name, "readings") || strings.HasPrefix(t.Name, "rollup_") ||
			strings.HasPrefix(t.Name, "sqlite_autoindex_readings") || strings.HasPrefix(t.Name, "sqlite_autoindex_rollup") {
			r.TableBytes += t.Bytes
		}
	}
	if r.Stored > 0 {
		r.TablePer = float64(r.TableBytes) / float64(r.Stored)
	}
	return rows.Err()
}

// hubChild is one `kaiser serve` process under measurement; start runs
// it again after a kill, with the same data directory and addresses.
type hubChild struct {
	index    int
	binary   string
	args     []string
	env      []string
	dir      string // data directory
	logPath  string
	httpAddr string
	mqttAddr string // the embedded broker's; "" on an external one
	client   *http.Client

	cmd    *exec.Cmd
	exited chan struct{}
	role   string // solo, primary or standby, as it reported after its (last) start
	holder string // its lease holder id, as a replica
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// newChild prepares hub index in dir: its data directory, log, addresses
// and arguments. dbURL and secret, when set, are the site's database and
// shared JWT secret file.
func newChild(cfg FootprintConfig, dir string, index int, dbURL, secret string) (*hubChild, error) {
	httpAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &hubChild{index: index, binary: cfg.Binary, dir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "serve.log"), httpAddr: httpAddr,
		client: &http.Client{Timeout: 30 * time.Second}}
	c.args = []string{"serve", "--data-dir", c.dir, "--http-addr", httpAddr, "--log-level", "warn"}
	c.env = append(os.Environ(), "KAISER_WS_RATE=0")
	if cfg.Broker == "" {
		if c.mqttAddr, err = freePort(); err != nil {
			return nil, err
		}
		c.args = append(c.args, "--mqtt-addr", c.mqttAddr,
			// The fleet connects at once and is registered: the door's pacing
			// (docs/decisions/0012-mqtt-door.md) is not what is measured.
			"--mqtt-connect-rate", "100000", "--mqtt-max-clients", strconv.Itoa(max(2*cfg.Devices+10, 100)))
	} else {
		// Variables, so that --mqtt-broker or --database in HubArgs win, and a
		// database password stays out of the process list.
		c.env = append(c.env, "KAISER_MQTT_BROKER="+cfg.Broker)
	}
	if dbURL != "" {
		c.env = append(c.env, "KAISER_DATABASE="+dbURL)
	}
	if secret != "" {
		c.env = append(c.env, "KAISER_JWT_SECRET_FILE="+secret)
	}
	c.args = append(c.args, cfg.HubArgs...)
	c.env = append(c.env, cfg.HubEnv...)
	return c, nil
}

// start starts the process and waits until it is ready.
func (c *hubChild) start(ctx context.Context) error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	c.cmd = exec.Command(c.binary, c.args...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	dieWithParent(c.cmd)
	c.cmd.Env = c.env
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s serve: %w", c.binary, err)
	}
	c.exited = make(chan struct{})
	cmd, exited := c.cmd, c.exited
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.client.Get("http://" + c.httpAddr + "/api/v1/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.exited:
			return fmt.Errorf("hub %d (kaiser serve) exited: %s", c.index, c.logTail())
		case <-ctx.Done():
			c.kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.kill()
			return fmt.Errorf("hub %d (kaiser serve) not ready within 30 s: %s", c.index, c.logTail())
		}
	}
}

// logTail is the end of the child's log, for an error that outlives the
// bench's temporary directory.
func (c *hubChild) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return "no log: " + err.Error()
	}
	const keep = 2000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return "log ends:\n" + string(b)
}

func (c *hubChild) kill() {
	if c.cmd == nil {
		return
	}
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// stop ends the child with SIGTERM (a clean shutdown checkpoints the WAL).
func (c *hubChild) stop() error {
	if c.cmd == nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return nil
	case <-time.After(60 * time.Second):
		c.kill()
		return fmt.Errorf("hub %d (kaiser serve) did not stop within 60 s of SIGTERM", c.index)
	}
}

func (c *hubChild) call(ctx context.Context, method, path, token string, body any, out any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.httpAddr+"/api/v1"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// setup creates the first admin account and returns its access token.
func (c *hubChild) setup(ctx context.Context) (string, error) {
	var out struct {
		Tokens struct {
			AccessToken string `json:"access_token"`
		} `json:"tokens"`
	}
	err := c.call(ctx, "POST", "/auth/setup", "", map[string]string{
		"username": "bench", "email": "bench@example.org", "password": "Bench-pass1",
	}, &out)
	return out.Tokens.AccessToken, err
}

// provision registers approved devices, each with pi_enhanced pH sensors.
func (c *hubChild) provision(ctx context.Context, token string, devices, sensors int) ([]string, error) {
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("ESP_%06X", 0xF00000+i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	next := atomic.Int64{}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= devices {
					return
				}
				err := c.call(ctx, "POST", "/esp/devices", token, map[string]any{
					"device_id":     ids[i],
					"ip_address":    fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
					"mac_address":   fmt.Sprintf("02:00:00:%02X:%02X:%02X", i>>16&255, i>>8&255, i&255),
					"hardware_type": "ESP32_WROOM",
				}, nil)
				for s := 0; err == nil && s < sensors; s++ {
					err = c.call(ctx, "POST", fmt.Sprintf("/sensors/%s/%d", ids[i], sensorPin(s)), token,
						map[string]any{"sensor_type": "ph"}, nil)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, fmt.Errorf("provision: %w", err)
	default:
	}
	return ids, nil
}

type childSample struct {
	FootprintSample
	at       time.Time
	cpuTicks int64
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

func (c *hubChild) sample(start time.Time, fleet *footprintFleet) (childSample, error) {
	s := childSample{at: time.Now()}
	s.ElapsedS = s.at.Sub(start).Seconds()
	pid := c.cmd.Process.Pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read hub status: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			s.RSSMB = kb / 1024
		}
	}
	st, err := readProcStat(pid)
	if err != nil {
		return s, err
	}
	s.cpuTicks = st.ticks
	metrics, err := c.metrics()
	if err != nil {
		return s, err
	}
	s.HeapMB = metrics["go_memstats_heap_inuse_bytes"] / (1 << 20)
	s.Goroutines = int(metrics["go_goroutines"])
	s.Stored = int64(metrics["god_kaiser_sensor_readings_total"])
	s.Published = fleet.sent.Load()
	if st, err := os.Stat(filepath.Join(c.dir, "kaiser.db")); err == nil {
		s.DBMB = float64(st.Size()) / (1 << 20)
	}
	if st, err := os.Stat(filepath.Join(c.dir, "kaiser.db-wal")); err == nil {
		s.WALMB = float64(st.Size()) / (1 << 20)
	}
	return s, nil
}

func (c *hubChild) cpuPct(from, to childSample) float64 {
	d := to.at.Sub(from.at).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(to.cpuTicks-from.cpuTicks) / clockTicks / d * 100
}

// metrics reads the unlabelled series of the hub's /metrics.
func (c *hubChild) metrics() (map[string]float64, error) {
	resp, err := c.client.Get("http://" + c.httpAddr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("read hub metrics: %w", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.ContainsRune(name, '{') {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// footprintMeter matches published readings with their PUBACKs and their
// WebSocket events.
type footprintMeter struct {
	measure atomic.Bool
	mu      sync.Mutex
	pending map[string]time.Time // esp_id/gpio/ts → publish time, for the WebSocket
	probes  map[string]time.Time // esp_id/pid → publish time, for the PUBACK
	durLat  []int64
	wsLat   []int64
	wsSent  int64
}

func newFootprintMeter() *footprintMeter {
	return &footprintMeter{pending: map[string]time.Time{}, probes: map[string]time.Time{}}
}

func wsKey(id string, gpio int, ts int64) string {
	return id + "/" + strconv.Itoa(gpio) + "/" + strconv.FormatInt(ts, 10)
}

func (m *footprintMeter) published(id string, gpio int, ts int64, at time.Time) {
	if !m.measure.Load() {
		return
	}
	m.mu.Lock()
	m.pending[wsKey(id, gpio, ts)] = at
	m.wsSent++
	m.mu.Unlock()
}

func (m *footprintMeter) received(id string, gpio int, ts int64, at time.Time) {
	k := wsKey(id, gpio, ts)
	m.mu.Lock()
	if t0, ok := m.pending[k]; ok {
		delete(m.pending, k)
		m.wsLat = append(m.wsLat, at.Sub(t0).Microseconds())
	}
	m.mu.Unlock()
}

func (m *footprintMeter) probeSent(id string, pid uint16, at time.Time) {
	m.mu.Lock()
	m.probes[id+"/"+strconv.Itoa(int(pid))] = at
	m.mu.Unlock()
}

func (m *footprintMeter) probeAcked(id string, pid uint16, at time.Time) {
	k := id + "/" + strconv.Itoa(int(pid))
	m.mu.Lock()
	if t0, ok := m.probes[k]; ok {
		delete(m.probes, k)
		if m.measure.Load() {
			m.durLat = append(m.durLat, at.Sub(t0).Microseconds())
		}
	}
	m.mu.Unlock()
}

// prune forgets readings whose event did not come within a minute.
func (m *footprintMeter) prune(now time.Time) {
	m.mu.Lock()
	for k, t := range m.pending {
		if now.Sub(t) > time.Minute {
			delete(m.pending, k)
		}
	}
	for k, t := range m.probes {
		if now.Sub(t) > time.Minute {
			delete(m.probes, k)
		}
	}
	m.mu.Unlock()
}

func (m *footprintMeter) durable() (Percentiles, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	lat := append([]int64(nil), m.durLat...)
	return micros(lat), len(lat)
}

func (m *footprintMeter) ws() (Percentiles, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	lat := append([]int64(nil), m.wsLat...)
	return micros(lat), m.wsSent
}

// watch connects one live-feed client and matches its sensor_data events.
func (m *footprintMeter) watch(ctx context.Context, httpAddr, token string) (chan struct{}, error) {
	url := fmt.Sprintf("ws://%s/api/v1/ws/realtime/footprint?token=%s", httpAddr, token)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	c.SetReadLimit(1 << 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.CloseNow()
		var ev struct {
			Type string `json:"type"`
			Data struct {
				EspID     string `json:"esp_id"`
				GPIO      int    `json:"gpio"`
				Timestamp int64  `json:"timestamp"`
			} `json:"data"`
		}
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			at := time.Now()
			if !bytes.Contains(data, []byte(`"sensor_data"`)) {
				continue
			}
			ev.Type = ""
			if json.Unmarshal(data, &ev) == nil && ev.Type == "sensor_data" {
				m.received(ev.Data.EspID, ev.Data.GPIO, ev.Data.Timestamp, at)
			}
		}
	}()
	return done, nil
}

// footprintFleet is the devices' MQTT connections.
type footprintFleet struct {
	cfg    FootprintConfig
	ids    []string
	addr   string
	probes bool // every ProbeEvery-th device publishes at QoS 1
	m      *footprintMeter
	wires  []*sim.Wire
	sent   atomic.Int64
	once   sync.Once
}

func (f *footprintFleet) connect() error {
	f.wires = make([]*sim.Wire, len(f.ids))
	for i, id := range f.ids {
		opt := sim.WireOptions{ClientID: id, KeepAlive: 60}
		if f.probe(i) {
			opt.OnPuback = func(pid uint16) { f.m.probeAcked(id, pid, time.Now()) }
		}
		w, err := sim.DialWire(f.addr, opt)
		if err != nil {
			return fmt.Errorf("connect %s: %w", id, err)
		}
		f.wires[i] = w
	}
	return nil
}

func (f *footprintFleet) probe(i int) bool { return f.probes && i%f.cfg.ProbeEvery == 0 }

func (f *footprintFleet) close() {
	f.once.Do(func() {
		for _, w := range f.wires {
			if w != nil {
				w.Kill()
			}
		}
	})
}

// run paces every device at Rate/Devices readings per second, each device
// offset in phase so that the fleet's load is even; a heartbeat a minute.
func (f *footprintFleet) run(ctx context.Context) error {
	n := len(f.ids)
	period := time.Duration(float64(n) / f.cfg.Rate * float64(time.Second))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	t0 := time.Now()
	base := t0.Unix()
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				f.m.prune(now)
			}
		}
	}()
	for i := range f.ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id, w := f.ids[i], f.wires[i]
			probe := f.probe(i)
			offset := time.Duration(int64(period) * int64(i) / int64(n))
			topics := make([]string, f.cfg.Sensors)
			for s := range topics {
				topics[s] = fmt.Sprintf("kaiser/god/esp/%s/sensor/%d/data", id, sensorPin(s))
			}
			hbTopic := "kaiser/god/esp/" + id + "/system/heartbeat"
			buf := make([]byte, 0, 256)
			hbEvery := int64(time.Minute / period)
			for k := int64(0); ; k++ {
				due := t0.Add(offset + time.Duration(k)*period)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(due)):
				}
				if k%max(hbEvery, 1) == 0 {
					hb := fmt.Sprintf(`{"ts":%d,"uptime":%d,"heap_free":187432,"wifi_rssi":-61,"sensor_count":%d,"actuator_count":0}`,
						time.Now().Unix(), 60+k*int64(period/time.Second), f.cfg.Sensors)
					if err := w.Publish(hbTopic, []byte(hb), false); err != nil {
						errs <- err
						return
					}
				}
				s := int(k % int64(f.cfg.Sensors))
				// The device clock: one second per round over the sensors,
				// so every (series, ts) is new and the event can be matched.
				ts := base + k/int64(f.cfg.Sensors)
				buf = reading(buf, id, sensorPin(s), 1500+int((k+int64(i))%1000), ts)
				at := time.Now()
				f.m.published(id, sensorPin(s), ts, at)
				var err error
				if probe {
					var pid uint16
					pid, err = w.PublishQoS1(topics[s], buf, true)
					f.m.probeSent(id, pid, at)
				} else {
					err = w.Publish(topics[s], buf, true)
				}
				if err == nil {
					err = w.Flush()
				}
				if err != nil {
					select {
					case <-ctx.Done():
						return
					default:
					}
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
				f.sent.Add(1)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	return <-errs
}
