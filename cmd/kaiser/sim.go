package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kaiserhub/kaiser/internal/sim"
)

func simCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokerURL := fs.String("broker", "tcp://127.0.0.1:1883", "MQTT broker of the hub (tls://host:8884 for its TLS listener)")
	useTLS := fs.Bool("tls", false, "connect over TLS (the hub's --mqtt-tls-addr); baseline firmware cannot")
	caFile := fs.String("ca", "", "PEM file of the certificates to trust over TLS (implies --tls; none: the system's)")
	devices := fs.Int("devices", 10, "number of simulated nodes")
	sensors := fs.Int("sensors", 2, "sensors per node")
	sensorType := fs.String("sensor-type", "ph", "sensor type of the simulated sensors")
	interval := fs.Duration("interval", 5*time.Second, "measurement cycle (the firmware measures every 5 s)")
	speed := fs.Float64("speed", 1, "time acceleration: simulated seconds per real second")
	quirks := fs.String("quirks", "default", "firmware quirks: "+sim.DefaultQuirks+", ntp-zero; none; all")
	pattern := fs.String("pattern", "random", "value pattern: constant, random, drift")
	base := fs.Float64("base", 2048, "base raw value (device units, e.g. ADC counts)")
	rangeV := fs.Float64("range", 50, "pattern range around the base")
	bootLog := fs.String("boot-log", "", "directory for each node's serial log")
	seed := fs.Int64("seed", 1, "seed for reproducible ids and values")
	duration := fs.Duration("duration", 0, "stop after this long (0 = until interrupted)")
	credFile := fs.String("credentials", "", "file of MQTT credentials: the hub's mqtt-credentials replies, "+
		"appended; nodes without an entry connect anonymously")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	q, err := sim.ParseQuirks(*quirks)
	if err != nil {
		fmt.Fprintf(stderr, "kaiser sim: --quirks: %v\n", err)
		return 2
	}
	addr := strings.TrimPrefix(*brokerURL, "tcp://")
	if a, ok := strings.CutPrefix(*brokerURL, "tls://"); ok {
		addr, *useTLS = a, true
	}
	tlsConf, err := simTLS(*useTLS, *caFile)
	if err != nil {
		fmt.Fprintf(stderr, "kaiser sim: --ca: %v\n", err)
		return 2
	}
	creds := map[string]sim.Credential{}
	if *credFile != "" {
		f, err := os.Open(*credFile)
		if err == nil {
			creds, err = sim.ReadCredentials(f)
			f.Close()
		}
		if err != nil {
			fmt.Fprintf(stderr, "kaiser sim: --credentials: %v\n", err)
			return 2
		}
	}
	if *bootLog != "" {
		if err := os.MkdirAll(*bootLog, 0o755); err != nil {
			fmt.Fprintf(stderr, "kaiser sim: --boot-log: %v\n", err)
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	clock := sim.NewClock(*speed)
	nodes := make([]*sim.Node, *devices)
	var wg sync.WaitGroup
	withCreds := 0
	for i := range nodes {
		id := fmt.Sprintf("ESP_%06X", (uint32(*seed)*2654435761+uint32(i)*40503)&0xFFFFFF)
		var specs []sim.SensorSpec
		for s := 0; s < *sensors; s++ {
			specs = append(specs, sim.SensorSpec{
				GPIO:    []int{32, 33, 34, 35, 36, 39}[s%6],
				Type:    *sensorType,
				Base:    *base,
				Pattern: *pattern,
				Range:   *rangeV,
			})
		}
		cfg := sim.NodeConfig{
			EspID:    id,
			Broker:   addr,
			TLS:      tlsConf,
			Quirks:   q,
			Sensors:  specs,
			Interval: *interval,
			Clock:    clock,
			Seed:     *seed + int64(i),
		}
		if c, ok := creds[id]; ok {
			cfg.Username, cfg.Password = c.Username, c.Password
			withCreds++
		}
		if *bootLog != "" {
			f, err := os.Create(filepath.Join(*bootLog, id+".log"))
			if err != nil {
				fmt.Fprintf(stderr, "kaiser sim: %v\n", err)
				return 1
			}
			defer f.Close()
			cfg.BootLog = f
		}
		nodes[i] = sim.NewNode(cfg)
		wg.Add(1)
		go func(n *sim.Node) { defer wg.Done(); _ = n.Run(ctx) }(nodes[i])
	}
	if *credFile != "" {
		fmt.Fprintf(stderr, "kaiser sim: %d of %d nodes connect with credentials\n", withCreds, len(nodes))
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		var sent, recv, errs int64
		for _, n := range nodes {
			sent += n.Stats.Sent.Load()
			recv += n.Stats.Received.Load()
			errs += n.Stats.Errors.Load()
		}
		fmt.Fprintf(stdout, "\rnodes %d  sent %d  received %d  errors %d   ", len(nodes), sent, recv, errs)
	}
	wg.Wait()
	fmt.Fprintln(stdout)
	return 0
}

// simTLS is the nodes' TLS client configuration: nil for plain MQTT,
// trusting caFile's certificates when given, else the system's.
func simTLS(on bool, caFile string) (*tls.Config, error) {
	if !on && caFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in it", caFile)
		}
	}
	return cfg, nil
}
