package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// deviceService is what the HTTP layer needs from the device registry.
type deviceService interface {
	Get(espID string) (device.Device, error)
	List() []device.Device
	Register(ctx context.Context, reg device.Registration, actor string) (device.Device, error)
	Update(ctx context.Context, espID string, p device.Patch) (device.Device, error)
	Delete(ctx context.Context, espID, actor string) error
	Approve(ctx context.Context, espID, actor, name string) (device.Device, error)
	Reject(ctx context.Context, espID, actor, reason string) (device.Device, error)
	SetPending(ctx context.Context, espID, actor, reason string) (device.Device, error)
	FactoryReset(ctx context.Context, espID string) error
	PushConfig(ctx context.Context, espID, trigger string) (string, error)
	LastPush(espID string) *device.Push
}

var _ deviceService = (*device.Service)(nil)

// deviceSensors is what the device routes need from the sensor configs.
type deviceSensors interface {
	ByDevice(espID string) []sensor.Config
	DeleteDevice(ctx context.Context, espID string) error
}

var _ deviceSensors = (*sensor.Service)(nil)

var (
	espIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,31}$`)
	macPattern   = regexp.MustCompile(`^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$`)
	statuses     = []string{device.StatusPending, device.StatusApproved, device.StatusOnline, device.StatusOffline,
		device.StatusRejected, device.StatusError, device.StatusUnknown}
)

// deviceResponse is the device object (API §4).
type deviceResponse struct {
	ID                       string         `json:"id"`
	DeviceID                 string         `json:"device_id"`
	Name                     *string        `json:"name"`
	ZoneID                   *string        `json:"zone_id"`
	ZoneName                 *string        `json:"zone_name"`
	MasterZoneID             *string        `json:"master_zone_id"`
	KaiserID                 string         `json:"kaiser_id"`
	IsZoneMaster             bool           `json:"is_zone_master"`
	IPAddress                *string        `json:"ip_address"`
	MACAddress               *string        `json:"mac_address"`
	FirmwareVersion          *string        `json:"firmware_version"`
	HardwareType             *string        `json:"hardware_type"`
	Capabilities             map[string]any `json:"capabilities"`
	Metadata                 map[string]any `json:"metadata"`
	Status                   string         `json:"status"`
	LastSeen                 *string        `json:"last_seen"`
	SubscriptionsLost        bool           `json:"subscriptions_lost"`
	RebootRequired           bool           `json:"reboot_required"`
	SensorCount              int            `json:"sensor_count"`
	ActuatorCount            int            `json:"actuator_count"`
	AutoHeartbeat            bool           `json:"auto_heartbeat"`
	HeartbeatIntervalSeconds *int           `json:"heartbeat_interval_seconds"`
	DiscoveredAt             *string        `json:"discovered_at"`
	ApprovedAt               *string        `json:"approved_at"`
	ApprovedBy               *string        `json:"approved_by"`
	RejectionReason          *string        `json:"rejection_reason"`
	CreatedAt                *string        `json:"created_at"`
	UpdatedAt                *string        `json:"updated_at"`
}

func deviceJSON(d device.Device) deviceResponse {
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
	return deviceResponse{
		ID:                d.ID,
		DeviceID:          d.DeviceID,
		Name:              NullString(d.Name),
		ZoneID:            NullString(d.ZoneID),
		ZoneName:          NullString(d.ZoneName),
		MasterZoneID:      NullString(d.MasterZoneID),
		KaiserID:          d.KaiserID,
		IsZoneMaster:      isMaster,
		IPAddress:         NullString(d.IPAddress),
		MACAddress:        NullString(mac),
		FirmwareVersion:   NullString(d.FirmwareVersion),
		HardwareType:      NullString(d.HardwareType),
		Capabilities:      caps,
		Metadata:          meta,
		Status:            d.Status,
		LastSeen:          NullTimestamp(d.LastSeen),
		SubscriptionsLost: d.SubscriptionsLost,
		RebootRequired:    d.RebootRequired,
		DiscoveredAt:      NullTimestamp(d.DiscoveredAt),
		ApprovedAt:        NullTimestamp(d.ApprovedAt),
		ApprovedBy:        NullString(d.ApprovedBy),
		RejectionReason:   NullString(d.RejectionReason),
		CreatedAt:         Timestamp(d.CreatedAt),
		UpdatedAt:         Timestamp(d.UpdatedAt),
	}
}

// deviceOut is the device object with its configured component counts.
func (s *Server) deviceOut(d device.Device) deviceResponse {
	out := deviceJSON(d)
	if s.sensors != nil {
		out.SensorCount = len(s.sensors.ByDevice(d.DeviceID))
	}
	return out
}

// pendingDevice is a device waiting for approval with what its heartbeats told.
type pendingDevice struct {
	DeviceID       string  `json:"device_id"`
	DiscoveredAt   *string `json:"discovered_at"`
	LastSeen       *string `json:"last_seen"`
	IPAddress      *string `json:"ip_address"`
	ZoneID         *string `json:"zone_id"`
	HeapFree       any     `json:"heap_free"`
	WifiRSSI       any     `json:"wifi_rssi"`
	SensorCount    any     `json:"sensor_count"`
	ActuatorCount  any     `json:"actuator_count"`
	HeartbeatCount any     `json:"heartbeat_count"`
	HardwareType   *string `json:"hardware_type"`
}

func pendingJSON(d device.Device) pendingDevice {
	md := d.Metadata
	zone, _ := md["reported_zone_id"].(string)
	return pendingDevice{
		DeviceID:       d.DeviceID,
		DiscoveredAt:   NullTimestamp(d.DiscoveredAt),
		LastSeen:       NullTimestamp(d.LastSeen),
		IPAddress:      NullString(d.IPAddress),
		ZoneID:         NullString(zone),
		HeapFree:       md["last_heap_free"],
		WifiRSSI:       md["last_wifi_rssi"],
		SensorCount:    md["last_sensor_count"],
		ActuatorCount:  md["last_actuator_count"],
		HeartbeatCount: md["heartbeat_count"],
		HardwareType:   NullString(d.HardwareType),
	}
}

type pendingList struct {
	Success bool            `json:"success"`
	Devices []pendingDevice `json:"devices"`
	Count   int             `json:"count"`
}

type discoveryResponse struct {
	Success         bool            `json:"success"`
	DiscoveredCount int             `json:"discovered_count"`
	NewCount        int             `json:"new_count"`
	Devices         []pendingDevice `json:"devices"`
	ScanDurationMS  int             `json:"scan_duration_ms"`
}

type registerDeviceRequest struct {
	DeviceID        string         `json:"device_id" api:"required,min=1,max=31,pattern=esp_id"`
	Name            string         `json:"name" api:"max=100"`
	ZoneID          string         `json:"zone_id" api:"max=32"`
	ZoneName        string         `json:"zone_name" api:"max=100"`
	IPAddress       string         `json:"ip_address" api:"max=45"`
	MACAddress      string         `json:"mac_address" api:"max=17,pattern=mac"`
	FirmwareVersion string         `json:"firmware_version" api:"max=50"`
	HardwareType    string         `json:"hardware_type" api:"max=50"`
	Capabilities    map[string]any `json:"capabilities"`
	IsZoneMaster    bool           `json:"is_zone_master"`
}

func (q *registerDeviceRequest) Validate(b *Body) {
	if q.IPAddress != "" && net.ParseIP(q.IPAddress) == nil {
		b.Fail("ip_address", "must be an IPv4 or IPv6 address", "value_error")
	}
}

func (q *registerDeviceRequest) registration() device.Registration {
	fw := q.FirmwareVersion
	if fw == "" {
		fw = "unknown"
	}
	return device.Registration{
		DeviceID:        q.DeviceID,
		Name:            q.Name,
		ZoneID:          q.ZoneID,
		ZoneName:        q.ZoneName,
		IPAddress:       q.IPAddress,
		MACAddress:      q.MACAddress,
		FirmwareVersion: fw,
		HardwareType:    q.HardwareType,
		Capabilities:    q.Capabilities,
	}
}

// patchDeviceRequest changes only what it names (API §1.2 partial updates).
type patchDeviceRequest struct {
	Name         *string        `json:"name" api:"max=100"`
	ZoneID       *string        `json:"zone_id" api:"max=32"`
	ZoneName     *string        `json:"zone_name" api:"max=100"`
	IsZoneMaster Field[bool]    `json:"is_zone_master"`
	Capabilities map[string]any `json:"capabilities"`
	Metadata     map[string]any `json:"metadata"`
}

func (q *patchDeviceRequest) Validate(b *Body) {
	if _, ok := q.Metadata["capabilities"]; ok {
		b.Fail("metadata", "capabilities are set with the capabilities field", "value_error")
	}
}

func (q *patchDeviceRequest) patch() device.Patch {
	p := device.Patch{
		Name:            q.Name,
		ZoneID:          q.ZoneID,
		ZoneName:        q.ZoneName,
		Capabilities:    q.Capabilities,
		SetCapabilities: q.Capabilities != nil,
		Metadata:        q.Metadata,
	}
	if q.IsZoneMaster.Present {
		// An explicit null clears the flag.
		v := q.IsZoneMaster.Or(false)
		p.IsZoneMaster = &v
	}
	return p
}

type approveRequest struct {
	Name     string `json:"name" api:"max=100"`
	ZoneID   string `json:"zone_id" api:"max=32"`
	ZoneName string `json:"zone_name" api:"max=100"`
}

type approveResponse struct {
	Success    bool    `json:"success"`
	Message    string  `json:"message"`
	DeviceID   string  `json:"device_id"`
	Status     string  `json:"status"`
	ApprovedBy string  `json:"approved_by"`
	ApprovedAt *string `json:"approved_at"`
}

// reasonRequest is a body with a reason, shared by reject and set-pending.
type reasonRequest interface{ reason() string }

type rejectRequest struct {
	Reason string `json:"reason" api:"required,min=1,max=500"`
}

func (q rejectRequest) reason() string { return q.Reason }

type setPendingRequest struct {
	Reason string `json:"reason" api:"max=500"`
}

func (q setPendingRequest) reason() string { return q.Reason }

type transitionResponse struct {
	Success         bool    `json:"success"`
	Message         string  `json:"message"`
	DeviceID        string  `json:"device_id"`
	Status          string  `json:"status"`
	RejectionReason *string `json:"rejection_reason,omitempty"`
}

type resetRequest struct {
	Confirm      bool `json:"confirm"`
	PreserveWifi bool `json:"preserve_wifi"`
}

func (q *resetRequest) Validate(b *Body) {
	if q.PreserveWifi {
		b.Fail("preserve_wifi", "a factory reset always erases Wi-Fi", "value_error")
	}
}

type commandSent struct {
	Success     bool   `json:"success"`
	Message     string `json:"message"`
	DeviceID    string `json:"device_id"`
	Command     string `json:"command"`
	CommandSent bool   `json:"command_sent"`
}

// deviceMetrics are the last heartbeat's values as the device reported them.
type deviceMetrics struct {
	Uptime        any `json:"uptime"`
	HeapFree      any `json:"heap_free"`
	WifiRSSI      any `json:"wifi_rssi"`
	SensorCount   any `json:"sensor_count"`
	ActuatorCount any `json:"actuator_count"`
	Timestamp     any `json:"timestamp"`
}

type deviceHealthResponse struct {
	Success         bool             `json:"success"`
	DeviceID        string           `json:"device_id"`
	Status          string           `json:"status"`
	Metrics         *deviceMetrics   `json:"metrics"`
	LastSeen        *string          `json:"last_seen"`
	UptimeFormatted string           `json:"uptime_formatted"`
	Counters        *ingest.Counters `json:"counters"`
}

func (s *Server) deviceRoutes() {
	const (
		list = "/api/v1/esp/devices"
		one  = list + "/{esp_id}"
	)
	s.protected("GET", list, auth.RoleViewer, "List devices", "devices", s.listDevices,
		returns(PageOf[deviceResponse]{}))
	s.protected("POST", list, auth.RoleOperator, "Register a device (approved)", "devices", s.registerDevice,
		accepts(registerDeviceRequest{}), returns(deviceResponse{}))
	s.protected("GET", list+"/pending", auth.RoleViewer, "Devices waiting for approval", "devices", s.pendingDevices,
		returns(pendingList{}))
	s.protected("GET", one, auth.RoleViewer, "Get a device", "devices", s.WithDevice(s.getDevice),
		returns(deviceResponse{}))
	s.protected("PATCH", one, auth.RoleOperator, "Update stored device fields", "devices", s.patchDevice,
		accepts(patchDeviceRequest{}), returns(deviceResponse{}))
	s.protected("DELETE", one, auth.RoleOperator, "Soft-delete a device", "devices", s.WithDevice(s.deleteDevice))
	s.protected("POST", one+"/approve", auth.RoleOperator, "Approve a pending or rejected device", "devices",
		s.approveDevice, accepts(approveRequest{}), returns(approveResponse{}))
	s.protected("POST", one+"/reject", auth.RoleOperator, "Reject a pending device", "devices",
		reasonTransition[rejectRequest](s, "device_rejected", "device rejected", device.StatusRejected, s.devices.Reject),
		accepts(rejectRequest{}), returns(transitionResponse{}))
	s.protected("POST", one+"/set-pending", auth.RoleOperator, "Return a device to pending approval", "devices",
		reasonTransition[setPendingRequest](s, "device_set_pending", "device set to pending approval",
			device.StatusPending, s.devices.SetPending),
		accepts(setPendingRequest{}), returns(transitionResponse{}))
	s.protected("POST", one+"/restart", auth.RoleOperator, "Not supported by any firmware (409)", "devices",
		s.WithDevice(s.restartDevice))
	s.protected("POST", one+"/reset", auth.RoleOperator, "Factory-reset a device", "devices", s.resetDevice,
		accepts(resetRequest{}), returns(commandSent{}))
	s.protected("GET", one+"/health", auth.RoleViewer, "A device's health and ingest counters", "devices",
		s.WithDevice(s.deviceHealth), returns(deviceHealthResponse{}))
	s.protected("POST", one+"/assign_kaiser", auth.RoleOperator,
		"Not provided (moving the root leaves baseline devices deaf)", "devices", s.assignKaiser)
	s.protected("GET", "/api/v1/esp/discovery", auth.RoleViewer, "Recently discovered devices", "devices", s.discovery,
		returns(discoveryResponse{}))
}

// knownDevice answers 404 for an optional device filter naming an unknown device.
func (s *Server) knownDevice(w http.ResponseWriter, r *http.Request, esp string) bool {
	if esp == "" {
		return true
	}
	if _, err := s.devices.Get(esp); err != nil {
		s.DeviceError(w, r, esp, err)
		return false
	}
	return true
}

func (s *Server) auditDevice(r *http.Request, p auth.Principal, event, id, msg string, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	details["actor"] = p.User.Username
	details["esp_id"] = id
	s.audit.Record(r.Context(), store.AuditEntry{
		EventType:     event,
		SourceType:    "user",
		SourceID:      p.User.Username,
		Message:       msg,
		Details:       details,
		IPAddress:     ClientIP(r),
		CorrelationID: RequestID(r),
	})
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := NewQuery(r)
	zone := q.Str("zone_id", 32)
	status := q.Str("status", 32)
	hw := q.Str("hardware_type", 50)
	page := q.Int("page", 1, 1, 1<<30)
	size := q.Int("page_size", 20, 1, 100)
	if status != "" && !slices.Contains(statuses, status) {
		q.Fail("status", "must be one of the device statuses", "enum")
	}
	if q.Done(w, r) {
		return
	}

	// Pending devices have their own list unless asked for by status.
	var rows []deviceResponse
	for _, d := range s.devices.List() {
		if (status == "" && d.Status == device.StatusPending) || (status != "" && d.Status != status) ||
			(zone != "" && d.ZoneID != zone) || (hw != "" && d.HardwareType != hw) {
			continue
		}
		rows = append(rows, s.deviceOut(d))
	}
	WritePage(w, rows, page, size)
}

func (s *Server) getDevice(w http.ResponseWriter, _ *http.Request, _ auth.Principal, d device.Device) {
	WriteJSON(w, http.StatusOK, s.deviceOut(d))
}

func (s *Server) pendingDevices(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := []pendingDevice{}
	for _, d := range s.devices.List() {
		if d.Status == device.StatusPending {
			out = append(out, pendingJSON(d))
		}
	}
	WriteJSON(w, http.StatusOK, pendingList{Success: true, Devices: out, Count: len(out)})
}

func (s *Server) discovery(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := []pendingDevice{}
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
	WriteJSON(w, http.StatusOK, discoveryResponse{
		Success:         true,
		DiscoveredCount: len(out),
		NewCount:        fresh,
		Devices:         out,
	})
}

func (s *Server) registerDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req registerDeviceRequest
	if !Decode(w, r, &req) {
		return
	}
	if mac := req.MACAddress; mac != "" && s.macTaken(mac) {
		WriteError(w, r, http.StatusConflict, "DUPLICATE", "MAC address already registered",
			map[string]any{"mac_address": mac})
		return
	}

	d, err := s.devices.Register(r.Context(), req.registration(), p.User.Username)
	if err != nil {
		s.DeviceError(w, r, req.DeviceID, err)
		return
	}
	s.auditDevice(r, p, "device_registered", d.DeviceID, "device registered", nil)
	WriteJSON(w, http.StatusCreated, s.deviceOut(d))
}

func (s *Server) macTaken(mac string) bool {
	for _, d := range s.devices.List() {
		if m, _ := d.Metadata["mac_address"].(string); m == mac {
			return true
		}
	}
	return false
}

func (s *Server) patchDevice(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	var req patchDeviceRequest
	if !Decode(w, r, &req) {
		return
	}
	d, ok := s.DeviceFromPath(w, r)
	if !ok {
		return
	}

	d, err := s.devices.Update(r.Context(), d.DeviceID, req.patch())
	if err != nil {
		s.DeviceError(w, r, d.DeviceID, err)
		return
	}
	WriteJSON(w, http.StatusOK, s.deviceOut(d))
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, p auth.Principal, d device.Device) {
	if err := s.devices.Delete(r.Context(), d.DeviceID, p.User.Username); err != nil {
		s.DeviceError(w, r, d.DeviceID, err)
		return
	}
	if s.sensors != nil {
		if err := s.sensors.DeleteDevice(r.Context(), d.DeviceID); err != nil {
			s.Logger().Error("removing sensor configs of a deleted device failed", "esp_id", d.DeviceID, "error", err)
		}
	}
	s.auditDevice(r, p, "device_deleted", d.DeviceID, "device deleted", map[string]any{"previous_status": d.Status})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) approveDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req approveRequest
	if !Decode(w, r, &req) {
		return
	}
	d, ok := s.DeviceFromPath(w, r)
	if !ok {
		return
	}

	prev := d.Status
	d, err := s.devices.Approve(r.Context(), d.DeviceID, p.User.Username, req.Name)
	if err != nil {
		s.DeviceError(w, r, r.PathValue("esp_id"), err)
		return
	}
	s.auditDevice(r, p, "device_approved", d.DeviceID, "device approved", map[string]any{"previous_status": prev})
	WriteJSON(w, http.StatusOK, approveResponse{
		Success:    true,
		Message:    "device approved",
		DeviceID:   d.DeviceID,
		Status:     device.StatusApproved,
		ApprovedBy: d.ApprovedBy,
		ApprovedAt: NullTimestamp(d.ApprovedAt),
	})
}

// reasonTransition is the shared shape of reject and set-pending: a reason
// in the body, a domain transition, an audit entry and a small reply.
func reasonTransition[T reasonRequest](s *Server, event, msg, status string,
	apply func(ctx context.Context, id, actor, reason string) (device.Device, error)) Authed {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		var req T
		if !Decode(w, r, &req) {
			return
		}
		d, ok := s.DeviceFromPath(w, r)
		if !ok {
			return
		}

		prev, reason := d.Status, req.reason()
		d, err := apply(r.Context(), d.DeviceID, p.User.Username, reason)
		if err != nil {
			s.DeviceError(w, r, r.PathValue("esp_id"), err)
			return
		}
		s.auditDevice(r, p, event, d.DeviceID, msg, map[string]any{"previous_status": prev, "reason": reason})

		out := transitionResponse{Success: true, Message: msg, DeviceID: d.DeviceID, Status: status}
		if status == device.StatusRejected {
			out.RejectionReason = &reason
		}
		WriteJSON(w, http.StatusOK, out)
	}
}

func (s *Server) restartDevice(w http.ResponseWriter, r *http.Request, p auth.Principal, d device.Device) {
	s.auditDevice(r, p, "device_restart_requested", d.DeviceID, "restart requested; not supported by firmware",
		map[string]any{"command_sent": false, "outcome": "not_supported"})
	WriteError(w, r, http.StatusConflict, "NOT_SUPPORTED_BY_FIRMWARE",
		"no firmware version has a reboot command; nothing was sent", map[string]any{"esp_id": d.DeviceID})
}

func (s *Server) assignKaiser(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	WriteError(w, r, http.StatusNotImplemented, "NOT_IMPLEMENTED",
		"moving a device to another kaiser root leaves baseline firmware deaf until it reboots", nil)
}

func (s *Server) resetDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req resetRequest
	if !Decode(w, r, &req) {
		return
	}
	d, ok := s.DeviceFromPath(w, r)
	if !ok {
		return
	}
	if !req.Confirm {
		WriteError(w, r, http.StatusBadRequest, "CONFIRMATION_REQUIRED", "factory reset requires confirm: true", nil)
		return
	}

	err := s.devices.FactoryReset(r.Context(), d.DeviceID)
	if errors.Is(err, device.ErrNotApproved) || errors.Is(err, device.ErrOffline) {
		s.DeviceError(w, r, d.DeviceID, err)
		return
	}
	sent := err == nil
	s.auditDevice(r, p, "device_factory_reset", d.DeviceID, "factory reset", map[string]any{"command_sent": sent})
	if !sent {
		WriteError(w, r, http.StatusServiceUnavailable, "MQTT_UNAVAILABLE", "the broker did not accept the command", nil)
		return
	}
	WriteJSON(w, http.StatusOK, commandSent{
		Success:     true,
		Message:     "factory reset sent",
		DeviceID:    d.DeviceID,
		Command:     "factory_reset",
		CommandSent: true,
	})
}

func (s *Server) deviceHealth(w http.ResponseWriter, _ *http.Request, _ auth.Principal, d device.Device) {
	md := d.Metadata
	out := deviceHealthResponse{
		Success:         true,
		DeviceID:        d.DeviceID,
		Status:          d.Status,
		LastSeen:        NullTimestamp(d.LastSeen),
		UptimeFormatted: FormatUptime(MetadataInt(md["last_uptime"])),
	}
	if _, ok := md["last_uptime"]; ok {
		out.Metrics = &deviceMetrics{
			Uptime:        md["last_uptime"],
			HeapFree:      md["last_heap_free"],
			WifiRSSI:      md["last_wifi_rssi"],
			SensorCount:   md["last_sensor_count"],
			ActuatorCount: md["last_actuator_count"],
			Timestamp:     md["last_heartbeat"],
		}
	}
	if in := s.Ingest(); in != nil {
		c := in.DeviceCounters(d.DeviceID)
		out.Counters = &c
	}
	WriteJSON(w, http.StatusOK, out)
}
