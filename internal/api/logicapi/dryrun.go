package logicapi

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/logic"
)

// testRequest is the body of POST /logic/rules/{rule_id}/test.
type testRequest struct {
	MockSensorValues map[string]any `json:"mock_sensor_values"`
	MockTime         string         `json:"mock_time"`
	DryRun           *bool          `json:"dry_run"` // absent: true

	in logic.TestInput
}

var clockPattern = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])$`)

// maxMocks bounds mock_sensor_values (docs/api.md §10.1).
const maxMocks = 50

// Validate reads the mocks and the clock: every key "ESP_ID:GPIO" or
// "ESP_ID:GPIO:sensor_type" with a number, at most 50; mock_time "HH:MM";
// only dry_run true.
func (q *testRequest) Validate(b *api.Body) {
	if q.DryRun != nil && !*q.DryRun {
		b.Fail("dry_run", "only dry_run: true is supported", "value_error")
	}
	if q.MockTime != "" {
		m := clockPattern.FindStringSubmatch(q.MockTime)
		if m == nil {
			b.Fail("mock_time", `must be "HH:MM" (00:00-23:59)`, "string_pattern_mismatch")
		} else {
			h, _ := strconv.Atoi(m[1])
			mm, _ := strconv.Atoi(m[2])
			clock := h*60 + mm
			q.in.MockTime = &clock
		}
	}
	if len(q.MockSensorValues) > maxMocks {
		b.Fail("mock_sensor_values", fmt.Sprintf("at most %d entries", maxMocks), "value_error")
		return
	}
	keys := make([]string, 0, len(q.MockSensorValues))
	for k := range q.MockSensorValues {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var bad []string
	for _, k := range keys {
		ref, err := logic.ParseMockKey(k)
		v, isNumber := q.MockSensorValues[k].(float64)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%q: %v", k, err))
		case !isNumber:
			bad = append(bad, fmt.Sprintf("%q: the value must be a number", k))
		default:
			q.in.Mocks = append(q.in.Mocks, logic.MockValue{Sensor: ref, Value: v})
		}
	}
	if len(bad) > 0 {
		b.Fail("mock_sensor_values", strings.Join(bad, "; "), "value_error")
	}
}

// testResponse is the dry-run's answer (docs/api.md §10.1), with the
// additive hysteresis_off and the gates' enabled, already_running and
// targets_offline.
type testResponse struct {
	Success          bool              `json:"success"`
	WouldTrigger     bool              `json:"would_trigger"`
	HysteresisOff    bool              `json:"hysteresis_off"`
	ConditionResults []testCondition   `json:"condition_results"`
	ActionResults    []testActionEntry `json:"action_results"`
	Gates            testGates         `json:"gates"`
	DryRun           bool              `json:"dry_run"`
}

type testCondition struct {
	ConditionIndex int      `json:"condition_index"` // the top-level condition the leaf belongs to
	Path           string   `json:"path"`
	ConditionType  string   `json:"condition_type"`
	Result         bool     `json:"result"`
	Details        *string  `json:"details"`
	ActualValue    *float64 `json:"actual_value"`
}

type testActionEntry struct {
	ActionIndex   int            `json:"action_index"`
	ActionType    string         `json:"action_type"`
	WouldExecute  bool           `json:"would_execute"`
	SafetyVerdict *safetyVerdict `json:"safety_verdict"`
	LockOutcome   *string        `json:"lock_outcome"`
	Details       string         `json:"details"`
	DryRun        bool           `json:"dry_run"`
}

// safetyVerdict is the answer of the checks of docs/domain.md §4.4.
type safetyVerdict struct {
	Allowed  bool     `json:"allowed"`
	Code     *string  `json:"code"`
	Message  *string  `json:"message"`
	Command  *string  `json:"command"`
	Value    *float64 `json:"value"`
	Duration *int64   `json:"duration"`
	Warnings []string `json:"warnings"`
}

type testGates struct {
	CooldownRemainingSeconds int  `json:"cooldown_remaining_seconds"`
	RateLimited              bool `json:"rate_limited"`
	Enabled                  bool `json:"enabled"`
	AlreadyRunning           bool `json:"already_running"`
	TargetsOffline           bool `json:"targets_offline"`
}

func opt[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

func testResponseOf(res logic.TestResult) testResponse {
	out := testResponse{
		Success:          true,
		WouldTrigger:     res.WouldTrigger,
		HysteresisOff:    res.HysteresisOff,
		ConditionResults: make([]testCondition, 0, len(res.Conditions)),
		ActionResults:    make([]testActionEntry, 0, len(res.Actions)),
		Gates: testGates{
			CooldownRemainingSeconds: res.Gates.CooldownRemainingSeconds,
			RateLimited:              res.Gates.RateLimited,
			Enabled:                  res.Gates.Enabled,
			AlreadyRunning:           res.Gates.AlreadyRunning,
			TargetsOffline:           res.Gates.TargetsOffline,
		},
		DryRun: true,
	}
	for _, l := range res.Conditions {
		top, _, _ := strings.Cut(l.Path, ".")
		i, _ := strconv.Atoi(top)
		out.ConditionResults = append(out.ConditionResults, testCondition{
			ConditionIndex: i,
			Path:           l.Path,
			ConditionType:  l.Type,
			Result:         l.Result,
			Details:        opt(l.Detail),
			ActualValue:    l.Actual,
		})
	}
	for _, a := range res.Actions {
		e := testActionEntry{
			ActionIndex:  a.Index,
			ActionType:   a.Type,
			WouldExecute: a.WouldExecute,
			LockOutcome:  opt(a.Lock),
			Details:      a.Details,
			DryRun:       true,
		}
		if v := a.Safety; v != nil {
			e.SafetyVerdict = &safetyVerdict{
				Allowed:  v.Allowed,
				Code:     opt(v.Code),
				Message:  opt(v.Message),
				Warnings: append([]string{}, v.Warnings...),
			}
			if v.Allowed && v.Command != "" {
				e.SafetyVerdict.Command, e.SafetyVerdict.Value, e.SafetyVerdict.Duration = &v.Command, &v.Value, &v.Duration
			}
		}
		out.ActionResults = append(out.ActionResults, e)
	}
	return out
}

// test is the dry-run: no side effects at all (docs/domain.md §6.12), so
// not audited either.
func (rt *routes) test(w http.ResponseWriter, r *http.Request, _ auth.Principal, id string) {
	var q testRequest
	if !api.Decode(w, r, &q) {
		return
	}
	res, err := rt.Rules.Test(r.Context(), id, q.in)
	if err != nil {
		rt.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, testResponseOf(res))
}
