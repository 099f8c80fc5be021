// Package logicapi serves the logic rule routes of docs/api.md §10
// (/api/v1/logic) over internal/logic: rule CRUD with the save-time checks,
// toggling, the dry-run and the execution history. The hub registers them,
// so the HTTP core never imports the rule engine.
package logicapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/logic"
	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/store"
)

// server is what the routes need from the HTTP layer.
type server interface {
	Register(rt api.Route, h api.Authed)
	Internal(w http.ResponseWriter, r *http.Request, err error)
}

var _ server = (*api.Server)(nil)

// rules is what the routes need from the engine.
type rules interface {
	List(ctx context.Context, enabled *bool) ([]logic.Rule, error)
	Get(ctx context.Context, id string) (logic.Rule, error)
	Create(ctx context.Context, doc []byte) (logic.Rule, []rule.Issue, error)
	Update(ctx context.Context, id string, patch []byte) (logic.Rule, []rule.Issue, error)
	Delete(ctx context.Context, id string) (logic.Rule, error)
	Toggle(ctx context.Context, id string, enabled bool) (logic.Rule, bool, error)
	History(ctx context.Context, f store.RuleExecutionFilter) ([]logic.Execution, int, float64, error)
	Test(ctx context.Context, id string, in logic.TestInput) (logic.TestResult, error)
}

var _ rules = (*logic.Service)(nil)

// auditLog records the rule changes (docs/api.md §14.2).
type auditLog interface {
	Record(ctx context.Context, e store.AuditEntry)
}

// Deps are the routes' collaborators.
type Deps struct {
	Rules rules
	Audit auditLog // nil: no audit entries
}

type routes struct {
	srv server
	Deps
}

// Register adds the routes of docs/api.md §10.1.
func Register(srv server, d Deps) {
	rt := &routes{srv: srv, Deps: d}
	const base = "/api/v1/logic/rules"
	const one = base + "/{rule_id}"
	add := func(method, path, role, summary string, h api.Authed, req, resp any) {
		srv.Register(api.Route{
			Method:   method,
			Path:     path,
			MinRole:  role,
			Summary:  summary,
			Tag:      "logic",
			Request:  req,
			Response: resp,
		}, h)
	}
	add("GET", base, auth.RoleViewer, "List rules", rt.list, nil, api.PageOf[ruleObject]{})
	add("POST", base, auth.RoleOperator, "Create a rule (checked: docs/domain.md §6.10)", rt.create,
		createRequest{}, ruleObject{})
	add("GET", one, auth.RoleViewer, "Get a rule", rt.withRule(rt.get), nil, ruleObject{})
	add("PUT", one, auth.RoleOperator, "Change a rule (the merged rule is checked as a whole)",
		rt.withRule(rt.update), patchRequest{}, ruleObject{})
	add("PATCH", one, auth.RoleOperator, "Change a rule (alias of PUT)", rt.withRule(rt.update),
		patchRequest{}, ruleObject{})
	add("DELETE", one, auth.RoleOperator, "Delete a rule with its history", rt.withRule(rt.remove), nil,
		ruleObject{})
	add("POST", one+"/toggle", auth.RoleOperator, "Enable or disable a rule", rt.withRule(rt.toggle),
		toggleRequest{}, toggleResponse{})
	add("POST", one+"/test", auth.RoleOperator, "Dry-run a rule: what it would do now, with no side effects",
		rt.withRule(rt.test), testRequest{}, testResponse{})
	add("GET", "/api/v1/logic/execution_history", auth.RoleViewer, "Rule execution history", rt.history, nil,
		historyResponse{})
}

// conditionDoc and actionDoc document the polymorphic rule items
// (docs/api.md §10.2); their other fields are read by internal/rule.
type conditionDoc struct {
	Type string `json:"type" api:"max=50"`
}

type actionDoc struct {
	Type string `json:"type" api:"required,max=50"`
}

// createRequest is the body of POST /logic/rules: the schema of the
// top-level fields (422); the document's content is checked by the rule
// package (400 RULE_VALIDATION_FAILED).
type createRequest struct {
	Name                 string         `json:"name" api:"required,min=3,max=100"`
	Description          *string        `json:"description" api:"max=500"`
	Conditions           []conditionDoc `json:"conditions" api:"required,min=1,max=10"`
	Actions              []actionDoc    `json:"actions" api:"required,min=1,max=10"`
	LogicOperator        string         `json:"logic_operator" api:"enum=AND|OR|and|or,default=AND"`
	Enabled              bool           `json:"enabled" api:"default=true"`
	Priority             int            `json:"priority" api:"min=1,max=100,default=50"`
	CooldownSeconds      int            `json:"cooldown_seconds" api:"min=0,max=86400,default=60"`
	MaxExecutionsPerHour *int           `json:"max_executions_per_hour" api:"min=1,max=60"`
}

// patchRequest is the body of PUT/PATCH: any subset of the create fields.
type patchRequest struct {
	Name                 api.Field[string] `json:"name" api:"min=3,max=100"`
	Description          api.Field[string] `json:"description" api:"max=500"`
	Conditions           []conditionDoc    `json:"conditions" api:"min=1,max=10"`
	Actions              []actionDoc       `json:"actions" api:"min=1,max=10"`
	LogicOperator        api.Field[string] `json:"logic_operator" api:"enum=AND|OR|and|or"`
	Enabled              api.Field[bool]   `json:"enabled"`
	Priority             api.Field[int]    `json:"priority" api:"min=1,max=100"`
	CooldownSeconds      api.Field[int]    `json:"cooldown_seconds" api:"min=0,max=86400"`
	MaxExecutionsPerHour api.Field[int]    `json:"max_executions_per_hour" api:"min=1,max=60"`
}

// ruleObject is the Rule object of docs/api.md §10.1.
type ruleObject struct {
	ID                   string  `json:"id"`
	Name                 string  `json:"name"`
	Description          *string `json:"description"`
	Conditions           []any   `json:"conditions"`
	Actions              []any   `json:"actions"`
	LogicOperator        string  `json:"logic_operator"`
	Enabled              bool    `json:"enabled"`
	Priority             int     `json:"priority"`
	CooldownSeconds      int     `json:"cooldown_seconds"`
	MaxExecutionsPerHour *int    `json:"max_executions_per_hour"`
	LastTriggered        *string `json:"last_triggered"`
	ExecutionCount       int     `json:"execution_count"`
	LastExecutionSuccess *bool   `json:"last_execution_success"`
	CreatedAt            *string `json:"created_at"`
	UpdatedAt            *string `json:"updated_at"`
	// ValidationWarnings are the non-fatal findings of a save.
	ValidationWarnings []IssueObject `json:"validation_warnings,omitempty"`
}

// IssueObject is one finding of a rule document: path is the document's
// own (conditions.1.timezone), loc where the document sits in the request.
type IssueObject struct {
	Path string `json:"path"`
	Loc  []any  `json:"loc"`
	Type string `json:"type"`
	Msg  string `json:"msg"`
}

// IssuesAt is the findings with their loc under prefix (["body"] for a rule
// route, ["body", "rule"] for a document inside a request).
func IssuesAt(is []rule.Issue, prefix ...any) []IssueObject {
	out := make([]IssueObject, 0, len(is))
	for _, i := range is {
		out = append(out, IssueObject{
			Path: i.Path(),
			Loc:  append(append([]any(nil), prefix...), i.Loc...),
			Type: i.Code,
			Msg:  i.Message,
		})
	}
	return out
}

func issuesOf(is []rule.Issue) []IssueObject { return IssuesAt(is, "body") }

// WriteInvalid answers a refused rule document: 400 RULE_VALIDATION_FAILED
// with every error and warning, their loc under prefix (docs/api.md §10.1).
func WriteInvalid(w http.ResponseWriter, r *http.Request, inv *logic.InvalidError, prefix ...any) {
	msg := "rule validation failed"
	if len(inv.Errors) > 0 {
		msg += ": " + inv.Errors[0].Error()
		if n := len(inv.Errors) - 1; n > 0 {
			msg += fmt.Sprintf(" (and %d more)", n)
		}
	}
	api.WriteError(w, r, http.StatusBadRequest, "RULE_VALIDATION_FAILED", msg, map[string]any{
		"errors":   IssuesAt(inv.Errors, prefix...),
		"warnings": IssuesAt(inv.Warnings, prefix...),
	})
}

func objectOf(r logic.Rule, warnings []rule.Issue) ruleObject {
	o := ruleObject{
		ID:                   r.ID,
		Name:                 r.Name,
		Description:          r.Description,
		Conditions:           make([]any, 0, len(r.Conditions)),
		Actions:              make([]any, 0, len(r.Actions)),
		LogicOperator:        r.LogicOperator,
		Enabled:              r.Enabled,
		Priority:             r.Priority,
		CooldownSeconds:      r.CooldownSeconds,
		MaxExecutionsPerHour: r.MaxExecutionsPerHour,
		LastTriggered:        api.NullTimestamp(r.LastTriggered),
		ExecutionCount:       r.ExecutionCount,
		LastExecutionSuccess: r.LastExecutionSuccess,
		CreatedAt:            api.Timestamp(r.CreatedAt),
		UpdatedAt:            api.Timestamp(r.UpdatedAt),
	}
	for _, c := range r.Conditions {
		o.Conditions = append(o.Conditions, c)
	}
	for _, a := range r.Actions {
		o.Actions = append(o.Actions, a)
	}
	if len(warnings) > 0 {
		o.ValidationWarnings = issuesOf(warnings)
	}
	return o
}

// ruleHandler is a handler for a route whose {rule_id} is a valid UUID.
type ruleHandler func(w http.ResponseWriter, r *http.Request, p auth.Principal, id string)

// withRule validates the rule_id path parameter (422, docs/api.md §1.3).
func (rt *routes) withRule(h ruleHandler) api.Authed {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		id := r.PathValue("rule_id")
		if _, err := uuid.Parse(id); err != nil {
			api.WriteError(w, r, http.StatusUnprocessableEntity, "VALIDATION_ERROR", "rule_id must be a UUID",
				map[string]any{"errors": []IssueObject{{Path: "rule_id", Loc: []any{"path", "rule_id"},
					Type: "uuid_parsing", Msg: "must be a UUID"}}})
			return
		}
		h(w, r, p, id)
	}
}

// fail answers an engine error with its code (docs/api.md §1.6).
func (rt *routes) fail(w http.ResponseWriter, r *http.Request, err error) {
	var inv *logic.InvalidError
	switch {
	case errors.As(err, &inv):
		WriteInvalid(w, r, inv, "body")
	case errors.Is(err, logic.ErrNotFound):
		api.WriteError(w, r, http.StatusNotFound, "RULE_NOT_FOUND", "rule not found", nil)
	case errors.Is(err, logic.ErrDuplicate):
		api.WriteError(w, r, http.StatusConflict, "DUPLICATE", "a rule with this name exists", nil)
	default:
		rt.srv.Internal(w, r, err)
	}
}

// document reads a rule body: the top-level schema (422), then the whole
// document as JSON for the engine; a document over 16 KiB or 10 levels is
// a 422 (docs/api.md §1.2).
func document(w http.ResponseWriter, r *http.Request, dst any) ([]byte, bool) {
	b, ok := api.DecodeBody(w, r, dst)
	if !ok {
		return nil, false
	}
	doc, err := b.JSON()
	if err == nil && len(doc) > 16<<10 {
		b.Fail("conditions", "the rule document must be at most 16 KiB", "value_error")
	} else if err == nil && depthOf(doc) > 10 {
		b.Fail("conditions", "the rule document must be at most 10 levels deep", "value_error")
	}
	if b.Done(w, r) {
		return nil, false
	}
	return doc, err == nil
}

// depthOf is the nesting depth of a JSON document.
func depthOf(doc []byte) int {
	dec := json.NewDecoder(bytes.NewReader(doc))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

func (rt *routes) list(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	page := q.Int("page", 1, 1, 1<<30)
	size := q.Int("page_size", 20, 1, 100)
	var enabled *bool
	if q.Set("enabled") {
		v := q.Bool("enabled", false)
		enabled = &v
	}
	if q.Done(w, r) {
		return
	}
	all, err := rt.Rules.List(r.Context(), enabled)
	if err != nil {
		rt.srv.Internal(w, r, err)
		return
	}
	data := make([]ruleObject, 0, len(all))
	for _, x := range all {
		data = append(data, objectOf(x, nil))
	}
	api.WritePage(w, data, page, size)
}

func (rt *routes) create(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var q createRequest
	doc, ok := document(w, r, &q)
	if !ok {
		return
	}
	got, warnings, err := rt.Rules.Create(r.Context(), doc)
	if err != nil {
		rt.fail(w, r, err)
		return
	}
	rt.audit(r, p, "rule_created", got.Rule, map[string]any{"enabled": got.Enabled})
	api.WriteJSON(w, http.StatusCreated, objectOf(got, warnings))
}

func (rt *routes) get(w http.ResponseWriter, r *http.Request, _ auth.Principal, id string) {
	got, err := rt.Rules.Get(r.Context(), id)
	if err != nil {
		rt.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, objectOf(got, nil))
}

func (rt *routes) update(w http.ResponseWriter, r *http.Request, p auth.Principal, id string) {
	var q patchRequest
	doc, ok := document(w, r, &q)
	if !ok {
		return
	}
	got, warnings, err := rt.Rules.Update(r.Context(), id, doc)
	if err != nil {
		rt.fail(w, r, err)
		return
	}
	var changed []string
	var m map[string]json.RawMessage
	if json.Unmarshal(doc, &m) == nil {
		for k := range m {
			changed = append(changed, k)
		}
	}
	rt.audit(r, p, "rule_updated", got.Rule, map[string]any{"changed_fields": strings.Join(changed, ",")})
	api.WriteJSON(w, http.StatusOK, objectOf(got, warnings))
}

func (rt *routes) remove(w http.ResponseWriter, r *http.Request, p auth.Principal, id string) {
	got, err := rt.Rules.Delete(r.Context(), id)
	if err != nil {
		rt.fail(w, r, err)
		return
	}
	rt.audit(r, p, "rule_deleted", got.Rule, nil)
	api.WriteJSON(w, http.StatusOK, objectOf(got, nil))
}

// toggleRequest is the body of POST /logic/rules/{rule_id}/toggle.
type toggleRequest struct {
	Enabled *bool  `json:"enabled" api:"required"`
	Reason  string `json:"reason" api:"max=500"`
}

type toggleResponse struct {
	Success       bool   `json:"success"`
	Message       string `json:"message"`
	RuleID        string `json:"rule_id"`
	RuleName      string `json:"rule_name"`
	Enabled       bool   `json:"enabled"`
	PreviousState bool   `json:"previous_state"`
}

func (rt *routes) toggle(w http.ResponseWriter, r *http.Request, p auth.Principal, id string) {
	var q toggleRequest
	if !api.Decode(w, r, &q) {
		return
	}
	got, previous, err := rt.Rules.Toggle(r.Context(), id, *q.Enabled)
	if err != nil {
		rt.fail(w, r, err)
		return
	}
	rt.audit(r, p, "rule_toggled", got.Rule, map[string]any{
		"enabled":        got.Enabled,
		"previous_state": previous,
		"reason":         q.Reason,
	})
	state := "disabled"
	if got.Enabled {
		state = "enabled"
	}
	api.WriteJSON(w, http.StatusOK, toggleResponse{
		Success:       true,
		Message:       fmt.Sprintf("rule %q %s", got.Name, state),
		RuleID:        got.ID,
		RuleName:      got.Name,
		Enabled:       got.Enabled,
		PreviousState: previous,
	})
}

func (rt *routes) audit(r *http.Request, p auth.Principal, kind string, x rule.Rule, details map[string]any) {
	if rt.Audit == nil {
		return
	}
	if details == nil {
		details = map[string]any{}
	}
	details["rule_id"], details["rule_name"] = x.ID, x.Name
	rt.Audit.Record(r.Context(), store.AuditEntry{
		EventType:     kind,
		Severity:      "info",
		SourceType:    "user",
		SourceID:      p.User.Username,
		Status:        "success",
		Message:       kind + ": " + x.Name,
		Details:       details,
		CorrelationID: api.RequestID(r),
	})
}

// historyEntry is one execution record (docs/api.md §10.1).
type historyEntry struct {
	ID               string               `json:"id"`
	RuleID           string               `json:"rule_id"`
	RuleName         string               `json:"rule_name"`
	TriggeredAt      *string              `json:"triggered_at"`
	TriggerReason    string               `json:"trigger_reason"`
	Trigger          rule.Trigger         `json:"trigger"`
	ConditionResults []rule.LeafResult    `json:"condition_results"`
	ActionResults    []logic.ActionResult `json:"action_results"`
	ActionsExecuted  int                  `json:"actions_executed"`
	Success          bool                 `json:"success"`
	// TerminalReasonCode is null while an action is still pending.
	TerminalReasonCode *string `json:"terminal_reason_code"`
	ErrorMessage       *string `json:"error_message"`
	FinishedAt         *string `json:"finished_at"`
	ExecutionTimeMS    *int64  `json:"execution_time_ms"`
}

type historyResponse struct {
	Success     bool           `json:"success"`
	Entries     []historyEntry `json:"entries"`
	TotalCount  int            `json:"total_count"`
	SuccessRate float64        `json:"success_rate"`
}

func (rt *routes) history(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	f := store.RuleExecutionFilter{
		RuleID: q.Str("rule_id", 36),
		Limit:  q.Int("limit", 50, 1, 100),
		From:   time.Now().Add(-7 * 24 * time.Hour),
	}
	if q.Set("success") {
		v := q.Bool("success", false)
		f.Success = &v
	}
	if q.Set("start_time") {
		f.From = q.Time("start_time")
	}
	if q.Set("end_time") {
		t := q.Time("end_time")
		f.To = &t
	}
	if f.RuleID != "" {
		if _, err := uuid.Parse(f.RuleID); err != nil {
			q.Fail("rule_id", "must be a UUID", "uuid_parsing")
		}
	}
	if q.Done(w, r) {
		return
	}
	xs, total, rate, err := rt.Rules.History(r.Context(), f)
	if err != nil {
		rt.srv.Internal(w, r, err)
		return
	}
	entries := make([]historyEntry, 0, len(xs))
	for _, x := range xs {
		entries = append(entries, entryOf(x))
	}
	api.WriteJSON(w, http.StatusOK, historyResponse{Success: true, Entries: entries, TotalCount: total, SuccessRate: rate})
}

func entryOf(x logic.Execution) historyEntry {
	e := historyEntry{
		ID:               x.ID,
		RuleID:           x.RuleID,
		RuleName:         x.RuleName,
		TriggeredAt:      api.Timestamp(x.TriggeredAt),
		TriggerReason:    x.Trigger.Kind,
		Trigger:          x.Trigger,
		ConditionResults: x.Conditions,
		ActionResults:    x.Actions,
		Success:          x.Success,
		FinishedAt:       api.NullTimestamp(x.FinishedAt),
		ExecutionTimeMS:  x.ExecutionMS,
	}
	if x.Trigger.Reason != "" {
		e.TriggerReason = x.Trigger.Reason
	}
	if e.ConditionResults == nil {
		e.ConditionResults = []rule.LeafResult{}
	}
	if e.ActionResults == nil {
		e.ActionResults = []logic.ActionResult{}
	}
	for _, a := range x.Actions {
		if a.Status == logic.StatusSucceeded || a.Status == logic.StatusStarted || a.Status == logic.StatusPending {
			e.ActionsExecuted++
		}
	}
	if x.FinishedAt != nil {
		e.TerminalReasonCode = &x.TerminalReason
	}
	if x.ErrorMessage != "" {
		e.ErrorMessage = &x.ErrorMessage
	}
	return e
}
