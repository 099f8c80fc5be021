// Package hub builds every component of the hub, starts them in order and
// stops them in reverse, draining queues and flushing the writer within a
// deadline (docs/architecture.md §8).
package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/accountapi"
	"github.com/kaiserhub/kaiser/internal/api/actuatorapi"
	"github.com/kaiserhub/kaiser/internal/api/alertapi"
	"github.com/kaiserhub/kaiser/internal/api/auditapi"
	"github.com/kaiserhub/kaiser/internal/api/backtestapi"
	"github.com/kaiserhub/kaiser/internal/api/deviceapi"
	"github.com/kaiserhub/kaiser/internal/api/emergencyapi"
	"github.com/kaiserhub/kaiser/internal/api/healthapi"
	"github.com/kaiserhub/kaiser/internal/api/logapi"
	"github.com/kaiserhub/kaiser/internal/api/logicapi"
	"github.com/kaiserhub/kaiser/internal/api/sensorapi"
	"github.com/kaiserhub/kaiser/internal/api/sequenceapi"
	"github.com/kaiserhub/kaiser/internal/api/zoneapi"
	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/backtest"
	"github.com/kaiserhub/kaiser/internal/broker"
	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/credential"
	"github.com/kaiserhub/kaiser/internal/debugapi"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/emergency"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/lease"
	"github.com/kaiserhub/kaiser/internal/live"
	"github.com/kaiserhub/kaiser/internal/logic"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/observe"
	"github.com/kaiserhub/kaiser/internal/retention"
	"github.com/kaiserhub/kaiser/internal/schedule"
	"github.com/kaiserhub/kaiser/internal/sdnotify"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sequence"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
	"github.com/kaiserhub/kaiser/internal/tlscert"
	"github.com/kaiserhub/kaiser/internal/webui"
	"github.com/kaiserhub/kaiser/internal/zone"
)

// Config is the hub's configuration (flags and KAISER_* variables in cmd/kaiser).
type Config struct {
	DataDir string
	// Database selects the store: empty, SQLite in DataDir; a postgres://
	// URL, that PostgreSQL database (docs/decisions/0026-hub-on-postgres.md).
	Database string
	// DatabasePassword, when set, is the PostgreSQL password (read from a
	// file by cmd/kaiser); it overrides one in the URL.
	DatabasePassword string
	HTTPAddr         string
	MQTTAddr         string
	KaiserID         string
	HeartbeatTimeout time.Duration
	LogLevel         slog.Level
	// Console receives readable log lines; nil disables console output.
	Console io.Writer
	Version string
	Commit  string

	// Replicas (docs/decisions/0029-replicas.md): on PostgreSQL with an
	// external broker, ReplicaURL is this replica's API as the others
	// reach it (default http://{HTTPAddr}); LeaseTTL tunes the jobs lease
	// (default 10 s: a takeover within 15 s of a primary's death). Role
	// and link are set by Run.
	ReplicaURL string
	LeaseTTL   time.Duration
	Role       Role
	link       *replicaLink
	term       *lease.Term // a primary's term, which fences its writes
	// logs, when set, are a replica's logs, which its standby and primary
	// hubs and its lease manager share; the replica closes them.
	logs *observe.Logs

	// JWT secret: a file path or a value (docs/api.md §2.2); neither = generated in DataDir.
	JWTSecretFile       string
	JWTSecretFileSource string // how the file was configured, for error messages
	JWTSecret           string
	CORSOrigins         []string

	// NoProcessedEcho disables the processed-value echo (docs/protocol.md §3.2.11).
	NoProcessedEcho bool

	// MQTT bounds what network clients can make the embedded broker hold
	// (docs/decisions/0012-mqtt-door.md); zero values take the defaults.
	MQTT broker.Limits
	// MQTTAuth is --mqtt-auth: off (default) or devices, the device
	// credentials and ACL (docs/decisions/0018-device-credentials.md).
	MQTTAuth broker.AuthMode

	// MQTTBroker, when its URL is set, is the external MQTT broker the hub
	// connects to as a client instead of embedding one; MQTTAddr and MQTT
	// are then unused (docs/decisions/0023-external-broker.md).
	MQTTBroker broker.ExternalConfig

	// DiskReserve is the free space, in bytes, on the data directory's
	// filesystem below which the hub is not ready (docs/api.md §13); 0
	// takes api.DefaultDiskReserve, a negative value keeps none.
	DiskReserve int64

	// TLS (docs/decisions/0019-tls.md): HTTPSAddr and MQTTTLSAddr each open
	// a TLS listener next to the plain ones, which stay; empty: none. Both
	// serve the certificate in TLSCertFile and TLSKeyFile, read again when
	// the files change or a value arrives on Reload (SIGHUP).
	HTTPSAddr   string
	MQTTTLSAddr string
	TLSCertFile string
	TLSKeyFile  string
	Reload      <-chan os.Signal
	// MemoryLimit is the Go runtime's soft memory limit in bytes, set by
	// cmd/kaiser for the whole process (0 = none).
	MemoryLimit int64

	// Tuning, mostly for tests and benchmarks; zero values take defaults.
	BcryptCost      int
	LoginLimit      int
	WS              api.WSConfig
	Ingest          ingest.Config
	DiscoveryPerMin int
	ShutdownTimeout time.Duration
	// ActuatorSecond is the length of one second of the actuator timings
	// (command timeout, durations, retries, valve travel), of the
	// emergency stop's guard and waits and of the sequence steps' delays
	// and timeouts; tests shorten it. Zero = 1 s.
	ActuatorSecond time.Duration

	// Rules: the hub's time zone for time windows (UTC), the timer
	// trigger's period (60 s), the hosts webhooks may reach (any when
	// empty) and the SMTP relay of e-mail actions (none).
	Zone         *time.Location
	LogicTimer   time.Duration
	WebhookHosts []string
	SMTP         logic.SMTP
}

// Hub is a running hub.
type Hub struct {
	cfg      Config
	Log      *slog.Logger
	logs     *observe.Logs
	Registry *prometheus.Registry
	// Store is the database, SQLite or PostgreSQL; SQLite or Postgres is
	// the same store as its own type, the other one nil.
	Store     Store
	SQLite    *sqlite.Store
	Postgres  *postgres.Store
	Broker    *broker.Embedded // nil with an external broker
	External  *broker.External // nil with the embedded broker
	Bus       MessageBus       // the message broker: Broker or External
	Ingest    *ingest.Dispatcher
	Devices   *device.Service
	Events    *event.Bus
	Sched     *schedule.Scheduler
	API       *api.Server
	Live      *live.Feed
	Debug     *debugapi.Debug
	Auth      *auth.Service
	Audit     *audit.Log
	Sensors   *sensor.Service
	Alerts    *notify.Service
	Readings  ReadingSink
	Actuators *actuator.Service
	Zones     *zone.Service
	// Emergency holds the emergency-stop latches (docs/domain.md §5).
	Emergency *emergency.Service
	// Rules is the rule engine (docs/domain.md §6).
	Rules *logic.Service
	// Sequences runs the rules' sequence actions (docs/domain.md §6.5).
	Sequences *sequence.Service
	// Credentials are the devices' MQTT credentials (docs/domain.md §1.2).
	Credentials *credential.Service

	// serving is set while the hub serves devices; readiness changes of the
	// emergency latches apply only then.
	serving atomic.Bool

	auditStop chan struct{}
	auditDone chan struct{}

	httpLn  net.Listener
	httpSrv *http.Server
	httpErr chan error

	// relayStop ends the event relay among replicas (relay_wiring.go).
	relayStop func()
	// forwardKey signs and checks the client addresses a standby forwards
	// (standby.go); nil for a hub alone.
	forwardKey []byte

	// TLS is the certificate of the TLS listeners; nil without them.
	TLS     *tlscert.Source
	httpsLn net.Listener
}

// Start brings the hub up, one named step at a time, in the order of
// docs/architecture.md §8. The HTTP listener opens first (ready = 503) so
// that devices' processing calls are answered whenever the broker is up;
// the broker's listener opens last. A failed step undoes the earlier ones.
func Start(ctx context.Context, cfg Config) (*Hub, error) {
	cfg = cfg.withDefaults()
	logs, err := cfg.openLogs()
	if err != nil {
		return nil, err
	}
	h := &Hub{
		cfg:      cfg,
		logs:     logs,
		Log:      logs.Logger,
		Registry: observe.NewRegistry(),
		Events:   event.NewBus(),
		httpErr:  make(chan error, 2), // the HTTP and the HTTPS listener
	}

	ok := false
	defer func() {
		if !ok {
			h.abort()
		}
	}()
	for _, step := range h.steps() {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	ok = true
	h.Log.Info("kaiser hub ready",
		"role", cfg.role(),
		"http", h.HTTPAddr(),
		"mqtt", h.MQTTAddr(),
		"https", h.HTTPSAddr(),
		"mqtt_tls", h.MQTTTLSAddr(),
		"data_dir", cfg.DataDir,
		"database", cfg.databaseKind(),
		"version", cfg.Version)
	return h, nil
}

// steps are the start steps of the hub's role: a standby builds only what
// ingesting sensor data needs (standby.go).
func (h *Hub) steps() []func(context.Context) error {
	if h.cfg.role() == RoleStandby {
		return h.standbySteps()
	}
	return []func(context.Context) error{
		h.listenHTTP,
		h.openStore,
		h.createBroker,
		h.loadAccounts,
		h.loadDevices,
		h.loadSensors,
		h.buildAPI,
		h.loadActuators,
		h.loadZones,
		h.loadEmergency,
		h.loadRules,
		h.startRelay,
		h.startIngest,
		h.startScheduler,
		h.openToDevices,
	}
}

func (c Config) withDefaults() Config {
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	if c.KaiserID == "" {
		c.KaiserID = "god"
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 180 * time.Second
	}
	return c
}

// listenHTTP opens the HTTP listener, and the HTTPS one with its
// certificate (tls_wiring.go); they are served once the API exists.
func (h *Hub) listenHTTP(context.Context) error {
	if err := h.listenHTTPS(); err != nil {
		return err
	}
	var err error
	h.httpLn, err = net.Listen("tcp", h.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", h.cfg.HTTPAddr, err)
	}
	if _, port, _ := net.SplitHostPort(h.httpLn.Addr().String()); port != "8000" {
		h.Log.Warn("HTTP port is not 8000: firmware processing calls go to :8000 (docs/protocol.md H1)",
			"addr", h.httpLn.Addr().String())
	}
	return nil
}

// createBroker creates the embedded broker and the device credentials it
// checks, or the client of an external broker; its listener opens, or it
// connects, at the end. Without device authentication the embedded broker
// says so loudly: any client can then publish as any device.
func (h *Hub) createBroker(context.Context) error {
	h.Credentials = credential.New(h.Store, credentialDeps{h}, credentialDeps{h}, h.Log.With("component", "credential"))
	if h.cfg.MQTTBroker.URL != "" {
		return h.connectExternal()
	}
	var err error
	h.Broker, err = broker.NewEmbedded(broker.Config{
		Addr:       h.cfg.MQTTAddr,
		Logger:     h.Log,
		Registerer: h.Registry,
		Roots:      func(id string) (string, bool) { return h.Devices.Root(id) },
		Known:      func(id string) bool { return h.Devices.Known(id) },
		Fleet:      func() int { return h.Devices.Registered() },
		Limits:     h.cfg.MQTT,
		TLSAddr:    h.cfg.MQTTTLSAddr,
		TLS:        h.tlsConfig(),
		// Device credentials (docs/decisions/0018-device-credentials.md).
		Auth:        h.cfg.MQTTAuth,
		Credentials: h.Credentials,
	})
	if err == nil {
		h.Bus = h.Broker
	}
	if err == nil && !h.mqttAuth() {
		h.Log.Warn("MQTT DEVICE AUTHENTICATION IS OFF (--mqtt-auth off): any client can connect with a device id "+
			"and publish as that device", "fix", "issue device credentials, then --mqtt-auth devices",
			"see", "docs/decisions/0018-device-credentials.md")
	}
	return err
}

// mqttAuth reports whether the broker checks device credentials.
func (h *Hub) mqttAuth() bool { return h.cfg.MQTTAuth == broker.AuthDevices }

// loadAccounts loads users and tokens and starts the audit log's watch of
// device events.
func (h *Hub) loadAccounts(ctx context.Context) error {
	secret, err := auth.LoadSecret(h.cfg.DataDir, h.cfg.JWTSecretFile, h.cfg.JWTSecretFileSource, h.cfg.JWTSecret)
	if err != nil {
		return err
	}
	if h.cfg.role() != RoleSolo {
		h.forwardKey = forwardKeyOf(secret)
	}
	if h.cfg.role() != RoleSolo && h.cfg.JWTSecretFile == "" && h.cfg.JWTSecret == "" {
		h.Log.Warn("replicas without a shared JWT secret: tokens signed by one primary fail on the next",
			"fix", "give every replica the same --jwt-secret-file", "see", "docs/decisions/0029-replicas.md")
	}
	h.Auth, err = auth.New(ctx, auth.Config{Secret: secret, BcryptCost: h.cfg.BcryptCost}, h.Store)
	if err != nil {
		return err
	}

	h.Audit = audit.New(h.Store, h.Log.With("component", "audit"), h.Registry)
	h.auditStop, h.auditDone = make(chan struct{}), make(chan struct{})
	auditSub := h.Events.Subscribe(4096, event.TypeDeviceDiscovered, event.TypeDeviceRediscovered, event.TypeDeviceStatus)
	go func() {
		defer close(h.auditDone)
		defer h.Events.Unsubscribe(auditSub)
		h.Audit.Watch(auditSub.C, h.auditStop)
	}()
	return nil
}

// loadDevices loads the registry before any message can arrive.
func (h *Hub) loadDevices(ctx context.Context) error {
	if h.cfg.HeartbeatTimeout <= 60*time.Second {
		h.Log.Warn("heartbeat timeout is not longer than the devices' 60 s heartbeat interval; use only in tests",
			"timeout", h.cfg.HeartbeatTimeout)
	}
	h.Devices = device.New(device.Config{
		HeartbeatTimeout: h.cfg.HeartbeatTimeout,
		DiscoveryPerMin:  h.cfg.DiscoveryPerMin,
		Stopping:         h.Bus.Stopping,
		// An external broker cannot restore the firmware's subscriptions (docs/protocol.md M4, B3).
		LostSubscriptions: h.External != nil,
	}, h.Store, h.Bus, h.Events, h.Log.With("component", "device"))
	if err := h.Devices.Load(ctx); err != nil {
		return err
	}
	h.registerDeviceMetrics()
	return h.loadCredentials(ctx)
}

// sinkCapacity bounds the readings queued for the store: 16,384 readings
// (about 2.6 MiB, allocated whole) are 16 s of a 1,000-reading/s fleet and
// a sixth of a second at the ingest benchmark's peak; a full queue makes
// ingest wait, it loses nothing (docs/decisions/0021-footprint.md).
const sinkCapacity = 16384

// loadSensors starts the reading sink and loads alerts and sensor configs;
// the config push then knows every device's sensors.
func (h *Hub) loadSensors(ctx context.Context) error {
	h.Readings = h.newReadingSink()
	h.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kaiser_reading_queue_depth",
		Help: "Readings waiting for the store.",
	}, func() float64 { return float64(h.Readings.Depth()) }))

	h.Alerts = notify.New(h.Store, h.Events, h.activeUserIDs, h.Log.With("component", "notify"))
	if err := h.Alerts.Load(ctx); err != nil {
		return err
	}

	h.Sensors = sensor.New(h.Store, h.Readings, h.Devices, h.Bus, h.Events, h.Alerts, sensor.Options{
		ProcessedEcho: !h.cfg.NoProcessedEcho,
		NoThresholds:  h.cfg.role() == RoleStandby,
		Logger:        h.Log.With("component", "sensor"),
		Registerer:    h.Registry,
	})
	return h.Sensors.Load(ctx)
}

// apiDeps are what the HTTP core of every role needs: the store, the
// broker and the device registry for the probes, health and metrics.
func (h *Hub) apiDeps() api.Deps {
	return api.Deps{
		Version:     h.cfg.Version,
		Store:       h.Store,
		Broker:      h.Bus,
		Registry:    h.Registry,
		Logger:      h.Log.With("component", "api"),
		DataDir:     h.cfg.DataDir,
		Commits:     h.Store,
		DiskReserve: h.cfg.DiskReserve,
		Devices:     h.Devices,
	}
}

// buildAPI builds the HTTP API (not served yet).
func (h *Hub) buildAPI(context.Context) error {
	h.Live = live.New(h.cfg.WS, h.Events, h.Registry)
	deps := h.apiDeps()
	deps.Auth, deps.Audit, deps.CORSOrigins, deps.Live = h.Auth, h.Audit, h.cfg.CORSOrigins, h.Live
	h.API = api.New(deps)
	h.resourceRoutes(h.cfg)
	dash, err := webui.New()
	if err != nil {
		return err
	}
	webui.Register(h.API, dash)
	handler := h.API.Handler()
	if h.cfg.role() == RolePrimary {
		handler = trustForwarded(h.forwardKey, handler)
	}
	h.httpSrv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      35 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(h.Log.Handler(), slog.LevelWarn),
		TLSConfig:         h.httpsConfig(), // the HTTPS listener's; the plain one ignores it
	}
	return nil
}

// pushSource is what the config push asks for: the device's sensor and
// actuator items, and valves closed before a push (docs/protocol.md P4).
type pushSource struct {
	sensors   *sensor.Service
	actuators *actuator.Service
}

func (p pushSource) SensorItems(espID string) []contract.SensorConfigItem {
	return p.sensors.SensorItems(espID)
}

func (p pushSource) ActuatorItems(espID string) []contract.ActuatorConfigItem {
	return p.actuators.ActuatorItems(espID)
}

func (p pushSource) CloseValves(ctx context.Context, espID string) time.Duration {
	return p.actuators.CloseValves(ctx, espID)
}

// loadActuators loads actuator configs, states and open commands before any
// message or command can arrive (docs/domain.md §4.8), makes the config push
// carry them and registers their routes (docs/api.md §8.1–8.3).
func (h *Hub) loadActuators(ctx context.Context) error {
	h.Actuators = actuator.New(h.Store, h.Devices, h.Sensors, h.Bus, h.Events, h.Alerts, actuator.Options{
		Second: h.cfg.ActuatorSecond,
		Logger: h.Log.With("component", "actuator"),
	})
	if err := h.Actuators.Load(ctx); err != nil {
		return err
	}
	h.Sensors.SetPinClaims(h.Actuators)
	if err := h.Devices.EnablePush(ctx, pushSource{h.Sensors, h.Actuators}, h.Store); err != nil {
		return err
	}
	h.Devices.OnPushResult(h.Actuators.PushResult)
	h.Devices.SetCounts(deviceComponents{h})
	h.Actuators.Start()

	actuatorapi.Register(h.API, actuatorapi.Deps{
		Actuators: h.Actuators,
		Devices:   h.Devices,
		Audit:     h.Audit,
	})
	return nil
}

// loadZones loads the zones and subzones, follows the device events that
// re-sync them and registers the routes of docs/api.md §9; the ack handlers
// are added in startIngest.
func (h *Hub) loadZones(ctx context.Context) error {
	h.Zones = zone.New(zone.Config{
		SensorPins: func(espID string) []int {
			var pins []int
			for _, c := range h.Sensors.ByDevice(espID) {
				pins = append(pins, c.GPIO)
			}
			return pins
		},
		ActuatorPins: func(espID string) []int {
			var pins []int
			for _, o := range h.Actuators.Outputs(espID) {
				pins = append(pins, o.GPIO)
			}
			return pins
		},
		Logger: h.Log.With("component", "zone"),
	}, h.Store, h.Devices, h.Bus, h.Events, h.Alerts)
	if err := h.Zones.Load(ctx); err != nil {
		return err
	}
	h.Zones.Start()
	zoneapi.Register(h.API, h.Zones)
	return nil
}

// loadEmergency restores the emergency latches before the broker
// subscription and before any command is accepted (docs/domain.md §5.1),
// then connects the push hooks (re-safing, clear by re-configuration), the
// readiness and the routes of docs/api.md §8.4.
func (h *Hub) loadEmergency(ctx context.Context) error {
	h.Emergency = emergency.New(emergency.Deps{
		Actuators: h.emergencyActuators(),
		Devices:   h.Devices,
		Broker:    h.Bus,
		Store:     h.Store,
		Audit:     h.Audit,
		Alerts:    h.Alerts,
		Events:    h.Events,
		Logger:    h.Log.With("component", "emergency"),
		Second:    h.cfg.ActuatorSecond,
	})
	if err := h.Emergency.Load(ctx); err != nil {
		return fmt.Errorf("load emergency latches: %w", err)
	}

	// Only now may a command be accepted: the latches block it from here on.
	h.Actuators.SetLatches(h.Emergency)
	h.Actuators.OnEmergencyReport(h.Emergency.Confirm)

	h.Devices.OnPushPublished(h.Emergency.HandlePushPublished)
	h.Devices.OnPushResult(h.Emergency.HandlePushResult)
	// Not ready while a latch is held only in memory (docs/domain.md §5.2 step 1).
	h.Emergency.OnReadiness(func(ok bool) {
		if h.serving.Load() {
			h.API.SetReady(ok)
		}
	})
	emergencyapi.Register(h.API, h.Emergency)
	return nil
}

// loadRules loads the rules, their hysteresis states, pending delay
// continuations and running sequences once commands can be issued and
// latches block them, and starts the engine's triggers before any reading
// arrives (docs/domain.md §4.8, §6.6); the timer trigger and the sequence
// sweep are scheduled jobs.
func (h *Hub) loadRules(ctx context.Context) error {
	h.Rules = logic.New(logic.Deps{
		Store:     h.Store,
		Actuators: h.Actuators,
		Devices:   h.Devices,
		Sensors:   h.Sensors,
		Alerts:    h.Alerts,
		Users:     h.Auth,
		Pauses:    h.Emergency,
		Events:    h.Events,
	}, logic.Options{
		Zone:          h.cfg.Zone,
		TimerInterval: h.cfg.LogicTimer,
		WebhookHosts:  h.cfg.WebhookHosts,
		SMTP:          h.cfg.SMTP,
		Logger:        h.Log.With("component", "logic"),
		Registerer:    h.Registry,
	})
	h.Sequences = sequence.New(sequence.Deps{
		Store:     h.Store,
		Actuators: h.Actuators,
		Engine:    h.Rules,
		Pauses:    h.Emergency,
		Events:    h.Events,
	}, sequence.Options{
		Second: h.cfg.ActuatorSecond,
		Logger: h.Log.With("component", "sequence"),
	})
	h.Rules.SetSequencer(h.Sequences)
	if err := h.Rules.Load(ctx); err != nil {
		return err
	}
	if err := h.Sequences.Load(ctx); err != nil {
		return err
	}
	h.Rules.Start()
	h.Sequences.Resume()
	logicapi.Register(h.API, logicapi.Deps{Rules: h.Rules, Audit: h.Audit})
	sequenceapi.Register(h.API, h.Sequences)
	backtestapi.Register(h.API, backtest.New(backtest.Deps{
		History:   h.Store,
		Rules:     h.Rules,
		Actuators: h.Actuators,
		Sensors:   h.Sensors,
	}, backtest.Options{Zone: h.cfg.Zone, TimerInterval: h.Rules.TimerInterval()}))
	return nil
}

// newDispatcher is the ingest dispatcher with its metrics, as h.Ingest.
func (h *Hub) newDispatcher() *ingest.Dispatcher {
	var d *ingest.Dispatcher
	im := ingest.NewMetrics(h.Registry, func() float64 { return float64(d.Pending()) })
	d = ingest.New(h.cfg.Ingest, im, h.Log.With("component", "ingest"))
	h.Ingest = d
	return d
}

// startIngest starts the dispatcher with a handler for every inbound kind,
// then the subscription (in-process, or the external client's). A QoS 1
// message is settled before its PUBACK (docs/protocol.md M3): acknowledged
// once committed or dropped with a counted reason.
func (h *Hub) startIngest(context.Context) error {
	d := h.newDispatcher()

	d.Handle(contract.KindHeartbeat, h.Devices.HandleHeartbeat)
	d.Handle(contract.KindWill, h.Devices.HandleWill)
	d.Handle(contract.KindSensorData, h.Sensors.HandleData)
	d.Handle(contract.KindConfigResponse, h.Devices.HandleConfigResponse)
	d.Handle(contract.KindActuatorStatus, h.Actuators.HandleStatus)
	d.Handle(contract.KindActuatorResponse, h.Actuators.HandleResponse)
	d.Handle(contract.KindActuatorAlert, h.Actuators.HandleAlert)
	d.Handle(contract.KindEmergencyResponse, h.Emergency.HandleEmergencyResponse)
	d.Handle(contract.KindEmergencyError, h.Emergency.HandleEmergencyError)
	d.Handle(contract.KindSystemCommandResponse, h.Emergency.HandleSystemCommandResponse)
	for _, k := range contract.InboundKinds {
		switch k {
		case contract.KindHeartbeat, contract.KindWill, contract.KindNewer, contract.KindSensorData,
			contract.KindConfigResponse, contract.KindActuatorStatus, contract.KindActuatorResponse,
			contract.KindActuatorAlert, contract.KindEmergencyResponse, contract.KindEmergencyError,
			contract.KindSystemCommandResponse:
		default:
			d.Handle(k, h.Devices.HandleGated())
		}
	}

	// The zone acks complete assignments (docs/protocol.md §5.12).
	d.Handle(contract.KindZoneAck, h.Zones.HandleZoneAck)
	d.Handle(contract.KindSubzoneAck, h.Zones.HandleSubzoneAck)

	d.Start()
	h.API.SetIngest(d)
	if h.External != nil {
		h.subscribeExternal(d)
		return nil
	}
	return h.Broker.SubscribeSettled(contract.HubSubscriptions, d.Submit, d.SubmitSettled)
}

// startScheduler adds the periodic jobs (liveness first) and the debug
// routes of docs/api.md §16 that show them, then starts the scheduler.
func (h *Hub) startScheduler(context.Context) error {
	h.Sched = schedule.New(h.Log.With("component", "schedule"), time.UTC, h.Registry)
	for _, j := range h.jobs() {
		if err := h.Sched.Add(j); err != nil {
			return err
		}
	}
	dbg := debugapi.Deps{
		Devices:   h.Devices,
		Sensors:   h.Sensors,
		Actuators: h.Actuators,
		Jobs:      h.Sched,
		MQTTAddr:  func() string { return h.Bus.Addr() },
		Settings:  h.settings,
		// In devices mode mocks connect with credentials the hub issues them.
		Credentials: h.mockCredentials(),
		Logger:      h.Log.With("component", "debug"),
	}
	h.explorerDeps(&dbg)
	h.Debug = debugapi.Register(h.API, dbg)
	h.Sched.Start(context.Background())
	return nil
}

func (h *Hub) jobs() []schedule.Job {
	jobs := []schedule.Job{
		{Name: "liveness_check", Every: min(10*time.Second, h.cfg.HeartbeatTimeout/4), Run: h.Devices.CheckLiveness},
		{Name: "pending_expiry", Every: device.PendingSweepEvery, Run: h.Devices.ExpirePending},
		{Name: "token_blacklist_purge", Cron: "10 3 * * *", Run: h.Auth.PurgeExpired},
		{Name: "sensor_health", Every: 60 * time.Second, Run: h.Sensors.CheckStale},
		{Name: "rollups", Every: 5 * time.Minute, Run: h.Sensors.RepairRollups},
		{Name: "retention_cleanup", Cron: "15 * * * *", Run: h.cleanupReadings},
		{Name: "rollup_retention", Cron: "0 3 * * *", Run: func(ctx context.Context) error {
			return h.Sensors.CleanupRollups(ctx, sensor.DefaultRetention())
		}},
		{Name: "audit_retention", Cron: "30 3 * * *", Run: h.cleanupAudit},
		{Name: "actuator_runtime_watchdog", Every: actuator.WatchdogPeriod, Run: h.Actuators.Watchdog},
		{Name: "actuator_history_retention", Cron: "20 3 * * *", Run: h.Actuators.CleanupHistory},
		{Name: "history_retention", Cron: "45 * * * *", Run: h.trimHistories},
		{Name: "logic_timer", Every: h.Rules.TimerInterval(), Run: h.Rules.Tick},
		{Name: "sequence_sweep", Every: sequence.SweepEvery, Run: h.Sequences.Sweep},
	}
	if h.cfg.role() == RolePrimary {
		// A primary that died leaves its will, "offline", which the
		// broker publishes only once it notices (up to 1.5 keepalives,
		// 90 s) and so possibly after the next primary's "online".
		jobs = append(jobs, schedule.Job{Name: "server_status", Every: serverStatusEvery, Run: func(ctx context.Context) error {
			h.publishServerStatus(ctx, contract.ServerStatus{Status: "online", Timestamp: time.Now().Unix()})
			return nil
		}})
	}
	return jobs
}

// serverStatusEvery is how often a primary replica says "online" again.
const serverStatusEvery = 30 * time.Second

func (h *Hub) cleanupReadings(ctx context.Context) error {
	res, err := h.Sensors.CleanupReadings(ctx, sensor.DefaultRetention())
	h.Log.Info("raw reading retention", "status", res.Status, "deleted", res.Deleted)
	return err
}

func (h *Hub) trimHistories(ctx context.Context) error {
	_, err := retention.Trim(ctx, h.Store, retention.Policies, time.Now(), h.Log.With("component", "retention"))
	return err
}

func (h *Hub) cleanupAudit(ctx context.Context) error {
	rc, err := h.Audit.GetRetention(ctx)
	if err != nil || !rc.Enabled {
		return err
	}
	_, err = h.Audit.Cleanup(ctx, false)
	return err
}

// openToDevices serves the API, opens the broker's listener (or connects
// to the external broker) and announces the hub; from here on devices may
// connect.
func (h *Hub) openToDevices(ctx context.Context) error {
	go func() { h.httpErr <- h.httpSrv.Serve(h.httpLn) }()
	h.serveHTTPS()

	if err := h.Bus.Start(); err != nil {
		return err
	}
	if h.External == nil {
		h.announce(ctx) // the external client announces after every connect
	}

	h.Debug.Resume()
	h.serving.Store(true)
	h.API.SetReady(h.Emergency.Ready())
	h.Events.Publish(event.Event{Data: event.SystemEvent{
		Event:     "startup_complete",
		Message:   "hub started",
		Timestamp: time.Now().Unix(),
	}})
	return nil
}

func (h *Hub) publishServerStatus(ctx context.Context, st contract.ServerStatus) {
	payload, err := contract.Marshal(st)
	if err == nil {
		err = h.Bus.Publish(ctx, contract.ServerStatusTopic(h.cfg.KaiserID), payload, 1, true)
	}
	if err != nil {
		h.Log.Warn("server status not published", "error", err)
	}
}

func (h *Hub) registerDeviceMetrics() {
	gauge := func(name, help string, statuses ...string) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			c := h.Devices.Counts()
			n := 0
			if len(statuses) == 0 {
				for _, v := range c {
					n += v
				}
			}
			for _, s := range statuses {
				n += c[s]
			}
			return float64(n)
		})
	}
	h.Registry.MustRegister(
		gauge("god_kaiser_esp_total", "Devices known to the hub (deleted excluded)."),
		gauge("god_kaiser_esp_online", "Devices online.", device.StatusOnline),
		gauge("god_kaiser_esp_offline", "Devices offline.", device.StatusOffline),
		gauge("god_kaiser_esp_pending", "Devices waiting for approval.", device.StatusPending),
		&devicesByState{h.Devices},
	)
}

type devicesByState struct{ d *device.Service }

var devicesDesc = prometheus.NewDesc("kaiser_devices", "Devices by state.", []string{"state"}, nil)

func (c *devicesByState) Describe(ch chan<- *prometheus.Desc) { ch <- devicesDesc }

func (c *devicesByState) Collect(ch chan<- prometheus.Metric) {
	counts := c.d.Counts()
	for _, st := range []string{device.StatusPending, device.StatusApproved, device.StatusOnline,
		device.StatusOffline, device.StatusRejected, device.StatusError, device.StatusUnknown} {
		ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(counts[st]), st)
	}
}

// activeUserIDs lists the users who receive alert notifications.
func (h *Hub) activeUserIDs(ctx context.Context) ([]int64, error) {
	us, err := h.Auth.Users(ctx)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, u := range us {
		if u.IsActive {
			ids = append(ids, u.ID)
		}
	}
	return ids, nil
}

// HTTPAddr is the bound HTTP address.
func (h *Hub) HTTPAddr() string { return h.httpLn.Addr().String() }

// MQTTAddr is the bound MQTT address, or the external broker's host:port.
func (h *Hub) MQTTAddr() string { return h.Bus.Addr() }

// Stop shuts down in reverse order within cfg.ShutdownTimeout: the broker
// stops accepting PUBLISH, HTTP drains (3 s grace), the scheduler stops,
// ingest drains, the writer flushes, the broker says goodbye and closes, the
// store closes. Everything the broker acknowledged is stored.
func (h *Hub) Stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ShutdownTimeout)
	defer cancel()
	log := h.Log
	var errs []error
	step := func(name string, err error) {
		if err != nil {
			log.Error("shutdown step failed", "step", name, "error", err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	log.Info("shutting down")
	h.serving.Store(false)
	h.API.SetReady(false)
	h.Events.Publish(event.Event{Data: event.SystemEvent{
		Event:     "shutdown",
		Message:   "hub is shutting down",
		Timestamp: time.Now().Unix(),
	}})
	step("broker stop accepting", h.Bus.StopAccepting(ctx))
	h.Debug.Stop()
	h.API.Close()
	hctx, hcancel := context.WithTimeout(ctx, 3*time.Second)
	err := h.httpSrv.Shutdown(hctx)
	hcancel()
	if errors.Is(err, context.DeadlineExceeded) {
		err = h.httpSrv.Close()
	}
	step("http", err)
	// A standby has no control services and no scheduler (standby.go).
	if h.Emergency != nil {
		h.Emergency.Close()
	}
	if h.Sched != nil {
		step("scheduler", h.Sched.Stop(ctx))
	}
	step("ingest drain", h.Ingest.Stop(ctx))
	h.stopRelay()
	if h.Sequences != nil {
		h.Sequences.Stop()
		h.Rules.Stop()
		h.Devices.StopPush()
		h.Zones.Stop()
		h.Actuators.Stop()
	}
	step("readings flush", h.Readings.Close(ctx))
	close(h.auditStop)
	<-h.auditDone
	step("store flush", h.Store.Flush(ctx))
	if h.cfg.role() != RoleStandby {
		h.publishServerStatus(ctx, contract.ServerStatus{Status: "offline", Reason: "graceful_shutdown"})
	}
	step("broker close", h.Bus.Close())
	step("store close", h.Store.Close(ctx))
	log.Info("hub stopped", "errors", len(errs))
	if h.cfg.logs == nil {
		step("logs", h.logs.Close())
	}
	return errors.Join(errs...)
}

// openLogs opens the hub's logs, or returns the replica's that it shares.
func (c Config) openLogs() (*observe.Logs, error) {
	if c.logs != nil {
		return c.logs, nil
	}
	return observe.NewLogs(c.DataDir, c.LogLevel, c.Console)
}

// abort releases what a failed Start opened.
func (h *Hub) abort() {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ShutdownTimeout)
	defer cancel()
	h.Debug.Stop()
	if h.API != nil {
		h.API.Close()
	}
	if h.httpSrv != nil {
		_ = h.httpSrv.Close()
	}
	if h.httpLn != nil {
		_ = h.httpLn.Close()
	}
	if h.httpsLn != nil {
		_ = h.httpsLn.Close()
	}
	if h.Emergency != nil {
		h.Emergency.Close()
	}
	if h.auditStop != nil {
		close(h.auditStop)
		<-h.auditDone
	}
	if h.Sched != nil {
		_ = h.Sched.Stop(ctx)
	}
	if h.Ingest != nil {
		_ = h.Ingest.Stop(ctx)
	}
	h.stopRelay()
	if h.Sequences != nil {
		h.Sequences.Stop()
	}
	if h.Rules != nil {
		h.Rules.Stop()
	}
	if h.Devices != nil {
		h.Devices.StopPush()
	}
	if h.Zones != nil {
		h.Zones.Stop()
	}
	if h.Actuators != nil {
		h.Actuators.Stop()
	}
	if h.Readings != nil {
		_ = h.Readings.Close(ctx)
	}
	if h.Bus != nil {
		_ = h.Bus.Close()
	}
	if h.Store != nil {
		_ = h.Store.Close(ctx)
	}
	if h.cfg.logs == nil {
		_ = h.logs.Close()
	}
}

// Run starts the hub and stops it when ctx ends; on PostgreSQL with an
// external broker it runs as one replica of a site (replica.go).
func Run(ctx context.Context, cfg Config) error {
	if cfg.replicated() {
		return runReplicas(ctx, cfg)
	}
	h, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	_, err = h.serve(ctx, nil)
	return errors.Join(err, h.Stop(context.Background()))
}

// Why serve returned.
const (
	stoppedDone  = iota // ctx ended
	stoppedHTTP         // the HTTP server failed
	stoppedUntil        // until was closed
)

// serve tells systemd the hub is ready, answers its watchdog and reloads
// the TLS certificate on SIGHUP until ctx ends, the HTTP server fails or
// until is closed; the caller stops the hub.
func (h *Hub) serve(ctx context.Context, until <-chan struct{}) (int, error) {
	if _, err := sdnotify.Notify(sdnotify.Ready); err != nil {
		h.Log.Warn("systemd notification failed", "error", err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go h.serviceWatchdog(watchCtx)

	for {
		select {
		case <-ctx.Done():
			_, _ = sdnotify.Notify(sdnotify.Stopping)
			return stoppedDone, nil
		case err := <-h.httpErr:
			_, _ = sdnotify.Notify(sdnotify.Stopping)
			return stoppedHTTP, httpFailure(h, err)
		case <-until:
			return stoppedUntil, nil
		case <-h.cfg.Reload:
			h.reloadTLS()
		}
	}
}

// serviceWatchdog answers systemd's watchdog (WatchdogSec in the unit) while
// both store writers still commit: a wedged writer stops the pings, and
// systemd restarts the hub. Without a watchdog it returns at once.
func (h *Hub) serviceWatchdog(ctx context.Context) {
	every, ok := sdnotify.WatchdogInterval()
	if !ok {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fctx, cancel := context.WithTimeout(ctx, every)
		err := h.Store.Flush(fctx)
		cancel()
		if err != nil {
			h.Log.Error("store did not commit in time; withholding the systemd watchdog ping", "error", err)
			continue
		}
		if _, err := sdnotify.Notify(sdnotify.Watchdog); err != nil {
			h.Log.Warn("systemd watchdog ping failed", "error", err)
		}
	}
}

// resourceRoutes adds the resources' routes to the HTTP core, one package
// each; the debug routes follow once the scheduler exists.
func (h *Hub) resourceRoutes(cfg Config) {
	health := healthapi.Deps{
		Version:      cfg.Version,
		Store:        h.Store,
		DB:           dbPool{h},
		DatabaseType: cfg.databaseKind(),
		Broker:       h.Bus,
		Registry:     h.Registry,
		DataDir:      cfg.DataDir,
		Devices:      h.Devices,
		DBFiles:      h.dbFiles(),
		Queues:       hubQueues{h},
		MQTTAuth:     string(h.cfg.MQTTAuth),
	}
	if h.External != nil {
		health.BrokerHost, health.BrokerPort = h.External.Endpoint()
	}
	healthapi.Register(h.API, health)
	healthapi.RegisterReplica(h.API, h)
	accounts := accountapi.Deps{Accounts: h.Auth, Audit: h.Audit, LoginLimit: cfg.LoginLimit,
		MQTTTLS: cfg.MQTTTLSAddr != "", MQTTAuthEnabled: h.mqttAuth()}
	if h.External != nil {
		accounts.BrokerLogin = accountapi.BrokerLogin{Username: cfg.MQTTBroker.Username, TLS: h.External.TLS()}
	}
	accountapi.Register(h.API, accounts)
	devices := deviceapi.Deps{
		Devices:   h.Devices,
		Sensors:   h.Sensors,
		Actuators: deviceComponents{h},
		Zones:     deviceComponents{h},
		Audit:     h.Audit,
	}
	// POST /esp/devices/{esp_id}/mqtt-credentials; an external broker
	// manages its own, and the route answers 409 INVALID_STATE.
	if h.External == nil {
		devices.Credentials = h.Credentials
	}
	deviceapi.Register(h.API, devices)
	auditapi.Register(h.API, auditapi.Deps{Log: h.Audit})
	sensorapi.Register(h.API, sensorapi.Deps{Sensors: h.Sensors, Devices: h.Devices, Audit: h.Audit})
	alertapi.Register(h.API, alertapi.Deps{Alerts: h.Alerts})
	logapi.Register(h.API, logapi.Deps{Logs: h.logs, Dir: h.logs.Dir})
}
