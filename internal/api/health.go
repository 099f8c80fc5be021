package api

import (
	"bufio"
	"context"
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

func (s *Server) healthRoutes() {
	s.public("GET", "/api/v1/health", "Overall health", "health", s.health)
	s.protected("GET", "/api/v1/health/esp", auth.RoleViewer, "Fleet health summary", "health", s.healthESP)
	s.protected("GET", "/api/v1/health/detailed", auth.RoleViewer, "Detailed, measured health", "health", s.healthDetailed)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := "healthy"
	if s.deps.Broker == nil || !s.deps.Broker.Connected() {
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
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "status": status, "version": s.deps.Version,
		"environment": "production", "uptime_seconds": int64(time.Since(s.startedAt).Seconds()), "timestamp": time.Now().Unix()})
}

func (s *Server) healthESP(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	var total, online, offline, errCount, unknown, pending int
	var heapSum, rssiSum, heapN, rssiN float64
	devices := []map[string]any{}
	for _, d := range s.devices.List() {
		switch d.Status {
		case device.StatusPending, device.StatusRejected:
			if d.Status == device.StatusPending {
				pending++
			}
			continue
		case device.StatusOnline:
			online++
		case device.StatusOffline:
			offline++
		case device.StatusError:
			errCount++
		case device.StatusUnknown:
			unknown++
		}
		total++
		md := d.Metadata
		if v, ok := md["last_heap_free"]; ok {
			heapSum += float64(toSeconds(v))
			heapN++
		}
		if v, ok := md["last_wifi_rssi"]; ok {
			rssiSum += float64(toSeconds(v))
			rssiN++
		}
		devices = append(devices, map[string]any{"device_id": d.DeviceID, "name": nullStr(d.Name), "status": d.Status,
			"last_seen": ts(d.LastSeen), "uptime_seconds": md["last_uptime"], "heap_free": md["last_heap_free"],
			"wifi_rssi": md["last_wifi_rssi"], "sensor_count": md["last_sensor_count"], "actuator_count": md["last_actuator_count"],
			"subscriptions_lost": d.SubscriptionsLost})
	}
	avg := func(sum, n float64) any {
		if n == 0 {
			return nil
		}
		return sum / n
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "total_devices": total, "online_count": online,
		"offline_count": offline, "error_count": errCount, "unknown_count": unknown, "pending_count": pending,
		"total_sensors": 0, "total_actuators": 0, "avg_heap_free": avg(heapSum, heapN), "avg_wifi_rssi": avg(rssiSum, rssiN),
		"devices": devices})
}

func (s *Server) healthDetailed(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var warnings []string
	components := []map[string]any{}
	start := time.Now()
	dbErr := s.deps.Store.Ping(ctx)
	latency := float64(time.Since(start).Microseconds()) / 1000
	db := map[string]any{"connected": dbErr == nil, "database_type": "sqlite", "latency_ms": latency,
		"pool_size": nil, "pool_in_use": nil, "pool_idle": nil}
	if s.deps.DB != nil {
		st := s.deps.DB.Stats()
		db["pool_size"], db["pool_in_use"], db["pool_idle"] = st.MaxOpenConnections, st.InUse, st.Idle
	}
	components = append(components, component("database", dbErr == nil, "sqlite"))
	connected := s.deps.Broker != nil && s.deps.Broker.Connected()
	var received int64
	var last any
	if s.deps.Ingest != nil {
		n, t := s.deps.Ingest.Totals()
		received = n
		if !t.IsZero() {
			last = tsv(t)
		}
	}
	published, failures := s.publishCounts()
	mq := map[string]any{"connected": connected, "broker_host": "embedded", "broker_port": nil,
		"subscriptions": len(contract.HubSubscriptions), "messages_received": received, "messages_published": published,
		"publish_failures": failures, "last_message_at": last, "offline_buffer_size": 0}
	components = append(components, component("mqtt", connected, "embedded broker"))
	wsStats := map[string]any{"active_connections": 0, "total_messages_sent": 0, "messages_coalesced": 0, "slow_client_disconnects": 0}
	if s.ws != nil {
		wsStats = s.WSStats()
	}
	sys := map[string]any{"cpu_percent": nil, "memory_percent": nil, "memory_used_mb": nil, "memory_total_mb": nil,
		"disk_percent": nil, "disk_free_gb": nil, "goroutines": runtime.NumGoroutine()}
	if m, ok := memory(); ok {
		sys["memory_percent"], sys["memory_used_mb"], sys["memory_total_mb"] = m.percent, m.usedMB, m.totalMB
		if m.percent > 90 {
			warnings = append(warnings, "memory use above 90 %")
		}
	}
	if dp, ok := diskPercent(s.deps.DataDir); ok {
		sys["disk_percent"] = dp
		sys["disk_free_gb"] = diskFreeGB(s.deps.DataDir)
		if dp > 90 {
			warnings = append(warnings, "disk use above 90 %")
		}
	}
	if cpu, ok := s.cpu.percent(); ok {
		sys["cpu_percent"] = cpu
	}
	status := "healthy"
	if !connected {
		status = "degraded"
		warnings = append(warnings, "MQTT broker not connected")
	}
	if dbErr != nil {
		status = "unhealthy"
	}
	if warnings == nil {
		warnings = []string{}
	}
	up := time.Since(s.startedAt)
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "status": status, "version": s.deps.Version,
		"environment": "production", "uptime_seconds": int64(up.Seconds()), "uptime_formatted": formatUptime(int64(up.Seconds())),
		"timestamp": time.Now().Unix(), "database": db, "mqtt": mq, "websocket": wsStats, "system": sys,
		"components": components, "warnings": warnings})
}

func component(name string, ok bool, msg string) map[string]any {
	st := "healthy"
	if !ok {
		st = "unhealthy"
	}
	return map[string]any{"name": name, "status": st, "message": msg}
}

// publishCounts sums the hub's publish counters from the metrics registry.
func (s *Server) publishCounts() (any, any) {
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
	return int64(pub), int64(fail)
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

func diskFreeGB(dir string) any {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return nil
	}
	return float64(st.Bavail) * float64(st.Bsize) / (1 << 30)
}
