package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"time"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/store"
)

var (
	espIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,31}$`)
	macPattern   = regexp.MustCompile(`^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$`)
	statuses     = []string{device.StatusPending, device.StatusApproved, device.StatusOnline, device.StatusOffline,
		device.StatusRejected, device.StatusError, device.StatusUnknown}
)

func deviceJSON(d device.Device) map[string]any {
	md := d.Metadata
	meta := map[string]any{}
	for k, v := range md {
		if k != "capabilities" {
			meta[k] = v
		}
	}
	caps, _ := md["capabilities"].(map[string]any)
	if caps == nil {
		caps = map[string]any{}
	}
	isMaster, _ := md["is_zone_master"].(bool)
	mac, _ := md["mac_address"].(string)
	return map[string]any{
		"id": d.ID, "device_id": d.DeviceID, "name": nullStr(d.Name), "zone_id": nullStr(d.ZoneID), "zone_name": nullStr(d.ZoneName),
		"master_zone_id": nullStr(d.MasterZoneID), "kaiser_id": d.KaiserID, "is_zone_master": isMaster,
		"ip_address": nullStr(d.IPAddress), "mac_address": nullStr(mac), "firmware_version": nullStr(d.FirmwareVersion),
		"hardware_type": nullStr(d.HardwareType), "capabilities": caps, "metadata": meta, "status": d.Status,
		"last_seen": ts(d.LastSeen), "subscriptions_lost": d.SubscriptionsLost, "reboot_required": d.RebootRequired,
		"sensor_count": 0, "actuator_count": 0, "auto_heartbeat": false, "heartbeat_interval_seconds": nil,
		"discovered_at": ts(d.DiscoveredAt), "approved_at": ts(d.ApprovedAt), "approved_by": nullStr(d.ApprovedBy),
		"rejection_reason": nullStr(d.RejectionReason), "created_at": tsv(d.CreatedAt), "updated_at": tsv(d.UpdatedAt),
	}
}

// deviceOut is the device object with its configured component counts.
func (s *Server) deviceOut(d device.Device) map[string]any {
	out := deviceJSON(d)
	if s.sensors != nil {
		out["sensor_count"] = len(s.sensors.ByDevice(d.DeviceID))
	}
	return out
}

func pendingJSON(d device.Device) map[string]any {
	md := d.Metadata
	return map[string]any{"device_id": d.DeviceID, "discovered_at": ts(d.DiscoveredAt), "last_seen": ts(d.LastSeen),
		"ip_address": nullStr(d.IPAddress), "zone_id": nullStr(str(md["reported_zone_id"])), "heap_free": md["last_heap_free"],
		"wifi_rssi": md["last_wifi_rssi"], "sensor_count": md["last_sensor_count"], "actuator_count": md["last_actuator_count"],
		"heartbeat_count": md["heartbeat_count"], "hardware_type": nullStr(d.HardwareType)}
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func str(v any) string { s, _ := v.(string); return s }

func (s *Server) deviceRoutes() {
	s.protected("GET", "/api/v1/esp/devices", auth.RoleViewer, "List devices", "devices", s.listDevices)
	s.protected("POST", "/api/v1/esp/devices", auth.RoleOperator, "Register a device (approved)", "devices", s.registerDevice)
	s.protected("GET", "/api/v1/esp/devices/pending", auth.RoleViewer, "Devices waiting for approval", "devices", s.pendingDevices)
	s.protected("GET", "/api/v1/esp/devices/{esp_id}", auth.RoleViewer, "Get a device", "devices", s.withDevice(func(w http.ResponseWriter, _ *http.Request, _ auth.Principal, d device.Device) {
		WriteJSON(w, http.StatusOK, s.deviceOut(d))
	}))
	s.protected("PATCH", "/api/v1/esp/devices/{esp_id}", auth.RoleOperator, "Update stored device fields", "devices", s.patchDevice)
	s.protected("DELETE", "/api/v1/esp/devices/{esp_id}", auth.RoleOperator, "Soft-delete a device", "devices", s.withDevice(s.deleteDevice))
	s.protected("POST", "/api/v1/esp/devices/{esp_id}/approve", auth.RoleOperator, "Approve a pending or rejected device", "devices", s.approveDevice)
	s.protected("POST", "/api/v1/esp/devices/{esp_id}/reject", auth.RoleOperator, "Reject a pending device", "devices",
		s.reasonTransition(true, "device_rejected", "device rejected", device.StatusRejected, s.devices.Reject))
	s.protected("POST", "/api/v1/esp/devices/{esp_id}/set-pending", auth.RoleOperator, "Return a device to pending approval", "devices",
		s.reasonTransition(false, "device_set_pending", "device set to pending approval", device.StatusPending, s.devices.SetPending))
	s.protected("POST", "/api/v1/esp/devices/{esp_id}/restart", auth.RoleOperator, "Not supported by any firmware (409)", "devices", s.withDevice(s.restartDevice))
	s.protected("POST", "/api/v1/esp/devices/{esp_id}/reset", auth.RoleOperator, "Factory-reset a device", "devices", s.resetDevice)
	s.protected("GET", "/api/v1/esp/devices/{esp_id}/health", auth.RoleViewer, "A device's health and ingest counters", "devices", s.withDevice(s.deviceHealth))
	s.protected("POST", "/api/v1/esp/devices/{esp_id}/assign_kaiser", auth.RoleOperator, "Not provided (moving the root leaves baseline devices deaf)", "devices",
		func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
			WriteError(w, r, http.StatusNotImplemented, "NOT_IMPLEMENTED", "moving a device to another kaiser root leaves baseline firmware deaf until it reboots", nil)
		})
	s.protected("GET", "/api/v1/esp/discovery", auth.RoleViewer, "Recently discovered devices", "devices", s.discovery)
}

type deviceHandler func(w http.ResponseWriter, r *http.Request, p auth.Principal, d device.Device)

// withDevice validates the esp_id path parameter (422) and loads the device (404).
func (s *Server) withDevice(h deviceHandler) authed {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		if d, ok := s.deviceFromPath(w, r); ok {
			h(w, r, p, d)
		}
	}
}

func (s *Server) deviceFromPath(w http.ResponseWriter, r *http.Request) (device.Device, bool) {
	id := r.PathValue("esp_id")
	if !espIDPattern.MatchString(id) {
		pathError(w, r, "esp_id", "must be 1-31 characters of [A-Za-z0-9_-]")
		return device.Device{}, false
	}
	d, err := s.devices.Get(id)
	if err != nil {
		s.deviceError(w, r, id, err)
		return d, false
	}
	return d, true
}

// knownDevice answers 404 for an optional device filter naming an unknown device.
func (s *Server) knownDevice(w http.ResponseWriter, r *http.Request, esp string) bool {
	if esp == "" {
		return true
	}
	if _, err := s.devices.Get(esp); err != nil {
		s.deviceError(w, r, esp, err)
		return false
	}
	return true
}

func (s *Server) deviceError(w http.ResponseWriter, r *http.Request, id string, err error) {
	switch {
	case errors.Is(err, device.ErrNotFound):
		WriteError(w, r, http.StatusNotFound, "ESP_NOT_FOUND", fmt.Sprintf("ESP device '%s' not found", id), map[string]any{"esp_id": id})
	case errors.Is(err, device.ErrInvalidState):
		WriteError(w, r, http.StatusConflict, "INVALID_STATE", err.Error(), map[string]any{"esp_id": id})
	case errors.Is(err, device.ErrDuplicate):
		WriteError(w, r, http.StatusConflict, "DUPLICATE_ESP", fmt.Sprintf("ESP device '%s' already exists", id), map[string]any{"esp_id": id})
	case errors.Is(err, device.ErrNotApproved):
		WriteError(w, r, http.StatusConflict, "DEVICE_NOT_APPROVED", fmt.Sprintf("ESP device '%s' is not approved", id), map[string]any{"esp_id": id})
	case errors.Is(err, device.ErrOffline):
		WriteError(w, r, http.StatusConflict, "DEVICE_OFFLINE", fmt.Sprintf("ESP device '%s' is offline", id), map[string]any{"esp_id": id})
	default:
		s.internal(w, r, err)
	}
}

func (s *Server) auditDevice(r *http.Request, p auth.Principal, event, id, msg string, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	details["actor"] = p.User.Username
	details["esp_id"] = id
	s.audit.Record(r.Context(), store.AuditEntry{EventType: event, SourceType: "user", SourceID: p.User.Username,
		Message: msg, Details: details, IPAddress: clientIP(r), CorrelationID: RequestID(r)})
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := &query{r: r}
	zone := q.str("zone_id", 32)
	status := q.str("status", 32)
	hw := q.str("hardware_type", 50)
	page := q.integer("page", 1, 1, 1<<30)
	size := q.integer("page_size", 20, 1, 100)
	if status != "" && !contains(statuses, status) {
		q.fail("status", "must be one of the device statuses", "enum")
	}
	if q.done(w, r) {
		return
	}
	var rows []map[string]any
	for _, d := range s.devices.List() {
		if (status == "" && d.Status == device.StatusPending) || (status != "" && d.Status != status) ||
			(zone != "" && d.ZoneID != zone) || (hw != "" && d.HardwareType != hw) {
			continue
		}
		rows = append(rows, s.deviceOut(d))
	}
	writePage(w, rows, page, size)
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func (s *Server) pendingDevices(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := []map[string]any{}
	for _, d := range s.devices.List() {
		if d.Status == device.StatusPending {
			out = append(out, pendingJSON(d))
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "devices": out, "count": len(out)})
}

func (s *Server) discovery(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := []map[string]any{}
	fresh := 0
	for _, d := range s.devices.List() {
		if d.Status != device.StatusPending {
			continue
		}
		out = append(out, pendingJSON(d))
		if d.DiscoveredAt != nil && time.Since(*d.DiscoveredAt) < time.Hour {
			fresh++
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "discovered_count": len(out), "new_count": fresh, "devices": out, "scan_duration_ms": 0})
}

func (s *Server) registerDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	var reg device.Registration
	reg.DeviceID, _ = b.str("device_id", true, 1, 31, espIDPattern)
	reg.Name, _ = b.str("name", false, 0, 100, nil)
	reg.ZoneID, _ = b.str("zone_id", false, 0, 32, nil)
	reg.ZoneName, _ = b.str("zone_name", false, 0, 100, nil)
	if ip, ok := b.str("ip_address", false, 0, 45, nil); ok && ip != "" {
		if net.ParseIP(ip) == nil {
			b.fail("ip_address", "must be an IPv4 or IPv6 address", "value_error")
		}
		reg.IPAddress = ip
	}
	reg.MACAddress, _ = b.str("mac_address", false, 0, 17, macPattern)
	reg.FirmwareVersion, _ = b.str("firmware_version", false, 0, 50, nil)
	if reg.FirmwareVersion == "" {
		reg.FirmwareVersion = "unknown"
	}
	reg.HardwareType, _ = b.str("hardware_type", false, 0, 50, nil)
	reg.Capabilities, _ = b.object("capabilities")
	b.boolean("is_zone_master", false)
	if b.done(w, r) {
		return
	}
	if reg.MACAddress != "" {
		for _, d := range s.devices.List() {
			if m, _ := d.Metadata["mac_address"].(string); m != "" && m == reg.MACAddress {
				WriteError(w, r, http.StatusConflict, "DUPLICATE", "MAC address already registered", map[string]any{"mac_address": m})
				return
			}
		}
	}
	d, err := s.devices.Register(r.Context(), reg, p.User.Username)
	if err != nil {
		s.deviceError(w, r, reg.DeviceID, err)
		return
	}
	s.auditDevice(r, p, "device_registered", d.DeviceID, "device registered", nil)
	WriteJSON(w, http.StatusCreated, s.deviceOut(d))
}

func (s *Server) patchDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	patch := device.Patch{Name: b.optStr("name", 0, 100, nil), ZoneID: b.optStr("zone_id", 0, 32, nil),
		ZoneName: b.optStr("zone_name", 0, 100, nil)}
	if b.has("is_zone_master") {
		v := b.boolean("is_zone_master", false)
		patch.IsZoneMaster = &v
	}
	if c, ok := b.object("capabilities"); ok {
		patch.Capabilities, patch.SetCapabilities = c, true
	}
	if m, ok := b.object("metadata"); ok {
		for k := range m {
			if k == "capabilities" {
				b.fail("metadata", "capabilities are set with the capabilities field", "value_error")
			}
		}
		patch.Metadata = m
	}
	if b.done(w, r) {
		return
	}
	d, ok := s.deviceFromPath(w, r)
	if !ok {
		return
	}
	d, err := s.devices.Update(r.Context(), d.DeviceID, patch)
	if err != nil {
		s.deviceError(w, r, d.DeviceID, err)
		return
	}
	WriteJSON(w, http.StatusOK, s.deviceOut(d))
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, p auth.Principal, d device.Device) {
	if err := s.devices.Delete(r.Context(), d.DeviceID, p.User.Username); err != nil {
		s.deviceError(w, r, d.DeviceID, err)
		return
	}
	if s.sensors != nil {
		if err := s.sensors.DeleteDevice(r.Context(), d.DeviceID); err != nil {
			s.log.Error("removing sensor configs of a deleted device failed", "esp_id", d.DeviceID, "error", err)
		}
	}
	s.auditDevice(r, p, "device_deleted", d.DeviceID, "device deleted", map[string]any{"previous_status": d.Status})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) approveDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	name, _ := b.str("name", false, 0, 100, nil)
	b.str("zone_id", false, 0, 32, nil)
	b.str("zone_name", false, 0, 100, nil)
	if b.done(w, r) {
		return
	}
	d, ok := s.deviceFromPath(w, r)
	if !ok {
		return
	}
	prev := d.Status
	d, err := s.devices.Approve(r.Context(), d.DeviceID, p.User.Username, name)
	if err != nil {
		s.deviceError(w, r, r.PathValue("esp_id"), err)
		return
	}
	s.auditDevice(r, p, "device_approved", d.DeviceID, "device approved", map[string]any{"previous_status": prev})
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "device approved", "device_id": d.DeviceID,
		"status": device.StatusApproved, "approved_by": d.ApprovedBy, "approved_at": ts(d.ApprovedAt)})
}

// reasonTransition is the shared shape of reject and set-pending: a reason
// in the body, a domain transition, an audit entry and a small reply.
func (s *Server) reasonTransition(required bool, event, msg, status string,
	apply func(ctx context.Context, id, actor, reason string) (device.Device, error)) authed {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		b, ok := readBody(w, r)
		if !ok {
			return
		}
		min := 0
		if required {
			min = 1
		}
		reason, _ := b.str("reason", required, min, 500, nil)
		if b.done(w, r) {
			return
		}
		d, ok := s.deviceFromPath(w, r)
		if !ok {
			return
		}
		prev := d.Status
		d, err := apply(r.Context(), d.DeviceID, p.User.Username, reason)
		if err != nil {
			s.deviceError(w, r, r.PathValue("esp_id"), err)
			return
		}
		s.auditDevice(r, p, event, d.DeviceID, msg, map[string]any{"previous_status": prev, "reason": reason})
		out := map[string]any{"success": true, "message": msg, "device_id": d.DeviceID, "status": status}
		if status == device.StatusRejected {
			out["rejection_reason"] = reason
		}
		WriteJSON(w, http.StatusOK, out)
	}
}

func (s *Server) restartDevice(w http.ResponseWriter, r *http.Request, p auth.Principal, d device.Device) {
	s.auditDevice(r, p, "device_restart_requested", d.DeviceID, "restart requested; not supported by firmware",
		map[string]any{"command_sent": false, "outcome": "not_supported"})
	WriteError(w, r, http.StatusConflict, "NOT_SUPPORTED_BY_FIRMWARE", "no firmware version has a reboot command; nothing was sent",
		map[string]any{"esp_id": d.DeviceID})
}

func (s *Server) resetDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	confirm := b.boolean("confirm", false)
	if b.boolean("preserve_wifi", false) {
		b.fail("preserve_wifi", "a factory reset always erases Wi-Fi", "value_error")
	}
	if b.done(w, r) {
		return
	}
	d, ok := s.deviceFromPath(w, r)
	if !ok {
		return
	}
	if !confirm {
		WriteError(w, r, http.StatusBadRequest, "CONFIRMATION_REQUIRED", "factory reset requires confirm: true", nil)
		return
	}
	err := s.devices.FactoryReset(r.Context(), d.DeviceID)
	if errors.Is(err, device.ErrNotApproved) || errors.Is(err, device.ErrOffline) {
		s.deviceError(w, r, d.DeviceID, err)
		return
	}
	sent := err == nil
	s.auditDevice(r, p, "device_factory_reset", d.DeviceID, "factory reset", map[string]any{"command_sent": sent})
	if err != nil {
		WriteError(w, r, http.StatusServiceUnavailable, "MQTT_UNAVAILABLE", "the broker did not accept the command", nil)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "factory reset sent", "device_id": d.DeviceID,
		"command": "factory_reset", "command_sent": true})
}

func (s *Server) deviceHealth(w http.ResponseWriter, _ *http.Request, _ auth.Principal, d device.Device) {
	md := d.Metadata
	var metrics any
	if _, ok := md["last_uptime"]; ok {
		metrics = map[string]any{"uptime": md["last_uptime"], "heap_free": md["last_heap_free"], "wifi_rssi": md["last_wifi_rssi"],
			"sensor_count": md["last_sensor_count"], "actuator_count": md["last_actuator_count"], "timestamp": md["last_heartbeat"]}
	}
	var counters any
	if s.deps.Ingest != nil {
		counters = s.deps.Ingest.DeviceCounters(d.DeviceID)
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "device_id": d.DeviceID, "status": d.Status, "metrics": metrics,
		"last_seen": ts(d.LastSeen), "uptime_formatted": formatUptime(toSeconds(md["last_uptime"])), "counters": counters})
}

func toSeconds(v any) int64 {
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

func formatUptime(sec int64) string {
	d, h, m := sec/86400, sec%86400/3600, sec%3600/60
	return fmt.Sprintf("%dd %dh %dm", d, h, m)
}
