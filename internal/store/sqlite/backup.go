package sqlite

import (
	"archive/tar"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// files are the database files of a data directory, in backup order.
var files = []string{"kaiser.db", controlFile}

// Backup writes a consistent snapshot of the data directory's databases to
// w as a tar archive with one member per file. It runs beside a running hub
// (another process, or the same one): each file is copied with VACUUM INTO
// from a read transaction, which sees one committed state and, in WAL mode,
// neither blocks the hub's writer nor waits for it. The two files are each
// consistent; no transaction ever spans both (docs/decisions/0013).
func Backup(ctx context.Context, dir string, w io.Writer) error {
	tmp, err := os.MkdirTemp(dir, ".backup-")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp)

	tw := tar.NewWriter(w)
	for _, name := range files {
		src := filepath.Join(dir, name)
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("backup %s: %w", name, err)
		}
		snap := filepath.Join(tmp, name)
		if err := vacuumInto(ctx, src, snap); err != nil {
			return err
		}
		if err := addFile(tw, snap, name); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

func vacuumInto(ctx context.Context, src, dst string) error {
	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("backup %s: %w", src, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("backup %s: %w", src, err)
	}
	return nil
}

func addFile(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup %s: %w", name, err)
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    0o640,
		Size:    st.Size(),
		ModTime: time.Now(),
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("backup %s: %w", name, err)
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("backup %s: %w", name, err)
	}
	return nil
}

// ErrDataExists is returned by Restore when the target directory already
// holds a database: a restore never overwrites a site's data.
var ErrDataExists = errors.New("the data directory already holds a database")

// Restore unpacks a Backup archive into dir, which must not hold a
// database yet. Each file is checked with PRAGMA integrity_check before it
// takes its place, so a damaged archive leaves nothing behind.
func Restore(ctx context.Context, r io.Reader, dir string) error {
	for _, name := range files {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("restore into %s: %w", dir, ErrDataExists)
		}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".restore-")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(tmp)

	got, err := unpack(r, tmp)
	if err != nil {
		return err
	}
	for _, name := range files {
		if !got[name] {
			return fmt.Errorf("restore: the archive has no %s", name)
		}
		if err := integrity(ctx, filepath.Join(tmp, name)); err != nil {
			return err
		}
	}
	for _, name := range files {
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("restore %s: %w", name, err)
		}
	}
	return nil
}

// unpack writes the archive's known members into dir; others are refused,
// so a crafted archive cannot write anywhere else.
func unpack(r io.Reader, dir string) (map[string]bool, error) {
	known := map[string]bool{}
	for _, name := range files {
		known[name] = true
	}
	got := map[string]bool{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return nil, fmt.Errorf("restore: read archive: %w", err)
		}
		if !known[hdr.Name] || hdr.Typeflag != tar.TypeReg || got[hdr.Name] {
			return nil, fmt.Errorf("restore: unexpected archive member %q", hdr.Name)
		}
		if err := writeMember(tr, filepath.Join(dir, hdr.Name)); err != nil {
			return nil, err
		}
		got[hdr.Name] = true
	}
}

func writeMember(r io.Reader, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("restore %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("restore %s: %w", path, err)
	}
	return f.Close()
}

func integrity(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return fmt.Errorf("restore %s: %w", path, err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res); err != nil {
		return fmt.Errorf("restore %s: integrity check: %w", filepath.Base(path), err)
	}
	if res != "ok" {
		return fmt.Errorf("restore %s: integrity check: %s", filepath.Base(path), res)
	}
	return nil
}
