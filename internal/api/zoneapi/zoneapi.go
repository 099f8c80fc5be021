// Package zoneapi serves the zone and subzone routes of docs/api.md §9
// (/api/v1/zones, /api/v1/zone, /api/v1/subzone) over internal/zone. The
// hub registers them on the HTTP server, so the HTTP core never imports the
// zone domain.
package zoneapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/zone"
)

// server is what the routes need from the HTTP layer.
type server interface {
	Register(rt api.Route, h api.Authed)
	DeviceFromPath(w http.ResponseWriter, r *http.Request) (device.Device, bool)
	DeviceError(w http.ResponseWriter, r *http.Request, id string, err error)
	Internal(w http.ResponseWriter, r *http.Request, err error)
}

var _ server = (*api.Server)(nil)

// zones is what the routes need from the zone domain.
type zones interface {
	Zones(status string) []zone.Info
	Zone(zoneID string) (zone.Info, error)
	CreateZone(ctx context.Context, nz zone.NewZone) (zone.Info, error)
	UpdateZone(ctx context.Context, zoneID string, p zone.ZonePatch) (zone.Info, error)
	DeleteZone(ctx context.Context, zoneID string) error
	Archive(ctx context.Context, zoneID string) (zone.Info, error)
	Reactivate(ctx context.Context, zoneID string) (zone.Info, error)

	Assign(ctx context.Context, espID string, a zone.Assignment) (zone.AssignResult, error)
	Unassign(ctx context.Context, espID, actor string) (zone.RemoveResult, error)
	DeviceZone(espID string) (zone.DeviceZone, error)
	DevicesInZone(zoneID string) []zone.DeviceZone
	Unassigned() []string

	AssignSubzone(ctx context.Context, espID string, r zone.SubzoneRequest) (zone.SubzoneResult, error)
	RemoveSubzone(ctx context.Context, espID, subzoneID string) (zone.SubzoneResult, error)
	SetSafeMode(ctx context.Context, espID, subzoneID string, on bool, reason string) (zone.SubzoneResult, error)
	Subzones(espID string) (string, []zone.SubzoneInfo, error)
	Subzone(espID, subzoneID string) (zone.SubzoneInfo, error)
}

var _ zones = (*zone.Service)(nil)

// routes serves docs/api.md §9.
type routes struct {
	srv   server
	zones zones
}

// Register adds the zone and subzone routes to srv.
func Register(srv server, z zones) {
	rs := &routes{srv: srv, zones: z}
	rs.zoneRoutes()
	rs.assignmentRoutes()
	rs.subzoneRoutes()
}

func (rs *routes) add(method, path, minRole, summary string, h api.Authed, request, response any) {
	rs.srv.Register(api.Route{
		Method:   method,
		Path:     path,
		MinRole:  minRole,
		Summary:  summary,
		Tag:      "zones",
		Request:  request,
		Response: response,
	}, h)
}

func (rs *routes) zoneRoutes() {
	const base = "/api/v1/zones"
	const one = base + "/{zone_id}"
	rs.add("GET", base, auth.RoleViewer, "List zones", rs.listZones, nil, zonePage{})
	rs.add("POST", base, auth.RoleOperator, "Create a zone", rs.createZone, createZoneRequest{}, zoneObject{})
	rs.add("GET", one, auth.RoleViewer, "Get a zone", rs.getZone, nil, zoneObject{})
	rs.add("PATCH", one, auth.RoleOperator, "Change a zone's name or description", rs.patchZone,
		patchZoneRequest{}, zoneObject{})
	rs.add("DELETE", one, auth.RoleOperator, "Delete a zone without devices", rs.deleteZone, nil, nil)
	rs.add("POST", one+"/archive", auth.RoleOperator, "Archive a zone (it takes no new devices)",
		rs.zoneAction(rs.zones.Archive), nil, zoneObject{})
	rs.add("POST", one+"/reactivate", auth.RoleOperator, "Reactivate an archived zone",
		rs.zoneAction(rs.zones.Reactivate), nil, zoneObject{})
}

func (rs *routes) assignmentRoutes() {
	const dev = "/api/v1/zone/devices/{esp_id}"
	rs.add("POST", dev+"/assign", auth.RoleOperator, "Assign a device to a zone (published to the device)",
		rs.withDevice(rs.assign), assignRequest{}, assignResponse{})
	rs.add("DELETE", dev+"/zone", auth.RoleOperator, "Remove a device from its zone",
		rs.withDevice(rs.unassign), nil, removeResponse{})
	rs.add("GET", dev, auth.RoleViewer, "A device's zone", rs.withDevice(rs.deviceZone), nil, deviceZoneObject{})
	// The second segment is a parameter: /zone/{zone_id}/devices and
	// /zone/devices/{esp_id} overlap in /zone/devices/devices, which the
	// standard mux refuses (docs/decisions/0008-zones.md).
	rs.add("GET", "/api/v1/zone/{zone_id}/{collection}", auth.RoleViewer,
		"The devices of a zone (collection must be `devices`)", rs.zoneDevices, nil, []deviceZoneObject{})
	rs.add("GET", "/api/v1/zone/unassigned", auth.RoleViewer, "Approved devices without a zone",
		rs.unassigned, nil, []string{})
}

func (rs *routes) subzoneRoutes() {
	const base = "/api/v1/subzone/devices/{esp_id}/subzones"
	const one = base + "/{subzone_id}"
	rs.add("POST", base+"/assign", auth.RoleOperator, "Assign pins to a subzone (published to the device)",
		rs.withDevice(rs.assignSubzone), subzoneRequestDoc{}, subzoneResponse{})
	rs.add("GET", base, auth.RoleViewer, "A device's subzones", rs.withDevice(rs.listSubzones), nil, subzoneList{})
	rs.add("GET", one, auth.RoleViewer, "Get a subzone", rs.withDevice(rs.getSubzone), nil, subzoneObject{})
	rs.add("DELETE", one, auth.RoleOperator, "Remove a subzone", rs.withDevice(rs.removeSubzone), nil,
		subzoneResponse{})
	rs.add("POST", one+"/safe-mode", auth.RoleOperator, "Isolate a subzone's pins (newer firmware only)",
		rs.withDevice(rs.safeMode(true)), safeModeRequest{}, safeModeResponse{})
	rs.add("DELETE", one+"/safe-mode", auth.RoleOperator, "End a subzone's pin isolation (newer firmware only)",
		rs.withDevice(rs.safeMode(false)), safeModeRequest{}, safeModeResponse{})
}

// deviceHandler is a handler for a route whose {esp_id} names an existing device.
type deviceHandler func(w http.ResponseWriter, r *http.Request, p auth.Principal, d device.Device)

// withDevice validates the esp_id path parameter (422) and loads the device (404).
func (rs *routes) withDevice(h deviceHandler) api.Authed {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		if d, ok := rs.srv.DeviceFromPath(w, r); ok {
			h(w, r, p, d)
		}
	}
}

// fail answers a domain error with its code (docs/api.md §1.6, §9).
func (rs *routes) fail(w http.ResponseWriter, r *http.Request, espID string, err error) {
	var pe *zone.PinError
	switch {
	case errors.As(err, &pe) && pe.Conflict:
		api.WriteError(w, r, http.StatusConflict, "GPIO_CONFLICT", pe.Msg, map[string]any{
			"gpio":               pe.GPIO,
			"conflict_type":      "subzone",
			"conflict_component": pe.Holder,
		})
	case errors.As(err, &pe):
		api.WriteError(w, r, http.StatusBadRequest, "GPIO_RESERVED", pe.Msg, map[string]any{
			"gpio":          pe.GPIO,
			"conflict_type": "system",
		})
	case errors.Is(err, zone.ErrNotFound):
		api.WriteError(w, r, http.StatusNotFound, "NOT_FOUND", "zone not found", nil)
	case errors.Is(err, zone.ErrSubzoneNotFound):
		api.WriteError(w, r, http.StatusNotFound, "SUBZONE_NOT_FOUND", "subzone not found",
			map[string]any{"esp_id": espID})
	case errors.Is(err, zone.ErrDuplicate):
		api.WriteError(w, r, http.StatusConflict, "DUPLICATE", "a zone with this id already exists", nil)
	case errors.Is(err, zone.ErrInvalidState):
		api.WriteError(w, r, http.StatusConflict, "INVALID_STATE", err.Error(), nil)
	case errors.Is(err, zone.ErrNoZone):
		api.WriteError(w, r, http.StatusBadRequest, "NO_ZONE_ASSIGNED", "the device has no zone; assign one first",
			map[string]any{"esp_id": espID})
	case errors.Is(err, zone.ErrZoneMismatch):
		api.WriteError(w, r, http.StatusBadRequest, "ZONE_MISMATCH", err.Error(), map[string]any{"esp_id": espID})
	case errors.Is(err, zone.ErrNotSupported):
		api.WriteError(w, r, http.StatusConflict, "NOT_SUPPORTED_BY_FIRMWARE", err.Error(),
			map[string]any{"esp_id": espID})
	case errors.Is(err, zone.ErrUnreachable):
		api.WriteError(w, r, http.StatusConflict, "DEVICE_UNREACHABLE",
			fmt.Sprintf("ESP device '%s' cannot receive until it reboots", espID),
			map[string]any{"esp_id": espID, "reason": "reboot_required"})
	case errors.Is(err, zone.ErrUnavailable):
		api.WriteError(w, r, http.StatusServiceUnavailable, "MQTT_UNAVAILABLE", "the message could not be published",
			map[string]any{"esp_id": espID})
	default:
		rs.srv.DeviceError(w, r, espID, err) // device errors, else 500
	}
}

// zoneID is the {zone_id} path parameter. An id no zone can have answers
// 404 like an unknown one: there is nothing to validate it against.
func zoneID(r *http.Request) string { return strings.TrimSpace(r.PathValue("zone_id")) }
