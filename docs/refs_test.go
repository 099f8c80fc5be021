package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// A reference is a document path, then sections (§5.7, §3.2–3.3, §5.6, §5.7)
	// and/or rule codes (M4, Q8).
	refPattern = regexp.MustCompile(`docs/(protocol|domain|api|architecture)\.md` +
		`((?:[ ,]+(?:and )?(?:§[0-9][0-9.]*[0-9]|§[0-9]|[A-Z][0-9]{1,2}\b)(?:[–-]§?[0-9.]*[0-9])?)*)`)
	sectionOrCode = regexp.MustCompile(`§([0-9][0-9.]*[0-9]|[0-9])|\b([A-Z][0-9]{1,2})\b`)

	// Names of the outside specification that a clone cannot resolve.
	outsideNames = regexp.MustCompile(`\b(CONTRACT|DOMAIN|ARCHITECTURE)\b|\bAPI\.md\b|\bAPI §`)
)

func TestCodeReferencesResolve(t *testing.T) {
	docs := map[string]string{}
	for _, name := range []string{"protocol", "domain", "api", "architecture"} {
		b, err := os.ReadFile(name + ".md")
		if err != nil {
			t.Fatalf("read %s.md: %v", name, err)
		}
		docs[name] = string(b)
	}

	refs := 0
	for _, root := range []string{"../internal", "../cmd"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(b), "\n") {
				refs += checkLine(t, docs, path, i+1, line)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if refs == 0 {
		t.Fatal("no references found: the pattern no longer matches the code's style")
	}
	t.Logf("%d references resolve", refs)
}

// checkLine reports references on one source line that do not resolve and
// returns how many it checked.
func checkLine(t *testing.T, docs map[string]string, path string, n int, line string) int {
	t.Helper()
	if m := outsideNames.FindString(line); m != "" {
		t.Errorf("%s:%d: %q names a document outside the repository: %s", path, n, m, strings.TrimSpace(line))
	}

	covered := map[int]bool{}
	count := 0
	for _, m := range refPattern.FindAllStringSubmatchIndex(line, -1) {
		doc := line[m[2]:m[3]]
		for i := m[0]; i < m[1]; i++ {
			covered[i] = true
		}
		for _, sc := range sectionOrCode.FindAllStringSubmatch(line[m[4]:m[5]], -1) {
			count++
			if sc[1] != "" && !strings.Contains(docs[doc], `<a id="s`+sc[1]+`"></a>`) {
				t.Errorf("%s:%d: docs/%s.md has no section §%s", path, n, doc, sc[1])
			}
			if sc[2] != "" && !regexp.MustCompile(`\b`+sc[2]+`\b`).MatchString(docs[doc]) {
				t.Errorf("%s:%d: docs/%s.md does not define %s", path, n, doc, sc[2])
			}
		}
	}

	// A § outside a document reference cannot be followed.
	for i, r := range line {
		if r == '§' && !covered[i] {
			t.Errorf("%s:%d: § without a document path: %s", path, n, strings.TrimSpace(line))
			break
		}
	}
	return count
}
