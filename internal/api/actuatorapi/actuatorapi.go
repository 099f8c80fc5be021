// Package actuatorapi serves the actuator routes of docs/api.md §8.1–8.3 under
// /api/v1/actuators: configuration, commands with every rejection of
// docs/domain.md §4.4 as its HTTP answer, command status, runtime status,
// history and alert configuration. The emergency routes (docs/api.md §8.4)
// belong to the emergency part. The hub registers these routes on the HTTP server.
package actuatorapi

import (
	"context"
	"net/http"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/store"
)

// server is what the routes need from the HTTP layer.
type server interface {
	Register(rt api.Route, h api.Authed)
	DeviceFromPath(w http.ResponseWriter, r *http.Request) (device.Device, bool)
	DeviceError(w http.ResponseWriter, r *http.Request, id string, err error)
	Internal(w http.ResponseWriter, r *http.Request, err error)
}

var _ server = (*api.Server)(nil)

// actuators is the actuator domain as the routes use it.
type actuators interface {
	List() []actuator.Config
	Get(espID string, gpio int) (actuator.Config, error)
	ByID(id string) (actuator.Config, error)
	Upsert(ctx context.Context, c actuator.Config) (actuator.Config, error)
	Delete(ctx context.Context, espID string, gpio int, issuedBy string) (actuator.Config, error)
	Push(ctx context.Context, espID string) (bool, error)
	Command(ctx context.Context, req actuator.Request) (actuator.Result, error)
	CommandByID(ctx context.Context, id string) (store.ActuatorCommand, error)
	State(espID string, gpio int) (actuator.StateView, error)
	History(ctx context.Context, espID string, gpio, limit int) ([]store.ActuatorCommand, int, error)
	SetAlertConfig(ctx context.Context, id string, patch map[string]any) (map[string]any, error)
}

var _ actuators = (*actuator.Service)(nil)

// devices is what the routes read of the device registry.
type devices interface {
	Get(espID string) (device.Device, error)
	LastPush(espID string) *device.Push
}

var _ devices = (*device.Service)(nil)

// auditLog records operators' configuration changes.
type auditLog interface {
	Record(ctx context.Context, e store.AuditEntry)
}

// Deps are what the routes need from the hub.
type Deps struct {
	Actuators actuators
	Devices   devices
	Audit     auditLog // nil: no audit entries
}

type routes struct {
	srv server
	Deps
}

// Register adds the actuator routes to srv.
func Register(srv server, d Deps) {
	rt := &routes{srv: srv, Deps: d}
	const (
		base   = "/api/v1/actuators"
		one    = base + "/{esp_id}/{gpio}"
		viewer = auth.RoleViewer
		op     = auth.RoleOperator
	)
	add := func(method, path, role, summary string, h api.Authed, req, resp any) {
		srv.Register(api.Route{
			Method:   method,
			Path:     path,
			MinRole:  role,
			Summary:  summary,
			Tag:      "actuators",
			Request:  req,
			Response: resp,
		}, h)
	}

	add("GET", base, viewer, "List actuator configs", rt.list, nil, page[configResponse]{})
	add("GET", one, viewer, "Get an actuator config (or, as {config_id}/alert-config, its alert configuration)",
		rt.get, nil, configResponse{})
	add("POST", one, op, "Create or replace an actuator config and push the device config", rt.upsert,
		upsertRequest{}, configResponse{})
	add("DELETE", one, op, "Delete an actuator config (OFF first)", rt.remove, nil, configResponse{})
	add("POST", one+"/command", op, "Command an actuator", rt.command, commandRequest{}, commandResponse{})
	add("GET", base+"/commands/{command_id}", viewer, "A command's lifecycle", rt.commandStatus, nil,
		commandStatusResponse{})
	add("GET", one+"/status", viewer, "An actuator's confirmed state", rt.status, nil, statusResponse{})
	add("GET", one+"/history", viewer, "An actuator's command history", rt.history, nil, historyResponse{})
	// GET {config_id}/alert-config overlaps GET commands/{command_id} without
	// either being more specific, which ServeMux refuses; the GET of {esp_id}/{gpio}
	// answers it (docs/decisions/0006).
	add("PATCH", base+"/{config_id}/alert-config", op, "Change an actuator's alert configuration",
		rt.patchAlertConfig, nil, alertConfigResponse{})
}

func (rt *routes) audit(r *http.Request, p auth.Principal, msg string, details map[string]any) {
	if rt.Audit == nil {
		return
	}
	rt.Audit.Record(r.Context(), store.AuditEntry{
		EventType:     "config_published",
		SourceType:    "user",
		SourceID:      p.User.Username,
		Message:       msg,
		Details:       details,
		CorrelationID: api.RequestID(r),
	})
}

// ts is t as a response timestamp, nil for none.
func ts(t *time.Time) *string {
	if t == nil {
		return nil
	}
	return api.Timestamp(*t)
}
