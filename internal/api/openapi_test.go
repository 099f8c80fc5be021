package api

import (
	"strings"
	"testing"
)

// The document lists exactly the registered routes, and the body schemas
// come from the types the handlers decode and write.
func TestOpenAPIDocumentsRoutesAndBodies(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "GET", "/api/v1/openapi.json", "", nil)
	paths := r.obj("paths")
	n := 0
	for _, rt := range f.srv.Routes() {
		op, _ := paths[rt.Path].(map[string]any)[strings.ToLower(rt.Method)].(map[string]any)
		if op == nil {
			t.Errorf("%s %s not documented", rt.Method, rt.Path)
			continue
		}
		n++
		if op["x-min-role"] != rt.MinRole {
			t.Errorf("%s %s: role %v", rt.Method, rt.Path, op["x-min-role"])
		}
	}
	documented := 0
	for _, item := range paths {
		documented += len(item.(map[string]any))
	}
	if documented != n || n < 20 {
		t.Fatalf("%d documented operations, %d routes", documented, n)
	}

	schemas := r.obj("components")["schemas"].(map[string]any)
	reg := schemas["RegisterDeviceRequest"].(map[string]any)
	id := reg["properties"].(map[string]any)["device_id"].(map[string]any)
	if id["pattern"] != espIDPattern.String() || id["maxLength"] != 31.0 || reg["required"].([]any)[0] != "device_id" {
		t.Fatalf("request schema: %v", reg)
	}
	op := paths["/api/v1/esp/devices"].(map[string]any)["post"].(map[string]any)
	ref := op["requestBody"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"]
	if ref.(map[string]any)["$ref"] != "#/components/schemas/RegisterDeviceRequest" {
		t.Fatalf("request body: %v", ref)
	}
	reply := op["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)["application/json"]
	if reply.(map[string]any)["schema"].(map[string]any)["$ref"] != "#/components/schemas/DeviceResponse" {
		t.Fatalf("response body: %v", reply)
	}
	dev := schemas["DeviceResponse"].(map[string]any)["properties"].(map[string]any)
	if typ := dev["name"].(map[string]any)["type"].([]any); typ[1] != "null" {
		t.Fatalf("nullable name: %v", typ)
	}
	patch := schemas["PatchDeviceRequest"].(map[string]any)
	if _, required := patch["required"]; required {
		t.Fatalf("a partial update requires nothing: %v", patch)
	}
	page := schemas["PageOfDeviceResponse"].(map[string]any)["properties"].(map[string]any)["data"].(map[string]any)
	if page["items"].(map[string]any)["$ref"] != "#/components/schemas/DeviceResponse" {
		t.Fatalf("page schema: %v", page)
	}
	cal := schemas["CalibrateRequest"].(map[string]any)["properties"].(map[string]any)["calibration_points"]
	if cal.(map[string]any)["maxItems"] != 10.0 {
		t.Fatalf("array bounds: %v", cal)
	}
	role := schemas["CreateUserRequest"].(map[string]any)["properties"].(map[string]any)["role"].(map[string]any)
	if role["default"] != "viewer" || len(role["enum"].([]any)) != 3 {
		t.Fatalf("embedded and enum fields: %v", role)
	}
	if _, ok := schemas["Error"]; !ok {
		t.Fatal("no Error schema")
	}
	ws := paths["/api/v1/ws/realtime/{client_id}"].(map[string]any)["get"].(map[string]any)
	if _, ok := ws["responses"].(map[string]any)["101"]; !ok || len(ws["parameters"].([]any)) != 2 {
		t.Fatalf("websocket operation: %v", ws)
	}
}

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
	if got := s.name(typeOf[first](), true); got != "FirstRequest" {
		t.Fatalf("collision: %s", got)
	}
	s.components["FirstRequest"] = map[string]any{}
	if got := s.name(typeOf[first](), true); got != "FirstRequest2" {
		t.Fatalf("second collision: %s", got)
	}
}
