package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// site is the hubs under measurement: one `kaiser serve`, or replicas of
// one site on a PostgreSQL database and an MQTT broker they share
// (docs/decisions/0029-replicas.md), the first the primary.
type site struct {
	cfg      FootprintConfig
	dir      string
	dbURL    string
	secret   string // the JWT secret file the replicas share
	hubs     []*hubChild
	mqttAddr string     // where the fleet connects
	db       *scratchDB // nil on SQLite
}

// startSite creates the scratch database and starts the first hub (which
// alone migrates the fresh database), and waits until it leads; the other
// replicas start with startStandbys.
func startSite(ctx context.Context, cfg FootprintConfig, dir string) (_ *site, err error) {
	s := &site{cfg: cfg, dir: dir}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if cfg.Database != "" {
		if s.db, err = createScratchDB(ctx, cfg.Database); err != nil {
			return nil, err
		}
		s.dbURL = s.db.url
		// Every replica signs and checks tokens with one secret.
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		s.secret = filepath.Join(dir, "jwt-secret")
		if err := os.WriteFile(s.secret, []byte(hex.EncodeToString(key)), 0o600); err != nil {
			return nil, err
		}
	}
	if cfg.Broker != "" {
		if s.mqttAddr, err = brokerAddr(cfg.Broker); err != nil {
			return nil, err
		}
	}
	if err := s.startHub(ctx, 0); err != nil {
		return nil, err
	}
	if cfg.Broker == "" {
		s.mqttAddr = s.hubs[0].mqttAddr
	}
	return s, nil
}

// startStandbys starts the other replicas and waits until each stands by
// for the first. A standby loads the device registry and the sensor
// configs when it starts, so the bench registers the fleet before.
func (s *site) startStandbys(ctx context.Context) (err error) {
	for i := len(s.hubs); i < s.cfg.Replicas; i++ {
		if err := s.startHub(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// startHub starts hub i and waits until it plays its part: the first
// leads, the others stand by for it. A single hub on SQLite or the
// embedded broker is solo and need not know /health/replica (an older
// binary under comparison).
func (s *site) startHub(ctx context.Context, i int) error {
	c, err := newChild(s.cfg, filepath.Join(s.dir, fmt.Sprintf("hub%d", i)), i, s.dbURL, s.secret)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.logPath), 0o755); err != nil {
		return err
	}
	s.hubs = append(s.hubs, c)
	if err := c.start(ctx); err != nil {
		return err
	}
	c.role = "solo"
	if s.cfg.Database == "" || s.cfg.Broker == "" {
		return nil
	}
	// A replica is ready as a standby first, and leads once it holds the
	// lease.
	want := func(st replicaStatus) bool { return st.Role == "primary" }
	if i > 0 {
		primary := s.hubs[0].holder
		want = func(st replicaStatus) bool {
			return st.Role == "standby" && st.Primary != nil && st.Primary.Holder == primary
		}
	}
	st, err := c.awaitRole(ctx, 30*time.Second, want)
	if err != nil {
		return err
	}
	c.role, c.holder = st.Role, st.Holder
	return nil
}

// brokerAddr is host:port of an mqtt:// URL, where the fleet connects.
func brokerAddr(broker string) (string, error) {
	u, err := url.Parse(broker)
	if err != nil || u.Scheme != "mqtt" || u.Hostname() == "" {
		return "", fmt.Errorf("broker %q: want mqtt://host[:port] (the fleet speaks plain MQTT)", broker)
	}
	port := u.Port()
	if port == "" {
		port = "1883"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// exits reports each hub that exits, until ctx ends.
func (s *site) exits(ctx context.Context) <-chan *hubChild {
	ch := make(chan *hubChild, len(s.hubs))
	for _, c := range s.hubs {
		go func(c *hubChild, exited <-chan struct{}) {
			select {
			case <-exited:
				ch <- c
			case <-ctx.Done():
			}
		}(c, c.exited)
	}
	return ch
}

// stop ends the hubs with SIGTERM, the standbys first, so that no standby
// takes over from a stopping primary.
func (s *site) stop() error {
	var errs []error
	for i := len(s.hubs) - 1; i >= 0; i-- {
		errs = append(errs, s.hubs[i].stop())
	}
	return errors.Join(errs...)
}

// close kills whatever still runs and drops the scratch database.
func (s *site) close() {
	for _, c := range s.hubs {
		c.kill()
	}
	if s.db != nil {
		s.db.drop()
	}
}

// siteSample is every hub's sample at one time, and their sum.
type siteSample struct {
	FootprintSample
	at       time.Time
	cpuTicks int64
	hubs     []childSample
	others   []int64 // CPU ticks of the AlsoMeasure process trees
}

func (s *site) sample(start time.Time, fleet *footprintFleet, others []otherProcess) (siteSample, error) {
	out := siteSample{at: time.Now()}
	out.ElapsedS = out.at.Sub(start).Seconds()
	for _, c := range s.hubs {
		h, err := c.sample(start, fleet)
		if err != nil {
			return out, fmt.Errorf("hub %d: %w", c.index, err)
		}
		out.hubs = append(out.hubs, h)
		out.cpuTicks += h.cpuTicks
		out.RSSMB += h.RSSMB
		out.HeapMB += h.HeapMB
		out.Goroutines += h.Goroutines
		out.Stored += h.Stored
		out.DBMB += h.DBMB
		out.WALMB += h.WALMB
	}
	out.Published = fleet.sent.Load()
	for _, o := range others {
		t, err := treeTicks(o.pid)
		if err != nil {
			return out, err
		}
		out.others = append(out.others, t)
	}
	return out, nil
}

// cpuPct is all hubs' CPU between two samples, as a share of one core,
// and each hub's when there are several.
func (s *site) cpuPct(from, to siteSample) (float64, []float64) {
	d := to.at.Sub(from.at).Seconds()
	if d <= 0 {
		return 0, nil
	}
	total := float64(to.cpuTicks-from.cpuTicks) / clockTicks / d * 100
	if len(s.hubs) < 2 {
		return total, nil
	}
	per := make([]float64, len(s.hubs))
	for i, c := range s.hubs {
		per[i] = c.cpuPct(from.hubs[i], to.hubs[i])
	}
	return total, per
}

// replicaStatus is GET /api/v1/health/replica.
type replicaStatus struct {
	Role    string `json:"role"`
	Holder  string `json:"holder"`
	Primary *struct {
		Holder string `json:"holder"`
		URL    string `json:"url"`
	} `json:"primary"`
}

// replicaStatus asks the hub its role; an error while it does not answer
// (it starts, or changes roles).
func (c *hubChild) replicaStatus(ctx context.Context) (replicaStatus, error) {
	var st replicaStatus
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := c.call(ctx, "GET", "/health/replica", "", nil, &st)
	return st, err
}

// awaitRole polls the hub's role until ok accepts it.
func (c *hubChild) awaitRole(ctx context.Context, within time.Duration, ok func(replicaStatus) bool) (replicaStatus, error) {
	deadline := time.Now().Add(within)
	var last replicaStatus
	var lastErr error
	for {
		st, err := c.replicaStatus(ctx)
		if err == nil && ok(st) {
			return st, nil
		}
		last, lastErr = st, err
		if time.Now().After(deadline) {
			return last, fmt.Errorf("hub %d: role %q (%v) after %s: %s", c.index, last.Role, lastErr, within, c.logTail())
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-c.exited:
			return last, fmt.Errorf("hub %d (kaiser serve) exited: %s", c.index, c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// scratchDB is a database the bench created for one run.
type scratchDB struct {
	server string // the URL it was created through
	name   string
	url    string // the hubs' --database
}

// createScratchDB creates an empty database on the server of serverURL,
// so that every run starts from a fresh site.
func createScratchDB(ctx context.Context, serverURL string) (*scratchDB, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, errors.New("database: want a postgres:// URL")
	}
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return nil, fmt.Errorf("connect to the database server: %w", err)
	}
	defer conn.Close(context.Background())
	db := &scratchDB{server: serverURL, name: "kaiser_bench_" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+db.name); err != nil {
		return nil, fmt.Errorf("create the scratch database (the user needs CREATEDB): %w", err)
	}
	u.Path = "/" + db.name
	db.url = u.String()
	return db, nil
}

// readings counts the stored readings.
func (d *scratchDB) readings(ctx context.Context) (int64, error) {
	conn, err := pgx.Connect(ctx, d.url)
	if err != nil {
		return 0, fmt.Errorf("connect to the scratch database: %w", err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM readings`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count readings: %w", err)
	}
	return n, nil
}

// drop drops the database, closing what still connects to it.
func (d *scratchDB) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.server)
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)")
}

// otherProcess is a process of AlsoMeasure.
type otherProcess struct {
	pid  int
	name string
}

func otherProcesses(pids []int) ([]otherProcess, error) {
	var out []otherProcess
	for _, pid := range pids {
		st, err := readProcStat(pid)
		if err != nil {
			return nil, fmt.Errorf("process %d to measure: %w", pid, err)
		}
		out = append(out, otherProcess{pid: pid, name: st.name})
	}
	return out, nil
}

// procStat is what the bench reads of /proc/PID/stat.
type procStat struct {
	name     string
	ppid     int
	ticks    int64 // utime + stime
	children int64 // cutime + cstime: the children it has waited for
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may hold spaces.
	open, end := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	st := procStat{name: string(b[open+1 : end])}
	st.ppid, _ = strconv.Atoi(f[1])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	cu, _ := strconv.ParseInt(f[13], 10, 64)
	ck, _ := strconv.ParseInt(f[14], 10, 64)
	st.ticks, st.children = u+k, cu+ck
	return st, nil
}

// treeTicks is the CPU of pid and its descendants: PostgreSQL's work is
// done in backends, one per connection, that come and go; a child that
// ended is in its parent's cutime and cstime once waited for.
func treeTicks(pid int) (int64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	stats := map[int]procStat{}
	kids := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(p)
		if err != nil {
			continue // ended meanwhile
		}
		stats[p] = st
		kids[st.ppid] = append(kids[st.ppid], p)
	}
	if _, ok := stats[pid]; !ok {
		return 0, fmt.Errorf("process %d to measure is gone", pid)
	}
	var sum func(p int) int64
	sum = func(p int) int64 {
		t := stats[p].ticks + stats[p].children
		for _, k := range kids[p] {
			t += sum(k)
		}
		return t
	}
	return sum(pid), nil
}

// login returns a fresh access token of the bench's admin.
func (c *hubChild) login(ctx context.Context) (string, error) {
	var out struct {
		Tokens struct {
			AccessToken string `json:"access_token"`
		} `json:"tokens"`
	}
	err := c.call(ctx, "POST", "/auth/login", "", map[string]string{
		"username": "bench", "password": "Bench-pass1",
	}, &out)
	return out.Tokens.AccessToken, err
}

// openSite starts the hubs of cfg in a temporary directory named after
// prefix, sets up the admin and registers the fleet through the first hub;
// close removes everything.
func openSite(ctx context.Context, cfg FootprintConfig, prefix string) (s *site, token string, ids []string,
	closeSite func(), err error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, "", nil, nil, err
	}
	s, err = startSite(ctx, cfg, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, nil, err
	}
	closeSite = func() {
		s.close()
		os.RemoveAll(dir)
	}
	if token, err = s.hubs[0].setup(ctx); err == nil {
		ids, err = s.hubs[0].provision(ctx, token, cfg.Devices, cfg.Sensors)
	}
	if err != nil {
		closeSite()
		return nil, "", nil, nil, err
	}
	return s, token, ids, closeSite, nil
}
