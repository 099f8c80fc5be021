package event

import (
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fill sets every field of v that crosses in JSON to a value of its own
// (n counts them), so that a field the codec loses shows in a comparison.
// Fields tagged json:"-" keep their value: they follow from the type.
func fill(t *testing.T, v reflect.Value, n *int) {
	t.Helper()
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString("s" + strconv.Itoa(*n))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Float64:
		v.SetFloat(float64(*n) + 0.25)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n)
	case reflect.Interface:
		// What the free-form fields decode to (decodeAs).
		v.Set(reflect.ValueOf(json.Number(strconv.Itoa(*n))))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		val := reflect.New(v.Type().Elem()).Elem()
		fill(t, val, n)
		v.SetMapIndex(reflect.ValueOf("k"+strconv.Itoa(*n)), val)
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() || f.Tag.Get("json") == "-" {
				continue
			}
			fill(t, v.Field(i), n)
		}
	default:
		t.Fatalf("fill: no value for a %s; teach fill this kind", v.Type())
	}
}

// filled is the registered zero payload of typ with every field set.
func filled(t *testing.T, typ Type) Payload {
	t.Helper()
	zero, err := decoders[typ]([]byte("{}"))
	if err != nil {
		t.Fatalf("decode {} as %s: %v", typ, err)
	}
	v := reflect.New(reflect.TypeOf(zero)).Elem()
	v.Set(reflect.ValueOf(zero))
	n := 0
	fill(t, v, &n)
	return v.Interface().(Payload)
}

func TestCodecRoundTripsEveryPayload(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 30, 0, 123456789, time.UTC)
	for typ := range decoders {
		t.Run(string(typ), func(t *testing.T) {
			p := filled(t, typ)
			if p.EventType() != typ {
				t.Fatalf("the registry's payload for %s has type %s", typ, p.EventType())
			}
			data, err := Encode(Event{Time: at, Data: p, Remote: true})
			if err != nil {
				t.Fatal(err)
			}
			e, err := Decode(data)
			if err != nil {
				t.Fatalf("decode %s: %v", data, err)
			}
			if !reflect.DeepEqual(e.Data, p) {
				t.Fatalf("decoded payload\n%#v\nwant\n%#v", e.Data, p)
			}
			if !e.Time.Equal(at) || e.Type() != typ || e.Remote {
				t.Fatalf("decoded time %v, type %s, remote %v; want %v, %s, false", e.Time, e.Type(), e.Remote, at, typ)
			}
		})
	}
}

// sourceTypes reads the package's non-test source: the values of its
// Type constants and the receiver types of its EventType methods.
func sourceTypes(t *testing.T) (consts map[Type]string, payloads []string) {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	consts = map[Type]string{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.GenDecl:
				if d.Tok != token.CONST {
					continue
				}
				for _, spec := range d.Specs {
					vs := spec.(*ast.ValueSpec)
					if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Type" {
						continue
					}
					for i, n := range vs.Names {
						lit, ok := vs.Values[i].(*ast.BasicLit)
						if !ok {
							t.Fatalf("%s: constant %s is not a string literal", name, n.Name)
						}
						v, err := strconv.Unquote(lit.Value)
						if err != nil {
							t.Fatal(err)
						}
						consts[Type(v)] = n.Name
					}
				}
			case *ast.FuncDecl:
				if d.Name.Name != "EventType" || d.Recv == nil {
					continue
				}
				recv := d.Recv.List[0].Type
				if star, ok := recv.(*ast.StarExpr); ok {
					recv = star.X
				}
				payloads = append(payloads, recv.(*ast.Ident).Name)
			}
		}
	}
	return consts, payloads
}

func TestEveryTypeAndPayloadIsRegistered(t *testing.T) {
	consts, payloads := sourceTypes(t)
	if len(consts) == 0 || len(payloads) == 0 {
		t.Fatalf("read %d type constants and %d payload types from the source", len(consts), len(payloads))
	}
	registered := map[string]bool{}
	for typ, decode := range decoders {
		if _, ok := consts[typ]; !ok {
			t.Errorf("the registry has %q, which is no Type constant", typ)
		}
		p, err := decode([]byte("{}"))
		if err != nil {
			t.Fatal(err)
		}
		registered[reflect.TypeOf(p).Name()] = true
	}
	for typ, name := range consts {
		if decoders[typ] == nil {
			t.Errorf("%s (%q) has no decoder in the registry", name, typ)
		}
	}
	for _, name := range payloads {
		if !registered[name] {
			t.Errorf("payload type %s has no decoder in the registry", name)
		}
	}
}

func TestCodecKeepsFreeFormNumbers(t *testing.T) {
	// An online device's figures are int64, a restarted hub's float64;
	// either way a relayed event is the JSON the origin would have sent.
	for _, p := range []Payload{
		EspHealth{EspID: "ESP_1", HeapFree: int64(9007199254740993), WifiRSSI: -61.5, Uptime: nil},
		Notification{Metadata: map[string]any{"count": int64(3), "ratio": 0.1, "nested": map[string]any{"n": 1e21}}},
		ConfigResponse{FailedItem: []any{int64(1), "x", true}},
	} {
		want, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		data, err := Encode(Event{Time: time.Now(), Data: p})
		if err != nil {
			t.Fatal(err)
		}
		e, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(e.Data)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("relayed %s JSON\n%s\nwant\n%s", p.EventType(), got, want)
		}
	}
}

func TestCodecRejects(t *testing.T) {
	if _, err := Encode(Event{Time: time.Now()}); err == nil {
		t.Fatal("encoded an event without payload")
	}
	if _, err := Encode(Event{Data: foreign{}}); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("encode of an unregistered type: %v, want ErrUnknownType", err)
	}
	for _, data := range []string{
		`{"type":"from_a_newer_replica","time":1,"data":{}}`,
		`{"type":"sensor_data","data":{"gpio":"four"}}`,
		`not json`,
	} {
		if _, err := Decode([]byte(data)); err == nil {
			t.Fatalf("decoded %s", data)
		}
	}
	if _, err := Decode([]byte(`{"type":"x","data":{}}`)); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("decode of an unknown type: %v, want ErrUnknownType", err)
	}
}

func TestCodecZeroTime(t *testing.T) {
	data, err := Encode(Event{Data: SystemEvent{Event: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Time.IsZero() {
		t.Fatalf("zero time came back as %v (%s)", e.Time, data)
	}
}

type foreign struct{}

func (foreign) EventType() Type { return "foreign" }
