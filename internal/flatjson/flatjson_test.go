package flatjson

import (
	"fmt"
	"slices"
	"testing"
)

// Scan reports each member of a flat object with its kind, and refuses
// (so the caller falls back) everything that is not flat or not JSON.
func TestScan(t *testing.T) {
	var got []string
	ok := Scan([]byte(` { "a" : "x°", "b":-1.5e3,"c":true, "d":false,"e":null,"f":0 } `),
		func(key []byte, kind Kind, val []byte) bool {
			got = append(got, fmt.Sprintf("%s %c %s", key, kind, val))
			return true
		})
	want := []string{"a s x°", "b n -1.5e3", "c b true", "d b false", "e z ", "f n 0"}
	if !ok || !slices.Equal(got, want) {
		t.Fatalf("Scan: %v %q, want %q", ok, got, want)
	}
	if !Scan([]byte(`{}`), func([]byte, Kind, []byte) bool { return false }) {
		t.Fatal("an empty object refused")
	}

	for _, in := range []string{
		``, `[]`, `{`, `{"a":1,}`, `{"a" 1}`, `{"a":1}x`, `{"a":{"b":1}}`, `{"a":[1]}`,
		`{"a":"\n"}`, `{"a":"q\"q"}`, `{"a":"` + "\xff" + `"}`, `{"a":01}`, `{"a":1.}`, `{"a":-}`,
		`{"a":1e}`, `{"a":tru}`, `{a:1}`,
	} {
		if Scan([]byte(in), func([]byte, Kind, []byte) bool { return true }) {
			t.Errorf("Scan accepted %q", in)
		}
	}
	if Scan([]byte(`{"a":1,"b":2}`), func(key []byte, _ Kind, _ []byte) bool { return string(key) != "b" }) {
		t.Error("Scan went on after its callback refused a member")
	}
}
