package actuatorapi

import (
	"errors"
	"net/http"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/store"
)

// commandRequest is a command (docs/api.md §8.2). The value's scale and the
// duration's range are checked by the domain (row 1 of docs/domain.md §4.4),
// so that their rejection is recorded like every other.
type commandRequest struct {
	Command  string  `json:"command" api:"required,min=1,max=20"`
	Value    float64 `json:"value" api:"default=1"`
	Duration *int64  `json:"duration"`
}

// commandResponse is the reply of docs/api.md §8.2.
type commandResponse struct {
	Success        bool     `json:"success"`
	Message        string   `json:"message"`
	EspID          string   `json:"esp_id"`
	GPIO           int      `json:"gpio"`
	Command        string   `json:"command"`
	Value          float64  `json:"value"`
	Duration       int64    `json:"duration"`
	CommandID      string   `json:"command_id"`
	CorrelationID  string   `json:"correlation_id"`
	Status         string   `json:"status"`
	CommandSent    bool     `json:"command_sent"`
	Acknowledged   bool     `json:"acknowledged"`
	SafetyWarnings []string `json:"safety_warnings"`
	IssuedAt       *string  `json:"issued_at"`
}

func (rt *routes) command(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req commandRequest
	if !api.Decode(w, r, &req) {
		return
	}
	// The domain looks the device up itself (row 2), after validating the
	// command (row 1): an invalid command to an unknown device is a 422.
	espID, ok := api.PathESPID(w, r)
	if !ok {
		return
	}
	g, ok := api.PathGPIO(w, r)
	if !ok {
		return
	}

	v := req.Value
	res, err := rt.Actuators.Command(r.Context(), actuator.Request{
		EspID:    espID,
		GPIO:     g,
		Command:  req.Command,
		Value:    &v,
		Duration: req.Duration,
		IssuedBy: "user:" + p.User.Username,
	})
	var rej *actuator.Rejection
	switch {
	case errors.As(err, &rej):
		rt.rejected(w, r, espID, g, rej)
		return
	case err != nil:
		rt.srv.Internal(w, r, err)
		return
	}

	warnings := res.Warnings
	if warnings == nil {
		warnings = []string{}
	}
	api.WriteJSON(w, http.StatusOK, commandResponse{
		Success:        res.Status != actuator.StatusFailed,
		Message:        res.Message,
		EspID:          espID,
		GPIO:           g,
		Command:        res.Command,
		Value:          res.Value,
		Duration:       res.Duration,
		CommandID:      res.CommandID,
		CorrelationID:  res.CorrelationID,
		Status:         res.Status,
		CommandSent:    res.Published,
		SafetyWarnings: warnings,
		IssuedAt:       api.Timestamp(res.IssuedAt),
	})
}

// answer is the HTTP answer of one rejection (docs/api.md §8.3, docs/domain.md §4.4).
type answer struct {
	status int
	code   string
}

var answers = map[string]answer{
	actuator.CodeNotFound:      {http.StatusNotFound, "ACTUATOR_NOT_FOUND"},
	actuator.CodeStateUnknown:  {http.StatusConflict, "STATE_UNKNOWN"},
	actuator.CodeEmergencyStop: {http.StatusConflict, "EMERGENCY_STOP_ACTIVE"},
	actuator.CodeLatched:       {http.StatusConflict, "EMERGENCY_STOP_ACTIVE"},
	actuator.CodeNotApproved:   {http.StatusConflict, "DEVICE_NOT_APPROVED"},
	actuator.CodeOffline:       {http.StatusConflict, "DEVICE_OFFLINE"},
	actuator.CodeUnreachable:   {http.StatusConflict, "DEVICE_UNREACHABLE"},
	actuator.CodeDisabled:      {http.StatusConflict, "ACTUATOR_DISABLED"},
	actuator.CodeNotSupported:  {http.StatusBadRequest, "COMMAND_NOT_SUPPORTED"},
	actuator.CodeCooldown:      {http.StatusConflict, "COOLDOWN_ACTIVE"},
}

func (rt *routes) rejected(w http.ResponseWriter, r *http.Request, espID string, gpio int, rej *actuator.Rejection) {
	WriteRejection(w, r, rt.srv, espID, gpio, rej)
}

// DeviceErrors answers a device error the way the HTTP core does.
type DeviceErrors interface {
	DeviceError(w http.ResponseWriter, r *http.Request, id string, err error)
}

// ErrorWriter answers device errors and internal failures the way the HTTP core does.
type ErrorWriter interface {
	DeviceErrors
	Internal(w http.ResponseWriter, r *http.Request, err error)
}

// WriteRejection answers a command refused by the checks of
// docs/domain.md §4.4 with its HTTP status and code (docs/api.md §8.2); the mock-device
// command route (docs/api.md §16.1) answers the same way.
func WriteRejection(w http.ResponseWriter, r *http.Request, srv DeviceErrors, espID string, gpio int,
	rej *actuator.Rejection) {
	switch {
	case rej.Row == 1:
		writeValidation(w, r, []fieldError{{Loc: []any{"body", rej.Field}, Msg: rej.Message, Type: "value_error"}})
		return
	case rej.Code == actuator.CodeDeviceNotFound:
		srv.DeviceError(w, r, espID, device.ErrNotFound)
		return
	case rej.Code == actuator.CodeValueOutOfRange:
		api.WriteError(w, r, http.StatusBadRequest, "SAFETY_CONSTRAINT_VIOLATION", rej.Message,
			map[string]any{"esp_id": espID, "gpio": gpio, "rejection": rej.Code})
		return
	}

	a, ok := answers[rej.Code]
	if !ok {
		a = answer{http.StatusConflict, "INVALID_STATE"}
	}
	details := map[string]any{"esp_id": espID, "gpio": gpio, "rejection": rej.Code}
	switch rej.Code {
	case actuator.CodeLatched:
		details["latch"] = "device"
	case actuator.CodeEmergencyStop:
		details["latch"] = "hub"
	case actuator.CodeUnreachable:
		details["reason"] = rej.Reason
	}
	api.WriteError(w, r, a.status, a.code, rej.Message, details)
}

// commandStatusResponse is a command's lifecycle (docs/api.md §8.2); the
// late answer of a command that timed out is in late_ack.
type commandStatusResponse struct {
	Success         bool           `json:"success"`
	CommandID       string         `json:"command_id"`
	CorrelationID   string         `json:"correlation_id"`
	EspID           string         `json:"esp_id"`
	GPIO            int            `json:"gpio"`
	Command         string         `json:"command"`
	CommandType     string         `json:"command_type"`
	Value           float64        `json:"value"`
	Duration        int64          `json:"duration"`
	Status          string         `json:"status"`
	IssuedBy        string         `json:"issued_by"`
	IssuedAt        *string        `json:"issued_at"`
	SentAt          *string        `json:"sent_at"`
	CompletedAt     *string        `json:"completed_at"`
	Error           *string        `json:"error"`
	ResponseMessage *string        `json:"response_message"`
	LateAck         map[string]any `json:"late_ack"`
}

func (rt *routes) commandStatus(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	id := r.PathValue("command_id")
	if !uuidPattern.MatchString(id) {
		pathError(w, r, "command_id", "must be a UUID")
		return
	}
	c, err := rt.Actuators.CommandByID(r.Context(), id)
	switch {
	case errors.Is(err, actuator.ErrCommandNotFound):
		api.WriteError(w, r, http.StatusNotFound, "COMMAND_NOT_FOUND", "command not found", map[string]any{"command_id": id})
		return
	case err != nil:
		rt.srv.Internal(w, r, err)
		return
	}
	late, _ := c.Metadata["late_ack"].(map[string]any)
	api.WriteJSON(w, http.StatusOK, commandStatusResponse{
		Success:         true,
		CommandID:       c.ID,
		CorrelationID:   c.CorrelationID,
		EspID:           c.EspID,
		GPIO:            c.GPIO,
		Command:         c.Command,
		CommandType:     c.CommandType,
		Value:           c.Value,
		Duration:        c.Duration,
		Status:          c.Status,
		IssuedBy:        c.IssuedBy,
		IssuedAt:        api.Timestamp(c.IssuedAt),
		SentAt:          ts(c.SentAt),
		CompletedAt:     ts(c.CompletedAt),
		Error:           api.NullString(c.Error),
		ResponseMessage: api.NullString(c.ResponseMessage),
		LateAck:         late,
	})
}

// stateJSON is the state object of the status route.
type stateJSON struct {
	GPIO           int     `json:"gpio"`
	Mode           string  `json:"mode"` // the actuator's class
	State          string  `json:"state"`
	Value          float64 `json:"value"`
	Stale          bool    `json:"stale"`
	IsActive       bool    `json:"is_active"`
	Emergency      string  `json:"emergency"`
	DeviceLatched  bool    `json:"device_latched"`
	LastCommand    *string `json:"last_command"`
	LastCommandAt  *string `json:"last_command_at"`
	RuntimeSeconds int64   `json:"runtime_seconds"`
	OnSince        *string `json:"on_since"`
	AutoOffAt      *string `json:"auto_off_at"`
	PendingOff     *string `json:"pending_off"`
	ReportedAt     *string `json:"reported_at"`
}

type statusResponse struct {
	Success bool            `json:"success"`
	EspID   string          `json:"esp_id"`
	GPIO    int             `json:"gpio"`
	State   stateJSON       `json:"state"`
	Config  *configResponse `json:"config,omitempty"`
}

func (rt *routes) status(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	withConfig := q.Bool("include_config", false)
	if q.Done(w, r) {
		return
	}
	c, ok := rt.find(w, r)
	if !ok {
		return
	}
	st, err := rt.Actuators.State(c.EspID, c.GPIO)
	if err != nil {
		notFound(w, r, c.EspID, c.GPIO)
		return
	}
	out := statusResponse{
		Success: true,
		EspID:   c.EspID,
		GPIO:    c.GPIO,
		State: stateJSON{
			GPIO:           c.GPIO,
			Mode:           c.Class(),
			State:          st.State,
			Value:          st.Value,
			Stale:          st.Stale,
			IsActive:       !st.Stale && (st.State == "on" || (st.State == "pwm" && st.Value > 0)),
			Emergency:      st.Emergency,
			DeviceLatched:  st.DeviceLatched,
			LastCommand:    api.NullString(st.LastCommand),
			LastCommandAt:  ts(st.LastCommandAt),
			RuntimeSeconds: st.RuntimeSeconds,
			OnSince:        ts(st.OnSince),
			AutoOffAt:      ts(st.AutoOffAt),
			PendingOff:     api.NullString(st.PendingOff),
			ReportedAt:     ts(st.ReportedAt),
		},
	}
	if withConfig {
		cfg := rt.configJSON(c)
		out.Config = &cfg
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// historyEntry is one row of docs/api.md §8.2's history.
type historyEntry struct {
	ID           string         `json:"id"`
	GPIO         int            `json:"gpio"`
	ActuatorType string         `json:"actuator_type"`
	CommandType  string         `json:"command_type"`
	Value        float64        `json:"value"`
	Success      *bool          `json:"success"`
	IssuedBy     string         `json:"issued_by"`
	ErrorMessage *string        `json:"error_message"`
	Metadata     map[string]any `json:"metadata"`
	CommandID    *string        `json:"command_id"`
	Status       *string        `json:"status"`
	Timestamp    *string        `json:"timestamp"`
}

type historyResponse struct {
	Success    bool           `json:"success"`
	EspID      string         `json:"esp_id"`
	GPIO       int            `json:"gpio"`
	Entries    []historyEntry `json:"entries"`
	TotalCount int            `json:"total_count"`
}

func entryJSON(c store.ActuatorCommand) historyEntry {
	e := historyEntry{
		ID:           c.ID,
		GPIO:         c.GPIO,
		ActuatorType: c.ActuatorType,
		CommandType:  c.CommandType,
		Value:        c.Value,
		Success:      c.Success,
		IssuedBy:     c.IssuedBy,
		ErrorMessage: api.NullString(c.Error),
		Metadata:     c.Metadata,
		Status:       api.NullString(c.Status),
		Timestamp:    api.Timestamp(c.IssuedAt),
	}
	if c.Status != "" && c.Status != actuator.StatusRejected {
		id := c.ID
		e.CommandID = &id
	}
	if c.Success == nil && c.Status == actuator.StatusAcknowledged {
		t := true
		e.Success = &t
	}
	return e
}

func (rt *routes) history(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	limit := q.Int("limit", 20, 1, 100)
	if q.Done(w, r) {
		return
	}
	d, g, ok := rt.target(w, r)
	if !ok {
		return
	}
	if _, err := rt.Actuators.Get(d.DeviceID, g); err != nil {
		notFound(w, r, d.DeviceID, g)
		return
	}
	rows, total, err := rt.Actuators.History(r.Context(), d.DeviceID, g, limit)
	if err != nil {
		rt.srv.Internal(w, r, err)
		return
	}
	entries := make([]historyEntry, 0, len(rows))
	for _, c := range rows {
		entries = append(entries, entryJSON(c))
	}
	api.WriteJSON(w, http.StatusOK, historyResponse{
		Success:    true,
		EspID:      d.DeviceID,
		GPIO:       g,
		Entries:    entries,
		TotalCount: total,
	})
}
