// Package pgtest starts throwaway PostgreSQL servers for tests: initdb
// into a temporary directory, pg_ctl start on a free port with the unix
// socket in that directory, and a fresh database per test. Tests skip when
// the server binaries are missing, unless CI=true (then they fail): CI
// installs Debian's postgresql package (scripts/test).
package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config tunes a server.
type Config struct {
	// Durable keeps fsync and synchronous commit on (benchmarks of durable
	// writes); otherwise both are off, which makes tests faster and loses
	// nothing a test looks at (the server dies with the test).
	Durable bool
	// SharedBuffers is shared_buffers ("32MB" unless set).
	SharedBuffers string
}

// Server is a running throwaway server.
type Server struct {
	dir    string
	data   string
	port   int
	bin    string
	runAs  string // "" or the user the server runs as (initdb refuses root)
	dbs    atomic.Int64
	stopMu sync.Mutex
	done   bool
}

// binDir finds the server binaries: Debian's /usr/lib/postgresql/<v>/bin
// (newest version), else pg_ctl on PATH.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (apt-get install -y postgresql)")
}

// missing skips t, or fails it under CI=true, where PostgreSQL must be there.
func missing(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL tests cannot run: %v", err)
	}
	t.Skipf("skipping PostgreSQL test: %v", err)
}

// Start starts a server for t and stops it when t ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := start(cfg)
	if err != nil {
		if s == nil {
			missing(t, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func start(cfg Config) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("running as root and there is no postgres user to run the server as")
		}
		s.runAs = "postgres"
	}
	s.dir, err = os.MkdirTemp("", "kaiser-pg-")
	if err != nil {
		return s, err
	}
	s.data = filepath.Join(s.dir, "data")
	if s.runAs != "" {
		if out, err := exec.Command("chown", s.runAs, s.dir).CombinedOutput(); err != nil {
			s.cleanup()
			return s, fmt.Errorf("chown %s: %v: %s", s.dir, err, out)
		}
	}
	if out, err := s.run("initdb", "-D", s.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--no-locale", "--no-sync"); err != nil {
		s.cleanup()
		return s, fmt.Errorf("initdb: %v: %s", err, out)
	}
	s.port, err = freePort()
	if err != nil {
		s.cleanup()
		return s, err
	}
	onOff := "off"
	if cfg.Durable {
		onOff = "on"
	}
	buffers := cfg.SharedBuffers
	if buffers == "" {
		buffers = "32MB"
	}
	opts := fmt.Sprintf("-c listen_addresses='' -c unix_socket_directories='%s' -p %d -c fsync=%s "+
		"-c synchronous_commit=%s -c full_page_writes=%s -c shared_buffers=%s -c max_connections=60",
		s.dir, s.port, onOff, onOff, onOff, buffers)
	if out, err := s.run("pg_ctl", "start", "-w", "-t", "60", "-D", s.data, "-l", filepath.Join(s.dir, "log"),
		"-o", opts); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		s.cleanup()
		return s, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	return s, nil
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) cleanup() { os.RemoveAll(s.dir) }

// Stop stops the server (fast shutdown) and removes its files.
func (s *Server) Stop() {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.done {
		return
	}
	s.done = true
	s.run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", s.data)
	s.cleanup()
}

// DSN is the connection string of a database on the server.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.dir, s.port, db)
}

// URL is the postgres:// URL of a database on the server (the form the
// hub's --database takes).
func (s *Server) URL(db string) string {
	q := url.Values{"host": {s.dir}, "port": {strconv.Itoa(s.port)}, "sslmode": {"disable"}}
	return "postgres://postgres@/" + db + "?" + q.Encode()
}

// NewDatabase creates an empty database for t and drops it when t ends;
// it returns its connection string.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	return s.DSN(s.newDatabase(t))
}

// NewDatabaseURL is NewDatabase, answering the database's URL.
func (s *Server) NewDatabaseURL(t testing.TB) string {
	t.Helper()
	return s.URL(s.newDatabase(t))
}

func (s *Server) newDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return name
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// DSN returns a fresh database on the package's shared server, started at
// the first call (fsync off). A package that calls it stops the server
// with Main in its TestMain.
func DSN(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() { shared.srv, shared.err = start(Config{}) })
	if shared.err != nil {
		if shared.srv == nil {
			missing(t, shared.err)
		}
		t.Fatal(shared.err)
	}
	return shared.srv.NewDatabase(t)
}

// Main runs the tests, stops the shared server and then fails a passing
// run that left goroutines behind: call it from TestMain of a package that
// uses DSN, as os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			println("goleak:", err.Error())
			code = 1
		}
	}
	return code
}
