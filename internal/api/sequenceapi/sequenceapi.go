// Package sequenceapi serves the sequence routes of docs/api.md §11
// (/api/v1/sequences) over internal/sequence: the progress of running and
// recently finished sequences, their statistics and the cancel.
package sequenceapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/sequence"
)

// server is what the routes need from the HTTP layer.
type server interface {
	Register(rt api.Route, h api.Authed)
	Internal(w http.ResponseWriter, r *http.Request, err error)
}

var _ server = (*api.Server)(nil)

// runner is the sequence runner as the routes use it.
type runner interface {
	List(runningOnly bool, limit int) (views []sequence.View, total, running, completed, failed int)
	Get(id string) (sequence.View, error)
	Stats() sequence.Stats
	Cancel(ctx context.Context, id, reason, by string) (sequence.Progress, error)
}

var _ runner = (*sequence.Service)(nil)

type routes struct {
	srv server
	run runner
}

// Register adds the routes of docs/api.md §11.
func Register(srv server, run runner) {
	rt := routes{srv: srv, run: run}
	add := func(method, path, role, summary string, h api.Authed, req, resp any) {
		srv.Register(api.Route{
			Method:   method,
			Path:     path,
			MinRole:  role,
			Summary:  summary,
			Tag:      "sequences",
			Request:  req,
			Response: resp,
		}, h)
	}
	const base = "/api/v1/sequences"
	add("GET", base, auth.RoleViewer, "List running and recently finished sequences", rt.list, nil, listResponse{})
	add("GET", base+"/stats", auth.RoleViewer, "Sequence statistics", rt.stats, nil, statsResponse{})
	add("GET", base+"/{sequence_id}", auth.RoleViewer, "Get a sequence's progress", rt.get, nil, progressObject{})
	add("POST", base+"/{sequence_id}/cancel", auth.RoleOperator, "Cancel a pending or running sequence",
		rt.cancel, cancelRequest{}, cancelResponse{})
}

// progressObject is the sequence progress object of docs/api.md §11, with
// the additive cancelled_by and cleanup_offs.
type progressObject struct {
	SequenceID      string             `json:"sequence_id"`
	RuleID          string             `json:"rule_id"`
	RuleName        string             `json:"rule_name"`
	Status          string             `json:"status"`
	Description     string             `json:"description"`
	CurrentStep     int                `json:"current_step"`
	CurrentStepName string             `json:"current_step_name"`
	TotalSteps      int                `json:"total_steps"`
	ProgressPercent float64            `json:"progress_percent"`
	StartedAt       *string            `json:"started_at"`
	CompletedAt     *string            `json:"completed_at"`
	StepResults     []stepObject       `json:"step_results"`
	Error           *string            `json:"error"`
	ErrorCode       *string            `json:"error_code"`
	CancelledBy     *string            `json:"cancelled_by"`
	CleanupOffs     []cleanupOffObject `json:"cleanup_offs"`
}

type stepObject struct {
	StepIndex   int     `json:"step_index"`
	StepName    string  `json:"step_name"`
	Success     bool    `json:"success"`
	Message     string  `json:"message"`
	ErrorCode   *string `json:"error_code"`
	StartedAt   *string `json:"started_at"`
	CompletedAt *string `json:"completed_at"`
	DurationMS  int64   `json:"duration_ms"`
	Retries     int     `json:"retries"`
}

// cleanupOffObject is one OFF a failed, timed-out or cancelled sequence sent.
type cleanupOffObject struct {
	Target    string  `json:"target"`
	CommandID *string `json:"command_id"`
	Error     *string `json:"error"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func objectOf(v sequence.View) progressObject {
	o := progressObject{
		SequenceID:      v.SequenceID,
		RuleID:          v.RuleID,
		RuleName:        v.RuleName,
		Status:          v.Status,
		Description:     v.Description,
		CurrentStep:     v.CurrentStep,
		CurrentStepName: v.CurrentStepName,
		TotalSteps:      v.TotalSteps,
		ProgressPercent: v.Percent(),
		StartedAt:       api.Timestamp(v.StartedAt),
		CompletedAt:     api.NullTimestamp(v.CompletedAt),
		StepResults:     make([]stepObject, 0, len(v.Steps)),
		Error:           nullable(v.Error),
		ErrorCode:       nullable(v.ErrorCode),
		CancelledBy:     nullable(v.CancelledBy),
		CleanupOffs:     make([]cleanupOffObject, 0, len(v.CleanupOffs)),
	}
	for _, r := range v.Steps {
		o.StepResults = append(o.StepResults, stepObject{
			StepIndex:   r.Index,
			StepName:    r.Name,
			Success:     r.Success,
			Message:     r.Message,
			ErrorCode:   nullable(r.ErrorCode),
			StartedAt:   api.Timestamp(r.StartedAt),
			CompletedAt: api.Timestamp(r.CompletedAt),
			DurationMS:  r.DurationMS(),
			Retries:     r.Retries,
		})
	}
	for _, c := range v.CleanupOffs {
		o.CleanupOffs = append(o.CleanupOffs, cleanupOffObject{
			Target:    c.Target,
			CommandID: nullable(c.CommandID),
			Error:     nullable(c.Error),
		})
	}
	return o
}

// listResponse keeps the reference shape of docs/api.md §1.4.
type listResponse struct {
	Success   bool             `json:"success"`
	Sequences []progressObject `json:"sequences"`
	Total     int              `json:"total"`
	Running   int              `json:"running"`
	Completed int              `json:"completed"`
	Failed    int              `json:"failed"`
}

func (rt routes) list(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	runningOnly := q.Bool("running_only", false)
	limit := q.Int("limit", 100, 1, 500)
	if q.Done(w, r) {
		return
	}
	views, total, running, completed, failed := rt.run.List(runningOnly, limit)
	out := listResponse{
		Success:   true,
		Sequences: make([]progressObject, 0, len(views)),
		Total:     total,
		Running:   running,
		Completed: completed,
		Failed:    failed,
	}
	for _, v := range views {
		out.Sequences = append(out.Sequences, objectOf(v))
	}
	api.WriteJSON(w, http.StatusOK, out)
}

type statsResponse struct {
	Success                bool    `json:"success"`
	TotalSequences         int     `json:"total_sequences"`
	Running                int     `json:"running"`
	CompletedLastHour      int     `json:"completed_last_hour"`
	FailedLastHour         int     `json:"failed_last_hour"`
	AverageDurationSeconds float64 `json:"average_duration_seconds"`
}

func (rt routes) stats(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	st := rt.run.Stats()
	api.WriteJSON(w, http.StatusOK, statsResponse{
		Success:                true,
		TotalSequences:         st.Total,
		Running:                st.Running,
		CompletedLastHour:      st.CompletedLastHour,
		FailedLastHour:         st.FailedLastHour,
		AverageDurationSeconds: st.AverageDurationSeconds,
	})
}

// sequenceID reads the path parameter: 1–100 characters (docs/api.md §10.2).
func sequenceID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("sequence_id")
	if id == "" || len(id) > 100 {
		api.WriteError(w, r, http.StatusUnprocessableEntity, "VALIDATION_ERROR", "sequence_id must be 1-100 characters",
			map[string]any{"errors": []map[string]any{{"loc": []any{"path", "sequence_id"},
				"msg": "must be 1-100 characters", "type": "string_too_long"}}})
		return "", false
	}
	return id, true
}

func notFound(w http.ResponseWriter, r *http.Request, id string) {
	api.WriteError(w, r, http.StatusNotFound, "SEQUENCE_NOT_FOUND", "sequence '"+id+"' not found",
		map[string]any{"sequence_id": id})
}

func (rt routes) get(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	id, ok := sequenceID(w, r)
	if !ok {
		return
	}
	v, err := rt.run.Get(id)
	if err != nil {
		notFound(w, r, id)
		return
	}
	api.WriteJSON(w, http.StatusOK, objectOf(v))
}

// cancelRequest is the optional body of a cancel; the reason may also be
// a query parameter (the body's wins).
type cancelRequest struct {
	Reason *string `json:"reason" api:"max=200"`
}

type cancelResponse struct {
	Success    bool   `json:"success"`
	Message    string `json:"message"`
	SequenceID string `json:"sequence_id"`
	Status     string `json:"status"`
	Reason     string `json:"reason"`
}

const defaultReason = "User cancelled"

func (rt routes) cancel(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id, ok := sequenceID(w, r)
	if !ok {
		return
	}
	q := api.NewQuery(r)
	reason := q.Str("reason", 200)
	if q.Done(w, r) {
		return
	}
	var body cancelRequest
	if !api.Decode(w, r, &body) {
		return
	}
	if body.Reason != nil && strings.TrimSpace(*body.Reason) != "" {
		reason = strings.TrimSpace(*body.Reason)
	}
	if reason == "" {
		reason = defaultReason
	}
	// The cancel waits for its cleanup OFFs to be issued and stored.
	ctx, stop := context.WithTimeout(r.Context(), 30*time.Second)
	defer stop()
	_, err := rt.run.Cancel(ctx, id, reason, "user:"+p.User.Username)
	switch {
	case errors.Is(err, sequence.ErrNotFound):
		notFound(w, r, id)
		return
	case errors.Is(err, sequence.ErrInvalidState):
		status := ""
		if v, gerr := rt.run.Get(id); gerr == nil {
			status = v.Status
		}
		api.WriteError(w, r, http.StatusConflict, "INVALID_STATE", "sequence '"+id+"' is "+status+", not pending or running",
			map[string]any{"sequence_id": id, "status": status})
		return
	case err != nil:
		rt.srv.Internal(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, cancelResponse{
		Success:    true,
		Message:    "sequence '" + id + "' cancelled",
		SequenceID: id,
		Status:     sequence.StatusCancelled,
		Reason:     reason,
	})
}
