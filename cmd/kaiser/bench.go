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
	if len(args) == 0 || (args[0] != "ingest" && args[0] != "heartbeat" && args[0] != "fanout") {
		fmt.Fprintln(stderr, "usage: kaiser bench ingest|heartbeat|fanout [--devices N] [--sensors N] "+
			"[--clients K] [--rate R] [--duration D] [--json FILE]")
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
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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
		if *jsonOut != "" {
			b, _ := json.MarshalIndent(rt, "", "  ")
			if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
				fmt.Fprintf(stderr, "kaiser bench: %v\n", err)
				return 1
			}
		}
		return 0
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
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintf(stderr, "kaiser bench: %v\n", err)
			return 1
		}
	}
	if res.Lost != 0 {
		return 1
	}
	return 0
}
