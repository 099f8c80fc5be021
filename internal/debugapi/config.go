package debugapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/live"
)

// Settings are the hub's effective configuration (defaults applied) for
// GET /debug/config (docs/decisions/0014-operator-api.md). The hub fills
// them; secrets never reach this package, only where they come from.
type Settings struct {
	Version          string
	Commit           string
	DataDir          string
	HTTPAddr         string
	MQTTAddr         string
	KaiserID         string
	HeartbeatTimeout time.Duration
	ShutdownTimeout  time.Duration
	LogLevel         slog.Level
	ProcessedEcho    bool
	CORSOrigins      []string
	// JWTSecretSource is file, environment or generated (docs/api.md §2.2);
	// JWTSecretFile is the configured file, if any.
	JWTSecretSource string
	JWTSecretFile   string
	WebSocket       live.Config
	Ingest          ingest.Config
}

// masked stands for a secret value (docs/api.md §16.2 uses the same text).
const masked = "***MASKED***"

type secretView struct {
	Source string  `json:"source"`
	File   *string `json:"file"`
	Value  string  `json:"value"`
}

type webSocketView struct {
	RatePerSecond        float64 `json:"rate_per_second"`
	QueueMax             int     `json:"queue_max"`
	WriteTimeoutSeconds  float64 `json:"write_timeout_seconds"`
	PingIntervalSeconds  float64 `json:"ping_interval_seconds"`
	PongTimeoutSeconds   float64 `json:"pong_timeout_seconds"`
	MaxConnections       int     `json:"max_connections"`
	MaxPerUser           int     `json:"max_connections_per_user"`
	FloodPerSecond       int     `json:"flood_messages_per_second"`
	FloodDurationSeconds float64 `json:"flood_duration_seconds"`
}

type ingestView struct {
	Workers               int     `json:"workers"`
	QueueCapacity         int     `json:"queue_capacity_per_device"`
	MaxDevices            int     `json:"max_devices_queued"`
	HandlerTimeoutSeconds float64 `json:"handler_timeout_seconds"`
	BlockingWaitSeconds   float64 `json:"blocking_wait_seconds"`
}

type configResponse struct {
	Success                 bool          `json:"success"`
	Version                 string        `json:"version"`
	Commit                  string        `json:"commit"`
	DataDir                 string        `json:"data_dir"`
	HTTPAddr                string        `json:"http_addr"`
	MQTTAddr                string        `json:"mqtt_addr"`
	KaiserID                string        `json:"kaiser_id"`
	HeartbeatTimeoutSeconds float64       `json:"heartbeat_timeout_seconds"`
	ShutdownTimeoutSeconds  float64       `json:"shutdown_timeout_seconds"`
	LogLevel                string        `json:"log_level"`
	ProcessedEcho           bool          `json:"processed_echo"`
	CORSOrigins             []string      `json:"cors_origins"`
	JWTSecret               secretView    `json:"jwt_secret"`
	WebSocket               webSocketView `json:"websocket"`
	Ingest                  ingestView    `json:"ingest"`
}

func (st Settings) view() configResponse {
	secret := secretView{Source: st.JWTSecretSource, Value: masked}
	if st.JWTSecretFile != "" {
		secret.File = &st.JWTSecretFile
	}
	ws, in := st.WebSocket, st.Ingest
	origins := st.CORSOrigins
	if origins == nil {
		origins = []string{}
	}
	return configResponse{
		Success:                 true,
		Version:                 st.Version,
		Commit:                  st.Commit,
		DataDir:                 st.DataDir,
		HTTPAddr:                st.HTTPAddr,
		MQTTAddr:                st.MQTTAddr,
		KaiserID:                st.KaiserID,
		HeartbeatTimeoutSeconds: st.HeartbeatTimeout.Seconds(),
		ShutdownTimeoutSeconds:  st.ShutdownTimeout.Seconds(),
		LogLevel:                st.LogLevel.String(),
		ProcessedEcho:           st.ProcessedEcho,
		CORSOrigins:             origins,
		JWTSecret:               secret,
		WebSocket: webSocketView{
			RatePerSecond:        max(ws.Rate, 0), // a negative rate disables the limit: 0 as in docs/api.md §17.4
			QueueMax:             ws.QueueMax,
			WriteTimeoutSeconds:  ws.WriteTimeout.Seconds(),
			PingIntervalSeconds:  ws.PingInterval.Seconds(),
			PongTimeoutSeconds:   ws.PongTimeout.Seconds(),
			MaxConnections:       ws.MaxTotal,
			MaxPerUser:           ws.MaxPerUser,
			FloodPerSecond:       ws.FloodPerSec,
			FloodDurationSeconds: ws.FloodDuration.Seconds(),
		},
		Ingest: ingestView{
			Workers:               in.Workers,
			QueueCapacity:         in.QueueCapacity,
			MaxDevices:            in.MaxDevices,
			HandlerTimeoutSeconds: in.HandlerTimeout.Seconds(),
			BlockingWaitSeconds:   in.BlockingWait.Seconds(),
		},
	}
}

func (d *Debug) configRoutes() {
	d.admin("GET", "/api/v1/debug/config", "The hub's effective configuration, secrets masked", d.config,
		nil, configResponse{})
}

func (d *Debug) config(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	if d.settings == nil {
		api.WriteError(w, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "configuration not available", nil)
		return
	}
	api.WriteJSON(w, http.StatusOK, d.settings().view())
}
