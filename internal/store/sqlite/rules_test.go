package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func TestRulesRoundTripAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	now := time.Now().UTC().Truncate(time.Millisecond)

	a := store.Rule{ID: "a", Name: "Vent fan", Enabled: true, Priority: 40, Doc: []byte(`{"name":"Vent fan"}`),
		CreatedAt: now, UpdatedAt: now}
	b := store.Rule{ID: "b", Name: "Heater", Enabled: false, Priority: 20, Doc: []byte(`{}`), CreatedAt: now, UpdatedAt: now}
	for _, r := range []store.Rule{a, b} {
		if err := s.SaveRule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	dup := store.Rule{ID: "c", Name: "Heater", Doc: []byte(`{}`), CreatedAt: now, UpdatedAt: now}
	if err := s.SaveRule(ctx, dup); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("duplicate name: %v", err)
	}
	if err := s.SetRuleTriggered(ctx, "a", now); err != nil {
		t.Fatal(err)
	}

	v := 17.5
	if err := s.SaveHysteresis(ctx, store.HysteresisState{RuleID: "b", Path: "0", Active: true, LastValue: &v,
		LastActivation: &now}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveContinuation(ctx, store.RuleContinuation{ID: "k", RuleID: "a", ExecutionID: "e1",
		DueAt: now.Add(time.Minute), Doc: []byte(`{"next":1}`)}); err != nil {
		t.Fatal(err)
	}
	for i, ok := range []bool{true, false} {
		e := store.RuleExecution{ID: []string{"e1", "e2"}[i], RuleID: "a", RuleName: "Vent fan",
			TriggeredAt: now.Add(time.Duration(i) * time.Second), TriggerReason: "sensor", Trigger: []byte(`{}`),
			ConditionResults: []byte(`[]`), ActionResults: []byte(`[]`), Success: ok}
		if err := s.SaveRuleExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
		took := int64(12)
		e.FinishedAt, e.ExecutionMS, e.ActionResults = &now, &took, []byte(`[{"status":"succeeded"}]`)
		if err := s.SaveRuleExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// A row of a rule that does not exist is not written.
	if err := s.SaveRuleExecution(ctx, store.RuleExecution{ID: "x", RuleID: "gone", TriggeredAt: now,
		Trigger: []byte(`{}`), ConditionResults: []byte(`[]`), ActionResults: []byte(`[]`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	defer s.Close(ctx)
	rules, err := s.LoadRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0].ID != "b" || rules[1].ID != "a" || rules[1].LastTriggered == nil ||
		!rules[1].LastTriggered.Equal(now) || rules[0].Enabled || string(rules[1].Doc) != `{"name":"Vent fan"}` {
		t.Errorf("rules = %+v", rules)
	}
	page, err := s.QueryRuleExecutions(ctx, store.RuleExecutionFilter{From: now.Add(-time.Hour), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 2 || page.Succeeded != 1 || len(page.Entries) != 2 || page.Entries[0].ID != "e2" ||
		page.Entries[0].FinishedAt == nil || *page.Entries[0].ExecutionMS != 12 ||
		string(page.Entries[0].ActionResults) != `[{"status":"succeeded"}]` {
		t.Errorf("history = %+v", page)
	}
	yes := true
	page, _ = s.QueryRuleExecutions(ctx, store.RuleExecutionFilter{RuleID: "a", Success: &yes, From: now, Limit: 10})
	if page.Total != 1 || page.Entries[0].ID != "e1" {
		t.Errorf("filtered history = %+v", page)
	}
	stats, _ := s.RuleStats(ctx)
	if st := stats["a"]; st.Count != 2 || st.LastSuccess == nil || *st.LastSuccess {
		t.Errorf("stats = %+v", stats)
	}
	hs, _ := s.LoadHysteresis(ctx)
	if len(hs) != 1 || !hs[0].Active || *hs[0].LastValue != 17.5 || !hs[0].LastActivation.Equal(now) {
		t.Errorf("hysteresis = %+v", hs)
	}
	ks, _ := s.LoadContinuations(ctx)
	if len(ks) != 1 || ks[0].ExecutionID != "e1" || !ks[0].DueAt.Equal(now.Add(time.Minute)) {
		t.Errorf("continuations = %+v", ks)
	}

	if err := s.DeleteRule(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	page, _ = s.QueryRuleExecutions(ctx, store.RuleExecutionFilter{From: now.Add(-time.Hour), Limit: 10})
	ks, _ = s.LoadContinuations(ctx)
	if page.Total != 0 || len(ks) != 0 {
		t.Errorf("a deleted rule's history and continuations stay: %+v %+v", page, ks)
	}
	if err := s.ResetHysteresis(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if hs, _ := s.LoadHysteresis(ctx); len(hs) != 0 {
		t.Errorf("reset left %+v", hs)
	}
}
