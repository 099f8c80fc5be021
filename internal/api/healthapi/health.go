// Package healthapi serves the hub's measured health of docs/api.md §13: overall
// (GET /api/v1/health), the fleet as its heartbeats told it, and each
// component in detail with the host's resources. The probes an orchestrator
// asks (live, ready) and the metrics stay in the HTTP core.
package healthapi

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/prometheus/client_golang/prometheus"
)

// pool reports the database read pool: its size, the connections in use
// and the idle ones.
type pool interface {
	PoolStats() (size, inUse, idle int)
}

// fleet is what the fleet health needs from the device registry.
type fleet interface {
	List() []device.Device
}

var _ fleet = (*device.Service)(nil)

// queues reports the depth of each of the hub's internal queues by name.
type queues interface {
	QueueDepths() map[string]int
}

// Deps are the parts of the hub whose health the routes measure.
type Deps struct {
	Version string
	Store   api.Pinger
	DB      pool // the read pool
	// DatabaseType is database.database_type: "sqlite" (empty) or "postgresql".
	DatabaseType string
	Broker       api.BrokerState
	Registry     prometheus.Gatherer // for the publish counters
	DataDir      string
	Devices      fleet
	// DBFiles are the database files whose sizes are reported (names only).
	DBFiles []string
	Queues  queues
	// MQTTAuth is the broker's --mqtt-auth mode, "off" or "devices".
	MQTTAuth string
	// BrokerHost and BrokerPort name an external broker; empty: the
	// embedded one (docs/decisions/0023-external-broker.md).
	BrokerHost string
	BrokerPort int
}

type handlers struct {
	srv  *api.Server
	deps Deps
	cpu  cpuSampler
}

// Register adds the health routes to s.
func Register(s *api.Server, d Deps) {
	h := &handlers{srv: s, deps: d}

	g := s.Group("health")
	g.Public("GET", "/api/v1/health", "Overall health", h.health, api.Returns(healthResponse{}))
	g.Add("GET", "/api/v1/health/esp", auth.RoleViewer, "Fleet health summary", h.healthESP,
		api.Returns(fleetHealth{}))
	g.Add("GET", "/api/v1/health/detailed", auth.RoleViewer, "Detailed, measured health", h.healthDetailed,
		api.Returns(detailedHealth{}))
}

func (h *handlers) brokerConnected() bool { return h.deps.Broker != nil && h.deps.Broker.Connected() }

type healthResponse struct {
	Success       bool   `json:"success"`
	Status        string `json:"status"`
	Version       string `json:"version"`
	Environment   string `json:"environment"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	Timestamp     int64  `json:"timestamp"`
}

func (h *handlers) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := "healthy"
	if !h.brokerConnected() {
		status = "degraded"
	}
	if dp, ok := diskPercent(h.deps.DataDir); ok && dp > 90 {
		status = "degraded"
	}
	if mp, ok := memory(); ok && mp.percent > 90 {
		status = "degraded"
	}
	if h.deps.Store == nil || h.deps.Store.Ping(ctx) != nil {
		status = "unhealthy"
	}
	api.WriteJSON(w, http.StatusOK, healthResponse{
		Success:       true,
		Status:        status,
		Version:       h.deps.Version,
		Environment:   "production",
		UptimeSeconds: int64(h.srv.Uptime().Seconds()),
		Timestamp:     time.Now().Unix(),
	})
}

// deviceHealthRow is one device of the fleet summary, as its heartbeats told.
type deviceHealthRow struct {
	DeviceID          string  `json:"device_id"`
	Name              *string `json:"name"`
	Status            string  `json:"status"`
	LastSeen          *string `json:"last_seen"`
	UptimeSeconds     any     `json:"uptime_seconds"`
	HeapFree          any     `json:"heap_free"`
	WifiRSSI          any     `json:"wifi_rssi"`
	SensorCount       any     `json:"sensor_count"`
	ActuatorCount     any     `json:"actuator_count"`
	SubscriptionsLost bool    `json:"subscriptions_lost"`
}

type fleetHealth struct {
	Success        bool              `json:"success"`
	TotalDevices   int               `json:"total_devices"`
	OnlineCount    int               `json:"online_count"`
	OfflineCount   int               `json:"offline_count"`
	ErrorCount     int               `json:"error_count"`
	UnknownCount   int               `json:"unknown_count"`
	PendingCount   int               `json:"pending_count"`
	TotalSensors   int               `json:"total_sensors"`
	TotalActuators int               `json:"total_actuators"`
	AvgHeapFree    *float64          `json:"avg_heap_free"`
	AvgWifiRSSI    *float64          `json:"avg_wifi_rssi"`
	Devices        []deviceHealthRow `json:"devices"`
}

// mean accumulates an average that is null without samples.
type mean struct{ sum, n float64 }

func (m *mean) add(v any, ok bool) {
	if ok {
		m.sum += float64(api.MetadataInt(v))
		m.n++
	}
}

func (m mean) value() *float64 {
	if m.n == 0 {
		return nil
	}
	v := m.sum / m.n
	return &v
}

func (h *handlers) healthESP(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := fleetHealth{Success: true, Devices: []deviceHealthRow{}}
	var heap, rssi mean
	for _, d := range h.deps.Devices.List() {
		if !out.count(d.Status) {
			continue
		}
		md := d.Metadata
		v, ok := md["last_heap_free"]
		heap.add(v, ok)
		v, ok = md["last_wifi_rssi"]
		rssi.add(v, ok)
		out.Devices = append(out.Devices, deviceHealthRow{
			DeviceID:          d.DeviceID,
			Name:              api.NullString(d.Name),
			Status:            d.Status,
			LastSeen:          api.NullTimestamp(d.LastSeen),
			UptimeSeconds:     md["last_uptime"],
			HeapFree:          md["last_heap_free"],
			WifiRSSI:          md["last_wifi_rssi"],
			SensorCount:       md["last_sensor_count"],
			ActuatorCount:     md["last_actuator_count"],
			SubscriptionsLost: d.SubscriptionsLost,
		})
	}
	out.AvgHeapFree, out.AvgWifiRSSI = heap.value(), rssi.value()
	api.WriteJSON(w, http.StatusOK, out)
}

// count adds a device in status to the counters and reports whether it
// belongs to the fleet (pending and rejected devices do not).
func (f *fleetHealth) count(status string) bool {
	switch status {
	case device.StatusPending:
		f.PendingCount++
		return false
	case device.StatusRejected:
		return false
	case device.StatusOnline:
		f.OnlineCount++
	case device.StatusOffline:
		f.OfflineCount++
	case device.StatusError:
		f.ErrorCount++
	case device.StatusUnknown:
		f.UnknownCount++
	}
	f.TotalDevices++
	return true
}

type databaseHealth struct {
	Connected    bool    `json:"connected"`
	DatabaseType string  `json:"database_type"`
	LatencyMS    float64 `json:"latency_ms"`
	PoolSize     *int    `json:"pool_size"`
	PoolInUse    *int    `json:"pool_in_use"`
	PoolIdle     *int    `json:"pool_idle"`
	// SizeBytes is every file's database and write-ahead log together.
	SizeBytes int64          `json:"size_bytes"`
	Files     []databaseFile `json:"files"`
}

// databaseFile is one database file and its write-ahead log, by name only
// (no filesystem path leaves the hub).
type databaseFile struct {
	Name         string `json:"name"`
	SizeBytes    *int64 `json:"size_bytes"`
	WALSizeBytes *int64 `json:"wal_size_bytes"`
}

// ingestHealth is the pipeline's throughput, losses and backlog (docs/api.md §13).
type ingestHealth struct {
	MessagesPerSecond *float64         `json:"messages_per_second"`
	RateWindowSeconds int              `json:"rate_window_seconds"`
	Dropped           map[string]int64 `json:"dropped"`
	QueueDepths       map[string]int   `json:"queue_depths"`
}

// MQTTAuthOffWarning is the warning of a broker without device
// authentication, at start and in the detailed health.
const MQTTAuthOffWarning = "MQTT device authentication is off (--mqtt-auth off): " +
	"any client can connect with a device id and publish as that device; " +
	"issue device credentials and switch to --mqtt-auth devices"

type brokerHealth struct {
	Connected         bool    `json:"connected"`
	BrokerHost        string  `json:"broker_host"`
	BrokerPort        *int    `json:"broker_port"`
	AuthMode          string  `json:"auth_mode"`
	Subscriptions     int     `json:"subscriptions"`
	MessagesReceived  int64   `json:"messages_received"`
	MessagesPublished *int64  `json:"messages_published"`
	PublishFailures   *int64  `json:"publish_failures"`
	LastMessageAt     *string `json:"last_message_at"`
	OfflineBufferSize int     `json:"offline_buffer_size"`
}

type systemHealth struct {
	CPUPercent    *float64 `json:"cpu_percent"`
	MemoryPercent *float64 `json:"memory_percent"`
	MemoryUsedMB  *float64 `json:"memory_used_mb"`
	MemoryTotalMB *float64 `json:"memory_total_mb"`
	DiskPercent   *float64 `json:"disk_percent"`
	DiskFreeGB    *float64 `json:"disk_free_gb"`
	Goroutines    int      `json:"goroutines"`
}

type componentHealth struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

type detailedHealth struct {
	Success         bool              `json:"success"`
	Status          string            `json:"status"`
	Version         string            `json:"version"`
	Environment     string            `json:"environment"`
	UptimeSeconds   int64             `json:"uptime_seconds"`
	UptimeFormatted string            `json:"uptime_formatted"`
	Timestamp       int64             `json:"timestamp"`
	Database        databaseHealth    `json:"database"`
	MQTT            brokerHealth      `json:"mqtt"`
	Ingest          ingestHealth      `json:"ingest"`
	WebSocket       map[string]any    `json:"websocket"`
	System          systemHealth      `json:"system"`
	Components      []componentHealth `json:"components"`
	Warnings        []string          `json:"warnings"`
}

func (h *handlers) healthDetailed(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	up := int64(h.srv.Uptime().Seconds())
	out := detailedHealth{
		Success:         true,
		Status:          "healthy",
		Version:         h.deps.Version,
		Environment:     "production",
		UptimeSeconds:   up,
		UptimeFormatted: api.FormatUptime(up),
		Timestamp:       time.Now().Unix(),
		Database:        h.databaseHealth(r.Context()),
		MQTT:            h.brokerHealth(),
		Ingest:          h.ingestHealth(),
		WebSocket:       h.wsHealth(),
		Warnings:        []string{},
	}
	out.System = h.systemHealth(&out.Warnings)
	out.Components = []componentHealth{
		component("database", out.Database.Connected, out.Database.DatabaseType),
		component("mqtt", out.MQTT.Connected, h.brokerName()),
	}
	if !out.MQTT.Connected {
		out.Status = "degraded"
		out.Warnings = append(out.Warnings, "MQTT broker not connected")
	}
	if out.MQTT.AuthMode != "devices" && h.deps.BrokerHost == "" {
		// An external broker checks the devices itself, or not: not the hub's to say.
		out.Warnings = append(out.Warnings, MQTTAuthOffWarning)
	}
	if !out.Database.Connected {
		out.Status = "unhealthy"
	}
	api.WriteJSON(w, http.StatusOK, out)
}

func (h *handlers) databaseHealth(ctx context.Context) databaseHealth {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	err := h.deps.Store.Ping(ctx)
	db := databaseHealth{
		Connected:    err == nil,
		DatabaseType: cmp.Or(h.deps.DatabaseType, "sqlite"),
		LatencyMS:    float64(time.Since(start).Microseconds()) / 1000,
	}
	if h.deps.DB != nil {
		size, inUse, idle := h.deps.DB.PoolStats()
		db.PoolSize, db.PoolInUse, db.PoolIdle = &size, &inUse, &idle
	}
	db.Files = []databaseFile{}
	for _, path := range h.deps.DBFiles {
		f := databaseFile{Name: filepath.Base(path), SizeBytes: fileSize(path), WALSizeBytes: fileSize(path + "-wal")}
		for _, n := range []*int64{f.SizeBytes, f.WALSizeBytes} {
			if n != nil {
				db.SizeBytes += *n
			}
		}
		db.Files = append(db.Files, f)
	}
	return db
}

// fileSize is the size of the file at path, nil when it cannot be read (a
// write-ahead log that does not exist right now is 0 bytes).
func fileSize(path string) *int64 {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(path, "-wal"):
		var zero int64
		return &zero
	case err != nil:
		return nil
	}
	n := st.Size()
	return &n
}

// ingestHealth reads the pipeline's live counters; without a pipeline the
// rate cannot be measured (null) and nothing was dropped.
func (h *handlers) ingestHealth() ingestHealth {
	out := ingestHealth{
		RateWindowSeconds: int(ingest.RateWindow / time.Second),
		Dropped:           map[string]int64{},
		QueueDepths:       map[string]int{},
	}
	if in := h.srv.Ingest(); in != nil {
		rate := in.Rate()
		out.MessagesPerSecond, out.Dropped = &rate, in.Dropped()
	}
	if h.deps.Queues != nil {
		out.QueueDepths = h.deps.Queues.QueueDepths()
	}
	return out
}

// brokerName names the broker in the components list.
func (h *handlers) brokerName() string {
	if h.deps.BrokerHost != "" {
		return "external broker"
	}
	return "embedded broker"
}

func (h *handlers) brokerHealth() brokerHealth {
	mq := brokerHealth{
		Connected:     h.brokerConnected(),
		BrokerHost:    "embedded",
		AuthMode:      cmp.Or(h.deps.MQTTAuth, "off"),
		Subscriptions: len(contract.HubSubscriptions),
	}
	if h.deps.BrokerHost != "" {
		port := h.deps.BrokerPort
		mq.BrokerHost, mq.BrokerPort = h.deps.BrokerHost, &port
	}
	if in := h.srv.Ingest(); in != nil {
		n, last := in.Totals()
		mq.MessagesReceived = n
		if !last.IsZero() {
			mq.LastMessageAt = api.Timestamp(last)
		}
	}
	mq.MessagesPublished, mq.PublishFailures = h.publishCounts()
	return mq
}

// wsHealth is the live feed's counters, zero without a feed.
func (h *handlers) wsHealth() map[string]any {
	if st := h.srv.WSStats(); len(st) > 0 {
		return st
	}
	return map[string]any{
		"active_connections":      0,
		"total_messages_sent":     0,
		"messages_coalesced":      0,
		"slow_client_disconnects": 0,
	}
}

// systemHealth measures the host, adding a warning for each resource above 90 %.
func (h *handlers) systemHealth(warnings *[]string) systemHealth {
	sys := systemHealth{Goroutines: runtime.NumGoroutine()}
	if m, ok := memory(); ok {
		sys.MemoryPercent, sys.MemoryUsedMB, sys.MemoryTotalMB = &m.percent, &m.usedMB, &m.totalMB
		if m.percent > 90 {
			*warnings = append(*warnings, "memory use above 90 %")
		}
	}
	if dp, ok := diskPercent(h.deps.DataDir); ok {
		sys.DiskPercent, sys.DiskFreeGB = &dp, diskFreeGB(h.deps.DataDir)
		if dp > 90 {
			*warnings = append(*warnings, "disk use above 90 %")
		}
	}
	if cpu, ok := h.cpu.percent(); ok {
		sys.CPUPercent = &cpu
	}
	return sys
}

func component(name string, ok bool, msg string) componentHealth {
	st := "healthy"
	if !ok {
		st = "unhealthy"
	}
	return componentHealth{Name: name, Status: st, Message: msg}
}

// publishCounts sums the hub's publish counters from the metrics registry.
func (h *handlers) publishCounts() (*int64, *int64) {
	if h.deps.Registry == nil {
		return nil, nil
	}
	mfs, err := h.deps.Registry.Gather()
	if err != nil {
		return nil, nil
	}
	var pub, fail float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "god_kaiser_mqtt_messages_published_total":
				pub += m.GetCounter().GetValue()
			case "god_kaiser_mqtt_publish_failures_total":
				fail += m.GetCounter().GetValue()
			}
		}
	}
	p, f := int64(pub), int64(fail)
	return &p, &f
}

type memInfo struct {
	percent, usedMB, totalMB float64
}

// memory reads system memory from /proc/meminfo (Linux); ok is false elsewhere.
func memory() (memInfo, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return memInfo{}, false
	}
	defer f.Close()
	vals := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 {
			v, _ := strconv.ParseFloat(fields[1], 64)
			vals[strings.TrimSuffix(fields[0], ":")] = v
		}
	}
	total, avail := vals["MemTotal"], vals["MemAvailable"]
	if total == 0 {
		return memInfo{}, false
	}
	used := total - avail
	return memInfo{percent: used / total * 100, usedMB: used / 1024, totalMB: total / 1024}, true
}

func diskPercent(dir string) (float64, bool) {
	var st syscall.Statfs_t
	if dir == "" || syscall.Statfs(dir, &st) != nil || st.Blocks == 0 {
		return 0, false
	}
	return (1 - float64(st.Bavail)/float64(st.Blocks)) * 100, true
}

func diskFreeGB(dir string) *float64 {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return nil
	}
	gb := float64(st.Bavail) * float64(st.Bsize) / (1 << 30)
	return &gb
}
