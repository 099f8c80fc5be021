package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
)

// healthRoutes are the hub's own health: overall, the fleet's, and measured
// in detail (API §13).
func (s *Server) healthRoutes() {
	g := s.Group("health")
	g.Public("GET", "/api/v1/health", "Overall health", s.health, Returns(healthResponse{}))
	g.Add("GET", "/api/v1/health/esp", auth.RoleViewer, "Fleet health summary", s.healthESP,
		Returns(fleetHealth{}))
	g.Add("GET", "/api/v1/health/detailed", auth.RoleViewer, "Detailed, measured health", s.healthDetailed,
		Returns(detailedHealth{}))
}

type healthResponse struct {
	Success       bool   `json:"success"`
	Status        string `json:"status"`
	Version       string `json:"version"`
	Environment   string `json:"environment"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	Timestamp     int64  `json:"timestamp"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := "healthy"
	if !s.BrokerConnected() {
		status = "degraded"
	}
	if dp, ok := diskPercent(s.deps.DataDir); ok && dp > 90 {
		status = "degraded"
	}
	if mp, ok := memory(); ok && mp.percent > 90 {
		status = "degraded"
	}
	if s.deps.Store == nil || s.deps.Store.Ping(ctx) != nil {
		status = "unhealthy"
	}
	WriteJSON(w, http.StatusOK, healthResponse{
		Success:       true,
		Status:        status,
		Version:       s.deps.Version,
		Environment:   "production",
		UptimeSeconds: int64(time.Since(s.startedAt).Seconds()),
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
		m.sum += float64(MetadataInt(v))
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

func (s *Server) healthESP(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := fleetHealth{Success: true, Devices: []deviceHealthRow{}}
	var heap, rssi mean
	for _, d := range s.devices.List() {
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
			Name:              NullString(d.Name),
			Status:            d.Status,
			LastSeen:          NullTimestamp(d.LastSeen),
			UptimeSeconds:     md["last_uptime"],
			HeapFree:          md["last_heap_free"],
			WifiRSSI:          md["last_wifi_rssi"],
			SensorCount:       md["last_sensor_count"],
			ActuatorCount:     md["last_actuator_count"],
			SubscriptionsLost: d.SubscriptionsLost,
		})
	}
	out.AvgHeapFree, out.AvgWifiRSSI = heap.value(), rssi.value()
	WriteJSON(w, http.StatusOK, out)
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
}

type brokerHealth struct {
	Connected         bool    `json:"connected"`
	BrokerHost        string  `json:"broker_host"`
	BrokerPort        *int    `json:"broker_port"`
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
	WebSocket       map[string]any    `json:"websocket"`
	System          systemHealth      `json:"system"`
	Components      []componentHealth `json:"components"`
	Warnings        []string          `json:"warnings"`
}

func (s *Server) healthDetailed(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	up := int64(time.Since(s.startedAt).Seconds())
	out := detailedHealth{
		Success:         true,
		Status:          "healthy",
		Version:         s.deps.Version,
		Environment:     "production",
		UptimeSeconds:   up,
		UptimeFormatted: FormatUptime(up),
		Timestamp:       time.Now().Unix(),
		Database:        s.databaseHealth(r.Context()),
		MQTT:            s.brokerHealth(),
		WebSocket:       s.wsHealth(),
		Warnings:        []string{},
	}
	out.System = s.systemHealth(&out.Warnings)
	out.Components = []componentHealth{
		component("database", out.Database.Connected, "sqlite"),
		component("mqtt", out.MQTT.Connected, "embedded broker"),
	}
	if !out.MQTT.Connected {
		out.Status = "degraded"
		out.Warnings = append(out.Warnings, "MQTT broker not connected")
	}
	if !out.Database.Connected {
		out.Status = "unhealthy"
	}
	WriteJSON(w, http.StatusOK, out)
}

func (s *Server) databaseHealth(ctx context.Context) databaseHealth {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	err := s.deps.Store.Ping(ctx)
	db := databaseHealth{
		Connected:    err == nil,
		DatabaseType: "sqlite",
		LatencyMS:    float64(time.Since(start).Microseconds()) / 1000,
	}
	if s.deps.DB != nil {
		st := s.deps.DB.Stats()
		db.PoolSize, db.PoolInUse, db.PoolIdle = &st.MaxOpenConnections, &st.InUse, &st.Idle
	}
	return db
}

func (s *Server) brokerHealth() brokerHealth {
	mq := brokerHealth{
		Connected:     s.BrokerConnected(),
		BrokerHost:    "embedded",
		Subscriptions: len(contract.HubSubscriptions),
	}
	if in := s.Ingest(); in != nil {
		n, last := in.Totals()
		mq.MessagesReceived = n
		if !last.IsZero() {
			mq.LastMessageAt = Timestamp(last)
		}
	}
	mq.MessagesPublished, mq.PublishFailures = s.publishCounts()
	return mq
}

func (s *Server) wsHealth() map[string]any {
	if s.ws == nil {
		return map[string]any{
			"active_connections":      0,
			"total_messages_sent":     0,
			"messages_coalesced":      0,
			"slow_client_disconnects": 0,
		}
	}
	return s.WSStats()
}

// systemHealth measures the host, adding a warning for each resource above 90 %.
func (s *Server) systemHealth(warnings *[]string) systemHealth {
	sys := systemHealth{Goroutines: runtime.NumGoroutine()}
	if m, ok := memory(); ok {
		sys.MemoryPercent, sys.MemoryUsedMB, sys.MemoryTotalMB = &m.percent, &m.usedMB, &m.totalMB
		if m.percent > 90 {
			*warnings = append(*warnings, "memory use above 90 %")
		}
	}
	if dp, ok := diskPercent(s.deps.DataDir); ok {
		sys.DiskPercent, sys.DiskFreeGB = &dp, diskFreeGB(s.deps.DataDir)
		if dp > 90 {
			*warnings = append(*warnings, "disk use above 90 %")
		}
	}
	if cpu, ok := s.cpu.percent(); ok {
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
func (s *Server) publishCounts() (*int64, *int64) {
	if s.deps.Registry == nil {
		return nil, nil
	}
	mfs, err := s.deps.Registry.Gather()
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

// MetadataInt is a number of a device's metadata as int64: float64 once
// stored, int64 or int when fresh from a heartbeat; 0 for anything else.
func MetadataInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return 0
}

// FormatUptime is seconds as "1d 2h 3m".
func FormatUptime(sec int64) string {
	d, h, m := sec/86400, sec%86400/3600, sec%3600/60
	return fmt.Sprintf("%dd %dh %dm", d, h, m)
}
