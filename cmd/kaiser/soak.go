package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/kaiserhub/kaiser/internal/soak"
)

func soakCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	devices := fs.Int("devices", 100, "simulated devices")
	sensors := fs.Int("sensors", 5, "sensors per device")
	interval := fs.Duration("interval", 5*time.Second, "device measurement interval (simulated)")
	simulated := fs.Duration("simulated", 48*time.Hour, "simulated time span to play")
	maxWall := fs.Duration("max-wall", 0, "stop publishing after this much real time (0 = play the whole span)")
	csvPath := fs.String("csv", "soak.csv", "resource samples as CSV")
	pngPath := fs.String("png", "soak.png", "plot of the resource samples")
	dataDir := fs.String("data-dir", "", "hub data directory (default: a temporary one)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := soak.Run(ctx, soak.Config{
		Devices:   *devices,
		Sensors:   *sensors,
		Interval:  *interval,
		Simulated: *simulated,
		MaxWall:   *maxWall,
		CSV:       *csvPath,
		PNG:       *pngPath,
		DataDir:   *dataDir,
		Console:   stderr,
	})
	if err != nil {
		fmt.Fprintf(stderr, "kaiser soak: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nsoak summary\n")
	fmt.Fprintf(stdout, "  wall time            %s\n", res.Wall.Round(time.Second))
	fmt.Fprintf(stdout, "  simulated span       %s\n", res.SimulatedSpan)
	fmt.Fprintf(stdout, "  readings published   %d\n", res.Published)
	fmt.Fprintf(stdout, "  readings stored      %d\n", res.Stored)
	fmt.Fprintf(stdout, "  lost                 %d (devices with loss: %d)\n", res.Lost, len(res.LossByDevice))
	fmt.Fprintf(stdout, "  throughput           %.0f readings/s\n", res.ReadingsPerSec)
	fmt.Fprintf(stdout, "  errors               %v\n", res.Errors)
	names := make([]string, 0, len(res.Growth))
	for k := range res.Growth {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(stdout, "  growth %-12s %+.1f%%\n", k, res.Growth[k]*100)
	}
	fmt.Fprintf(stdout, "  samples              %s, plot %s\n", *csvPath, *pngPath)
	if !res.Pass {
		fmt.Fprintln(stdout, "  RESULT               FAIL")
		return 1
	}
	fmt.Fprintln(stdout, "  RESULT               PASS")
	return 0
}
