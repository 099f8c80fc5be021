package api

import (
	"net/http"
	"regexp"
	"strconv"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
)

// This file reads path parameters, answering 422 for a malformed one and 404
// for a device that does not exist.

// PathError answers 422 for the invalid path parameter name.
func PathError(w http.ResponseWriter, r *http.Request, name, msg string) {
	writeValidation(w, r, []fieldError{{Loc: []any{"path", name}, Msg: msg, Type: "string_pattern_mismatch"}})
}

// PathGPIO reads the {gpio} path parameter (0-39), answering 422 itself.
func PathGPIO(w http.ResponseWriter, r *http.Request) (int, bool) {
	g, err := strconv.Atoi(r.PathValue("gpio"))
	if err != nil || g < 0 || g > 39 {
		PathError(w, r, "gpio", "must be an integer 0-39")
		return 0, false
	}
	return g, true
}

// DeviceHandler is a handler for a route whose {esp_id} names an existing device.
type DeviceHandler func(w http.ResponseWriter, r *http.Request, p auth.Principal, d device.Device)

// WithDevice validates the esp_id path parameter (422) and loads the device (404).
func (s *Server) WithDevice(h DeviceHandler) Authed {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		if d, ok := s.DeviceFromPath(w, r); ok {
			h(w, r, p, d)
		}
	}
}

// DeviceFromPath loads the device the {esp_id} path parameter names, answering 422 or 404 itself.
func (s *Server) DeviceFromPath(w http.ResponseWriter, r *http.Request) (device.Device, bool) {
	id, ok := PathESPID(w, r)
	if !ok {
		return device.Device{}, false
	}
	d, err := s.devices.Get(id)
	if err != nil {
		s.DeviceError(w, r, id, err)
		return d, false
	}
	return d, true
}

// espIDPattern is a device id in a path or a body (docs/protocol.md §1.2).
var espIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,31}$`)

// PathESPID reads the {esp_id} path parameter, answering 422 itself.
func PathESPID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("esp_id")
	if !espIDPattern.MatchString(id) {
		PathError(w, r, "esp_id", "must be 1-31 characters of [A-Za-z0-9_-]")
		return "", false
	}
	return id, true
}
