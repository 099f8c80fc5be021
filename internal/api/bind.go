package api

import (
	"fmt"
	"math"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Request bodies are Go structs whose fields carry their rules in an `api`
// tag beside the `json` name, for example
//
//	DeviceID string `json:"device_id" api:"required,min=1,max=31,pattern=esp_id"`
//
// The rules are: required; min and max (string length in bytes, number
// bounds, item counts of arrays); pattern=<name of a registered pattern>;
// enum=a|b|c; default=<value used when the field is absent or null>; raw
// (strings keep surrounding whitespace). One reading of the tags serves both
// the decoder and the OpenAPI document, so the two cannot drift apart.
//
// Decoding keeps docs/api.md §1.2: integral floats such as 34.0 fill integer fields,
// every field error is collected, and Field[T] tells an absent field from an
// explicit null. A pointer field is nil when absent or null.

// Validator is a request body with rules across fields; Validate runs after
// every field is read and adds its errors to b.
type Validator interface {
	Validate(b *Body)
}

// fieldDecoder is a field type that reads itself (rules the tags cannot say).
type fieldDecoder interface {
	decodeField(b *Body, f fieldSpec)
}

// Field is a body field that tells absent from null (docs/api.md §1.2: in a partial
// update an absent field means unchanged, null clears).
type Field[T any] struct {
	Present bool // the body names the field
	Null    bool // ... as JSON null
	Value   T
}

func (x *Field[T]) decodeField(b *Body, f fieldSpec) {
	raw, present := b.m[f.name]
	x.Present, x.Null = present, present && raw == nil
	if present && raw != nil {
		b.decodeValue(reflect.ValueOf(&x.Value).Elem(), f, raw)
	}
}

// Or is the value, or def when the field is absent, null or invalid.
func (x Field[T]) Or(def T) T {
	if !x.Present || x.Null {
		return def
	}
	return x.Value
}

func (Field[T]) valueType() reflect.Type { return reflect.TypeFor[T]() }

// patterns are the regular expressions tags refer to by name.
var patterns = map[string]*regexp.Regexp{
	"esp_id":   espIDPattern,
	"mac":      regexp.MustCompile(`^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$`),
	"username": regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_-]*$`),
	"email":    regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`),
	"onewire":  regexp.MustCompile(`^[0-9A-Fa-f]{16}$`),
}

// fieldSpec is one field's parsed tags.
type fieldSpec struct {
	name     string
	index    []int // in the struct, through embedded structs
	goType   reflect.Type
	required bool
	min, max *float64
	pattern  *regexp.Regexp
	enum     []string
	def      *string
	raw      bool
}

func (f fieldSpec) stringRules() stringRules {
	r := stringRules{pattern: f.pattern, raw: f.raw}
	if f.min != nil {
		r.min = int(*f.min)
	}
	if f.max != nil {
		r.max = int(*f.max)
	}
	return r
}

// bounds are the number limits, the widest float64 range when not given.
func (f fieldSpec) bounds() (float64, float64) {
	lo, hi := -math.MaxFloat64, math.MaxFloat64
	if f.min != nil {
		lo = *f.min
	}
	if f.max != nil {
		hi = *f.max
	}
	return lo, hi
}

var specCache sync.Map // reflect.Type → []fieldSpec

// specsOf parses a struct type's tags once (fields of embedded structs
// count as the outer struct's); a bad tag is a programming error.
func specsOf(t reflect.Type) []fieldSpec {
	if cached, ok := specCache.Load(t); ok {
		return cached.([]fieldSpec)
	}
	var specs []fieldSpec
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if sf.Anonymous && tag == "" && sf.Type.Kind() == reflect.Struct {
			for _, inner := range specsOf(sf.Type) {
				inner.index = append([]int{i}, inner.index...)
				specs = append(specs, inner)
			}
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if !sf.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		spec, err := parseSpec(name, sf.Tag.Get("api"))
		if err != nil {
			panic(fmt.Sprintf("api: %s.%s: %v", t.Name(), sf.Name, err))
		}
		spec.index = []int{i}
		spec.goType = sf.Type
		specs = append(specs, spec)
	}
	specCache.Store(t, specs)
	return specs
}

func parseSpec(name, tag string) (fieldSpec, error) {
	f := fieldSpec{name: name}
	if tag == "" {
		return f, nil
	}
	for _, rule := range strings.Split(tag, ",") {
		key, val, _ := strings.Cut(rule, "=")
		switch key {
		case "required":
			f.required = true
		case "raw":
			f.raw = true
		case "min", "max":
			n, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return f, fmt.Errorf("%s=%q: %w", key, val, err)
			}
			if key == "min" {
				f.min = &n
			} else {
				f.max = &n
			}
		case "pattern":
			f.pattern = patterns[val]
			if f.pattern == nil {
				return f, fmt.Errorf("unknown pattern %q", val)
			}
		case "enum":
			f.enum = strings.Split(val, "|")
		case "default":
			f.def = &val
		default:
			return f, fmt.Errorf("unknown rule %q", rule)
		}
	}
	return f, nil
}

// DecodeBody reads the JSON body into dst (a pointer to a struct) and
// returns the body with every field error found, for rules the handler adds
// before it calls Done. It answers 415, 413 or a malformed-JSON 422 itself
// and returns false then.
func DecodeBody(w http.ResponseWriter, r *http.Request, dst any) (*Body, bool) {
	b, ok := readBody(w, r)
	if !ok {
		return nil, false
	}
	b.bind(dst)
	return b, true
}

// Decode is DecodeBody for handlers without rules of their own: it answers
// every failure itself and reports whether dst holds a valid body.
func Decode(w http.ResponseWriter, r *http.Request, dst any) bool {
	b, ok := DecodeBody(w, r, dst)
	return ok && !b.Done(w, r)
}

// bind fills the struct dst points to from the body and runs its Validate.
func (b *Body) bind(dst any) {
	v := reflect.ValueOf(dst).Elem()
	for _, f := range specsOf(v.Type()) {
		b.decodeField(v.FieldByIndex(f.index), f)
	}
	if val, ok := dst.(Validator); ok {
		val.Validate(b)
	}
}

func (b *Body) decodeField(v reflect.Value, f fieldSpec) {
	if d, ok := v.Addr().Interface().(fieldDecoder); ok {
		d.decodeField(b, f)
		return
	}
	if f.def != nil {
		setDefault(v, *f.def)
	}

	raw, present := b.m[f.name]
	if !present || raw == nil {
		if f.required {
			b.failAt(f.name, errMissing)
		}
		return
	}

	if v.Kind() == reflect.Pointer {
		elem := reflect.New(v.Type().Elem())
		if b.decodeValue(elem.Elem(), f, raw) {
			v.Set(elem)
		}
		return
	}
	b.decodeValue(v, f, raw)
}

// decodeValue reads a present, non-null value into v and reports whether it was valid.
func (b *Body) decodeValue(v reflect.Value, f fieldSpec, raw any) bool {
	var bad *violation
	switch v.Kind() {
	case reflect.String:
		var s string
		s, bad = asString(raw, f.stringRules())
		if bad == nil && f.enum != nil && !slices.Contains(f.enum, s) {
			bad = &violation{"must be " + orList(f.enum), "enum"}
		}
		if bad == nil {
			v.SetString(s)
		}
	case reflect.Bool:
		var x bool
		if x, bad = asBool(raw); bad == nil {
			v.SetBool(x)
		}
	case reflect.Int, reflect.Int64:
		lo, hi := f.bounds()
		var n int64
		if n, bad = asInteger(raw, max(lo, -1<<53), min(hi, 1<<53)); bad == nil {
			v.SetInt(n)
		}
	case reflect.Float64:
		lo, hi := f.bounds()
		var x float64
		if x, bad = asNumber(raw, lo, hi); bad == nil {
			v.SetFloat(x)
		}
	case reflect.Map:
		var m map[string]any
		if m, bad = asObject(raw); bad == nil {
			v.Set(reflect.ValueOf(m))
		}
	case reflect.Slice:
		bad = b.decodeList(v, f, raw)
	default:
		panic(fmt.Sprintf("api: field %s: unsupported kind %s", f.name, v.Kind()))
	}
	if bad != nil {
		b.failAt(f.name, *bad)
		return false
	}
	return true
}

// decodeList reads an array of objects, each item's errors located by its index.
func (b *Body) decodeList(v reflect.Value, f fieldSpec, raw any) *violation {
	list, ok := raw.([]any)
	if !ok {
		return errNotArray
	}
	if f.min != nil && float64(len(list)) < *f.min {
		return &violation{"must have at least " + strconv.Itoa(int(*f.min)) + " items", "value_error"}
	}
	if f.max != nil && float64(len(list)) > *f.max {
		return &violation{"must have at most " + strconv.Itoa(int(*f.max)) + " items", "value_error"}
	}
	out := reflect.MakeSlice(v.Type(), 0, len(list))
	for i, it := range list {
		m, isObj := it.(map[string]any)
		if !isObj {
			b.errs = append(b.errs, fieldError{Loc: append(b.loc(f.name), i), Msg: errNotObject.msg, Type: errNotObject.typ})
			continue
		}
		item := newBody(m, append(b.loc(f.name), i)...)
		elem := reflect.New(v.Type().Elem())
		item.bind(elem.Interface())
		b.errs = append(b.errs, item.errs...)
		out = reflect.Append(out, elem.Elem())
	}
	v.Set(out)
	return nil
}

func (b *Body) loc(name string) []any { return append(append([]any(nil), b.prefix...), name) }

func setDefault(v reflect.Value, def string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(def)
	case reflect.Bool:
		v.SetBool(def == "true")
	case reflect.Int, reflect.Int64:
		n, _ := strconv.ParseInt(def, 10, 64)
		v.SetInt(n)
	case reflect.Float64:
		x, _ := strconv.ParseFloat(def, 64)
		v.SetFloat(x)
	}
}

// orList is "a, b or c".
func orList(vals []string) string {
	if len(vals) == 1 {
		return vals[0]
	}
	return strings.Join(vals[:len(vals)-1], ", ") + " or " + vals[len(vals)-1]
}
