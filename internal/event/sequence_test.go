package event

import (
	"encoding/json"
	"testing"
)

// Each sequence payload carries exactly the keys of docs/api.md §17.5, with
// null for an error a successful sequence does not have.
func TestSequencePayloadJSON(t *testing.T) {
	code, msg := "command_timeout", "step 1 (Pump 60 %): command timeout"
	tests := []struct {
		payload Payload
		typ     Type
		want    string
	}{
		{
			payload: SequenceStarted{SequenceID: "s1", RuleID: "r1", RuleName: "Morning fertigation", TotalSteps: 5,
				Description: "Open valve", Timestamp: 1767600940},
			typ: TypeSequenceStarted,
			want: `{"sequence_id":"s1","rule_id":"r1","rule_name":"Morning fertigation","total_steps":5,` +
				`"description":"Open valve","timestamp":1767600940}`,
		},
		{
			payload: SequenceStep{SequenceID: "s1", Step: 1, StepName: "Pump 60 %", TotalSteps: 5, ProgressPercent: 20,
				Status: "starting", Timestamp: 1767600945},
			typ: TypeSequenceStep,
			want: `{"sequence_id":"s1","step":1,"step_name":"Pump 60 %","total_steps":5,"progress_percent":20,` +
				`"status":"starting","timestamp":1767600945}`,
		},
		{
			payload: SequenceCompleted{SequenceID: "s1", Status: "completed", Success: true, DurationSeconds: 135.5,
				StepsCompleted: 5, Timestamp: 1767601075},
			typ: TypeSequenceCompleted,
			want: `{"sequence_id":"s1","status":"completed","success":true,"duration_seconds":135.5,` +
				`"steps_completed":5,"steps_failed":0,"error":null,"error_code":null,"timestamp":1767601075}`,
		},
		{
			payload: SequenceCompleted{SequenceID: "s1", Status: "failed", DurationSeconds: 40, StepsCompleted: 1,
				StepsFailed: 1, Error: &msg, ErrorCode: &code, Timestamp: 1767600980},
			typ: TypeSequenceCompleted,
			want: `{"sequence_id":"s1","status":"failed","success":false,"duration_seconds":40,"steps_completed":1,` +
				`"steps_failed":1,"error":"step 1 (Pump 60 %): command timeout","error_code":"command_timeout",` +
				`"timestamp":1767600980}`,
		},
		{
			payload: SequenceError{SequenceID: "s1", ErrorCode: code, Message: msg, Timestamp: 1767600980},
			typ:     TypeSequenceError,
			want: `{"sequence_id":"s1","error_code":"command_timeout","message":"step 1 (Pump 60 %): command timeout",` +
				`"timestamp":1767600980}`,
		},
		{
			payload: SequenceCancelled{SequenceID: "s1", Reason: "User cancelled", CancelledBy: "user:olga",
				Timestamp: 1767600990},
			typ: TypeSequenceCancelled,
			want: `{"sequence_id":"s1","reason":"User cancelled","cancelled_by":"user:olga",` +
				`"timestamp":1767600990}`,
		},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.payload)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("%s:\ngot  %s\nwant %s", tt.typ, b, tt.want)
		}
		if tt.payload.EventType() != tt.typ {
			t.Errorf("type %s, want %s", tt.payload.EventType(), tt.typ)
		}
	}
}
