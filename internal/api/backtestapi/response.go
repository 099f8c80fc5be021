package backtestapi

import (
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/logicapi"
	"github.com/kaiserhub/kaiser/internal/backtest"
	"github.com/kaiserhub/kaiser/internal/rule"
)

// response is the answer of POST /logic/backtest (docs/api.md §10.3).
type response struct {
	Success              bool             `json:"success"`
	RuleID               *string          `json:"rule_id"`
	RuleName             string           `json:"rule_name"`
	Enabled              bool             `json:"enabled"`
	Saved                bool             `json:"saved"`
	StartTime            *string          `json:"start_time"`
	EndTime              *string          `json:"end_time"`
	TimerIntervalSeconds int              `json:"timer_interval_seconds"`
	ChatterPerHour       int              `json:"chatter_per_hour"`
	Summary              summary          `json:"summary"`
	Sensors              []sensorSource   `json:"sensors"`
	Firings              []firing         `json:"firings"`
	FiringsTruncated     bool             `json:"firings_truncated"`
	Actuators            []actuatorReport `json:"actuators"`
	Warnings             []warning        `json:"warnings"`
	Assumptions          []string         `json:"assumptions"`
	Limits               limits           `json:"limits"`
	// ValidationWarnings are the non-fatal findings of an unsaved document.
	ValidationWarnings []logicapi.IssueObject `json:"validation_warnings"`
}

type summary struct {
	SamplesReplayed    int `json:"samples_replayed"`
	SensorTriggers     int `json:"sensor_triggers"`
	TimerTriggers      int `json:"timer_triggers"`
	ConditionsMatched  int `json:"conditions_matched"`
	Firings            int `json:"firings"`
	HysteresisOffs     int `json:"hysteresis_offs"`
	SkippedCooldown    int `json:"skipped_cooldown"`
	SkippedRateLimited int `json:"skipped_rate_limited"`
	SkippedRunning     int `json:"skipped_already_running"`
	Continuations      int `json:"continuations"`
	SequencesStarted   int `json:"sequences_started"`
}

type sensorSource struct {
	EspID      string  `json:"esp_id"`
	GPIO       int     `json:"gpio"`
	SensorType string  `json:"sensor_type"`
	Address    string  `json:"address"`
	Source     string  `json:"source"`
	RawFrom    *string `json:"raw_from"`
	Samples    int     `json:"samples"`
}

type firing struct {
	At               *string           `json:"at"`
	Kind             string            `json:"kind"`
	Trigger          rule.Trigger      `json:"trigger"`
	ConditionResults []rule.LeafResult `json:"condition_results"`
	Actions          []action          `json:"actions"`
}

type action struct {
	At              *string  `json:"at"`
	Index           *int     `json:"index"`
	Type            string   `json:"type"`
	Target          string   `json:"target,omitempty"`
	Command         string   `json:"command,omitempty"`
	Value           *float64 `json:"value,omitempty"`
	DurationSeconds *int64   `json:"duration_seconds,omitempty"`
	AutoOffAt       *string  `json:"auto_off_at,omitempty"`
	SequenceID      string   `json:"sequence_id,omitempty"`
	Step            *int     `json:"step,omitempty"`
	Status          string   `json:"status"`
	Code            string   `json:"code,omitempty"`
	Message         string   `json:"message,omitempty"`
}

type actuatorReport struct {
	EspID             string  `json:"esp_id"`
	GPIO              int     `json:"gpio"`
	Configured        bool    `json:"configured"`
	MaxRuntimeSeconds int     `json:"max_runtime_seconds"`
	Commands          int     `json:"commands"`
	Blocked           int     `json:"blocked"`
	SkippedNoChange   int     `json:"skipped_no_change"`
	SwitchCount       int     `json:"switch_count"`
	SwitchOns         int     `json:"switch_ons"`
	SwitchOffs        int     `json:"switch_offs"`
	OnSeconds         float64 `json:"on_seconds"`
	DurationOffs      int     `json:"duration_offs"`
	MaxRuntimeOffs    int     `json:"max_runtime_offs"`
	DurationClamped   int     `json:"duration_clamped"`
	MaxOnsPerHour     int     `json:"max_switch_ons_per_hour"`
	FinalState        string  `json:"final_state"`
}

type warning struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Target  *string `json:"target"`
	Count   int     `json:"count"`
	FirstAt *string `json:"first_at"`
}

type limits struct {
	MaxRangeDays  int `json:"max_range_days"`
	MaxSeries     int `json:"max_series"`
	MaxSamples    int `json:"max_samples"`
	FiringsListed int `json:"max_firings_listed"`
}

func responseOf(rep backtest.Report) response {
	out := response{
		Success:              true,
		RuleID:               api.NullString(rep.RuleID),
		RuleName:             rep.RuleName,
		Enabled:              rep.Enabled,
		Saved:                rep.Saved,
		StartTime:            api.Timestamp(rep.Start),
		EndTime:              api.Timestamp(rep.End),
		TimerIntervalSeconds: int(rep.TimerInterval / time.Second),
		ChatterPerHour:       rep.Chatter,
		Summary:              summaryOf(rep.Summary),
		Sensors:              make([]sensorSource, 0, len(rep.Sensors)),
		Firings:              make([]firing, 0, len(rep.Firings)),
		FiringsTruncated:     rep.FiringsTruncated,
		Actuators:            make([]actuatorReport, 0, len(rep.Actuators)),
		Warnings:             make([]warning, 0, len(rep.Warnings)),
		Assumptions:          backtest.Assumptions,
		Limits: limits{
			MaxRangeDays:  int(backtest.MaxRange / (24 * time.Hour)),
			MaxSeries:     backtest.MaxSeries,
			MaxSamples:    backtest.MaxSamples,
			FiringsListed: backtest.MaxFirings,
		},
		ValidationWarnings: logicapi.IssuesAt(rep.ValidationWarnings, "body", "rule"),
	}
	for _, s := range rep.Sensors {
		out.Sensors = append(out.Sensors, sensorSource{
			EspID:      s.EspID,
			GPIO:       s.GPIO,
			SensorType: s.SensorType,
			Address:    s.Address,
			Source:     s.Source,
			RawFrom:    api.NullTimestamp(s.RawFrom),
			Samples:    s.Samples,
		})
	}
	for _, f := range rep.Firings {
		out.Firings = append(out.Firings, firingOf(f))
	}
	for _, a := range rep.Actuators {
		out.Actuators = append(out.Actuators, actuatorOf(a))
	}
	for _, w := range rep.Warnings {
		out.Warnings = append(out.Warnings, warning{
			Code:    w.Code,
			Message: w.Message,
			Target:  api.NullString(w.Target),
			Count:   w.Count,
			FirstAt: api.NullTimestamp(w.FirstAt),
		})
	}
	return out
}

func summaryOf(s backtest.Summary) summary {
	return summary{
		SamplesReplayed:    s.Samples,
		SensorTriggers:     s.SensorTriggers,
		TimerTriggers:      s.TimerTriggers,
		ConditionsMatched:  s.Matched,
		Firings:            s.Firings,
		HysteresisOffs:     s.HysteresisOffs,
		SkippedCooldown:    s.Cooldown,
		SkippedRateLimited: s.RateLimited,
		SkippedRunning:     s.AlreadyRunning,
		Continuations:      s.Continuations,
		SequencesStarted:   s.SequencesStarted,
	}
}

func firingOf(f *backtest.Firing) firing {
	out := firing{
		At:               api.Timestamp(f.At),
		Kind:             f.Kind,
		Trigger:          f.Trigger,
		ConditionResults: f.Conditions,
		Actions:          make([]action, 0, len(f.Actions)),
	}
	if out.ConditionResults == nil {
		out.ConditionResults = []rule.LeafResult{}
	}
	for _, a := range f.Actions {
		x := action{
			At:              api.Timestamp(a.At),
			Type:            a.Type,
			Target:          a.Target,
			Command:         a.Command,
			Value:           a.Value,
			DurationSeconds: a.DurationSeconds,
			AutoOffAt:       api.NullTimestamp(a.AutoOffAt),
			SequenceID:      a.SequenceID,
			Step:            a.Step,
			Status:          a.Status,
			Code:            a.Code,
			Message:         a.Message,
		}
		if a.Index >= 0 {
			i := a.Index
			x.Index = &i
		}
		out.Actions = append(out.Actions, x)
	}
	return out
}

func actuatorOf(a backtest.ActuatorReport) actuatorReport {
	return actuatorReport{
		EspID:             a.EspID,
		GPIO:              a.GPIO,
		Configured:        a.Configured,
		MaxRuntimeSeconds: a.MaxRuntimeSeconds,
		Commands:          a.Commands,
		Blocked:           a.Blocked,
		SkippedNoChange:   a.NoChange,
		SwitchCount:       a.SwitchCount,
		SwitchOns:         a.SwitchOns,
		SwitchOffs:        a.SwitchOffs,
		OnSeconds:         a.OnSeconds,
		DurationOffs:      a.DurationOffs,
		MaxRuntimeOffs:    a.MaxRuntimeOffs,
		DurationClamped:   a.DurationClamped,
		MaxOnsPerHour:     a.MaxOnsPerHour,
		FinalState:        a.FinalState,
	}
}
