package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kaiserhub/kaiser/internal/bench"
)

func benchCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "ingest" && args[0] != "heartbeat" && args[0] != "fanout" &&
		args[0] != "command" && args[0] != "footprint" && args[0] != "failover") {
		fmt.Fprintln(stderr, "usage: kaiser bench ingest|heartbeat|fanout|command|footprint|failover [--devices N] [--sensors N] "+
			"[--clients K] [--rate R] [--nodes N] [--interval D] [--background R] [--duration D] [--json FILE]\n"+
			"  footprint and failover on replicas: --database postgres://... --mqtt-broker mqtt://host:port "+
			"[--replicas N] [--repeat N]; kaiser bench footprint -h lists every flag")
		return 2
	}
	fs := flag.NewFlagSet("bench "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	devices := fs.Int("devices", 20, "publishing devices (one MQTT connection each)")
	sensors := fs.Int("sensors", 5, "sensors per device")
	duration := fs.Duration("duration", 10*time.Second, "length of each measurement")
	jsonOut := fs.String("json", "", "also write the results as JSON to this file")
	clients := fs.Int("clients", 10, "fanout: WebSocket clients (baseline: MQTT subscribers)")
	rate := fs.Float64("rate", 2000, "fanout: readings published per second")
	nodes := fs.Int("nodes", 2, "command: commanded nodes, one pump each")
	interval := fs.Duration("interval", 10*time.Millisecond, "command: time between one node's commands")
	background := fs.Float64("background", 20000, "command: readings/s of background ingest in the loaded phase")
	shape := fs.String("background-shape", bench.ShapeFastClock,
		"command: fast-clock (20 devices × 5 sensors, each series' clock one second per reading) or site "+
			"(1,000 devices × 20 sensors, each series once a second)")
	warmup := fs.Duration("warmup", time.Minute, "footprint: time after the fleet connects before the measurement")
	sample := fs.Duration("sample", 30*time.Second, "footprint: period of the resource samples")
	hubBinary := fs.String("hub-binary", "", "footprint: kaiser executable to run as `kaiser serve` (default: this one)")
	hubArgs := fs.String("hub-args", "", "footprint: extra `kaiser serve` arguments, space-separated")
	csvOut := fs.String("csv", "", "footprint: write the resource samples as CSV to this file")
	noWS := fs.Bool("no-ws", false, "footprint: leave out the WebSocket client")
	replicas := fs.Int("replicas", 1, "footprint: kaiser serve replicas of one site (more than one needs "+
		"--database and --mqtt-broker); the first leads, the others stand by")
	database := fs.String("database", "", "footprint, failover: a PostgreSQL server, postgres://user@host:port/db "+
		"(password from PGPASSWORD or ~/.pgpass); each run creates a scratch database on it (CREATEDB) and "+
		"drops it afterwards (none: SQLite)")
	mqttBroker := fs.String("mqtt-broker", "", "footprint, failover: an external MQTT broker, mqtt://host:port, "+
		"that every hub (--mqtt-broker) and the fleet connect to (none: the hub's embedded broker)")
	measurePIDs := fs.String("measure-pid", "", "footprint: comma-separated PIDs of other processes (the "+
		"PostgreSQL postmaster, Mosquitto) whose CPU, with their children's, is reported beside the hubs'")
	repeat := fs.Int("repeat", 3, "failover: SIGKILLs of the primary")
	settle := fs.Duration("settle", 10*time.Second, "failover: time after the killed replica stands by again "+
		"before the next kill")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if args[0] == "failover" {
		cfg := bench.FailoverConfig{Devices: 200, Rate: 200, Repeat: *repeat, Warmup: 10 * time.Second,
			Settle: *settle, Binary: *hubBinary, HubArgs: strings.Fields(*hubArgs), Database: *database,
			Broker: *mqttBroker, Console: stderr}
		if set["devices"] {
			cfg.Devices = *devices
		}
		if set["rate"] {
			cfg.Rate = *rate
		}
		if set["warmup"] {
			cfg.Warmup = *warmup
		}
		res, err := bench.Failover(ctx, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "kaiser bench: %v\n", err)
			return 1
		}
		printFailover(stdout, res)
		return writeJSON(stderr, *jsonOut, res)
	}
	if args[0] == "footprint" {
		var pids []int
		for _, f := range strings.FieldsFunc(*measurePIDs, func(r rune) bool { return r == ',' || r == ' ' }) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid <= 0 {
				fmt.Fprintf(stderr, "kaiser bench: --measure-pid %q: not a PID\n", f)
				return 2
			}
			pids = append(pids, pid)
		}
		cfg := bench.FootprintConfig{Devices: 1000, Sensors: 1, Rate: 1000, Duration: 10 * time.Minute,
			Warmup: *warmup, Sample: *sample, Binary: *hubBinary, HubArgs: strings.Fields(*hubArgs),
			NoWebSocket: *noWS, Console: stderr, CSV: *csvOut, Replicas: *replicas, Database: *database,
			Broker: *mqttBroker, AlsoMeasure: pids}
		if set["devices"] {
			cfg.Devices = *devices
		}
		if set["sensors"] {
			cfg.Sensors = *sensors
		}
		if set["rate"] {
			cfg.Rate = *rate
		}
		if set["duration"] {
			cfg.Duration = *duration
		}
		res, err := bench.Footprint(ctx, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "kaiser bench: %v\n", err)
			return 1
		}
		printFootprint(stdout, res)
		return writeJSON(stderr, *jsonOut, res)
	}
	if args[0] == "command" {
		res, err := bench.Command(ctx, bench.CommandConfig{
			Devices:    *nodes,
			Duration:   *duration,
			Interval:   *interval,
			Background: *background,
			Shape:      *shape,
			Console:    stderr,
		})
		if err != nil {
			fmt.Fprintf(stderr, "kaiser bench: %v\n", err)
			return 1
		}
		printCommand(stdout, res)
		return writeJSON(stderr, *jsonOut, res)
	}
	if args[0] != "ingest" {
		var rt bench.RoundTrip
		var err error
		if args[0] == "heartbeat" {
			rt, err = bench.Heartbeat(ctx, *devices, *duration)
		} else {
			rt, err = bench.Fanout(ctx, *clients, *rate, *duration)
		}
		if err != nil {
			fmt.Fprintf(stderr, "kaiser bench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "\n%-34s %14s %14s\n", args[0], "hub", "bare broker")
		fmt.Fprintf(stdout, "%-34s %14.0f %14.0f\n", "per second", rt.OursPS, rt.BaselinePS)
		if args[0] == "heartbeat" {
			fmt.Fprintf(stdout, "%-34s %14.2f %14.2f\n", "round trip p50 ms", rt.Ours.P50ms, rt.Baseline.P50ms)
			fmt.Fprintf(stdout, "%-34s %14.2f %14.2f\n", "round trip p99 ms", rt.Ours.P99ms, rt.Baseline.P99ms)
		} else {
			fmt.Fprintf(stdout, "%-34s %14.3f %14.3f\n", "delivered share per client", rt.Ours.Achieved, rt.Baseline.Achieved)
		}
		fmt.Fprintf(stdout, "%-34s %14.2f\n", "ratio ours/baseline", rt.Ratio)
		return writeJSON(stderr, *jsonOut, rt)
	}
	res, err := bench.Ingest(ctx, bench.IngestConfig{
		Devices:  *devices,
		Sensors:  *sensors,
		Duration: *duration,
		Console:  stderr,
	})
	if err != nil {
		fmt.Fprintf(stderr, "kaiser bench: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\n%-34s %14s\n", "ingest (publish → durable row)", "value")
	fmt.Fprintf(stdout, "%-34s %14.0f\n", "durable readings/s (max, no loss)", res.DurableReadingsPS)
	fmt.Fprintf(stdout, "%-34s %14.0f\n", "baseline msg/s (bare broker)", res.BaselinePS)
	fmt.Fprintf(stdout, "%-34s %14.2f\n", "ratio ours/baseline", res.Ratio)
	for _, p := range res.Latency {
		fmt.Fprintf(stdout, "latency at %6.0f/s  p50 %6.1f ms  p95 %6.1f ms  p99 %6.1f ms\n",
			p.Rate, p.P50ms, p.P95ms, p.P99ms)
	}
	fmt.Fprintf(stdout, "%-34s %14d\n", "lost readings", res.Lost)
	if code := writeJSON(stderr, *jsonOut, res); code != 0 || res.Lost != 0 {
		return 1
	}
	return 0
}

// writeJSON writes v to path if one was given; it returns the exit code.
func writeJSON(stderr io.Writer, path string, v any) int {
	if path == "" {
		return 0
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		fmt.Fprintf(stderr, "kaiser bench: %v\n", err)
		return 1
	}
	return 0
}

// printCommand prints the command scenario as a table: p50 / p99 in ms per
// phase, the hub beside the bare broker.
func printCommand(stdout io.Writer, res bench.CommandResult) {
	fmt.Fprintf(stdout, "\n%-40s", "command latency, p50 / p99 ms")
	for _, p := range res.Phases {
		fmt.Fprintf(stdout, " %20s", p.Name)
	}
	row := func(label string, get func(bench.CommandPhase) bench.Percentiles) {
		fmt.Fprintf(stdout, "\n%-40s", label)
		for _, p := range res.Phases {
			q := get(p)
			fmt.Fprintf(stdout, " %20s", fmt.Sprintf("%.2f / %.2f", q.P50ms, q.P99ms))
		}
	}
	row("hub: REST → command on device topic", func(p bench.CommandPhase) bench.Percentiles { return p.ToDevice })
	row("hub: REST → acknowledged", func(p bench.CommandPhase) bench.Percentiles { return p.Acknowledged })
	row("bare broker: publish → receive", func(p bench.CommandPhase) bench.Percentiles { return p.BaselineToDevice })
	row("bare broker: publish → response back", func(p bench.CommandPhase) bench.Percentiles {
		return p.BaselineRoundTrip
	})
	fmt.Fprintf(stdout, "\n%-40s", "ratio p99 (→ device / publish → receive)")
	for _, p := range res.Phases {
		fmt.Fprintf(stdout, " %20.1f", p.RatioToDeviceP99)
	}
	fmt.Fprintf(stdout, "\n%-40s", "ratio p99 (→ acknowledged / round trip)")
	for _, p := range res.Phases {
		fmt.Fprintf(stdout, " %20.1f", p.RatioAcknowledgedP99)
	}
	fmt.Fprintf(stdout, "\n%-40s", "commands")
	for _, p := range res.Phases {
		fmt.Fprintf(stdout, " %20d", p.Commands)
	}
	fmt.Fprintf(stdout, "\n%-40s %41s", "background shape", res.Shape)
	fmt.Fprintf(stdout, "\n%-40s", "background readings/s (hub / bare)")
	for _, p := range res.Phases {
		fmt.Fprintf(stdout, " %20s", fmt.Sprintf("%.0f / %.0f", p.BackgroundPS, p.BaselineBackgroundPS))
	}
	fmt.Fprintln(stdout)
}

// printFootprint prints the footprint scenario's summary.
func printFootprint(stdout io.Writer, r bench.FootprintResult) {
	fmt.Fprintf(stdout, "\nfootprint: %d devices × %d sensor(s), %.0f readings/s offered, %.0f/s stored, %.0f s measured\n",
		r.Devices, r.Sensors, r.Rate, r.AchievedPS, r.DurationS)
	fmt.Fprintf(stdout, "hub: %s %s\n", r.Binary, r.HubArgs)
	broker := "embedded"
	if r.Broker != "" {
		broker = r.Broker
	}
	fmt.Fprintf(stdout, "%d hub(s) on %s, MQTT broker %s\n", r.Replicas, r.Store, broker)
	fmt.Fprintln(stdout, "firmware HTTP processing call: off (the publishers only speak MQTT); WebSocket rate limit: off")
	all := ""
	if len(r.Hubs) > 1 {
		all = ", all hubs"
	}
	fmt.Fprintf(stdout, "%-44s %10.1f MB (after warm-up %.1f, max %.1f)\n", "RSS (/proc)"+all, r.RSSMB, r.RSSWarmMB, r.RSSMaxMB)
	fmt.Fprintf(stdout, "%-44s %10.1f MB (max %.1f)\n", "Go heap in use"+all, r.HeapMB, r.HeapMaxMB)
	fmt.Fprintf(stdout, "%-44s %10d\n", "goroutines"+all, r.Goroutines)
	fmt.Fprintf(stdout, "%-44s %10.1f %%\n", "CPU (share of one core)"+all, r.CPUPct)
	fmt.Fprintf(stdout, "%-44s %10.3f s (%.1f s in all)\n", "CPU per 1,000 stored readings"+all, r.CPUPer1k, r.CPUSeconds)
	if len(r.Hubs) > 1 {
		for i, h := range r.Hubs {
			fmt.Fprintf(stdout, "  hub %d (%-7s) CPU %5.1f %%, %6.1f s; RSS %6.1f MB; stored %d (%.1f %%)\n",
				i, h.Role, h.CPUPct, h.CPUSeconds, h.RSSMB, h.Stored, 100*h.Share)
		}
	}
	for _, o := range r.Others {
		fmt.Fprintf(stdout, "  %-42s %10.1f %% (%.1f s)\n", fmt.Sprintf("CPU of %s (pid %d and children)", o.Name, o.PID),
			o.CPUPct, o.CPUSeconds)
	}
	if r.Store == "sqlite" {
		fmt.Fprintf(stdout, "%-44s %10.1f MB\n", "WAL, largest seen", r.WALMaxMB)
	}
	if r.DurableProbe > 0 {
		fmt.Fprintf(stdout, "%-44s %4.2f / %.2f ms (%d QoS 1 probes)\n", "reading → durable (PUBACK) p50 / p99",
			r.Durable.P50ms, r.Durable.P99ms, r.DurableProbe)
	}
	fmt.Fprintf(stdout, "%-44s %4.2f / %.2f ms (%.3f delivered)\n", "reading → WebSocket p50 / p99",
		r.WS.P50ms, r.WS.P99ms, r.WSDelivered)
	fmt.Fprintf(stdout, "%-44s %10d\n", "readings stored", r.Stored)
	if r.Store != "sqlite" {
		return
	}
	fmt.Fprintf(stdout, "%-44s %10.1f B (file %d B)\n", "database bytes per stored reading", r.BytesPer, r.DBBytes)
	fmt.Fprintf(stdout, "%-44s %10.1f B\n", "readings + rollup tables per reading", r.TablePer)
	for _, t := range r.Tables {
		if t.Bytes >= 1<<20 {
			fmt.Fprintf(stdout, "  %-42s %10.1f MB (%.0f %% unused)\n", t.Name, float64(t.Bytes)/(1<<20),
				100*float64(t.Unused)/float64(t.Bytes))
		}
	}
}

// printFailover prints each failover and their spread.
func printFailover(stdout io.Writer, r bench.FailoverResult) {
	fmt.Fprintf(stdout, "\nfailover: 2 replicas, %d devices at %.0f readings/s, broker %s; SIGKILL of the primary × %d\n",
		r.Devices, r.Rate, r.Broker, len(r.Runs))
	fmt.Fprintf(stdout, "%-48s %8s %8s %8s\n", "seconds after the SIGKILL", "min", "median", "max")
	row := func(label string, s bench.Spread) {
		fmt.Fprintf(stdout, "%-48s %8.2f %8.2f %8.2f\n", label, s.Min, s.Median, s.Max)
	}
	row("the other replica reports role primary", r.Takeover)
	row("readings stored by the new primary", r.Stored)
	row("a command through it accepted (sent)", r.Command)
	row("that command acknowledged by the node", r.Acked)
	fmt.Fprintf(stdout, "%-48s %8.0f %8.0f %8.0f\n", "readings lost (approximate)", r.Lost.Min, r.Lost.Median, r.Lost.Max)
}
