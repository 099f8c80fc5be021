package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// This file writes responses: JSON bodies, the error shape of docs/api.md §1.5 and the
// API codes of the domain errors that several resources share (docs/api.md §1.6).

// WriteJSON writes v as a JSON body with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// errorBody is the error shape of docs/api.md §1.5.
type errorBody struct {
	Success bool      `json:"success"`
	Detail  string    `json:"detail"`
	Error   errorInfo `json:"error"`
}

type errorInfo struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Details   any    `json:"details"`
	RequestID string `json:"request_id"`
}

// WriteError writes the docs/api.md §1.5 error body.
func WriteError(w http.ResponseWriter, r *http.Request, status int, code, msg string, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	WriteJSON(w, status, errorBody{
		Detail: msg,
		Error: errorInfo{
			Code:      code,
			Message:   msg,
			Details:   details,
			RequestID: RequestID(r),
		},
	})
}

// Internal logs err with the request id and answers a generic 500, or a
// 503 when the database cannot commit at all (a full disk), so that a
// client knows nothing was saved and the request may be repeated later.
func (s *Server) Internal(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("request failed", "request_id", RequestID(r), "path", r.URL.Path, "error", err)
	if errors.Is(err, store.ErrUnavailable) {
		WriteError(w, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE",
			"the database cannot store anything now (disk full or storage fault); nothing was saved", nil)
		return
	}
	WriteError(w, r, http.StatusInternalServerError, "INTERNAL_ERROR", "internal error", nil)
}

// DeviceError answers a device domain error with its API code (docs/api.md §1.6).
func (s *Server) DeviceError(w http.ResponseWriter, r *http.Request, id string, err error) {
	details := map[string]any{"esp_id": id}
	switch {
	case errors.Is(err, device.ErrNotFound):
		WriteError(w, r, http.StatusNotFound, "ESP_NOT_FOUND", fmt.Sprintf("ESP device '%s' not found", id), details)
	case errors.Is(err, device.ErrInvalidState):
		WriteError(w, r, http.StatusConflict, "INVALID_STATE", err.Error(), details)
	case errors.Is(err, device.ErrDuplicate):
		WriteError(w, r, http.StatusConflict, "DUPLICATE_ESP", fmt.Sprintf("ESP device '%s' already exists", id), details)
	case errors.Is(err, device.ErrNotApproved):
		WriteError(w, r, http.StatusConflict, "DEVICE_NOT_APPROVED", fmt.Sprintf("ESP device '%s' is not approved", id),
			details)
	case errors.Is(err, device.ErrOffline):
		WriteError(w, r, http.StatusConflict, "DEVICE_OFFLINE", fmt.Sprintf("ESP device '%s' is offline", id), details)
	default:
		s.Internal(w, r, err)
	}
}

// SensorError maps sensor domain errors to API codes; it reports whether it answered.
func (s *Server) SensorError(w http.ResponseWriter, r *http.Request, err error) bool {
	var pe *sensor.PinError
	switch {
	case err == nil:
		return false
	case errors.As(err, &pe) && pe.Conflict:
		WriteError(w, r, http.StatusConflict, "GPIO_CONFLICT", pe.Msg, map[string]any{"conflict_type": pe.Type})
	case errors.As(err, &pe):
		WriteError(w, r, http.StatusBadRequest, "GPIO_RESERVED", pe.Msg, map[string]any{"conflict_type": pe.Type})
	case errors.Is(err, sensor.ErrUnsupportedType):
		WriteError(w, r, http.StatusBadRequest, "UNSUPPORTED_SENSOR_TYPE", err.Error(), nil)
	case errors.Is(err, sensor.ErrLimit):
		WriteError(w, r, http.StatusConflict, "LIMIT_EXCEEDED", err.Error(), nil)
	case errors.Is(err, sensor.ErrNotFound):
		WriteError(w, r, http.StatusNotFound, "SENSOR_NOT_FOUND", "sensor not found", nil)
	case errors.Is(err, device.ErrNotFound):
		s.DeviceError(w, r, r.PathValue("esp_id"), err)
	default:
		s.Internal(w, r, err)
	}
	return true
}
