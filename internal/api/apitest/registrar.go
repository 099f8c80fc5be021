package apitest

import (
	"errors"
	"net/http"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
)

// Registrar stands in for the HTTP core in a resource package's tests: it
// serves the registered routes on Mux as one principal and answers the
// core's device lookup and error helpers from a device getter, so a
// package's routes are tested without the authentication step.
type Registrar struct {
	Mux    *http.ServeMux
	Routes []api.Route

	as      auth.Principal
	devices func(espID string) (device.Device, error)
}

// NewRegistrar serves routes as the principal as, looking devices up with get.
func NewRegistrar(as auth.Principal, get func(espID string) (device.Device, error)) *Registrar {
	return &Registrar{Mux: http.NewServeMux(), as: as, devices: get}
}

func (s *Registrar) Register(rt api.Route, h api.Authed) {
	s.Routes = append(s.Routes, rt)
	s.Mux.HandleFunc(rt.Method+" "+rt.Path, func(w http.ResponseWriter, r *http.Request) {
		h(w, r, s.as)
	})
}

func (s *Registrar) DeviceFromPath(w http.ResponseWriter, r *http.Request) (device.Device, bool) {
	d, err := s.devices(r.PathValue("esp_id"))
	if err != nil {
		s.DeviceError(w, r, r.PathValue("esp_id"), err)
		return d, false
	}
	return d, true
}

// DeviceError answers the device errors with the core's codes.
func (s *Registrar) DeviceError(w http.ResponseWriter, r *http.Request, id string, err error) {
	switch {
	case errors.Is(err, device.ErrNotFound):
		api.WriteError(w, r, http.StatusNotFound, "ESP_NOT_FOUND", id, nil)
	case errors.Is(err, device.ErrDuplicate):
		api.WriteError(w, r, http.StatusConflict, "DUPLICATE_ESP", id, nil)
	case errors.Is(err, device.ErrNotApproved):
		api.WriteError(w, r, http.StatusConflict, "DEVICE_NOT_APPROVED", id, nil)
	case errors.Is(err, device.ErrOffline):
		api.WriteError(w, r, http.StatusConflict, "DEVICE_OFFLINE", id, nil)
	default:
		s.Internal(w, r, err)
	}
}

func (s *Registrar) Internal(w http.ResponseWriter, r *http.Request, _ error) {
	api.WriteError(w, r, http.StatusInternalServerError, "INTERNAL_ERROR", "internal error", nil)
}
