// Package deviceapi serves the device registry of docs/api.md §6 under
// /api/v1/esp/devices: listing and registering devices, the approval
// lifecycle (approve, reject, back to pending), soft deletion, factory reset,
// a device's health and ingest counters, and recent discoveries.
package deviceapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/credential"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/zone"
)

// devices is what the device routes need from the device registry.
type devices interface {
	Get(espID string) (device.Device, error)
	List() []device.Device
	Register(ctx context.Context, reg device.Registration, actor string) (device.Device, error)
	Update(ctx context.Context, espID string, p device.Patch) (device.Device, error)
	Delete(ctx context.Context, espID, actor string) error
	Approve(ctx context.Context, espID, actor, name string) (device.Device, error)
	Reject(ctx context.Context, espID, actor, reason string) (device.Device, error)
	SetPending(ctx context.Context, espID, actor, reason string) (device.Device, error)
	FactoryReset(ctx context.Context, espID string) error
}

var _ devices = (*device.Service)(nil)

// sensors is what the device routes need from the sensor configs: a
// device's sensors with their latest readings for the device object, and
// removing them with the device.
type sensors interface {
	ByDevice(espID string) []sensor.Config
	LatestOf(c sensor.Config) (store.Reading, bool)
	DeleteDevice(ctx context.Context, espID string) error
}

var _ sensors = (*sensor.Service)(nil)

// actuators is what the device object shows of a device's actuators.
type actuators interface {
	ForDevice(espID string) []actuator.View
}

var _ actuators = (*actuator.Service)(nil)

// zones performs the zone assignment an approval may ask for (docs/api.md §6.3, §9).
type zones interface {
	Assign(ctx context.Context, espID string, a zone.Assignment) (zone.AssignResult, error)
}

var _ zones = (*zone.Service)(nil)

// credentials issues a device's MQTT credentials for the embedded broker
// (docs/api.md §6.3).
type credentials interface {
	Issue(ctx context.Context, espID, actor string) (credential.Issued, error)
}

var _ credentials = (*credential.Service)(nil)

// recorder is where the device routes record what a user did to a device.
type recorder interface {
	Record(ctx context.Context, e store.AuditEntry)
}

var _ recorder = (*audit.Log)(nil)

// Deps are what the device routes need from the hub.
type Deps struct {
	Devices   devices
	Sensors   sensors
	Actuators actuators // nil: devices show no actuators
	Zones     zones     // nil: an approval's zone_id is refused
	Audit     recorder
	// Credentials issues MQTT credentials; nil answers 409: no broker of
	// the hub's checks them.
	Credentials credentials
}

type handlers struct {
	srv         *api.Server
	devices     devices
	sensors     sensors
	actuators   actuators
	zones       zones
	audit       recorder
	credentials credentials
}

var statuses = []string{device.StatusPending, device.StatusApproved, device.StatusOnline, device.StatusOffline,
	device.StatusRejected, device.StatusError, device.StatusUnknown}

// deviceResponse is the device object (docs/api.md §6.2).
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
	Actuators                []actuatorView `json:"actuators"`
	Sensors                  []sensorView   `json:"sensors"`
	WifiRSSI                 *int64         `json:"wifi_rssi"`
	HeapFree                 *int64         `json:"heap_free"`
	Uptime                   *int64         `json:"uptime"`
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
		Name:              api.NullString(d.Name),
		ZoneID:            api.NullString(d.ZoneID),
		ZoneName:          api.NullString(d.ZoneName),
		MasterZoneID:      api.NullString(d.MasterZoneID),
		KaiserID:          d.KaiserID,
		IsZoneMaster:      isMaster,
		IPAddress:         api.NullString(d.IPAddress),
		MACAddress:        api.NullString(mac),
		FirmwareVersion:   api.NullString(d.FirmwareVersion),
		HardwareType:      api.NullString(d.HardwareType),
		Capabilities:      caps,
		Metadata:          meta,
		Status:            d.Status,
		LastSeen:          api.NullTimestamp(d.LastSeen),
		SubscriptionsLost: d.SubscriptionsLost,
		RebootRequired:    d.RebootRequired,
		DiscoveredAt:      api.NullTimestamp(d.DiscoveredAt),
		ApprovedAt:        api.NullTimestamp(d.ApprovedAt),
		ApprovedBy:        api.NullString(d.ApprovedBy),
		RejectionReason:   api.NullString(d.RejectionReason),
		WifiRSSI:          lastInt(md, "last_wifi_rssi"),
		HeapFree:          lastInt(md, "last_heap_free"),
		Uptime:            lastInt(md, "last_uptime"),
		CreatedAt:         api.Timestamp(d.CreatedAt),
		UpdatedAt:         api.Timestamp(d.UpdatedAt),
	}
}

// deviceOut is the device object with its configured sensors and actuators
// and what clients render of them.
func (h *handlers) deviceOut(d device.Device) deviceResponse {
	out := deviceJSON(d)
	out.Sensors = h.sensorViews(d.DeviceID)
	out.Actuators = h.actuatorViews(d.DeviceID)
	out.SensorCount, out.ActuatorCount = len(out.Sensors), len(out.Actuators)
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
		DiscoveredAt:   api.NullTimestamp(d.DiscoveredAt),
		LastSeen:       api.NullTimestamp(d.LastSeen),
		IPAddress:      api.NullString(d.IPAddress),
		ZoneID:         api.NullString(zone),
		HeapFree:       md["last_heap_free"],
		WifiRSSI:       md["last_wifi_rssi"],
		SensorCount:    md["last_sensor_count"],
		ActuatorCount:  md["last_actuator_count"],
		HeartbeatCount: md["heartbeat_count"],
		HardwareType:   api.NullString(d.HardwareType),
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

func (q *registerDeviceRequest) Validate(b *api.Body) {
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

// patchDeviceRequest changes only what it names (docs/api.md §1.2 partial updates).
type patchDeviceRequest struct {
	Name         *string         `json:"name" api:"max=100"`
	ZoneID       *string         `json:"zone_id" api:"max=32"`
	ZoneName     *string         `json:"zone_name" api:"max=100"`
	IsZoneMaster api.Field[bool] `json:"is_zone_master"`
	Capabilities map[string]any  `json:"capabilities"`
	Metadata     map[string]any  `json:"metadata"`
}

func (q *patchDeviceRequest) Validate(b *api.Body) {
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

func (q *resetRequest) Validate(b *api.Body) {
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

// credentialsResponse is a device's new MQTT credentials, shown once.
type credentialsResponse struct {
	Success  bool   `json:"success"`
	DeviceID string `json:"device_id"`
	Username string `json:"username"`
	Password string `json:"password"`
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

// Register adds the device routes to s.
func Register(s *api.Server, d Deps) {
	const (
		list = "/api/v1/esp/devices"
		one  = list + "/{esp_id}"
	)
	h := &handlers{
		srv:         s,
		devices:     d.Devices,
		sensors:     d.Sensors,
		actuators:   d.Actuators,
		zones:       d.Zones,
		audit:       d.Audit,
		credentials: d.Credentials,
	}

	g := s.Group("devices")
	g.Add("GET", list, auth.RoleViewer, "List devices", h.listDevices,
		api.Returns(api.PageOf[deviceResponse]{}))
	g.Add("POST", list, auth.RoleOperator, "Register a device (approved)", h.registerDevice,
		api.Accepts(registerDeviceRequest{}), api.Returns(deviceResponse{}))
	g.Add("GET", list+"/pending", auth.RoleViewer, "Devices waiting for approval", h.pendingDevices,
		api.Returns(pendingList{}))
	g.Add("GET", one, auth.RoleViewer, "Get a device", h.srv.WithDevice(h.getDevice),
		api.Returns(deviceResponse{}))
	g.Add("PATCH", one, auth.RoleOperator, "Update stored device fields", h.patchDevice,
		api.Accepts(patchDeviceRequest{}), api.Returns(deviceResponse{}))
	g.Add("DELETE", one, auth.RoleOperator, "Soft-delete a device", h.srv.WithDevice(h.deleteDevice))
	g.Add("POST", one+"/approve", auth.RoleOperator, "Approve a pending or rejected device",
		h.approveDevice, api.Accepts(approveRequest{}), api.Returns(approveResponse{}))
	g.Add("POST", one+"/reject", auth.RoleOperator, "Reject a pending device",
		reasonTransition[rejectRequest](h, "device_rejected", "device rejected", device.StatusRejected, h.devices.Reject),
		api.Accepts(rejectRequest{}), api.Returns(transitionResponse{}))
	g.Add("POST", one+"/set-pending", auth.RoleOperator, "Return a device to pending approval",
		reasonTransition[setPendingRequest](h, "device_set_pending", "device set to pending approval",
			device.StatusPending, h.devices.SetPending),
		api.Accepts(setPendingRequest{}), api.Returns(transitionResponse{}))
	g.Add("POST", one+"/restart", auth.RoleOperator, "Not supported by any firmware (409)",
		h.srv.WithDevice(h.restartDevice))
	g.Add("POST", one+"/reset", auth.RoleOperator, "Factory-reset a device", h.resetDevice,
		api.Accepts(resetRequest{}), api.Returns(commandSent{}))
	g.Add("GET", one+"/health", auth.RoleViewer, "A device's health and ingest counters",
		h.srv.WithDevice(h.deviceHealth), api.Returns(deviceHealthResponse{}))
	g.Add("POST", one+"/assign_kaiser", auth.RoleOperator,
		"Not provided (moving the root leaves baseline devices deaf)", h.assignKaiser)
	g.Add("GET", "/api/v1/esp/discovery", auth.RoleViewer, "Recently discovered devices", h.discovery,
		api.Returns(discoveryResponse{}))
	g.Add("POST", one+"/mqtt-credentials", auth.RoleOperator,
		"Issue or rotate a device's MQTT credentials (the password is shown once)", h.issueCredentials,
		api.Returns(credentialsResponse{}))
}

// auditDevice records what a user did to the device id.
func (h *handlers) auditDevice(r *http.Request, p auth.Principal, event, id, msg string, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	details["actor"] = p.User.Username
	details["esp_id"] = id
	h.audit.Record(r.Context(), api.UserEntry(r, p.User.Username, event, msg, details))
}

func (h *handlers) listDevices(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
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
	var match []device.Device
	for _, d := range h.devices.List() {
		if (status == "" && d.Status == device.StatusPending) || (status != "" && d.Status != status) ||
			(zone != "" && d.ZoneID != zone) || (hw != "" && d.HardwareType != hw) {
			continue
		}
		match = append(match, d)
	}
	// Only the page's devices get their sensors and actuators looked up:
	// a fleet of hundreds is read a page at a time (the dashboard's
	// overview), and each lookup scans the component configs.
	total := len(match)
	from, to := min((page-1)*size, total), min(page*size, total)
	rows := make([]deviceResponse, 0, to-from)
	for _, d := range match[from:to] {
		rows = append(rows, h.deviceOut(d))
	}
	api.WriteJSON(w, http.StatusOK, api.NewPage(rows, page, size, total))
}

func (h *handlers) getDevice(w http.ResponseWriter, _ *http.Request, _ auth.Principal, d device.Device) {
	api.WriteJSON(w, http.StatusOK, h.deviceOut(d))
}

func (h *handlers) pendingDevices(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := []pendingDevice{}
	for _, d := range h.devices.List() {
		if d.Status == device.StatusPending {
			out = append(out, pendingJSON(d))
		}
	}
	api.WriteJSON(w, http.StatusOK, pendingList{Success: true, Devices: out, Count: len(out)})
}

func (h *handlers) discovery(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := []pendingDevice{}
	fresh := 0
	for _, d := range h.devices.List() {
		if d.Status != device.StatusPending {
			continue
		}
		out = append(out, pendingJSON(d))
		if d.DiscoveredAt != nil && time.Since(*d.DiscoveredAt) < time.Hour {
			fresh++
		}
	}
	api.WriteJSON(w, http.StatusOK, discoveryResponse{
		Success:         true,
		DiscoveredCount: len(out),
		NewCount:        fresh,
		Devices:         out,
	})
}

func (h *handlers) registerDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req registerDeviceRequest
	if !api.Decode(w, r, &req) {
		return
	}
	if mac := req.MACAddress; mac != "" && h.macTaken(mac) {
		api.WriteError(w, r, http.StatusConflict, "DUPLICATE", "MAC address already registered",
			map[string]any{"mac_address": mac})
		return
	}

	d, err := h.devices.Register(r.Context(), req.registration(), p.User.Username)
	if err != nil {
		h.srv.DeviceError(w, r, req.DeviceID, err)
		return
	}
	h.auditDevice(r, p, "device_registered", d.DeviceID, "device registered", nil)
	api.WriteJSON(w, http.StatusCreated, h.deviceOut(d))
}

func (h *handlers) macTaken(mac string) bool {
	for _, d := range h.devices.List() {
		if m, _ := d.Metadata["mac_address"].(string); m == mac {
			return true
		}
	}
	return false
}

func (h *handlers) patchDevice(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	var req patchDeviceRequest
	if !api.Decode(w, r, &req) {
		return
	}
	d, ok := h.srv.DeviceFromPath(w, r)
	if !ok {
		return
	}

	d, err := h.devices.Update(r.Context(), d.DeviceID, req.patch())
	if err != nil {
		h.srv.DeviceError(w, r, d.DeviceID, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, h.deviceOut(d))
}

func (h *handlers) deleteDevice(w http.ResponseWriter, r *http.Request, p auth.Principal, d device.Device) {
	if err := h.devices.Delete(r.Context(), d.DeviceID, p.User.Username); err != nil {
		h.srv.DeviceError(w, r, d.DeviceID, err)
		return
	}
	if h.sensors != nil {
		if err := h.sensors.DeleteDevice(r.Context(), d.DeviceID); err != nil {
			h.srv.Logger().Error("removing sensor configs of a deleted device failed", "esp_id", d.DeviceID, "error", err)
		}
	}
	h.auditDevice(r, p, "device_deleted", d.DeviceID, "device deleted", map[string]any{"previous_status": d.Status})
	w.WriteHeader(http.StatusNoContent)
}

func (h *handlers) approveDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req approveRequest
	if !api.Decode(w, r, &req) {
		return
	}
	d, ok := h.srv.DeviceFromPath(w, r)
	if !ok {
		return
	}

	prev := d.Status
	d, err := h.devices.Approve(r.Context(), d.DeviceID, p.User.Username, req.Name)
	if err != nil {
		h.srv.DeviceError(w, r, r.PathValue("esp_id"), err)
		return
	}
	h.auditDevice(r, p, "device_approved", d.DeviceID, "device approved", map[string]any{"previous_status": prev})
	if req.ZoneID != "" && !h.assignOnApproval(w, r, p, d, req) {
		return
	}
	api.WriteJSON(w, http.StatusOK, approveResponse{
		Success:    true,
		Message:    "device approved",
		DeviceID:   d.DeviceID,
		Status:     device.StatusApproved,
		ApprovedBy: d.ApprovedBy,
		ApprovedAt: api.NullTimestamp(d.ApprovedAt),
	})
}

// assignOnApproval performs the zone assignment an approval asks for
// (docs/api.md §6.3: as POST /zone/devices/{esp_id}/assign would). The
// approval is already committed; a refused assignment answers its error
// with approved: true in the details, so the client knows what stands.
func (h *handlers) assignOnApproval(w http.ResponseWriter, r *http.Request, p auth.Principal,
	d device.Device, req approveRequest) bool {
	if h.zones == nil {
		h.srv.Internal(w, r, errors.New("zone assignment is not available"))
		return false
	}
	res, err := h.zones.Assign(r.Context(), d.DeviceID, zone.Assignment{
		ZoneID:   req.ZoneID,
		ZoneName: req.ZoneName,
		Actor:    p.User.Username,
	})
	switch {
	case errors.Is(err, zone.ErrInvalidState):
		api.WriteError(w, r, http.StatusConflict, "INVALID_STATE", "device approved; zone not assigned: "+err.Error(),
			map[string]any{"approved": true, "zone_id": req.ZoneID})
		return false
	case err != nil:
		h.srv.Internal(w, r, fmt.Errorf("zone assignment after approval: %w", err))
		return false
	}
	h.auditDevice(r, p, "zone_assigned", d.DeviceID, "zone assigned on approval", map[string]any{
		"zone_id":   res.ZoneID,
		"mqtt_sent": res.Sent,
	})
	return true
}

// reasonTransition is the shared shape of reject and set-pending: a reason
// in the body, a domain transition, an audit entry and a small reply.
func reasonTransition[T reasonRequest](h *handlers, event, msg, status string,
	apply func(ctx context.Context, id, actor, reason string) (device.Device, error)) api.Authed {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		var req T
		if !api.Decode(w, r, &req) {
			return
		}
		d, ok := h.srv.DeviceFromPath(w, r)
		if !ok {
			return
		}

		prev, reason := d.Status, req.reason()
		d, err := apply(r.Context(), d.DeviceID, p.User.Username, reason)
		if err != nil {
			h.srv.DeviceError(w, r, r.PathValue("esp_id"), err)
			return
		}
		h.auditDevice(r, p, event, d.DeviceID, msg, map[string]any{"previous_status": prev, "reason": reason})

		out := transitionResponse{
			Success:  true,
			Message:  msg,
			DeviceID: d.DeviceID,
			Status:   status,
		}
		if status == device.StatusRejected {
			out.RejectionReason = &reason
		}
		api.WriteJSON(w, http.StatusOK, out)
	}
}

func (h *handlers) restartDevice(w http.ResponseWriter, r *http.Request, p auth.Principal, d device.Device) {
	h.auditDevice(r, p, "device_restart_requested", d.DeviceID, "restart requested; not supported by firmware",
		map[string]any{"command_sent": false, "outcome": "not_supported"})
	api.WriteError(w, r, http.StatusConflict, "NOT_SUPPORTED_BY_FIRMWARE",
		"no firmware version has a reboot command; nothing was sent", map[string]any{"esp_id": d.DeviceID})
}

func (h *handlers) assignKaiser(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	api.WriteError(w, r, http.StatusNotImplemented, "NOT_IMPLEMENTED",
		"moving a device to another kaiser root leaves baseline firmware deaf until it reboots", nil)
}

func (h *handlers) resetDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req resetRequest
	if !api.Decode(w, r, &req) {
		return
	}
	d, ok := h.srv.DeviceFromPath(w, r)
	if !ok {
		return
	}
	if !req.Confirm {
		api.WriteError(w, r, http.StatusBadRequest, "CONFIRMATION_REQUIRED", "factory reset requires confirm: true", nil)
		return
	}

	err := h.devices.FactoryReset(r.Context(), d.DeviceID)
	if errors.Is(err, device.ErrNotApproved) || errors.Is(err, device.ErrOffline) {
		h.srv.DeviceError(w, r, d.DeviceID, err)
		return
	}
	sent := err == nil
	h.auditDevice(r, p, "device_factory_reset", d.DeviceID, "factory reset", map[string]any{"command_sent": sent})
	if !sent {
		api.WriteError(w, r, http.StatusServiceUnavailable, "MQTT_UNAVAILABLE", "the broker did not accept the command", nil)
		return
	}
	api.WriteJSON(w, http.StatusOK, commandSent{
		Success:     true,
		Message:     "factory reset sent",
		DeviceID:    d.DeviceID,
		Command:     "factory_reset",
		CommandSent: true,
	})
}

func (h *handlers) deviceHealth(w http.ResponseWriter, _ *http.Request, _ auth.Principal, d device.Device) {
	md := d.Metadata
	out := deviceHealthResponse{
		Success:         true,
		DeviceID:        d.DeviceID,
		Status:          d.Status,
		LastSeen:        api.NullTimestamp(d.LastSeen),
		UptimeFormatted: api.FormatUptime(api.MetadataInt(md["last_uptime"])),
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
	if in := h.srv.Ingest(); in != nil {
		c := in.DeviceCounters(d.DeviceID)
		out.Counters = &c
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// issueCredentials issues or rotates a pending or approved device's MQTT
// credentials. The reply is the only place the password appears: it is
// neither stored nor audited nor cached by the client.
func (h *handlers) issueCredentials(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id, ok := api.PathESPID(w, r)
	if !ok {
		return
	}
	if h.credentials == nil {
		api.WriteError(w, r, http.StatusConflict, "INVALID_STATE",
			"the hub's broker does not check device credentials here; the broker in use manages them",
			map[string]any{"esp_id": id})
		return
	}
	c, err := h.credentials.Issue(r.Context(), id, p.User.Username)
	if err != nil {
		h.srv.DeviceError(w, r, id, err)
		return
	}
	h.auditDevice(r, p, "device_credentials_issued", id, "MQTT credentials issued",
		map[string]any{"rotated": c.Rotated})
	w.Header().Set("Cache-Control", "no-store")
	api.WriteJSON(w, http.StatusCreated, credentialsResponse{
		Success:  true,
		DeviceID: c.DeviceID,
		Username: c.Username,
		Password: c.Password,
	})
}
