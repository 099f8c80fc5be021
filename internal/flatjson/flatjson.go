// Package flatjson reads flat JSON objects (strings without escapes,
// numbers, booleans, null) without reflection or allocation: the fast path
// of the hub's hottest decoders, the device readings
// (internal/contract) and the readings relayed between replicas
// (internal/event). Anything else it reports as not flat, and the caller
// falls back to encoding/json, so the fast path never decides an error.
package flatjson

import "unicode/utf8"

// Kind is a member's JSON type.
type Kind byte

// The kinds of a flat object's members.
const (
	String Kind = 's'
	Number Kind = 'n'
	Bool   Kind = 'b'
	Null   Kind = 'z'
)

// Scan walks a flat JSON object of strings without escapes, numbers,
// booleans and null, calling fn for each member with its key, its Kind
// and its bytes (a string's without the quotes, nil for null). It reports
// false for anything else (nesting, escapes, bad syntax) and when fn does,
// so the caller can fall back to the full decoder.
func Scan(b []byte, fn func(key []byte, kind Kind, val []byte) bool) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipWS(b, i+1) == len(b)
	}
	for {
		key, j, ok := scanString(b, i)
		if !ok {
			return false
		}
		i = skipWS(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return false
		}
		var kind Kind
		var val []byte
		switch c := b[i]; {
		case c == '"':
			val, i, ok = scanString(b, i)
			kind = String
		case c == 't' && hasLit(b, i, "true"):
			kind, val, i, ok = Bool, b[i:i+4], i+4, true
		case c == 'f' && hasLit(b, i, "false"):
			kind, val, i, ok = Bool, b[i:i+5], i+5, true
		case c == 'n' && hasLit(b, i, "null"):
			kind, val, i, ok = Null, nil, i+4, true
		case c == '-' || c >= '0' && c <= '9':
			j := scanNumber(b, i)
			kind, val, ok = Number, b[i:j], j > i
			i = j
		default:
			return false
		}
		if !ok || !fn(key, kind, val) {
			return false
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return skipWS(b, i+1) == len(b)
		default:
			return false
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func hasLit(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// scanString reads a string without escapes or control characters.
func scanString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, j, false
		}
	}
	return nil, len(b), false
}

// scanNumber returns the end of a number with JSON's grammar, or i when invalid.
func scanNumber(b []byte, i int) int {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
	default:
		return i
	}
	if j < len(b) && b[j] == '.' {
		k := j + 1
		for k < len(b) && b[k] >= '0' && b[k] <= '9' {
			k++
		}
		if k == j+1 {
			return i
		}
		j = k
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		k := j + 1
		if k < len(b) && (b[k] == '+' || b[k] == '-') {
			k++
		}
		m := k
		for m < len(b) && b[m] >= '0' && b[m] <= '9' {
			m++
		}
		if m == k {
			return i
		}
		j = m
	}
	return j
}
