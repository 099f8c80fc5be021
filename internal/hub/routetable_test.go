package hub

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docs/api.md Appendix A lists every route the hub registers, and nothing
// else: a route added without its row (or a row left behind) fails here.
func TestRouteTableInDocs(t *testing.T) {
	h, _ := apiHub(t, Config{})
	defer stopHub(t, h)

	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, appendix, ok := strings.Cut(string(doc), "## Appendix A.")
	if !ok {
		t.Fatal("docs/api.md has no Appendix A")
	}
	appendix, _, _ = strings.Cut(appendix, "\n## ")

	row := regexp.MustCompile("(?m)^\\| (GET|POST|PUT|PATCH|DELETE) \\| `([^`]+)` \\| ([a-z]+) \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(appendix, -1) {
		documented[m[1]+" "+m[2]] = m[3]
	}

	var missing, wrongRole []string
	served := map[string]bool{}
	for _, rt := range h.API.Routes() {
		key := rt.Method + " " + rt.Path
		served[key] = true
		role, ok := documented[key]
		switch {
		case !ok:
			missing = append(missing, key+" ("+rt.MinRole+", "+rt.Summary+")")
		case role != rt.MinRole:
			wrongRole = append(wrongRole, key+": documented "+role+", served "+rt.MinRole)
		}
	}
	var stale []string
	for key := range documented {
		if !served[key] {
			stale = append(stale, key)
		}
	}
	count := fmt.Sprintf("%d routes", len(h.API.Routes()))
	if strings.Count(string(doc), count) < 2 {
		t.Errorf("docs/api.md should say %q in its introduction and under Appendix A", count)
	}
	slices.Sort(missing)
	slices.Sort(stale)
	if len(missing)+len(wrongRole)+len(stale) > 0 {
		t.Fatalf("docs/api.md Appendix A is out of date:\nmissing:\n  %s\nwrong role:\n  %s\nnot served:\n  %s",
			strings.Join(missing, "\n  "), strings.Join(wrongRole, "\n  "), strings.Join(stale, "\n  "))
	}
}
