// Package localch runs a local single-node ClickHouse server from the
// clickhouse-server binary: the embedded default of `neubot-server up`, of
// the integration tests (from TestMain) and of the benchmarks.
//
// It writes a generated configuration into the directory it is given, picks
// free loopback ports, starts the server, waits until it answers over the
// native protocol, applies the migrations and stops it cleanly (SIGTERM, then
// SIGKILL after a grace period). The server listens on 127.0.0.1 only.
package localch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/internal/chdb"
)

// ErrNoBinary is returned when clickhouse-server cannot be found.
var ErrNoBinary = errors.New("clickhouse-server not found: install it with `sudo scripts/setup` " +
	"(or `apt-get install clickhouse-server` on Debian/Ubuntu), or pass its path")

// Config says where and how to run the server.
type Config struct {
	// Dir holds the configuration, data and logs. It is created if needed
	// and kept across runs: data survive a restart.
	Dir string
	// Binary is the clickhouse-server executable; found on PATH or in
	// /usr/sbin and /usr/bin when empty.
	Binary string
	// TCPPort is the native protocol port; a free one when 0.
	TCPPort int
	// Database is created and migrated after start (chdb.DefaultDatabase
	// when empty). Set SkipMigrate to leave the server empty.
	Database    string
	SkipMigrate bool
	// StartTimeout bounds the wait until the server answers (default 60 s).
	StartTimeout time.Duration
	// MaxMemoryBytes bounds the memory of one query (default 4 GiB).
	MaxMemoryBytes int64
	Logger         *slog.Logger
	// Timezone is the server's time zone (its <timezone>), UTC when
	// empty. Neubot's queries name 'UTC' wherever a day or an hour is
	// taken; tests set another zone to prove it.
	Timezone string
	// Cluster, when set, makes the server one node of a ClickHouse
	// cluster (remote_servers, macros, ZooKeeper, distributed DDL); nil
	// is the single-node default.
	Cluster *Node
}

// Node is what a server needs to know to be one node of a cluster.
type Node struct {
	// Name is the cluster's name in remote_servers and ON CLUSTER.
	Name string
	// Shards lists the native protocol addresses (host:port) of the
	// replicas of each shard, this server's among them.
	Shards [][]string
	// ZooKeeper lists the ZooKeeper servers, host:port.
	ZooKeeper []string
	// Shard and Replica are this server's {shard} and {replica} macros;
	// Replica must be unique in the whole cluster.
	Shard, Replica string
	// InterserverPort is the port replicas fetch parts from; a free one
	// when 0.
	InterserverPort int
}

// hostPort is one host:port of a Node's lists, split for the template.
type hostPort struct {
	Host string
	Port string
}

func splitAll(addrs []string) ([]hostPort, error) {
	out := make([]hostPort, 0, len(addrs))
	for _, a := range addrs {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("localch: %w", err)
		}
		out = append(out, hostPort{h, p})
	}
	return out, nil
}

// Server is a running clickhouse-server process.
type Server struct {
	cfg  Config
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status, valid after done is closed

	stopOnce sync.Once
}

var tzRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+/-]{0,63}$`)

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// FindBinary returns the path of clickhouse-server or ErrNoBinary.
func FindBinary(hint string) (string, error) {
	if hint != "" {
		if _, err := os.Stat(hint); err != nil {
			return "", fmt.Errorf("%w (%v)", ErrNoBinary, err)
		}
		return hint, nil
	}
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/local/bin/clickhouse-server"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNoBinary
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts the server and returns once it answers and (unless
// SkipMigrate) its database is migrated. The context bounds start-up only.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("localch: no directory given")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.MaxMemoryBytes == 0 {
		cfg.MaxMemoryBytes = 4 << 30
	}
	if cfg.Timezone != "" && !tzRE.MatchString(cfg.Timezone) {
		return nil, fmt.Errorf("localch: time zone %q is not an IANA name like Europe/Rome", cfg.Timezone)
	}
	bin, err := FindBinary(cfg.Binary)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	if cfg.TCPPort == 0 {
		if cfg.TCPPort, err = FreePort(); err != nil {
			return nil, fmt.Errorf("localch: free port: %w", err)
		}
	}
	for _, sub := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return nil, fmt.Errorf("localch: %w", err)
		}
	}
	if cfg.Cluster != nil && cfg.Cluster.InterserverPort == 0 {
		n := *cfg.Cluster
		if n.InterserverPort, err = FreePort(); err != nil {
			return nil, fmt.Errorf("localch: free port: %w", err)
		}
		cfg.Cluster = &n
	}
	if err := writeConfig(cfg); err != nil {
		return nil, err
	}
	// A server left running by a crashed parent holds the data directory.
	stopStale(dir, cfg.Logger)

	cmd := exec.Command(bin, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Dir = dir
	stderr := &tailBuffer{}
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // Ctrl-C goes to us; we stop the server in order.
		Pdeathsig: syscall.SIGTERM, // and it does not outlive us if we die.
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("localch: start %s: %w", bin, err)
	}
	_ = os.WriteFile(filepath.Join(dir, "server.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o640)
	s := &Server{cfg: cfg, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.TCPPort)), cmd: cmd, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	cfg.Logger.Info("clickhouse starting", "binary", bin, "dir", dir, "addr", s.addr)

	if err := s.waitReady(ctx, stderr); err != nil {
		s.Stop()
		return nil, err
	}
	if !cfg.SkipMigrate {
		conn, err := chdb.Setup(ctx, s.Options(), cfg.Logger)
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("localch: migrate: %w", err)
		}
		conn.Close()
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, out *tailBuffer) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	opts := s.Options()
	opts.Database = "default"
	opts.MaxOpenConns = 1
	for {
		select {
		case <-s.done:
			return fmt.Errorf("localch: clickhouse-server exited during start-up (%v); its output: %s; see %s",
				s.err, out.String(), filepath.Join(s.cfg.Dir, "log", "clickhouse-server.err.log"))
		default:
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := chdb.Open(pctx, opts)
		pcancel()
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localch: clickhouse-server did not answer on %s within %s: %w", s.addr, s.cfg.StartTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Addr is the native protocol address, host:port.
func (s *Server) Addr() string { return s.addr }

// URL is the address as printed to users: clickhouse://127.0.0.1:PORT.
func (s *Server) URL() string { return "clickhouse://" + s.addr }

// Options returns connection options for this server's database.
func (s *Server) Options() chdb.Options {
	db := s.cfg.Database
	if db == "" {
		db = chdb.DefaultDatabase
	}
	return chdb.Options{Addr: s.addr, Database: db}
}

// Connect opens a connection to the server's database.
func (s *Server) Connect(ctx context.Context) (driver.Conn, error) {
	return chdb.Open(ctx, s.Options())
}

// Done is closed when the process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// Stop asks the server to shut down (SIGTERM) and waits up to 30 s before
// killing it. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			s.cfg.Logger.Warn("clickhouse did not stop in 30 s; killing it")
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		_ = os.Remove(filepath.Join(s.cfg.Dir, "server.pid"))
		s.cfg.Logger.Info("clickhouse stopped", "addr", s.addr)
	})
	return nil
}

// Kill stops the server abruptly (SIGKILL), as a crash would; for tests.
func (s *Server) Kill() {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
}

// Signal sends sig to the server's process: SIGSTOP and SIGCONT make a
// server that hangs (connections open, no answer) and then resumes; for
// tests.
func (s *Server) Signal(sig os.Signal) error { return s.cmd.Process.Signal(sig) }

// Restart starts the server again on the same directory and port, e.g.
// after Stop or Kill in a test.
func (s *Server) Restart(ctx context.Context) (*Server, error) {
	cfg := s.cfg
	cfg.SkipMigrate = true
	return Start(ctx, cfg)
}

// stopStale terminates a clickhouse-server recorded in dir/server.pid that
// is still running, e.g. after the parent was killed with SIGKILL.
func stopStale(dir string, log *slog.Logger) {
	b, err := os.ReadFile(filepath.Join(dir, "server.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 1 {
		return
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil || filepath.Base(exe) != "clickhouse-server" && filepath.Base(exe) != "clickhouse" {
		return
	}
	log.Warn("stopping a clickhouse-server left running on this directory", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 300; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

var configTmpl = template.Must(template.New("config").Parse(`<?xml version="1.0"?>
<!-- Generated by neubot (internal/localch); rewritten at every start. -->
<yandex>
  <logger>
    <level>warning</level>
    <log>{{.Dir}}/log/clickhouse-server.log</log>
    <errorlog>{{.Dir}}/log/clickhouse-server.err.log</errorlog>
    <size>100M</size>
    <count>3</count>
    <console>0</console>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{{.TCPPort}}</tcp_port>
  <path>{{.Dir}}/data/</path>
  <tmp_path>{{.Dir}}/tmp/</tmp_path>
  <user_files_path>{{.Dir}}/user_files/</user_files_path>
  <format_schema_path>{{.Dir}}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <timezone>{{if .Timezone}}{{.Timezone}}{{else}}UTC{{end}}</timezone>
{{- with .Cluster}}
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>{{.InterserverPort}}</interserver_http_port>
  <remote_servers>
    <{{.Name}}>
{{- range .Shards}}
      <shard>
        <internal_replication>true</internal_replication>
{{- range .}}
        <replica><host>{{.Host}}</host><port>{{.Port}}</port></replica>
{{- end}}
      </shard>
{{- end}}
    </{{.Name}}>
  </remote_servers>
  <zookeeper>
{{- range .ZooKeeper}}
    <node><host>{{.Host}}</host><port>{{.Port}}</port></node>
{{- end}}
    <session_timeout_ms>10000</session_timeout_ms>
  </zookeeper>
  <macros>
    <cluster>{{.Name}}</cluster>
    <shard>{{.Shard}}</shard>
    <replica>{{.Replica}}</replica>
  </macros>
  <distributed_ddl>
    <path>/clickhouse/task_queue/ddl</path>
  </distributed_ddl>
  <!-- A collector's retry is dropped as a duplicate when its block is
       among the last N of the table on that shard (default 100). -->
  <merge_tree>
    <replicated_deduplication_window>1000</replicated_deduplication_window>
  </merge_tree>
{{- end}}
</yandex>
`))

var usersTmpl = template.Must(template.New("users").Parse(`<?xml version="1.0"?>
<!-- Generated by neubot (internal/localch). Loopback only, no password. -->
<yandex>
  <profiles>
    <default>
      <max_memory_usage>{{.MaxMemoryBytes}}</max_memory_usage>
      <log_queries>1</log_queries>
      <load_balancing>random</load_balancing>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries><errors>0</errors><result_rows>0</result_rows>
        <read_rows>0</read_rows><execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
`))

// templateData is Config with the cluster's addresses split for the template.
type templateData struct {
	Config
	Cluster *templateNode
}

type templateNode struct {
	Node
	Shards    [][]hostPort
	ZooKeeper []hostPort
}

func writeConfig(cfg Config) error {
	data := templateData{Config: cfg}
	if n := cfg.Cluster; n != nil {
		if !identRE.MatchString(n.Name) || !identRE.MatchString(n.Shard) || !identRE.MatchString(n.Replica) {
			return fmt.Errorf("localch: cluster, shard and replica names must be identifiers (%q, %q, %q)", n.Name, n.Shard, n.Replica)
		}
		tn := &templateNode{Node: *n}
		for _, sh := range n.Shards {
			hp, err := splitAll(sh)
			if err != nil {
				return err
			}
			tn.Shards = append(tn.Shards, hp)
		}
		zk, err := splitAll(n.ZooKeeper)
		if err != nil {
			return err
		}
		tn.ZooKeeper = zk
		data.Cluster = tn
	}
	for name, t := range map[string]*template.Template{"config.xml": configTmpl, "users.xml": usersTmpl} {
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return fmt.Errorf("localch: %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(cfg.Dir, name), b.Bytes(), 0o640); err != nil {
			return fmt.Errorf("localch: %w", err)
		}
	}
	return nil
}

// tailBuffer keeps the last 16 KiB written to it; safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 16<<10; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}
