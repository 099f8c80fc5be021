package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/auth"
)

// probeNames is embedded: its fields count as the request's own.
type probeNames struct {
	Name string `json:"name" api:"max=100"`
}

type probeRequest struct {
	probeNames
	DeviceID string           `json:"device_id" api:"required,min=1,max=31,pattern=esp_id"`
	Role     string           `json:"role" api:"min=1,max=20,enum=admin|operator|viewer,default=viewer"`
	Points   []probePoint     `json:"points" api:"required,min=1,max=10"`
	Master   api.Field[bool]  `json:"master"`
	Limit    *int             `json:"limit" api:"min=1"`
	Extra    map[string]any   `json:"extra"`
	Tags     map[string]int64 `json:"tags"`
}

type probePoint struct {
	Raw float64 `json:"raw" api:"required"`
}

// probePatch is a partial update: it requires nothing.
type probePatch struct {
	Name *string `json:"name" api:"max=100"`
}

type probeItem struct {
	ID    string  `json:"id"`
	Label *string `json:"label"`
	Note  string  `json:"note,omitempty"`
}

func probeFixture(t *testing.T) *apitest.Fixture {
	f := apitest.New(t)
	ok := func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) { w.WriteHeader(http.StatusNoContent) }
	g := f.Srv.Group("probes")
	g.Add("GET", "/api/v1/probes", auth.RoleViewer, "List probes", ok, api.Returns(api.PageOf[probeItem]{}))
	g.Add("POST", "/api/v1/probes", auth.RoleOperator, "Create a probe", ok,
		api.Accepts(probeRequest{}), api.Returns(probeItem{}))
	g.Add("PATCH", "/api/v1/probes/{esp_id}", auth.RoleAdmin, "Change a probe", ok, api.Accepts(probePatch{}))
	return f
}

// The document lists exactly the registered routes, and the body schemas
// come from the types the handlers decode and write.
func TestOpenAPIDocumentsRoutesAndBodies(t *testing.T) {
	f := probeFixture(t)
	r := f.Do(t, "GET", "/api/v1/openapi.json", "", nil)
	paths := r.Obj("paths")
	n := 0
	for _, rt := range f.Srv.Routes() {
		op, _ := paths[rt.Path].(map[string]any)[strings.ToLower(rt.Method)].(map[string]any)
		if op == nil {
			t.Errorf("%s %s not documented", rt.Method, rt.Path)
			continue
		}
		n++
		if op["x-min-role"] != rt.MinRole || op["tags"].([]any)[0] != rt.Tag {
			t.Errorf("%s %s: role %v, tags %v", rt.Method, rt.Path, op["x-min-role"], op["tags"])
		}
	}
	documented := 0
	for _, item := range paths {
		documented += len(item.(map[string]any))
	}
	if documented != n || n < 10 {
		t.Fatalf("%d documented operations, %d routes", documented, n)
	}

	schemas := r.Obj("components")["schemas"].(map[string]any)
	req := schemas["ProbeRequest"].(map[string]any)
	props := req["properties"].(map[string]any)
	id := props["device_id"].(map[string]any)
	if id["pattern"] != `^[A-Za-z0-9_-]{1,31}$` || id["maxLength"] != 31.0 || req["required"].([]any)[0] != "device_id" {
		t.Fatalf("request schema: %v", req)
	}
	if role := props["role"].(map[string]any); role["default"] != "viewer" || len(role["enum"].([]any)) != 3 {
		t.Fatalf("enum field: %v", role)
	}
	if _, embedded := props["name"]; !embedded {
		t.Fatalf("embedded fields missing: %v", props)
	}
	if pts := props["points"].(map[string]any); pts["maxItems"] != 10.0 ||
		pts["items"].(map[string]any)["$ref"] != "#/components/schemas/ProbePoint" {
		t.Fatalf("array: %v", pts)
	}
	if typ := props["master"].(map[string]any)["type"].([]any); typ[0] != "boolean" || typ[1] != "null" {
		t.Fatalf("Field[bool]: %v", typ)
	}
	if tags := props["tags"].(map[string]any); tags["additionalProperties"].(map[string]any)["type"] != "integer" {
		t.Fatalf("typed map: %v", tags)
	}
	if _, required := schemas["ProbePatch"].(map[string]any)["required"]; required {
		t.Fatalf("a partial update requires nothing: %v", schemas["ProbePatch"])
	}

	op := paths["/api/v1/probes"].(map[string]any)["post"].(map[string]any)
	body := op["requestBody"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)
	if body["schema"].(map[string]any)["$ref"] != "#/components/schemas/ProbeRequest" {
		t.Fatalf("request body: %v", body)
	}
	reply := op["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)["application/json"]
	if reply.(map[string]any)["schema"].(map[string]any)["$ref"] != "#/components/schemas/ProbeItem" {
		t.Fatalf("response body: %v", reply)
	}
	item := schemas["ProbeItem"].(map[string]any)
	if typ := item["properties"].(map[string]any)["label"].(map[string]any)["type"].([]any); typ[1] != "null" {
		t.Fatalf("nullable label: %v", typ)
	}
	if req := item["required"].([]any); len(req) != 2 {
		t.Fatalf("a response requires what it always writes, not omitempty fields: %v", req)
	}
	page := schemas["PageOfProbeItem"].(map[string]any)["properties"].(map[string]any)["data"].(map[string]any)
	if page["items"].(map[string]any)["$ref"] != "#/components/schemas/ProbeItem" {
		t.Fatalf("page schema: %v", page)
	}
	patch := paths["/api/v1/probes/{esp_id}"].(map[string]any)["patch"].(map[string]any)
	if p := patch["parameters"].([]any)[0].(map[string]any); p["name"] != "esp_id" || p["in"] != "path" {
		t.Fatalf("path parameter: %v", p)
	}

	if _, ok := schemas["Error"]; !ok {
		t.Fatal("no Error schema")
	}
	ws := paths["/api/v1/ws/realtime/{client_id}"].(map[string]any)["get"].(map[string]any)
	if _, ok := ws["responses"].(map[string]any)["101"]; !ok || len(ws["parameters"].([]any)) != 2 {
		t.Fatalf("websocket operation: %v", ws)
	}
}
