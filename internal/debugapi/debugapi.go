// Package debugapi serves the admin-only debug routes of docs/api.md §16 under
// /api/v1/debug: mock devices, which the simulator of internal/sim runs
// inside the hub over the real broker (docs/api.md §16.1), the scheduler's
// jobs (their schedules and statistics, and running one now), the hub's
// effective configuration with its secrets masked, and the read-only
// explorer of both database files (docs/api.md §16.2). The hub registers
// these routes on the HTTP server, so that the HTTP API itself never
// imports the simulator.
package debugapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/schedule"
	"github.com/kaiserhub/kaiser/internal/sensor"
)

// server is what the debug routes need from the HTTP layer.
type server interface {
	Register(rt api.Route, h api.Authed)
	DeviceFromPath(w http.ResponseWriter, r *http.Request) (device.Device, bool)
	DeviceError(w http.ResponseWriter, r *http.Request, id string, err error)
	SensorError(w http.ResponseWriter, r *http.Request, err error) bool
	Internal(w http.ResponseWriter, r *http.Request, err error)
}

var _ server = (*api.Server)(nil)

// devices is what mock devices need from the device registry.
type devices interface {
	List() []device.Device
	Register(ctx context.Context, reg device.Registration, actor string) (device.Device, error)
	Update(ctx context.Context, espID string, p device.Patch) (device.Device, error)
	Delete(ctx context.Context, espID, actor string) error
}

var _ devices = (*device.Service)(nil)

// sensors is what mock devices need from the sensor configs.
type sensors interface {
	Upsert(ctx context.Context, c sensor.Config) (sensor.Config, string, error)
	ByDevice(espID string) []sensor.Config
	Delete(ctx context.Context, id string) (sensor.Config, error)
	DeleteDevice(ctx context.Context, espID string) error
}

var _ sensors = (*sensor.Service)(nil)

// jobs is the scheduler as the maintenance routes see it.
type jobs interface {
	Stats() []schedule.Stats
	Schedules() []schedule.Schedule
	Location() *time.Location
	Trigger(name string) error
}

var _ jobs = (*schedule.Scheduler)(nil)

// Deps are what the debug routes need from the hub.
type Deps struct {
	Devices   devices
	Sensors   sensors
	Actuators actuators
	Jobs      jobs
	// MQTTAddr is the broker address mock devices connect to, asked at each start.
	MQTTAddr func() string
	// MaxMocks is the number of mock devices that may run at once (docs/api.md §16.1; default 100).
	MaxMocks int
	// Settings is the hub's effective configuration, asked at each request
	// (the broker's address is bound after the routes are registered).
	Settings func() Settings
	// Explorer reads the databases for the explorer of docs/api.md §16.2.
	Explorer explorer
	// ExplorerUnavailable, without an Explorer, is why there is none (the
	// hub runs on PostgreSQL): the explorer's routes then answer 501
	// NOT_IMPLEMENTED with it, instead of a 404 that reads like a typo.
	ExplorerUnavailable string
	// Credentials issues mock devices their MQTT credentials; nil: they
	// connect anonymously.
	Credentials Credentials
	// Logger receives what goes wrong outside a request (a mock that does
	// not resume); nil is slog.Default().
	Logger *slog.Logger
}

// Debug is the registered debug routes and the mock devices they run.
type Debug struct {
	srv       server
	devices   devices
	sensors   sensors
	actuators actuators
	jobs      jobs
	mocks     *runner
	settings  func() Settings
	explorer  explorer
	log       *slog.Logger
}

// Register adds the debug routes to srv.
func Register(srv server, d Deps) *Debug {
	if d.MaxMocks <= 0 {
		d.MaxMocks = 100
	}
	dbg := &Debug{
		srv:       srv,
		devices:   d.Devices,
		sensors:   d.Sensors,
		actuators: d.Actuators,
		jobs:      d.Jobs,
		mocks:     newRunner(d.MQTTAddr, d.MaxMocks, d.Credentials),
		settings:  d.Settings,
		explorer:  d.Explorer,
		log:       d.Logger,
	}
	if dbg.log == nil {
		dbg.log = slog.Default()
	}
	dbg.mockRoutes()
	dbg.maintenanceRoutes()
	dbg.configRoutes()
	if d.Explorer != nil || d.ExplorerUnavailable != "" {
		dbg.explorerRoutes(d.ExplorerUnavailable)
	}
	return dbg
}

// Resume restarts the mock devices whose simulation was running when the hub
// stopped (docs/domain.md §10.1).
func (d *Debug) Resume() {
	for _, dev := range d.devices.List() {
		if def, ok := mockDefOf(dev); ok && dev.Metadata["simulation_state"] == "running" {
			if err := d.mocks.start(context.Background(), def.in(dev)); err != nil {
				d.log.Error("mock device not resumed", "esp_id", dev.DeviceID, "error", err)
			}
		}
	}
}

// Stop ends every running simulation and waits for them (hub shutdown).
// A nil Debug (the hub failed before registering it) has nothing to stop.
func (d *Debug) Stop() {
	if d != nil {
		d.mocks.stopAll()
	}
}

// admin registers an admin-only debug route (docs/api.md §16: every debug route).
func (d *Debug) admin(method, path, summary string, h api.Authed, request, response any) {
	d.srv.Register(api.Route{
		Method:   method,
		Path:     path,
		MinRole:  auth.RoleAdmin,
		Summary:  summary,
		Tag:      "debug",
		Request:  request,
		Response: response,
	}, h)
}
