package auth

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadSecret(t *testing.T) {
	long := strings.Repeat("s", 32)
	const source = "--jwt-secret-file"

	tests := []struct {
		name string
		// prepare writes files into dir and returns the file argument.
		prepare func(t *testing.T, dir string) string
		value   string
		want    []byte
		// wantErr is a part of the error message, which must name the source;
		// $DIR stands for the data directory.
		wantErr string
	}{
		{
			name:    "file and value both set",
			prepare: func(t *testing.T, dir string) string { return writeFile(t, dir, "s", long) },
			value:   long,
			wantErr: "both",
		},
		{
			name:    "file",
			prepare: func(t *testing.T, dir string) string { return writeFile(t, dir, "s", long) },
			want:    []byte(long),
		},
		{
			name:    "file with a trailing line break",
			prepare: func(t *testing.T, dir string) string { return writeFile(t, dir, "s", long+"\r\n") },
			want:    []byte(long),
		},
		{
			name:    "short file",
			prepare: func(t *testing.T, dir string) string { return writeFile(t, dir, "s", long[:31]+"\n") },
			wantErr: source + ": JWT secret is 31 bytes",
		},
		{
			name:    "missing file",
			prepare: func(t *testing.T, dir string) string { return filepath.Join(dir, "absent") },
			wantErr: source,
		},
		{name: "value", value: long, want: []byte(long)},
		{name: "short value", value: long[:31], wantErr: "KAISER_JWT_SECRET: JWT secret is 31 bytes"},
		{
			name: "earlier generated file is reused",
			prepare: func(t *testing.T, dir string) string {
				writeFile(t, dir, "jwt.secret", long)
				return ""
			},
			want: []byte(long),
		},
		{
			name: "earlier generated file too short",
			prepare: func(t *testing.T, dir string) string {
				writeFile(t, dir, "jwt.secret", long[:16])
				return ""
			},
			wantErr: "$DIR/jwt.secret: JWT secret is 16 bytes",
		},
		{
			name: "generated file unreadable",
			prepare: func(t *testing.T, dir string) string {
				if err := os.Mkdir(filepath.Join(dir, "jwt.secret"), 0o700); err != nil {
					t.Fatal(err)
				}
				return ""
			},
			wantErr: "read $DIR/jwt.secret:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := ""
			if tt.prepare != nil {
				file = tt.prepare(t, dir)
			}

			got, err := LoadSecret(dir, file, source, tt.value)
			if tt.wantErr != "" {
				want := strings.ReplaceAll(tt.wantErr, "$DIR", dir)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error %v, want one containing %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("secret %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadSecretGeneratesOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")

	first, err := LoadSecret(dir, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(first) < 32 {
		t.Fatalf("generated secret has %d bytes, want at least 32", len(first))
	}
	info, err := os.Stat(filepath.Join(dir, "jwt.secret"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("generated secret file mode %o, want 600", perm)
	}

	again, err := LoadSecret(dir, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Fatal("a later start generated a new secret instead of reusing the file")
	}

	other, err := LoadSecret(t.TempDir(), "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first, other) {
		t.Fatal("two data directories got the same generated secret")
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
