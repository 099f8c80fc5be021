package hub

import "github.com/kaiserhub/kaiser/internal/debugapi"

// hubQueues are the depths of the hub's internal queues for
// GET /health/detailed (docs/api.md §13). The health routes are registered
// before the ingest pipeline exists, so it looks the parts up when asked.
type hubQueues struct{ h *Hub }

// QueueDepths names each queue: the ingest pipeline (queued and in flight),
// the reading sink, and the writers of the two database files.
func (q hubQueues) QueueDepths() map[string]int {
	out := map[string]int{}
	if q.h.Ingest != nil {
		out["ingest"] = q.h.Ingest.Pending()
	}
	if q.h.Readings != nil {
		out["readings"] = q.h.Readings.Depth()
	}
	out["store_main"], out["store_control"] = q.h.Store.WriterDepths()
	return out
}

// settings is the effective configuration for GET /debug/config: the
// configuration with its defaults and what the running parts report. The
// JWT secret itself is not handed over, only where it comes from.
func (h *Hub) settings() debugapi.Settings {
	source := "generated"
	switch {
	case h.cfg.JWTSecretFile != "":
		source = "file"
	case h.cfg.JWTSecret != "":
		source = "environment"
	}
	return debugapi.Settings{
		Version:          h.cfg.Version,
		Commit:           h.cfg.Commit,
		DataDir:          h.cfg.DataDir,
		HTTPAddr:         h.HTTPAddr(),
		MQTTAddr:         h.MQTTAddr(),
		KaiserID:         h.cfg.KaiserID,
		HeartbeatTimeout: h.cfg.HeartbeatTimeout,
		ShutdownTimeout:  h.cfg.ShutdownTimeout,
		LogLevel:         h.cfg.LogLevel,
		ProcessedEcho:    !h.cfg.NoProcessedEcho,
		CORSOrigins:      h.API.CORSOrigins(),
		JWTSecretSource:  source,
		JWTSecretFile:    h.cfg.JWTSecretFile,
		WebSocket:        h.Live.Config(),
		Ingest:           h.Ingest.Config(),
	}
}
