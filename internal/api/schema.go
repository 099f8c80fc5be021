package api

import (
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// schemas derives the OpenAPI 3.1 schemas of body types by reflection over
// their fields, json names and api tags, so the document states exactly what
// the decoder enforces and what the handlers write. Struct types become
// named components; a type has one schema as a request body (required
// fields from the tags) and one as a response (required: every field that
// is always written).
type schemas struct {
	components map[string]any
	names      map[schemaKey]string
}

type schemaKey struct {
	t       reflect.Type
	request bool
}

func newSchemas() *schemas {
	return &schemas{components: map[string]any{}, names: map[schemaKey]string{}}
}

var timeType = reflect.TypeFor[time.Time]()

// valueTyper is a wrapper type documented as its value's type (Field[T]).
type valueTyper interface{ valueType() reflect.Type }

// of is the schema of a value of type t; spec, when not nil, adds a field's rules.
func (s *schemas) of(t reflect.Type, spec *fieldSpec, request bool) map[string]any {
	if vt, ok := reflect.Zero(t).Interface().(valueTyper); ok {
		return nullable(s.of(vt.valueType(), spec, request))
	}
	var out map[string]any
	switch t.Kind() {
	case reflect.Pointer:
		return nullable(s.of(t.Elem(), spec, request))
	case reflect.String:
		out = map[string]any{"type": "string"}
	case reflect.Bool:
		out = map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		out = map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		out = map[string]any{"type": "number"}
	case reflect.Map:
		out = map[string]any{"type": "object"}
		if t.Elem().Kind() != reflect.Interface {
			out["additionalProperties"] = s.of(t.Elem(), nil, request)
		}
		if !request {
			out = nullable(out) // a nil map is written as null
		}
	case reflect.Slice, reflect.Array:
		out = map[string]any{"type": "array", "items": s.of(t.Elem(), nil, request)}
	case reflect.Struct:
		if t == timeType {
			out = map[string]any{"type": "string", "format": "date-time"}
			break
		}
		return s.ref(t, request)
	default: // interface: any JSON value
		return map[string]any{}
	}
	if spec != nil {
		addRules(out, t, *spec)
	}
	return out
}

// addRules documents a field's tag rules on its schema.
func addRules(out map[string]any, t reflect.Type, f fieldSpec) {
	lo, hi := "minimum", "maximum"
	switch t.Kind() {
	case reflect.String:
		lo, hi = "minLength", "maxLength"
	case reflect.Slice:
		lo, hi = "minItems", "maxItems"
	}
	if f.min != nil && (t.Kind() != reflect.String || *f.min > 0) {
		out[lo] = number(*f.min)
	}
	if f.max != nil {
		out[hi] = number(*f.max)
	}
	if f.pattern != nil {
		out["pattern"] = f.pattern.String()
	}
	if f.enum != nil {
		out["enum"] = f.enum
	}
	if f.def != nil {
		out["default"] = defaultValue(t, *f.def)
	}
}

// number is n as an integer where it is one, for readable bounds.
func number(n float64) any {
	if n == float64(int64(n)) {
		return int64(n)
	}
	return n
}

func defaultValue(t reflect.Type, def string) any {
	switch t.Kind() {
	case reflect.Bool:
		return def == "true"
	case reflect.Int, reflect.Int64, reflect.Float64:
		if n, err := strconv.ParseFloat(def, 64); err == nil {
			return number(n)
		}
	}
	return def
}

// nullable lets a schema also be JSON null.
func nullable(sch map[string]any) map[string]any {
	if typ, ok := sch["type"].(string); ok {
		sch["type"] = []string{typ, "null"}
		return sch
	}
	if len(sch) == 0 {
		return sch // any value, null included
	}
	return map[string]any{"anyOf": []any{sch, map[string]any{"type": "null"}}}
}

// ref registers the struct type t as a component and refers to it.
func (s *schemas) ref(t reflect.Type, request bool) map[string]any {
	key := schemaKey{t, request}
	name, ok := s.names[key]
	if !ok {
		name = s.name(t, request)
		s.names[key] = name
		s.components[name] = map[string]any{} // reserved while the fields are read
		s.components[name] = s.object(t, request)
	}
	return map[string]any{"$ref": "#/components/schemas/" + name}
}

func (s *schemas) object(t reflect.Type, request bool) map[string]any {
	props := map[string]any{}
	var required []string
	for _, f := range specsOf(t) {
		props[f.name] = s.of(f.goType, &f, request)
		if request && f.required || !request && !omitted(t, f) {
			required = append(required, f.name)
		}
	}
	out := map[string]any{"type": "object", "properties": props}
	if required != nil {
		out["required"] = required
	}
	return out
}

// omitted reports whether a response may leave the field out (omitempty).
func omitted(t reflect.Type, f fieldSpec) bool {
	_, opts, _ := strings.Cut(t.FieldByIndex(f.index).Tag.Get("json"), ",")
	return strings.Contains(opts, "omitempty")
}

var typePath = regexp.MustCompile(`[\w./-]*\.`)

// name is a component name for t: the type name with generic arguments
// spelled out (PageOf[…deviceResponse] → PageOfDeviceResponse), unique in
// the document.
func (s *schemas) name(t reflect.Type, request bool) string {
	base := typePath.ReplaceAllString(t.Name(), "")
	var b strings.Builder
	for _, word := range strings.FieldsFunc(base, func(r rune) bool { return r == '[' || r == ']' || r == ',' }) {
		r := []rune(word)
		r[0] = unicode.ToUpper(r[0])
		b.WriteString(string(r))
	}
	name := b.String()
	if name == "" {
		name = "Body"
	}
	if _, taken := s.components[name]; !taken {
		return name
	}
	if request {
		name += "Request"
	}
	for i := 2; ; i++ {
		if _, taken := s.components[name]; !taken {
			return name
		}
		name = strings.TrimRight(name, "0123456789") + strconv.Itoa(i)
	}
}
