// Command kaiser is the hub for ESP32 sensor and actuator fleets. It only
// parses flags and wires subcommands; the work lives in internal/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/broker"
	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/hub"
	"github.com/kaiserhub/kaiser/internal/logic"
	"github.com/kaiserhub/kaiser/internal/observe"
	"github.com/kaiserhub/kaiser/internal/procs"
)

// Set by the build (-ldflags "-X main.version=... -X main.commit=...").
var (
	version = "dev"
	commit  = ""
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `kaiser — control hub for ESP32 sensor and actuator nodes

Usage:
  kaiser serve [flags]   run the hub (embedded or external MQTT broker, SQLite or PostgreSQL, HTTP API)
  kaiser sim [flags]     run simulated ESP32 nodes (the firmware's wire behaviour) against a broker
  kaiser bench ingest    measure publish → durable readings/s against a bare-broker baseline
  kaiser bench footprint a real-time fleet against a kaiser serve child: RSS, CPU, latencies, bytes/reading
  kaiser soak [flags]    play days of fleet traffic in minutes; reconcile and check resources
  kaiser backup --to F   snapshot the databases of a (running) hub into one archive
  kaiser restore --from F --data-dir D   unpack a backup into an empty data directory
  kaiser migrate-store --from sqlite:DIR --to postgres://…   copy a stopped hub's SQLite store into PostgreSQL
  kaiser version         print version and commit

Run "kaiser serve --help" for the flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "sim":
		return simCmd(args[1:], stdout, stderr)
	case "soak":
		return soakCmd(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "backup":
		return backupCmd(args[1:], stdout, stderr)
	case "restore":
		return restoreCmd(args[1:], stdout, stderr)
	case "migrate-store":
		return migrateStoreCmd(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "kaiser %s (commit %s)\n", version, buildCommit())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "kaiser: unknown command %q\n%s", args[0], usage)
	return 2
}

func buildCommit() string {
	if commit != "" {
		return commit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// envFlag is one flag with its KAISER_* variable.
type envFlag struct {
	name, env, def, help string
	value                *string
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags := []*envFlag{
		{
			name: "data-dir",
			env:  "KAISER_DATA_DIR",
			def:  "./data",
			help: "directory for the SQLite database, logs and secrets",
		},
		{
			name: "database",
			env:  "KAISER_DATABASE",
			def:  "",
			help: "the store: empty for SQLite in --data-dir, or postgres://user@host:port/db?sslmode=... for " +
				"PostgreSQL; a password only in KAISER_DATABASE, --database-password-file or ~/.pgpass, " +
				"never on the command line",
		},
		{
			name: "database-password-file",
			env:  "KAISER_DATABASE_PASSWORD_FILE",
			def:  "",
			help: "file with the PostgreSQL password of --database",
		},
		{
			name: "replica-url",
			env:  "KAISER_REPLICA_URL",
			def:  "",
			help: "with PostgreSQL and --mqtt-broker: this replica's HTTP API as the other replicas reach it, " +
				"which a standby forwards requests to (default http://{--http-addr}, this host's name for an " +
				"address on every interface)",
		},
		{
			name: "lease-ttl",
			env:  "KAISER_LEASE_TTL",
			def:  "10s",
			help: "with PostgreSQL and --mqtt-broker: how long the primary's jobs lease lasts unrenewed, " +
				"about the time a standby needs to take over from a dead primary (2s to 5m)",
		},
		{
			name: "http-addr",
			env:  "KAISER_HTTP_ADDR",
			def:  ":8000",
			help: "HTTP listen address (REST, WebSocket, firmware processing on :8000)",
		},
		{
			name: "mqtt-addr",
			env:  "KAISER_MQTT_ADDR",
			def:  ":1883",
			help: "embedded MQTT broker listen address",
		},
		{
			name: "https-addr",
			env:  "KAISER_HTTPS_ADDR",
			def:  "",
			help: "HTTPS listen address, e.g. :8443, serving the same routes (none: off); " +
				"needs --tls-cert and --tls-key; the plain --http-addr stays",
		},
		{
			name: "mqtt-tls-addr",
			env:  "KAISER_MQTT_TLS_ADDR",
			def:  "",
			help: "MQTT-over-TLS listen address, e.g. :8884 (none: off; never 8883, where baseline " +
				"nodes speak plain MQTT); needs --tls-cert and --tls-key; the plain --mqtt-addr stays",
		},
		{
			name: "tls-cert",
			env:  "KAISER_TLS_CERT",
			def:  "",
			help: "PEM certificate (chain) file of the TLS listeners; read again on SIGHUP and when it changes",
		},
		{
			name: "tls-key",
			env:  "KAISER_TLS_KEY",
			def:  "",
			help: "PEM private key file of --tls-cert",
		},
		{
			name: "kaiser-id",
			env:  "KAISER_KAISER_ID",
			def:  "god",
			help: "hub id in topics kaiser/{id}/... (1-32 of [A-Za-z0-9_.:-])",
		},
		{
			name: "heartbeat-timeout",
			env:  "KAISER_HEARTBEAT_TIMEOUT",
			def:  "180s",
			help: "a device without a heartbeat for this long goes offline (>= 1s)",
		},
		{
			name: "log-level",
			env:  "KAISER_LOG_LEVEL",
			def:  "info",
			help: "debug, info, warn or error",
		},
		{
			name: "processed-echo",
			env:  "KAISER_PROCESSED_ECHO",
			def:  "true",
			help: "publish sensor/{gpio}/processed after storing a pi_enhanced reading (true/false)",
		},
		{
			name: "mqtt-auth",
			env:  "KAISER_MQTT_AUTH",
			def:  string(broker.AuthOff),
			help: "MQTT device authentication: off (any client may publish as any device; warned) or " +
				"devices (device credentials and ACL)",
		},
		{
			name: "mqtt-allow-prefix",
			env:  "KAISER_MQTT_ALLOW_PREFIX",
			def:  "",
			help: "comma-separated topic prefixes outside kaiser/ that MQTT clients may publish to " +
				"(none: all refused)",
		},
		{
			name: "mqtt-max-packet",
			env:  "KAISER_MQTT_MAX_PACKET",
			def:  strconv.Itoa(broker.DefaultMaxPacket),
			help: fmt.Sprintf("largest MQTT packet in bytes (>= %d); a larger one closes the connection",
				broker.MinMaxPacket),
		},
		{
			name: "mqtt-max-clients",
			env:  "KAISER_MQTT_MAX_CLIENTS",
			def:  strconv.Itoa(broker.DefaultMaxClients),
			help: "MQTT sessions beyond which a client that is not a registered device is refused " +
				"(at least twice the registered fleet)",
		},
		{
			name: "mqtt-connect-rate",
			env:  "KAISER_MQTT_CONNECT_RATE",
			def:  strconv.Itoa(broker.DefaultConnectRate),
			help: "MQTT CONNECTs per second (burst twice as many); past it CONNACKs wait up to 5s, " +
				"registered devices are never refused",
		},
		{
			name: "mqtt-retained-max",
			env:  "KAISER_MQTT_RETAINED_MAX",
			def:  strconv.Itoa(broker.DefaultRetainedMessages),
			help: "retained messages the broker stores; beyond it they are delivered live, not stored",
		},
		{
			name: "mqtt-retained-bytes",
			env:  "KAISER_MQTT_RETAINED_BYTES",
			def:  strconv.Itoa(broker.DefaultRetainedBytes),
			help: "topic + payload bytes of the retained messages the broker stores",
		},
		{
			name: "mqtt-broker",
			env:  "KAISER_MQTT_BROKER",
			def:  "",
			help: "external MQTT broker, mqtt://host[:port] or mqtts://host[:port]; set, no broker is embedded " +
				"and the hub connects as an MQTT 5 client (none: the embedded broker on --mqtt-addr)",
		},
		{
			name: "mqtt-username",
			env:  "KAISER_MQTT_USERNAME",
			def:  "",
			help: "user name at the external broker",
		},
		{
			name: "mqtt-password-file",
			env:  "KAISER_MQTT_PASSWORD_FILE",
			def:  "",
			help: "file with the external broker's password; the value itself only as KAISER_MQTT_PASSWORD",
		},
		{
			name: "mqtt-ca",
			env:  "KAISER_MQTT_CA",
			def:  "",
			help: "PEM file of the CA that signs the external broker's certificate (mqtts://; none: the system's)",
		},
		{
			name: "mqtt-client-cert",
			env:  "KAISER_MQTT_CLIENT_CERT",
			def:  "",
			help: "PEM client certificate the hub presents to the external broker (mqtts://, with --mqtt-client-key)",
		},
		{
			name: "mqtt-client-key",
			env:  "KAISER_MQTT_CLIENT_KEY",
			def:  "",
			help: "PEM key of --mqtt-client-cert",
		},
		{
			name: "disk-reserve",
			env:  "KAISER_DISK_RESERVE",
			def:  strconv.Itoa(api.DefaultDiskReserve >> 20),
			help: "MiB to keep free on the data directory's filesystem; below it the hub reports not ready",
		},
		{
			name: "timezone",
			env:  "KAISER_TIMEZONE",
			def:  "UTC",
			help: "IANA time zone of rule time windows that name none",
		},
		{
			name: "logic-timer",
			env:  "KAISER_LOGIC_TIMER",
			def:  "60s",
			help: "period of the rules' timer trigger (1s-1h)",
		},
		{
			name: "webhook-hosts",
			env:  "KAISER_WEBHOOK_HOSTS",
			def:  "",
			help: "comma-separated hosts that rule webhooks may call (none given: any host)",
		},
		{
			name: "smtp-addr",
			env:  "KAISER_SMTP_ADDR",
			def:  "",
			help: "host:port of the SMTP relay for rule e-mails (none: e-mail actions fail); " +
				"the password only as KAISER_SMTP_PASSWORD",
		},
		{
			name: "smtp-from",
			env:  "KAISER_SMTP_FROM",
			def:  "",
			help: "sender address of rule e-mails",
		},
		{
			name: "smtp-username",
			env:  "KAISER_SMTP_USERNAME",
			def:  "",
			help: "SMTP user name (with KAISER_SMTP_PASSWORD)",
		},
		{
			name: "ws-rate",
			env:  "KAISER_WS_RATE",
			def:  "10",
			help: "live-feed messages per second per WebSocket connection, above which sensor values " +
				"are coalesced (0 = no limit)",
		},
		{
			name: "memory-limit",
			env:  "KAISER_MEMORY_LIMIT",
			def:  "0",
			help: "soft limit of the Go runtime's memory in MiB: the garbage collector works harder " +
				"near it (0 = none; GOMEMLIMIT applies)",
		},
		{
			name: "jwt-secret-file",
			env:  "KAISER_JWT_SECRET_FILE",
			def:  "",
			help: "file with the JWT signing secret (>= 32 bytes); the value itself may be given " +
				"only as KAISER_JWT_SECRET; neither = generated in the data dir",
		},
	}
	for _, f := range flags {
		f.value = fs.String(f.name, f.def, f.help+" (env "+f.env+")")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printServeHelp(stdout, flags)
			return 0
		}
		fmt.Fprintf(stderr, "kaiser serve: %v\n", err)
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, f := range flags {
		if v, ok := os.LookupEnv(f.env); ok && !set[f.name] {
			*f.value = v
		}
	}
	cfg, err := buildConfig(flags, set)
	if err != nil {
		fmt.Fprintf(stderr, "kaiser serve: %v\n", err)
		return 2
	}
	cfg.Console = stderr
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	if _, ok := os.LookupEnv("GOGC"); !ok {
		// The heap may grow to 1.5× what is live, not 2×: some 12 MB less
		// resident at 1,000 devices for no CPU that could be measured
		// (docs/decisions/0021-footprint.md). GOGC still decides when set.
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, ok := os.LookupEnv("GOMAXPROCS"); !ok {
		// One processor while the hub is quiet, all while it is busy
		// (docs/decisions/0033-procs.md). GOMAXPROCS still decides when set.
		go procs.New(procs.Config{}).Run(ctx)
	}
	// SIGHUP reads the TLS certificate again; it never ends the hub
	// (docs/decisions/0019-tls.md).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg.Reload = hup
	if err := hub.Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "kaiser serve: %v\n", err)
		return 1
	}
	return 0
}

func printServeHelp(w io.Writer, flags []*envFlag) {
	fmt.Fprintln(w, "Usage: kaiser serve [flags]\n\n"+
		"Runs the hub with an embedded MQTT broker and SQLite; no configuration needed.\n"+
		"With --mqtt-broker it connects to an external broker instead (the --mqtt-addr and\n"+
		"other embedded-broker flags then do nothing); with --database postgres://... it\n"+
		"keeps its data in PostgreSQL instead of --data-dir (logs and secrets stay there).\n"+
		"Every flag can also be set with its environment variable; a flag wins over its variable.\n\n"+
		"Flags:")
	for _, f := range flags {
		fmt.Fprintf(w, "  --%-19s %s\n      %-19s env %s, default %q\n", f.name, f.help, "", f.env, f.def)
	}
}

func buildConfig(flags []*envFlag, set map[string]bool) (hub.Config, error) {
	v := map[string]string{}
	src := map[string]string{}
	for _, f := range flags {
		v[f.name] = strings.TrimSpace(*f.value)
		src[f.name] = "--" + f.name + " (" + f.env + ")"
	}
	cfg := hub.Config{
		DataDir:  v["data-dir"],
		HTTPAddr: v["http-addr"],
		MQTTAddr: v["mqtt-addr"],
		KaiserID: v["kaiser-id"],
		Version:  version,
		Commit:   buildCommit(),
	}
	if cfg.DataDir == "" {
		return cfg, fmt.Errorf("%s: must not be empty", src["data-dir"])
	}
	if err := databaseConfig(&cfg, v, src, set); err != nil {
		return cfg, err
	}
	ttl, err := leaseTTL(v, src)
	if err != nil {
		return cfg, err
	}
	cfg.LeaseTTL = ttl
	for _, name := range []string{"http-addr", "mqtt-addr"} {
		if _, port, err := net.SplitHostPort(v[name]); err != nil || port == "" {
			return cfg, fmt.Errorf("%s: %q is not a host:port address", src[name], v[name])
		}
	}
	if !contract.ValidKaiserID(cfg.KaiserID) {
		return cfg, fmt.Errorf("%s: %q must be 1-32 characters of [A-Za-z0-9_.:-]", src["kaiser-id"], cfg.KaiserID)
	}
	d, err := time.ParseDuration(v["heartbeat-timeout"])
	if err != nil || d < time.Second {
		return cfg, fmt.Errorf("%s: %q must be a duration of at least 1s, e.g. 180s",
			src["heartbeat-timeout"], v["heartbeat-timeout"])
	}
	cfg.HeartbeatTimeout = d
	lvl, err := observe.ParseLevel(v["log-level"])
	if err != nil {
		return cfg, fmt.Errorf("%s: %v", src["log-level"], err)
	}
	cfg.LogLevel = lvl
	switch strings.ToLower(v["processed-echo"]) {
	case "true", "1":
	case "false", "0":
		cfg.NoProcessedEcho = true
	default:
		return cfg, fmt.Errorf("%s: %q must be true or false", src["processed-echo"], v["processed-echo"])
	}
	if cfg.MQTT, err = mqttLimits(v, src); err != nil {
		return cfg, err
	}
	if cfg.MQTTAuth, err = broker.ParseAuthMode(v["mqtt-auth"]); err != nil {
		return cfg, fmt.Errorf("%s: %w", src["mqtt-auth"], err)
	}
	if cfg.MQTTBroker, err = externalBroker(v, src); err != nil {
		return cfg, err
	}
	mib, err := strconv.ParseInt(v["disk-reserve"], 10, 64)
	if err != nil || mib < 0 || mib > 1<<30 {
		return cfg, fmt.Errorf("%s: %q must be a number of MiB, 0 or more", src["disk-reserve"], v["disk-reserve"])
	}
	cfg.DiskReserve = mib << 20
	if mib == 0 {
		cfg.DiskReserve = -1 // no reserve: 0 would take the default
	}
	wsRate, err := strconv.ParseFloat(v["ws-rate"], 64)
	if err != nil || wsRate < 0 || wsRate > 1e6 {
		return cfg, fmt.Errorf("%s: %q must be a number of messages per second, 0 or more", src["ws-rate"], v["ws-rate"])
	}
	cfg.WS.Rate = wsRate
	if wsRate == 0 {
		cfg.WS.Rate = -1 // no limit: 0 would take the default
	}
	limit, err := strconv.ParseInt(v["memory-limit"], 10, 64)
	if err != nil || limit < 0 || limit > 1<<30 {
		return cfg, fmt.Errorf("%s: %q must be a number of MiB, 0 or more", src["memory-limit"], v["memory-limit"])
	}
	cfg.MemoryLimit = limit << 20
	if err := ruleConfig(&cfg, v, src); err != nil {
		return cfg, err
	}
	if err := tlsConfig(&cfg, v, src); err != nil {
		return cfg, err
	}
	if cfg.MQTTBroker.URL != "" {
		// The embedded broker's TLS listener and device authentication
		// belong to the embedded broker; an external one does its own.
		if cfg.MQTTTLSAddr != "" {
			return cfg, fmt.Errorf("%s: the embedded broker's listener; with %s the external broker offers TLS",
				src["mqtt-tls-addr"], src["mqtt-broker"])
		}
		if cfg.MQTTAuth == broker.AuthDevices {
			return cfg, fmt.Errorf("%s: devices is the embedded broker's; with %s the external broker authenticates devices",
				src["mqtt-auth"], src["mqtt-broker"])
		}
	}
	cfg.JWTSecretFile, cfg.JWTSecretFileSource = v["jwt-secret-file"], src["jwt-secret-file"]
	cfg.JWTSecret = os.Getenv("KAISER_JWT_SECRET")
	if _, err := auth.LoadSecret(cfg.DataDir, cfg.JWTSecretFile, cfg.JWTSecretFileSource, cfg.JWTSecret); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// leaseTTL is --lease-ttl, checked whatever the store, so that a typo
// shows before a site moves to replicas.
func leaseTTL(v, src map[string]string) (time.Duration, error) {
	ttl, err := time.ParseDuration(v["lease-ttl"])
	if err != nil || ttl < 2*time.Second || ttl > 5*time.Minute {
		return 0, fmt.Errorf("%s: %q must be a duration from 2s to 5m, e.g. 10s", src["lease-ttl"], v["lease-ttl"])
	}
	return ttl, nil
}

// databaseConfig reads the store (docs/decisions/0026-hub-on-postgres.md):
// SQLite unless --database names PostgreSQL. A password in a --database
// given on the command line is refused, since every user of the machine can
// read the process list; it may come with KAISER_DATABASE, from
// --database-password-file, or from pgx's PGPASSWORD and ~/.pgpass.
func databaseConfig(cfg *hub.Config, v, src map[string]string, set map[string]bool) error {
	db := v["database"]
	switch {
	case db == "" || db == "sqlite":
		if v["database-password-file"] != "" {
			return fmt.Errorf("%s: needs a PostgreSQL %s", src["database-password-file"], src["database"])
		}
		return nil
	case !hub.IsPostgresURL(db):
		return fmt.Errorf("%s: want empty (SQLite in --data-dir) or a postgres:// URL", src["database"])
	}
	u, err := url.Parse(db)
	if err != nil {
		// Not echoed: it may hold a password.
		return fmt.Errorf("%s: not a URL", src["database"])
	}
	if _, has := u.User.Password(); has && set["database"] {
		return fmt.Errorf("--database: a password on the command line is visible to every user of the machine; " +
			"give it in KAISER_DATABASE, --database-password-file or ~/.pgpass")
	}
	cfg.Database = db
	cfg.ReplicaURL = v["replica-url"]
	if file := v["database-password-file"]; file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("%s: %w", src["database-password-file"], err)
		}
		cfg.DatabasePassword = strings.TrimRight(string(b), "\r\n")
		if cfg.DatabasePassword == "" {
			return fmt.Errorf("%s: %s is empty", src["database-password-file"], file)
		}
	}
	return nil
}

// mqttLimits reads the embedded broker's limits (docs/decisions/0012-mqtt-door.md).
func mqttLimits(v, src map[string]string) (broker.Limits, error) {
	var l broker.Limits
	for _, f := range []struct {
		name string
		dst  *int
	}{
		{"mqtt-max-packet", &l.MaxPacket},
		{"mqtt-max-clients", &l.MaxClients},
		{"mqtt-retained-max", &l.RetainedMessages},
		{"mqtt-retained-bytes", &l.RetainedBytes},
	} {
		n, err := strconv.Atoi(v[f.name])
		if err != nil || n < 1 {
			return l, fmt.Errorf("%s: %q must be a positive integer", src[f.name], v[f.name])
		}
		*f.dst = n
	}
	rate, err := strconv.ParseFloat(v["mqtt-connect-rate"], 64)
	if err != nil || !(rate > 0) {
		return l, fmt.Errorf("%s: %q must be a positive number", src["mqtt-connect-rate"], v["mqtt-connect-rate"])
	}
	l.ConnectRate = rate
	for _, p := range strings.Split(v["mqtt-allow-prefix"], ",") {
		if p = strings.TrimSpace(p); p != "" {
			l.AllowPrefixes = append(l.AllowPrefixes, p)
		}
	}
	if err := l.Validate(); err != nil {
		return l, fmt.Errorf("--mqtt-* flags: %w", err)
	}
	return l, nil
}

// externalBroker reads the external broker's settings
// (docs/decisions/0023-external-broker.md): the password from a file or
// KAISER_MQTT_PASSWORD, never from the command line.
func externalBroker(v, src map[string]string) (broker.ExternalConfig, error) {
	c := broker.ExternalConfig{
		URL:      v["mqtt-broker"],
		Username: v["mqtt-username"],
		CAFile:   v["mqtt-ca"],
		CertFile: v["mqtt-client-cert"],
		KeyFile:  v["mqtt-client-key"],
	}
	if c.URL == "" {
		for _, name := range []string{"mqtt-username", "mqtt-password-file", "mqtt-ca", "mqtt-client-cert", "mqtt-client-key"} {
			if v[name] != "" {
				return c, fmt.Errorf("%s: needs %s", src[name], src["mqtt-broker"])
			}
		}
		return c, nil
	}
	u, err := broker.ParseBrokerURL(c.URL)
	if err != nil {
		return c, fmt.Errorf("%s: %w", src["mqtt-broker"], err)
	}
	if u.Scheme != "mqtts" {
		for _, name := range []string{"mqtt-ca", "mqtt-client-cert", "mqtt-client-key"} {
			if v[name] != "" {
				return c, fmt.Errorf("%s: needs an mqtts:// broker, not %s", src[name], u)
			}
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return c, fmt.Errorf("%s and %s: give both or neither", src["mqtt-client-cert"], src["mqtt-client-key"])
	}
	for _, name := range []string{"mqtt-ca", "mqtt-client-cert", "mqtt-client-key"} {
		if v[name] == "" {
			continue
		}
		if _, err := os.Stat(v[name]); err != nil {
			return c, fmt.Errorf("%s: %w", src[name], err)
		}
	}
	env, inEnv := os.LookupEnv("KAISER_MQTT_PASSWORD")
	switch file := v["mqtt-password-file"]; {
	case file != "" && inEnv:
		return c, fmt.Errorf("%s and KAISER_MQTT_PASSWORD: give one of them", src["mqtt-password-file"])
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return c, fmt.Errorf("%s: %w", src["mqtt-password-file"], err)
		}
		c.Password = strings.TrimRight(string(b), "\r\n")
		if c.Password == "" {
			return c, fmt.Errorf("%s: %s is empty", src["mqtt-password-file"], file)
		}
	default:
		c.Password = env
	}
	return c, nil
}

// ruleConfig reads the rules' settings: the time zone, the timer, the
// webhook hosts and the SMTP relay (its password only from the environment,
// never the command line).
func ruleConfig(cfg *hub.Config, v, src map[string]string) error {
	zone, err := time.LoadLocation(v["timezone"])
	if err != nil {
		return fmt.Errorf("%s: %q is not an IANA time zone", src["timezone"], v["timezone"])
	}
	cfg.Zone = zone
	timer, err := time.ParseDuration(v["logic-timer"])
	if err != nil || timer < time.Second || timer > time.Hour {
		return fmt.Errorf("%s: %q must be a duration from 1s to 1h", src["logic-timer"], v["logic-timer"])
	}
	cfg.LogicTimer = timer
	for _, h := range strings.Split(v["webhook-hosts"], ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.WebhookHosts = append(cfg.WebhookHosts, strings.ToLower(h))
		}
	}
	if addr := v["smtp-addr"]; addr != "" {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return fmt.Errorf("%s: %q is not a host:port address", src["smtp-addr"], addr)
		}
		if v["smtp-from"] == "" {
			return fmt.Errorf("%s: needed with %s", src["smtp-from"], src["smtp-addr"])
		}
	}
	cfg.SMTP = logic.SMTP{
		Addr:     v["smtp-addr"],
		From:     v["smtp-from"],
		Username: v["smtp-username"],
		Password: os.Getenv("KAISER_SMTP_PASSWORD"),
	}
	return nil
}

// tlsConfig reads the TLS listeners and their certificate, and loads the
// certificate once so that a file that cannot be used stops the start here
// (docs/decisions/0019-tls.md).
func tlsConfig(cfg *hub.Config, v, src map[string]string) error {
	cfg.HTTPSAddr, cfg.MQTTTLSAddr = v["https-addr"], v["mqtt-tls-addr"]
	cfg.TLSCertFile, cfg.TLSKeyFile = v["tls-cert"], v["tls-key"]
	for _, name := range []string{"https-addr", "mqtt-tls-addr"} {
		if v[name] == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(v[name]); err != nil || port == "" {
			return fmt.Errorf("%s: %q is not a host:port address", src[name], v[name])
		}
	}
	if err := cfg.CheckTLS(); err != nil {
		return fmt.Errorf("%s, %s, %s, %s: %w",
			src["https-addr"], src["mqtt-tls-addr"], src["tls-cert"], src["tls-key"], err)
	}
	return nil
}
