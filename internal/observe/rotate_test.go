package observe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRotatingFileKeepsBoundedBackups(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "kaiser.log")
	r, err := openRotating(name, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 39) + "\n")
	for i := 0; i < 20; i++ {
		if _, err := r.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("want current + 2 backups, got %d", len(entries))
	}
	for _, e := range entries {
		info, _ := e.Info()
		if info.Size() > 100 {
			t.Fatalf("%s has %d bytes, over the limit", e.Name(), info.Size())
		}
	}
	if _, err := r.Write(line); err == nil {
		t.Fatal("write after close succeeded")
	}
}

func TestRedactsSecrets(t *testing.T) {
	dir := t.TempDir()
	l, err := NewLogs(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Logger.Info("login", "password", "hunter2", "access_token", "abc", "user", "bob")
	l.Close()
	b, _ := os.ReadFile(filepath.Join(dir, "logs", "kaiser.log"))
	logged := string(b)
	if strings.Contains(logged, "hunter2") || strings.Contains(logged, `"abc"`) || !strings.Contains(logged, "bob") {
		t.Fatalf("log line: %s", b)
	}
}
