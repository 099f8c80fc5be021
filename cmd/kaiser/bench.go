package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kaiserhub/kaiser/internal/bench"
)

func benchCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "ingest" && args[0] != "heartbeat" && args[0] != "fanout" &&
		args[0] != "command") {
		fmt.Fprintln(stderr, "usage: kaiser bench ingest|heartbeat|fanout|command [--devices N] [--sensors N] "+
			"[--clients K] [--rate R] [--nodes N] [--interval D] [--background R] [--duration D] [--json FILE]")
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
		"command: fast-clock (20 devices × 5 sensors, every reading a new minute bucket) or site "+
			"(1,000 devices × 20 sensors, each series once a second)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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
