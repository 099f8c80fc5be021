package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxBody is the request body limit (docs/api.md §1.2).
const MaxBody = 1 << 20

// fieldError is one validation entry of a 422 (docs/api.md §1.5).
type fieldError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// Body is a decoded JSON object body with the field errors found in it so
// far; every error of a request is reported together (docs/api.md §1.5).
type Body struct {
	m      map[string]any
	errs   []fieldError
	prefix []any // where this object sits: ["body"] or ["body", "sensors", 2]
}

func newBody(m map[string]any, prefix ...any) *Body {
	if m == nil {
		m = map[string]any{}
	}
	if len(prefix) == 0 {
		prefix = []any{"body"}
	}
	return &Body{m: m, prefix: prefix}
}

// NewBody is an empty body, for a request that is not JSON (a form) whose
// field errors are reported the same way.
func NewBody() *Body { return newBody(nil) }

// BodyError answers 422 for a body that cannot be read as a whole.
func BodyError(w http.ResponseWriter, r *http.Request, msg, typ string) {
	writeValidation(w, r, []fieldError{{Loc: []any{"body"}, Msg: msg, Type: typ}})
}

// readBody decodes a JSON object body. It answers 415, 413 or 422 itself
// and returns false then. An absent body is an empty object.
func readBody(w http.ResponseWriter, r *http.Request) (*Body, bool) {
	if !jsonContentType(r.Header.Get("Content-Type")) {
		WriteError(w, r, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE",
			"Content-Type must be application/json", nil)
		return nil, false
	}

	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		WriteError(w, r, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "request body larger than 1 MiB", nil)
		return nil, false
	case err != nil:
		WriteError(w, r, http.StatusBadRequest, "BAD_REQUEST", "could not read request body", nil)
		return nil, false
	}

	if len(bytes.TrimSpace(raw)) == 0 {
		return newBody(nil), true
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		BodyError(w, r, "invalid JSON", "json_invalid")
		return nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		BodyError(w, r, "body must be a JSON object", "type_error")
		return nil, false
	}
	return newBody(m), true
}

// jsonContentType accepts application/json, application/*+json and no type at all (docs/api.md §1.2).
func jsonContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// validationBody is the 422 of docs/api.md §1.5: detail is the list of field errors.
type validationBody struct {
	Success bool            `json:"success"`
	Detail  []fieldError    `json:"detail"`
	Error   validationError `json:"error"`
}

type validationError struct {
	Code      string            `json:"code"`
	Message   string            `json:"message"`
	Details   validationDetails `json:"details"`
	RequestID string            `json:"request_id"`
}

type validationDetails struct {
	Errors []fieldError `json:"errors"`
}

func writeValidation(w http.ResponseWriter, r *http.Request, errs []fieldError) {
	WriteJSON(w, http.StatusUnprocessableEntity, validationBody{
		Detail: errs,
		Error: validationError{
			Code:      "VALIDATION_ERROR",
			Message:   "request validation failed",
			Details:   validationDetails{Errors: errs},
			RequestID: RequestID(r),
		},
	})
}

// Done writes the 422 if any field failed and reports whether it did.
func (b *Body) Done(w http.ResponseWriter, r *http.Request) bool {
	if len(b.errs) == 0 {
		return false
	}
	writeValidation(w, r, b.errs)
	return true
}

// Fail records a field error; name is the field's JSON name.
func (b *Body) Fail(name, msg, typ string) {
	b.failAt(name, violation{msg: msg, typ: typ})
}

func (b *Body) failAt(name any, v violation) {
	loc := append(append([]any(nil), b.prefix...), name)
	b.errs = append(b.errs, fieldError{Loc: loc, Msg: v.msg, Type: v.typ})
}

// Failed reports whether the named field already has an error, so that a
// cross-field rule does not pile a second complaint on a missing value.
func (b *Body) Failed(name string) bool {
	for _, e := range b.errs {
		if len(e.Loc) == len(b.prefix)+1 && e.Loc[len(b.prefix)] == name {
			return true
		}
	}
	return false
}

// JSON is the body as read, for a route that hands a whole document to
// its domain (a rule document, docs/api.md §10.2).
func (b *Body) JSON() ([]byte, error) { return json.Marshal(b.m) }

// Keys are the body's field names, for rules about unknown fields.
func (b *Body) Keys() []string {
	keys := make([]string, 0, len(b.m))
	for k := range b.m {
		keys = append(keys, k)
	}
	return keys
}

// violation is what a value did wrong, before it is placed in the body.
type violation struct {
	msg, typ string
}

var (
	errNotString  = &violation{"must be a string", "type_error"}
	errNotBool    = &violation{"must be a boolean", "type_error"}
	errNotNumber  = &violation{"must be a number", "type_error"}
	errNotFinite  = &violation{"must be a finite number", "type_error"}
	errNotInteger = &violation{"must be an integer", "type_error"}
	errNotObject  = &violation{"must be an object", "type_error"}
	errNotArray   = &violation{"must be an array", "type_error"}
	errMissing    = violation{"field required", "missing"}
)

// stringRules bound a string field: byte length (max 0 = none) and a pattern.
type stringRules struct {
	min, max int
	pattern  *regexp.Regexp
	raw      bool // keep surrounding whitespace (passwords)
}

func asString(v any, rules stringRules) (string, *violation) {
	s, ok := v.(string)
	if !ok {
		return "", errNotString
	}
	if !rules.raw {
		s = strings.TrimSpace(s)
	}
	switch {
	case len(s) < rules.min:
		return "", &violation{"must have at least " + strconv.Itoa(rules.min) + " characters", "string_too_short"}
	case rules.max > 0 && len(s) > rules.max:
		return "", &violation{"must have at most " + strconv.Itoa(rules.max) + " characters", "string_too_long"}
	case rules.pattern != nil && !rules.pattern.MatchString(s):
		return "", &violation{"must match " + rules.pattern.String(), "string_pattern_mismatch"}
	}
	return s, nil
}

func asBool(v any) (bool, *violation) {
	x, ok := v.(bool)
	if !ok {
		return false, errNotBool
	}
	return x, nil
}

// asNumber reads a finite JSON number within [min, max].
func asNumber(v any, min, max float64) (float64, *violation) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, errNotNumber
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errNotFinite
	}
	if f < min {
		return 0, &violation{"must be ≥ " + strconv.FormatFloat(min, 'g', -1, 64), "greater_than_equal"}
	}
	if f > max {
		return 0, &violation{"must be ≤ " + strconv.FormatFloat(max, 'g', -1, 64), "less_than_equal"}
	}
	return f, nil
}

// asInteger accepts integral floats such as 34.0 (docs/api.md §1.2).
func asInteger(v any, min, max float64) (int64, *violation) {
	f, bad := asNumber(v, min, max)
	if bad != nil {
		return 0, bad
	}
	if f != math.Trunc(f) {
		return 0, errNotInteger
	}
	return int64(f), nil
}

// Free-form objects are bounded (docs/api.md §1.2).
const (
	maxObjectBytes = 16 << 10
	maxObjectDepth = 10
)

// asObject reads a free-form object and turns its numbers into float64 for storage.
func asObject(v any) (map[string]any, *violation) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errNotObject
	}
	if raw, _ := json.Marshal(m); len(raw) > maxObjectBytes {
		return nil, &violation{"must be at most 16 KiB", "value_error"}
	}
	if depth(m) > maxObjectDepth {
		return nil, &violation{"must be at most 10 levels deep", "value_error"}
	}
	return NormaliseNumbers(m).(map[string]any), nil
}

func depth(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, c := range x {
			d = max(d, depth(c))
		}
	case []any:
		for _, c := range x {
			d = max(d, depth(c))
		}
	default:
		return 0
	}
	return d + 1
}

// NormaliseNumbers turns the json.Number values in v (a decoded JSON value,
// changed in place) into float64 for storage.
func NormaliseNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			x[k] = NormaliseNumbers(c)
		}
	case []any:
		for i, c := range x {
			x[i] = NormaliseNumbers(c)
		}
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return v
}

// Query reads query parameters, collecting errors like Body does.
type Query struct {
	r    *http.Request
	errs []fieldError
}

// NewQuery reads r's query parameters.
func NewQuery(r *http.Request) *Query { return &Query{r: r} }

// Fail records a parameter error.
func (q *Query) Fail(name, msg, typ string) {
	q.errs = append(q.errs, fieldError{Loc: []any{"query", name}, Msg: msg, Type: typ})
}

// Set reports whether the parameter is given (non-empty).
func (q *Query) Set(name string) bool { return q.r.URL.Query().Get(name) != "" }

// Str reads a trimmed string of at most max bytes (0 = no limit).
func (q *Query) Str(name string, max int) string {
	v := strings.TrimSpace(q.r.URL.Query().Get(name))
	if max > 0 && len(v) > max {
		q.Fail(name, "too long", "string_too_long")
		return ""
	}
	return v
}

// Int reads an integer within [min, max], def when absent or invalid.
func (q *Query) Int(name string, def, min, max int) int {
	v := q.r.URL.Query().Get(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		q.Fail(name, "must be an integer", "type_error")
	case n < min:
		q.Fail(name, "must be ≥ "+strconv.Itoa(min), "greater_than_equal")
	case n > max:
		q.Fail(name, "must be ≤ "+strconv.Itoa(max), "less_than_equal")
	default:
		return n
	}
	return def
}

// Bool reads true/false/1/0, case-insensitive (docs/api.md §1.2).
func (q *Query) Bool(name string, def bool) bool {
	switch strings.ToLower(q.r.URL.Query().Get(name)) {
	case "":
		return def
	case "true", "1":
		return true
	case "false", "0":
		return false
	}
	q.Fail(name, "must be a boolean", "type_error")
	return def
}

// Time reads an ISO 8601 datetime or unix seconds; zero when absent.
func (q *Query) Time(name string) time.Time {
	v := q.r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(n, 0).UTC()
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC()
		}
	}
	q.Fail(name, "must be an ISO 8601 datetime or unix seconds", "datetime_parsing")
	return time.Time{}
}

// Done writes the 422 if any parameter failed and reports whether it did.
func (q *Query) Done(w http.ResponseWriter, r *http.Request) bool {
	if len(q.errs) == 0 {
		return false
	}
	writeValidation(w, r, q.errs)
	return true
}

// PageMeta is the pagination object of docs/api.md §1.7.
type PageMeta struct {
	Page       int  `json:"page"`
	PageSize   int  `json:"page_size"`
	TotalItems int  `json:"total_items"`
	TotalPages int  `json:"total_pages"`
	HasNext    bool `json:"has_next"`
	HasPrev    bool `json:"has_prev"`
}

// Pagination is the meta of page (from 1) of size items out of total.
func Pagination(page, size, total int) PageMeta {
	pages := (total + size - 1) / size
	return PageMeta{
		Page:       page,
		PageSize:   size,
		TotalItems: total,
		TotalPages: pages,
		HasNext:    page < pages,
		HasPrev:    page > 1,
	}
}

// PageOf is a paginated list (docs/api.md §1.4).
type PageOf[T any] struct {
	Success    bool     `json:"success"`
	Data       []T      `json:"data"`
	Pagination PageMeta `json:"pagination"`
}

// NewPage is data as page of size items out of total; no data is an empty list.
func NewPage[T any](data []T, page, size, total int) PageOf[T] {
	if data == nil {
		data = []T{}
	}
	return PageOf[T]{Success: true, Data: data, Pagination: Pagination(page, size, total)}
}

// WritePage answers one page of rows filtered in memory (docs/api.md §1.7): a page
// past the end is empty with correct meta, never 404.
func WritePage[T any](w http.ResponseWriter, rows []T, page, size int) {
	total := len(rows)
	from, to := min((page-1)*size, total), min(page*size, total)
	WriteJSON(w, http.StatusOK, NewPage(rows[from:to], page, size, total))
}

// NullTimestamp formats t as docs/api.md §1.3 wants it (RFC 3339, UTC, milliseconds);
// nil (JSON null) for no time.
func NullTimestamp(t *time.Time) *string {
	if t == nil || t.IsZero() {
		return nil
	}
	s := t.UTC().Format("2006-01-02T15:04:05.000Z")
	return &s
}

// Timestamp is t as a response timestamp (docs/api.md §1.3); nil for the zero time.
func Timestamp(t time.Time) *string { return NullTimestamp(&t) }

// NullString is s, or nil (JSON null) for the empty string.
func NullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// MetadataInt is a number of a device's metadata as int64: float64 once
// stored, int64 or int when fresh from a heartbeat; 0 for anything else.
func MetadataInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return 0
}

// FormatUptime is seconds as "1d 2h 3m".
func FormatUptime(sec int64) string {
	d, h, m := sec/86400, sec%86400/3600, sec%3600/60
	return fmt.Sprintf("%dd %dh %dm", d, h, m)
}
