// Package emergencyapi serves the emergency-stop routes (docs/api.md §8.4):
// the stop, the clear and the latch status. The hub registers them on the
// HTTP server, as it does the debug routes.
package emergencyapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/emergency"
)

// server is what the routes need from the HTTP layer.
type server interface {
	Register(rt api.Route, h api.Authed)
	Internal(w http.ResponseWriter, r *http.Request, err error)
}

var _ server = (*api.Server)(nil)

// service is the emergency stop as the routes use it.
type service interface {
	Stop(ctx context.Context, req emergency.StopRequest) (emergency.StopResult, error)
	Clear(ctx context.Context, req emergency.ClearRequest) (emergency.ClearResult, error)
	Status() emergency.Status
}

var _ service = (*emergency.Service)(nil)

type routes struct {
	srv server
	svc service
}

// Register adds the routes to srv.
func Register(srv server, svc service) {
	rt := routes{srv: srv, svc: svc}
	for _, path := range []string{"/api/v1/actuators/emergency_stop", "/api/v1/actuators/emergency-stop"} {
		srv.Register(api.Route{
			Method:     "POST",
			Path:       path,
			MinRole:    auth.RoleOperator,
			Summary:    "Emergency stop: latch, OFF to every actuator, stop message",
			Tag:        "actuators",
			Deprecated: path != "/api/v1/actuators/emergency_stop",
			Request:    stopRequest{},
			Response:   stopResponse{},
		}, rt.stop)
	}
	for _, path := range []string{"/api/v1/actuators/clear_emergency", "/api/v1/actuators/clear-emergency"} {
		srv.Register(api.Route{
			Method:     "POST",
			Path:       path,
			MinRole:    auth.RoleOperator,
			Summary:    "Clear emergency latches, each with the device's answer",
			Tag:        "actuators",
			Deprecated: path != "/api/v1/actuators/clear_emergency",
			Request:    clearRequest{},
			Response:   clearResponse{},
		}, rt.clear)
	}
	srv.Register(api.Route{
		Method:   "GET",
		Path:     "/api/v1/actuators/emergency",
		MinRole:  auth.RoleViewer,
		Summary:  "Emergency latch status",
		Tag:      "actuators",
		Response: statusResponse{},
	}, rt.status)
}

// stopRequest is the body of a stop (docs/api.md §8.4).
type stopRequest struct {
	EspID  *string `json:"esp_id" api:"pattern=esp_id"`
	GPIO   *int    `json:"gpio" api:"min=0,max=39"`
	Reason string  `json:"reason" api:"required,min=1,max=500"`
}

// Validate: a gpio only narrows a device stop.
func (q *stopRequest) Validate(b *api.Body) {
	if q.GPIO != nil && q.EspID == nil && !b.Failed("esp_id") {
		b.Fail("gpio", "gpio requires esp_id", "value_error")
	}
}

// clearRequest is the body of a clear (docs/api.md §8.4).
type clearRequest struct {
	EspID                 *string `json:"esp_id" api:"pattern=esp_id"`
	Reason                string  `json:"reason" api:"required,min=1,max=500"`
	ReconfigureIfNoAnswer bool    `json:"reconfigure_if_no_answer" api:"default=false"`
	ResumeRules           bool    `json:"resume_rules" api:"default=false"`
}

type actuatorResult struct {
	EspID   string `json:"esp_id"`
	GPIO    int    `json:"gpio"`
	Success bool   `json:"success"`
	Message string `json:"message"`
}

type stopDetail struct {
	EspID     string           `json:"esp_id"`
	Actuators []actuatorResult `json:"actuators"`
}

type stopResponse struct {
	Success               bool         `json:"success"`
	Message               string       `json:"message"`
	IncidentCorrelationID string       `json:"incident_correlation_id"`
	Scope                 string       `json:"scope"`
	DevicesStopped        int          `json:"devices_stopped"`
	ActuatorsStopped      int          `json:"actuators_stopped"`
	Reason                string       `json:"reason"`
	Timestamp             *string      `json:"timestamp"`
	LatchPersisted        bool         `json:"latch_persisted"`
	Details               []stopDetail `json:"details"`
}

type clearDetail struct {
	EspID   string `json:"esp_id"`
	Outcome string `json:"outcome"`
	Message string `json:"message"`
}

type clearResponse struct {
	Success        bool          `json:"success"`
	Message        string        `json:"message"`
	DevicesCleared int           `json:"devices_cleared"`
	Reason         string        `json:"reason"`
	Timestamp      *string       `json:"timestamp"`
	StillActive    bool          `json:"still_active"`
	Details        []clearDetail `json:"details"`
}

type globalLatch struct {
	Reason                string  `json:"reason"`
	ActivatedAt           *string `json:"activated_at"`
	ActivatedBy           string  `json:"activated_by"`
	IncidentCorrelationID string  `json:"incident_correlation_id"`
}

type clearAttempt struct {
	At      *string `json:"at"`
	User    string  `json:"user"`
	Outcome string  `json:"outcome"`
	Message string  `json:"message"`
}

type deviceLatch struct {
	EspID                 string        `json:"esp_id"`
	Reason                string        `json:"reason"`
	ActivatedAt           *string       `json:"activated_at"`
	ActivatedBy           string        `json:"activated_by"`
	IncidentCorrelationID string        `json:"incident_correlation_id"`
	LastClearAttempt      *clearAttempt `json:"last_clear_attempt"`
}

// statusResponse is the latch status; latch_persisted is an additive field.
type statusResponse struct {
	Success        bool          `json:"success"`
	Active         bool          `json:"active"`
	Global         *globalLatch  `json:"global"`
	Devices        []deviceLatch `json:"devices"`
	RulesPaused    []string      `json:"rules_paused"`
	LatchPersisted bool          `json:"latch_persisted"`
}

func actor(r *http.Request, p auth.Principal) emergency.Actor {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	return emergency.Actor{
		User:      p.User.Username,
		RequestID: api.RequestID(r),
		IPAddress: ip,
	}
}

func (rt routes) stop(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var q stopRequest
	if !api.Decode(w, r, &q) {
		return
	}
	req := emergency.StopRequest{GPIO: q.GPIO, Reason: q.Reason, Actor: actor(r, p)}
	if q.EspID != nil {
		req.EspID = *q.EspID
	}

	res, err := rt.svc.Stop(r.Context(), req)
	if err != nil {
		rt.fail(w, r, req.EspID, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, stopBody(res))
}

func stopBody(res emergency.StopResult) stopResponse {
	body := stopResponse{
		Success:               true,
		Message:               stopMessage(res),
		IncidentCorrelationID: res.IncidentCorrelationID,
		Scope:                 res.Scope,
		DevicesStopped:        res.DevicesStopped,
		ActuatorsStopped:      res.ActuatorsStopped,
		Reason:                res.Reason,
		Timestamp:             api.Timestamp(res.Timestamp),
		LatchPersisted:        res.LatchPersisted,
		Details:               make([]stopDetail, 0, len(res.Details)),
	}
	for _, d := range res.Details {
		sd := stopDetail{EspID: d.EspID, Actuators: make([]actuatorResult, 0, len(d.Actuators))}
		for _, a := range d.Actuators {
			sd.Actuators = append(sd.Actuators, actuatorResult(a))
		}
		body.Details = append(body.Details, sd)
	}
	return body
}

func stopMessage(res emergency.StopResult) string {
	msg := fmt.Sprintf("Emergency stop (%s): %d devices latched, %d actuators sent OFF",
		res.Scope, res.DevicesStopped, res.ActuatorsStopped)
	if !res.LatchPersisted {
		msg += "; the latch could not be stored and is enforced from memory while the write is retried"
	}
	return msg
}

func (rt routes) clear(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var q clearRequest
	if !api.Decode(w, r, &q) {
		return
	}
	req := emergency.ClearRequest{
		Reason:      q.Reason,
		Reconfigure: q.ReconfigureIfNoAnswer,
		ResumeRules: q.ResumeRules,
		Actor:       actor(r, p),
	}
	if q.EspID != nil {
		req.EspID = *q.EspID
	}

	res, err := rt.svc.Clear(r.Context(), req)
	if err != nil {
		rt.fail(w, r, req.EspID, err)
		return
	}
	body := clearResponse{
		Success:        res.Success,
		Message:        res.Message,
		DevicesCleared: res.DevicesCleared,
		Reason:         res.Reason,
		Timestamp:      api.Timestamp(res.Timestamp),
		StillActive:    res.StillActive,
		Details:        make([]clearDetail, 0, len(res.Details)),
	}
	for _, d := range res.Details {
		body.Details = append(body.Details, clearDetail(d))
	}
	api.WriteJSON(w, http.StatusOK, body)
}

func (rt routes) status(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	st := rt.svc.Status()
	body := statusResponse{
		Success:        true,
		Active:         st.Active,
		Devices:        make([]deviceLatch, 0, len(st.Devices)),
		RulesPaused:    append([]string{}, st.RulesPaused...),
		LatchPersisted: st.LatchPersisted,
	}
	if g := st.Global; g != nil {
		body.Global = &globalLatch{
			Reason:                g.Reason,
			ActivatedAt:           api.Timestamp(g.ActivatedAt),
			ActivatedBy:           g.ActivatedBy,
			IncidentCorrelationID: g.IncidentCorrelationID,
		}
	}
	for _, d := range st.Devices {
		dl := deviceLatch{
			EspID:                 d.EspID,
			Reason:                d.Reason,
			ActivatedAt:           api.Timestamp(d.ActivatedAt),
			ActivatedBy:           d.ActivatedBy,
			IncidentCorrelationID: d.IncidentCorrelationID,
		}
		if a := d.LastClearAttempt; a != nil {
			dl.LastClearAttempt = &clearAttempt{
				At:      api.Timestamp(a.At),
				User:    a.User,
				Outcome: a.Outcome,
				Message: a.Message,
			}
		}
		body.Devices = append(body.Devices, dl)
	}
	api.WriteJSON(w, http.StatusOK, body)
}

// fail answers a domain error with its code (docs/api.md §1.6).
func (rt routes) fail(w http.ResponseWriter, r *http.Request, espID string, err error) {
	switch {
	case errors.Is(err, emergency.ErrDeviceNotFound):
		api.WriteError(w, r, http.StatusNotFound, "ESP_NOT_FOUND", fmt.Sprintf("ESP device '%s' not found", espID),
			map[string]any{"esp_id": espID})
	case errors.Is(err, emergency.ErrBrokerDown):
		api.WriteError(w, r, http.StatusServiceUnavailable, "MQTT_UNAVAILABLE",
			"the MQTT broker is unavailable; nothing was attempted", nil)
	default:
		rt.srv.Internal(w, r, err)
	}
}
