// Package backtestapi serves POST /api/v1/logic/backtest
// (docs/api.md §10.3) over internal/backtest: a saved rule or an unsaved
// document replayed over the stored sensor history, answered with its
// would-be firings, actuator activity, warnings and assumptions. It has no
// side effects.
package backtestapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/logicapi"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/backtest"
	"github.com/kaiserhub/kaiser/internal/logic"
)

// server is what the route needs from the HTTP layer.
type server interface {
	Register(rt api.Route, h api.Authed)
	Internal(w http.ResponseWriter, r *http.Request, err error)
}

var _ server = (*api.Server)(nil)

// runner runs a backtest.
type runner interface {
	Run(ctx context.Context, req backtest.Request) (backtest.Report, error)
}

var _ runner = (*backtest.Service)(nil)

// Path is the route's path.
const Path = "/api/v1/logic/backtest"

// Register adds the backtest route.
func Register(srv server, b runner) {
	rt := &route{srv: srv, run: b}
	srv.Register(api.Route{
		Method:   "POST",
		Path:     Path,
		MinRole:  auth.RoleOperator,
		Summary:  "Replay a rule over the stored sensor history (no side effects)",
		Tag:      "logic",
		Request:  request{},
		Response: response{},
	}, rt.backtest)
}

type route struct {
	srv server
	run runner
}

// request is the body of POST /logic/backtest.
type request struct {
	// RuleID names a saved rule; Rule is an unsaved rule document
	// (docs/api.md §10.2), checked like a save. Exactly one is given.
	RuleID         string         `json:"rule_id" api:"max=36"`
	Rule           map[string]any `json:"rule"`
	StartTime      string         `json:"start_time" api:"required,max=40"`
	EndTime        string         `json:"end_time" api:"required,max=40"`
	ChatterPerHour int            `json:"chatter_per_hour" api:"min=1,max=60,default=6"`

	start, end time.Time
}

// Validate checks what the tags cannot say: one rule source, a rule id
// that is a UUID, and a range of at most 30 days.
func (q *request) Validate(b *api.Body) {
	switch {
	case q.RuleID == "" && q.Rule == nil:
		b.Fail("rule_id", "give rule_id (a saved rule) or rule (a rule document)", "missing")
	case q.RuleID != "" && q.Rule != nil:
		b.Fail("rule", "give rule_id or rule, not both", "value_error")
	case q.RuleID != "":
		if _, err := uuid.Parse(q.RuleID); err != nil {
			b.Fail("rule_id", "must be a UUID", "uuid_parsing")
		}
	}
	q.start = instant(b, "start_time", q.StartTime)
	q.end = instant(b, "end_time", q.EndTime)
	if q.start.IsZero() || q.end.IsZero() {
		return
	}
	switch {
	case !q.end.After(q.start):
		b.Fail("end_time", "must be after start_time", "value_error")
	case q.end.Sub(q.start) > backtest.MaxRange:
		b.Fail("end_time", "the range must be at most 30 days", "value_error")
	}
}

// instant reads an RFC 3339 datetime; zero when absent or bad.
func instant(b *api.Body, name, v string) time.Time {
	if v == "" || b.Failed(name) {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		b.Fail(name, "must be an RFC 3339 datetime with its offset", "datetime_parsing")
		return time.Time{}
	}
	return t.UTC()
}

func (rt *route) backtest(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	var q request
	if !api.Decode(w, r, &q) {
		return
	}
	req := backtest.Request{
		RuleID:  q.RuleID,
		Start:   q.start,
		End:     q.end,
		Chatter: q.ChatterPerHour,
	}
	if q.Rule != nil {
		doc, err := json.Marshal(q.Rule)
		if err != nil {
			rt.srv.Internal(w, r, fmt.Errorf("encode rule document: %w", err))
			return
		}
		req.Document = doc
	}
	rep, err := rt.run.Run(r.Context(), req)
	if err != nil {
		rt.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, responseOf(rep))
}

// fail answers a backtest error with its code (docs/api.md §1.6).
func (rt *route) fail(w http.ResponseWriter, r *http.Request, err error) {
	var inv *logic.InvalidError
	var lim *backtest.LimitError
	switch {
	case errors.As(err, &inv):
		logicapi.WriteInvalid(w, r, inv, "body", "rule")
	case errors.Is(err, logic.ErrNotFound):
		api.WriteError(w, r, http.StatusNotFound, "RULE_NOT_FOUND", "rule not found", nil)
	case errors.As(err, &lim):
		api.WriteError(w, r, http.StatusConflict, "LIMIT_EXCEEDED", lim.Msg, nil)
	case errors.Is(err, backtest.ErrBusy):
		api.WriteError(w, r, http.StatusConflict, "LIMIT_EXCEEDED", "a backtest is already running; try again when it has finished", nil)
	case errors.Is(err, backtest.ErrRange):
		api.WriteError(w, r, http.StatusUnprocessableEntity, "VALIDATION_ERROR", err.Error(), nil)
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
	default:
		rt.srv.Internal(w, r, err)
	}
}
