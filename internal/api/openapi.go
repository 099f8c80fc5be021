package api

import (
	"net/http"
	"reflect"
	"regexp"
	"strings"
)

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// openapiDoc builds the OpenAPI 3.1 document from the registered routes and
// their body types, so it can never list a route that is not served, miss
// one that is, or describe a body other than the one decoded or written.
func (s *Server) openapiDoc() map[string]any {
	paths := map[string]any{}
	bodies := newSchemas()
	bodies.components["Error"] = errorSchema()
	for _, rt := range s.Routes() {
		item, _ := paths[rt.Path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.Path] = item
		}
		item[strings.ToLower(rt.Method)] = operation(rt, bodies)
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "kaiser hub API", "version": s.deps.Version},
		"paths":   paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"bearerAuth": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
				"deviceKey":  map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"},
			},
			"schemas": bodies.components,
		},
	}
}

// operation documents one route: who may call it, its parameters and bodies.
func operation(rt Route, bodies *schemas) map[string]any {
	success := map[string]any{"description": "Success"}
	responses := map[string]any{
		"200": success,
		"default": map[string]any{
			"description": "Error",
			"content":     jsonContent(map[string]any{"$ref": "#/components/schemas/Error"}),
		},
	}
	op := map[string]any{
		"operationId": operationID(rt),
		"summary":     rt.Summary,
		"tags":        []string{rt.Tag},
		"x-min-role":  rt.MinRole,
		"security":    security(rt.MinRole),
		"responses":   responses,
	}
	if rt.Deprecated {
		op["deprecated"] = true
	}

	params := pathParams(rt.Path)
	if rt.Tag == "websocket" {
		params = append(params, map[string]any{
			"name":     "token",
			"in":       "query",
			"required": true,
			"schema":   map[string]any{"type": "string"},
		})
		op["description"] = "Upgrade to WebSocket. Server frames are JSON {type, timestamp, data}; clients send " +
			"{action: subscribe|unsubscribe|ping, filters}. Close codes 4000 replaced, 4001 revoked, " +
			"4002 slow consumer, 4003 no pong."
		responses["101"] = map[string]any{"description": "Switching Protocols"}
		delete(responses, "200")
	}
	if params != nil {
		op["parameters"] = params
	}

	if rt.Method == "POST" || rt.Method == "PUT" || rt.Method == "PATCH" {
		schema := map[string]any{"type": "object"}
		if rt.Request != nil {
			schema = bodies.of(reflect.TypeOf(rt.Request), nil, true)
		}
		op["requestBody"] = map[string]any{"required": false, "content": jsonContent(schema)}
	}
	if rt.Response != nil && responses["200"] != nil {
		success["content"] = jsonContent(bodies.of(reflect.TypeOf(rt.Response), nil, false))
	}
	return op
}

func security(minRole string) []any {
	switch minRole {
	case "public":
		return []any{}
	case "device":
		return []any{map[string]any{"deviceKey": []string{}}, map[string]any{}}
	}
	return []any{map[string]any{"bearerAuth": []string{}}}
}

func pathParams(path string) []any {
	var params []any
	for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
		schema := map[string]any{"type": "string"}
		switch m[1] {
		case "esp_id":
			schema["pattern"] = `^[A-Za-z0-9_-]{1,31}$`
		case "user_id":
			schema = map[string]any{"type": "integer", "minimum": 1}
		case "client_id":
			schema["pattern"] = `^[A-Za-z0-9_-]{1,64}$`
		}
		params = append(params, map[string]any{
			"name":     m[1],
			"in":       "path",
			"required": true,
			"schema":   schema,
		})
	}
	return params
}

func jsonContent(schema map[string]any) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": schema}}
}

// errorSchema is docs/api.md §1.5; detail is a string, or the field errors on 422.
func errorSchema() map[string]any {
	str := map[string]any{"type": "string"}
	return map[string]any{
		"type":     "object",
		"required": []string{"success", "detail", "error"},
		"properties": map[string]any{
			"success": map[string]any{"type": "boolean", "const": false},
			"detail":  map[string]any{},
			"error": map[string]any{
				"type":     "object",
				"required": []string{"code", "message", "details"},
				"properties": map[string]any{
					"code":       map[string]any{"type": "string", "pattern": "^[A-Z_]+$"},
					"message":    str,
					"details":    map[string]any{"type": "object"},
					"request_id": str,
				},
			},
		},
	}
}

func operationID(rt Route) string {
	p := strings.TrimPrefix(rt.Path, "/api/v1")
	p = pathParam.ReplaceAllString(p, "by_$1")
	p = strings.NewReplacer("/", "_", "-", "_", ".", "_").Replace(strings.Trim(p, "/"))
	if p == "" {
		p = "root"
	}
	return strings.ToLower(rt.Method) + "_" + p
}

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, http.StatusOK, s.openapiDoc())
}
