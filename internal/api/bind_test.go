package api_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/apitest"
)

type bindItem struct {
	Name  string `json:"name" api:"required,min=1,max=5"`
	Count int    `json:"count" api:"min=0,max=9"`
}

type bindProbe struct {
	ID      string          `json:"id" api:"required,min=1,max=31,pattern=esp_id"`
	Level   int             `json:"level" api:"min=0,max=100,default=7"`
	Ratio   float64         `json:"ratio" api:"min=0,max=1"`
	On      bool            `json:"on" api:"default=true"`
	Mode    string          `json:"mode" api:"min=1,max=10,enum=a|b|c,default=a"`
	Secret  string          `json:"secret" api:"raw"`
	Label   *string         `json:"label" api:"max=3"`
	Limit   *int            `json:"limit" api:"min=1,max=10"`
	Master  api.Field[bool] `json:"master"`
	Extra   map[string]any  `json:"extra"`
	Items   []bindItem      `json:"items" api:"max=2"`
	Ignored string          `json:"-"`
	hidden  string          //nolint:unused // proves unexported fields are skipped
}

func (p *bindProbe) Validate(b *api.Body) {
	if p.Ratio > 0.5 && !p.On {
		b.Fail("ratio", "must be at most 0.5 while off", "value_error")
	}
}

func decodeProbe(t *testing.T, body string) (bindProbe, apitest.Response) {
	t.Helper()
	var p bindProbe
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/", strings.NewReader(body))
	if api.Decode(rec, req, &p) {
		rec.WriteHeader(http.StatusNoContent)
	}
	return p, apitest.Decode(t, rec)
}

// docs/api.md §1.2: integral floats fill integers, defaults fill absent fields,
// strings are trimmed unless raw, and every failing field is reported.
func TestDecodeAcceptsTolerantInput(t *testing.T) {
	p, r := decodeProbe(t, `{"id": " ESP_1 ", "level": 34.0, "ratio": 0.25, "secret": "  s  ", "limit": 3,
		"items": [{"name": "x", "count": 2.0}], "unknown": {"ignored": true}}`)
	if r.Status != http.StatusNoContent {
		t.Fatalf("rejected: %d %s", r.Status, r.Raw)
	}
	want := bindProbe{
		ID:     "ESP_1",
		Level:  34,
		Ratio:  0.25,
		On:     true,
		Mode:   "a",
		Secret: "  s  ",
		Items:  []bindItem{{Name: "x", Count: 2}},
	}
	limit := 3
	want.Limit = &limit
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("decoded %+v, want %+v", p, want)
	}
}

func TestDecodeDefaultsWhenAbsentOrNull(t *testing.T) {
	p, r := decodeProbe(t, `{"id": "E", "level": null, "on": null, "mode": null, "label": null, "limit": null}`)
	if r.Status != http.StatusNoContent {
		t.Fatalf("rejected: %s", r.Raw)
	}
	if p.Level != 7 || !p.On || p.Mode != "a" || p.Label != nil || p.Limit != nil {
		t.Fatalf("defaults not applied: %+v", p)
	}
}

func TestDecodeTellsAbsentFromNull(t *testing.T) {
	tests := []struct {
		name                 string
		body                 string
		present, null, value bool
	}{
		{"absent", `{"id": "E"}`, false, false, false},
		{"null", `{"id": "E", "master": null}`, true, true, false},
		{"true", `{"id": "E", "master": true}`, true, false, true},
		{"false", `{"id": "E", "master": false}`, true, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, r := decodeProbe(t, tc.body)
			if r.Status != http.StatusNoContent {
				t.Fatalf("rejected: %s", r.Raw)
			}
			if p.Master.Present != tc.present || p.Master.Null != tc.null || p.Master.Value != tc.value {
				t.Fatalf("master = %+v", p.Master)
			}
			if got := p.Master.Or(true); got != (tc.value || !tc.present || tc.null) {
				t.Fatalf("Or(true) = %v", got)
			}
		})
	}
}

func TestDecodeReportsEveryFieldError(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"missing required", `{}`, []string{"body.id: missing"}},
		{"fraction for an integer", `{"id": "E", "level": 34.5}`, []string{"body.level: type_error"}},
		{"integer out of range", `{"id": "E", "level": 101}`, []string{"body.level: less_than_equal"}},
		{"number below range", `{"id": "E", "ratio": -1}`, []string{"body.ratio: greater_than_equal"}},
		{"string for a number", `{"id": "E", "ratio": "1"}`, []string{"body.ratio: type_error"}},
		{"pattern", `{"id": "bad id"}`, []string{"body.id: string_pattern_mismatch"}},
		{"too long", `{"id": "E", "label": "abcd"}`, []string{"body.label: string_too_long"}},
		{"too short", `{"id": "E", "mode": ""}`, []string{"body.mode: string_too_short"}},
		{"enum", `{"id": "E", "mode": "z"}`, []string{"body.mode: enum"}},
		{"bool type", `{"id": "E", "on": "yes"}`, []string{"body.on: type_error"}},
		{"field of a pointer", `{"id": "E", "limit": 0}`, []string{"body.limit: greater_than_equal"}},
		{"Field type", `{"id": "E", "master": 1}`, []string{"body.master: type_error"}},
		{"object type", `{"id": "E", "extra": [1]}`, []string{"body.extra: type_error"}},
		{"array type", `{"id": "E", "items": {}}`, []string{"body.items: type_error"}},
		{"too many items", `{"id": "E", "items": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}`,
			[]string{"body.items: value_error"}},
		{"item errors carry their index", `{"id": "E", "items": [5, {"count": 10}]}`,
			[]string{"body.items.0: type_error", "body.items.1.name: missing", "body.items.1.count: less_than_equal"}},
		{"cross-field rule", `{"id": "E", "ratio": 0.9, "on": false}`, []string{"body.ratio: value_error"}},
		{"all together", `{"id": 5, "level": 1.5, "mode": "q", "limit": "x"}`,
			[]string{"body.id: type_error", "body.level: type_error", "body.mode: enum", "body.limit: type_error"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, r := decodeProbe(t, tc.body)
			if r.Status != http.StatusUnprocessableEntity || r.Code() != "VALIDATION_ERROR" {
				t.Fatalf("status %d %s", r.Status, r.Raw)
			}
			if got := r.FieldErrors(); !slices.Equal(got, tc.want) {
				t.Fatalf("errors %v, want %v", got, tc.want)
			}
			details := r.Obj("error")["details"].(map[string]any)["errors"].([]any)
			if len(details) != len(tc.want) {
				t.Fatalf("error.details.errors differs from detail: %s", r.Raw)
			}
		})
	}
}

func TestDecodeBoundsFreeFormObjects(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 11) + "1" + strings.Repeat("}", 11)
	big := `{"s": "` + strings.Repeat("x", 17<<10) + `"}`
	for name, extra := range map[string]string{"deep": deep, "big": big} {
		t.Run(name, func(t *testing.T) {
			_, r := decodeProbe(t, `{"id": "E", "extra": `+extra+`}`)
			if got := r.FieldErrors(); !slices.Equal(got, []string{"body.extra: value_error"}) {
				t.Fatalf("errors %v (%d)", got, r.Status)
			}
		})
	}
	p, r := decodeProbe(t, `{"id": "E", "extra": {"n": 2, "list": [1.5]}}`)
	if r.Status != http.StatusNoContent || p.Extra["n"] != 2.0 || p.Extra["list"].([]any)[0] != 1.5 {
		t.Fatalf("object numbers not normalised: %+v %s", p.Extra, r.Raw)
	}
}

func TestDecodeRejectsWhatIsNotAJSONObject(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		status                  int
		code                    string
	}{
		{"invalid JSON", "application/json", `{"id": `, 422, "VALIDATION_ERROR"},
		{"trailing data", "", `{"id": "E"} {}`, 422, "VALIDATION_ERROR"},
		{"array", "", `[1]`, 422, "VALIDATION_ERROR"},
		{"form", "application/x-www-form-urlencoded", `id=E`, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"bad media type", "garbage/", `{}`, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"too large", "application/json", `{"id": "` + strings.Repeat("x", api.MaxBody) + `"}`, 413, "PAYLOAD_TOO_LARGE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			var p bindProbe
			if api.Decode(rec, req, &p) {
				t.Fatal("accepted")
			}
			r := apitest.Decode(t, rec)
			if r.Status != tc.status || r.Code() != tc.code {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
		})
	}
}

func TestDecodeAcceptsJSONMediaTypesAndEmptyBodies(t *testing.T) {
	for _, ct := range []string{"", "application/json; charset=utf-8", "application/merge-patch+json"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/", strings.NewReader(""))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		var p struct {
			On bool `json:"on" api:"default=true"`
		}
		if !api.Decode(rec, req, &p) || !p.On {
			t.Fatalf("%q: empty body refused: %s", ct, rec.Body.String())
		}
	}
}

func TestBadTagsPanicAtFirstUse(t *testing.T) {
	type badPattern struct {
		X string `json:"x" api:"pattern=nope"`
	}
	type badRule struct {
		X string `json:"x" api:"maybe"`
	}
	type badBound struct {
		X int `json:"x" api:"min=one"`
	}
	for name, v := range map[string]any{"pattern": &badPattern{}, "rule": &badRule{}, "bound": &badBound{}} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			api.Decode(httptest.NewRecorder(), httptest.NewRequest("POST", "/", strings.NewReader(`{}`)), v)
		})
	}
}

func TestQueryParameters(t *testing.T) {
	req := httptest.NewRequest("GET", "/?n=5&big=500&neg=-1&word=x&on=TRUE&off=0&bad=maybe&at=2026-01-05&unix=10&t=soon"+
		"&long=abcdef", nil)
	q := api.NewQuery(req)
	if q.Int("n", 1, 1, 10) != 5 || q.Int("absent", 3, 1, 10) != 3 || !q.Bool("on", false) || q.Bool("off", true) {
		t.Fatal("valid parameters misread")
	}
	if !q.Set("n") || q.Set("absent") {
		t.Fatal("Set")
	}
	if got := q.Time("at"); got.Format("2006-01-02") != "2026-01-05" || q.Time("unix").Unix() != 10 ||
		!q.Time("none").IsZero() {
		t.Fatalf("time %v", got)
	}
	if q.Done(httptest.NewRecorder(), req) {
		t.Fatal("valid parameters reported as errors")
	}

	q.Int("big", 1, 1, 100)
	q.Int("neg", 1, 1, 100)
	q.Int("word", 1, 1, 100)
	q.Bool("bad", false)
	q.Time("t")
	q.Str("long", 3)
	rec := httptest.NewRecorder()
	if !q.Done(rec, req) {
		t.Fatal("errors not reported")
	}
	got := apitest.Decode(t, rec).FieldErrors()
	want := []string{"query.big: less_than_equal", "query.neg: greater_than_equal", "query.word: type_error",
		"query.bad: type_error", "query.t: datetime_parsing", "query.long: string_too_long"}
	if !slices.Equal(got, want) {
		t.Fatalf("errors %v", got)
	}
}
