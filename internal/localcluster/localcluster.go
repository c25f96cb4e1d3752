// Package localcluster runs a ClickHouse cluster on one machine, for the
// cluster integration test and the cluster benchmark: one ZooKeeper of its
// own and shards × replicas clickhouse-server processes (internal/localch),
// all on free loopback ports, each replica with its own directory. It is
// the same topology as a production cluster (docs/cluster.md), squeezed
// onto one host.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/localch"
)

// Config says what cluster to run.
type Config struct {
	// Dir holds ZooKeeper's and every server's directory.
	Dir string
	// Name is the cluster's name (ON CLUSTER, remote_servers).
	Name string
	// Shards and Replicas per shard, at least 1 each.
	Shards, Replicas int
	// Database is what Options connects to (chdb.DefaultDatabase when empty).
	Database string
	Logger   *slog.Logger
}

// Cluster is a running ZooKeeper plus its ClickHouse servers.
type Cluster struct {
	cfg   Config
	zk    *ZooKeeper
	mu    sync.Mutex
	nodes [][]*localch.Server // [shard][replica]
	cfgs  [][]localch.Config
}

func freePort() (int, error) { return localch.FreePort() }

// Start starts ZooKeeper and the servers, and returns once every server
// answers. It applies no migration: see Options and chdb.Setup.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Shards < 1 || cfg.Replicas < 1 {
		return nil, fmt.Errorf("localcluster: %d shards × %d replicas", cfg.Shards, cfg.Replicas)
	}
	if cfg.Name == "" {
		cfg.Name = "neubot"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	zk, err := StartZooKeeper(ctx, filepath.Join(cfg.Dir, "zookeeper"))
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, zk: zk}
	shards := make([][]string, cfg.Shards)
	ports := make([][]int, cfg.Shards)
	for s := range shards {
		for r := 0; r < cfg.Replicas; r++ {
			p, err := freePort()
			if err != nil {
				zk.Stop()
				return nil, err
			}
			ports[s] = append(ports[s], p)
			shards[s] = append(shards[s], net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		}
	}
	c.nodes = make([][]*localch.Server, cfg.Shards)
	c.cfgs = make([][]localch.Config, cfg.Shards)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for s := range shards {
		c.nodes[s] = make([]*localch.Server, cfg.Replicas)
		c.cfgs[s] = make([]localch.Config, cfg.Replicas)
		for r := range shards[s] {
			lc := localch.Config{
				Dir:         filepath.Join(cfg.Dir, fmt.Sprintf("s%dr%d", s+1, r+1)),
				TCPPort:     ports[s][r],
				SkipMigrate: true,
				// Four servers share one test machine.
				MaxMemoryBytes: 2 << 30,
				Logger:         cfg.Logger,
				Cluster: &localch.Node{
					Name:      cfg.Name,
					Shards:    shards,
					ZooKeeper: []string{zk.Addr()},
					Shard:     fmt.Sprintf("s%d", s+1),
					Replica:   fmt.Sprintf("s%dr%d", s+1, r+1),
				},
			}
			wg.Add(1)
			go func(s, r int, lc localch.Config) {
				defer wg.Done()
				srv, err := localch.Start(ctx, lc)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("shard %d replica %d: %w", s+1, r+1, err))
					return
				}
				c.nodes[s][r] = srv
				c.cfgs[s][r] = lc
			}(s, r, lc)
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		c.Stop()
		return nil, fmt.Errorf("localcluster: %w", errors.Join(errs...))
	}
	return c, nil
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.cfg.Name }

// ZooKeeper is the cluster's ZooKeeper.
func (c *Cluster) ZooKeeper() *ZooKeeper { return c.zk }

// Addrs lists the native addresses of every server, shard by shard.
func (c *Cluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, sh := range c.nodes {
		for _, n := range sh {
			out = append(out, n.Addr())
		}
	}
	return out
}

// Options returns connection options for the cluster's database through
// the given servers (all when none is given), in cluster mode.
func (c *Cluster) Options(addrs ...string) chdb.Options {
	if len(addrs) == 0 {
		addrs = c.Addrs()
	}
	db := c.cfg.Database
	if db == "" {
		db = chdb.DefaultDatabase
	}
	return chdb.Options{Addr: addrs[0], More: addrs[1:], Database: db, Cluster: c.cfg.Name}
}

// Node returns the server of replica r (0-based) of shard s (0-based).
func (c *Cluster) Node(s, r int) *localch.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[s][r]
}

// Kill kills replica r of shard s with SIGKILL, as a crash would.
func (c *Cluster) Kill(s, r int) { c.Node(s, r).Kill() }

// Restart starts replica r of shard s again on its directory and ports.
func (c *Cluster) Restart(ctx context.Context, s, r int) error {
	srv, err := localch.Start(ctx, c.cfgs[s][r])
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.nodes[s][r] = srv
	c.mu.Unlock()
	return nil
}

// Stop stops every server, then ZooKeeper.
func (c *Cluster) Stop() {
	var wg sync.WaitGroup
	c.mu.Lock()
	for _, sh := range c.nodes {
		for _, n := range sh {
			if n != nil {
				wg.Add(1)
				go func() { defer wg.Done(); n.Stop() }()
			}
		}
	}
	c.mu.Unlock()
	wg.Wait()
	c.zk.Stop()
}

// Errors returns, for a failing test's log, the last n messages of every
// server's error log (the first line of each, not its stack trace) and the
// last n warnings and errors of ZooKeeper's log.
func (c *Cluster) Errors(n int) string {
	var b strings.Builder
	messages := func(name, path string, keep func(line string) bool) {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", name, err)
			return
		}
		var lines []string
		for _, l := range strings.Split(string(data), "\n") {
			if keep(l) {
				if len(l) > 500 {
					l = l[:500] + "…"
				}
				lines = append(lines, l)
			}
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "%s (%d messages shown):\n", name, len(lines))
		for _, l := range lines {
			b.WriteString("    " + l + "\n")
		}
	}
	// A message starts with its date; a stack trace's lines with a number.
	dated := func(l string) bool { return len(l) > 4 && l[0] == '2' && l[4] == '.' }
	for s, sh := range c.cfgs {
		for r, cfg := range sh {
			messages(fmt.Sprintf("shard %d replica %d", s+1, r+1), filepath.Join(cfg.Dir, "log", "clickhouse-server.err.log"), dated)
		}
	}
	messages("zookeeper", filepath.Join(c.cfg.Dir, "zookeeper", "zookeeper.log"), func(l string) bool {
		return strings.Contains(l, " WARN ") || strings.Contains(l, " ERROR ")
	})
	return b.String()
}
