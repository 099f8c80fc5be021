package api

import (
	"reflect"
	"testing"
)

func TestOperationIDs(t *testing.T) {
	tests := map[string]Route{
		"get_esp_devices_by_esp_id": {Method: "GET", Path: "/api/v1/esp/devices/{esp_id}"},
		"get_root":                  {Method: "GET", Path: "/"},
		"post_debug_mock_esp":       {Method: "POST", Path: "/api/v1/debug/mock-esp"},
	}
	for want, rt := range tests {
		if got := operationID(rt); got != want {
			t.Errorf("%s %s: %s", rt.Method, rt.Path, got)
		}
	}
}

func TestSchemaNamesStayUnique(t *testing.T) {
	s := newSchemas()
	type first struct{ A int }
	s.components["First"] = map[string]any{}
	if got := s.name(reflect.TypeFor[first](), true); got != "FirstRequest" {
		t.Fatalf("collision: %s", got)
	}
	s.components["FirstRequest"] = map[string]any{}
	if got := s.name(reflect.TypeFor[first](), true); got != "FirstRequest2" {
		t.Fatalf("second collision: %s", got)
	}
}
