package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxBody is the request body limit (API §1.2).
const MaxBody = 1 << 20

// fieldError is one validation entry of a 422 (API §1.5).
type fieldError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// body is a decoded JSON object body with a validation error list.
type body struct {
	m    map[string]any
	errs []fieldError
}

// readBody decodes a JSON object body. It answers 415, 413 or 422 itself
// and returns false then. An absent body is an empty object.
func readBody(w http.ResponseWriter, r *http.Request) (*body, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
			WriteError(w, r, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json", nil)
			return nil, false
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			WriteError(w, r, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "request body larger than 1 MiB", nil)
			return nil, false
		}
		WriteError(w, r, http.StatusBadRequest, "BAD_REQUEST", "could not read request body", nil)
		return nil, false
	}
	b := &body{m: map[string]any{}}
	if len(bytes.TrimSpace(raw)) == 0 {
		return b, true
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		writeValidation(w, r, []fieldError{{Loc: []any{"body"}, Msg: "invalid JSON", Type: "json_invalid"}})
		return nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		writeValidation(w, r, []fieldError{{Loc: []any{"body"}, Msg: "body must be a JSON object", Type: "type_error"}})
		return nil, false
	}
	b.m = m
	return b, true
}

func writeValidation(w http.ResponseWriter, r *http.Request, errs []fieldError) {
	WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{"success": false, "detail": errs,
		"error": map[string]any{"code": "VALIDATION_ERROR", "message": "request validation failed",
			"details": map[string]any{"errors": errs}, "request_id": RequestID(r)}})
}

// done writes the 422 if any field failed and reports whether it did.
func (b *body) done(w http.ResponseWriter, r *http.Request) bool {
	if len(b.errs) == 0 {
		return false
	}
	writeValidation(w, r, b.errs)
	return true
}

func (b *body) fail(name, msg, typ string) {
	b.errs = append(b.errs, fieldError{Loc: []any{"body", name}, Msg: msg, Type: typ})
}

func (b *body) has(name string) bool { _, ok := b.m[name]; return ok }

// isNull reports an explicit JSON null.
func (b *body) isNull(name string) bool { v, ok := b.m[name]; return ok && v == nil }

// str reads a string field, trimmed, with length bounds; ok is false when absent or invalid.
func (b *body) str(name string, required bool, min, max int, pattern *regexp.Regexp) (string, bool) {
	v, present := b.m[name]
	if !present || v == nil {
		if required {
			b.fail(name, "field required", "missing")
		}
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		b.fail(name, "must be a string", "type_error")
		return "", false
	}
	s = strings.TrimSpace(s)
	switch {
	case len(s) < min:
		b.fail(name, "must have at least "+strconv.Itoa(min)+" characters", "string_too_short")
		return "", false
	case max > 0 && len(s) > max:
		b.fail(name, "must have at most "+strconv.Itoa(max)+" characters", "string_too_long")
		return "", false
	case pattern != nil && !pattern.MatchString(s):
		b.fail(name, "must match "+pattern.String(), "string_pattern_mismatch")
		return "", false
	}
	return s, true
}

// boolean reads a bool field with a default.
func (b *body) boolean(name string, def bool) bool {
	v, present := b.m[name]
	if !present || v == nil {
		return def
	}
	x, ok := v.(bool)
	if !ok {
		b.fail(name, "must be a boolean", "type_error")
		return def
	}
	return x
}

// number reads a finite number within [min, max].
func (b *body) number(name string, required bool, min, max float64) (float64, bool) {
	v, present := b.m[name]
	if !present || v == nil {
		if required {
			b.fail(name, "field required", "missing")
		}
		return 0, false
	}
	n, ok := v.(json.Number)
	if !ok {
		b.fail(name, "must be a number", "type_error")
		return 0, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		b.fail(name, "must be a finite number", "type_error")
		return 0, false
	}
	if f < min {
		b.fail(name, "must be ≥ "+strconv.FormatFloat(min, 'g', -1, 64), "greater_than_equal")
		return 0, false
	}
	if f > max {
		b.fail(name, "must be ≤ "+strconv.FormatFloat(max, 'g', -1, 64), "less_than_equal")
		return 0, false
	}
	return f, true
}

// integer reads an integer (integral floats accepted, API §1.2).
func (b *body) integer(name string, required bool, min, max int64) (int64, bool) {
	f, ok := b.number(name, required, float64(min), float64(max))
	if !ok {
		return 0, false
	}
	if f != math.Trunc(f) {
		b.fail(name, "must be an integer", "type_error")
		return 0, false
	}
	return int64(f), true
}

// object reads a free-form object (≤ 16 KiB serialised, ≤ 10 levels).
func (b *body) object(name string) (map[string]any, bool) {
	v, present := b.m[name]
	if !present || v == nil {
		return nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		b.fail(name, "must be an object", "type_error")
		return nil, false
	}
	if raw, _ := json.Marshal(m); len(raw) > 16<<10 {
		b.fail(name, "must be at most 16 KiB", "value_error")
		return nil, false
	}
	if depth(m) > 10 {
		b.fail(name, "must be at most 10 levels deep", "value_error")
		return nil, false
	}
	return normaliseNumbers(m).(map[string]any), true
}

func depth(v any) int {
	switch x := v.(type) {
	case map[string]any:
		d := 0
		for _, c := range x {
			d = max(d, depth(c))
		}
		return d + 1
	case []any:
		d := 0
		for _, c := range x {
			d = max(d, depth(c))
		}
		return d + 1
	}
	return 0
}

// normaliseNumbers turns json.Number into float64 for storage.
func normaliseNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			x[k] = normaliseNumbers(c)
		}
	case []any:
		for i, c := range x {
			x[i] = normaliseNumbers(c)
		}
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return v
}

// query helpers collect errors the same way for query parameters.
type query struct {
	r    *http.Request
	errs []fieldError
}

func (q *query) fail(name, msg, typ string) {
	q.errs = append(q.errs, fieldError{Loc: []any{"query", name}, Msg: msg, Type: typ})
}

func (q *query) str(name string, max int) string {
	v := strings.TrimSpace(q.r.URL.Query().Get(name))
	if max > 0 && len(v) > max {
		q.fail(name, "too long", "string_too_long")
		return ""
	}
	return v
}

func (q *query) integer(name string, def, min, max int) int {
	v := q.r.URL.Query().Get(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		q.fail(name, "must be an integer", "type_error")
		return def
	}
	if n < min {
		q.fail(name, "must be ≥ "+strconv.Itoa(min), "greater_than_equal")
		return def
	}
	if n > max {
		q.fail(name, "must be ≤ "+strconv.Itoa(max), "less_than_equal")
		return def
	}
	return n
}

func (q *query) boolean(name string, def bool) bool {
	switch strings.ToLower(q.r.URL.Query().Get(name)) {
	case "":
		return def
	case "true", "1":
		return true
	case "false", "0":
		return false
	}
	q.fail(name, "must be a boolean", "type_error")
	return def
}

func (q *query) time(name string) time.Time {
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
	q.fail(name, "must be an ISO 8601 datetime or unix seconds", "datetime_parsing")
	return time.Time{}
}

func (q *query) done(w http.ResponseWriter, r *http.Request) bool {
	if len(q.errs) == 0 {
		return false
	}
	writeValidation(w, r, q.errs)
	return true
}

// pathError answers 422 for an invalid path parameter.
func pathError(w http.ResponseWriter, r *http.Request, name, msg string) {
	writeValidation(w, r, []fieldError{{Loc: []any{"path", name}, Msg: msg, Type: "string_pattern_mismatch"}})
}

// writePage answers one page of rows filtered in memory (API §1.7): a page
// past the end is empty with correct meta, never 404.
func writePage(w http.ResponseWriter, rows []map[string]any, page, size int) {
	total := len(rows)
	from, to := min((page-1)*size, total), min(page*size, total)
	data := rows[from:to]
	if data == nil {
		data = []map[string]any{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "data": data, "pagination": pagination(page, size, total)})
}

// optStr reads an optional string for a partial update: nil when absent.
func (b *body) optStr(name string, min, max int, pattern *regexp.Regexp) *string {
	if v, ok := b.str(name, false, min, max, pattern); ok {
		return &v
	}
	return nil
}

// pagination is the meta object of API §1.7.
func pagination(page, size, total int) map[string]any {
	pages := (total + size - 1) / size
	return map[string]any{"page": page, "page_size": size, "total_items": total, "total_pages": pages,
		"has_next": page < pages, "has_prev": page > 1}
}

func ts(t *time.Time) any {
	if t == nil || t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func tsv(t time.Time) any { return ts(&t) }
