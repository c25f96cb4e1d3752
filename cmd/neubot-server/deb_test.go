package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
)

// platform is a collector and a test server registered with it, in this
// process, on free loopback ports, loading into a fresh database.
type platform struct {
	collectorURL string
	serverID     string
	conn         driver.Conn
}

func startPlatform(t *testing.T, serverID string) *platform {
	t.Helper()
	opts, conn := localchtest.NewDatabase(t)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	// The test server's key, enrolled as an operator would
	// (neubot-server enroll): only enrolled servers are listed.
	keyFile := filepath.Join(t.TempDir(), "testserver.key")
	key, err := identity.LoadOrCreate(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	col, err := startCollector("127.0.0.1:0", collector.Config{SpoolDir: t.TempDir(), ClickHouse: opts, Logger: log,
		Enrolled: identity.StaticAllowList(identity.Enrolled{Key: key.PublicKey(), ID: serverID})})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := startTestserver(testserverOptions{listen: "127.0.0.1:0", id: serverID, collectorURL: col.http.URL(),
		spoolDir: t.TempDir(), capacity: 2, testTimeout: 30 * time.Second, rate: 1, keyFile: keyFile}, log)
	if err != nil {
		col.stop(time.Second)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ts.stop()
		col.stop(5 * time.Second)
		if t.Failed() {
			t.Logf("platform log (tail):\n%s", tail(logs.String(), 4000))
		}
	})
	p := &platform{collectorURL: col.http.URL(), serverID: serverID, conn: conn}
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(p.rendezvous(t), serverID) {
		if time.Now().After(deadline) {
			t.Fatalf("the test server %s is not in the rendezvous after 20 s", serverID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// rendezvous lists the IDs of the speedtest servers the collector hands out.
func (p *platform) rendezvous(t *testing.T) []string {
	t.Helper()
	return rendezvousIDs(t, p.collectorURL, rendezvous.RendezvousRequest{AgentID: "pk-test", Tests: []string{schemas.SpeedtestName}})
}

// waitRow waits until ClickHouse has one speedtest row matching where.
func (p *platform) waitRow(t *testing.T, where string, args ...any) {
	t.Helper()
	waitRows(t, p.conn, "one speedtest row", 30*time.Second, equal(1), "SELECT count() FROM speedtest FINAL WHERE "+where, args...)
}

// TestRunFindsServer: `neubot run speedtest` with no flag asks the
// rendezvous of the default collector (pointed at the platform by
// NEUBOT_COLLECTOR, as a volunteer's environment or a build's default
// would) and tests against the server it lists.
func TestRunFindsServer(t *testing.T) {
	p := startPlatform(t, "pk-run-server")
	cmd := exec.Command(buildAgent(t), "run", "speedtest")
	cmd.Env = append(os.Environ(), "NEUBOT_COLLECTOR="+p.collectorURL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("neubot run speedtest: %v\n%s%s", err, out, stderr.String())
	}
	if !strings.Contains(stderr.String(), "(the rendezvous of "+p.collectorURL+")") {
		t.Errorf("neubot run does not say which server the rendezvous gave:\n%s", stderr.String())
	}
	m := regexp.MustCompile(`measurement ([0-9a-f-]{36}), server (\S+),`).FindStringSubmatch(string(out))
	if m == nil || m[2] != p.serverID {
		t.Fatalf("neubot run printed\n%s\nwant a measurement against %s", out, p.serverID)
	}
	p.waitRow(t, "measurement_uid = toUUID(?) AND server_id = ?", m[1], p.serverID)
}

// dpkg runs dpkg with args, waiting (up to 2 minutes) while another dpkg or
// apt holds its lock.
func dpkg(t *testing.T, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cmd := exec.Command("dpkg", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err == nil {
			return string(out)
		}
		if strings.Contains(string(out), "lock") && time.Now().Before(deadline) {
			time.Sleep(time.Second)
			continue
		}
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func installed(pkg string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status}", pkg).Output()
	return err == nil && strings.TrimSpace(string(out)) != "not-installed" && len(out) > 0
}

// snapshot is what a package may leave behind: every path under the trees
// it touches, and the account databases.
func snapshot(t *testing.T) (paths []string, accounts map[string]string) {
	t.Helper()
	for _, root := range []string{"/etc", "/usr", "/var/lib", "/var/cache/man"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) || os.IsPermission(err) {
					return nil // gone while walking: another test's file
				}
				return err
			}
			if d.IsDir() && (path == "/var/lib/clickhouse" || path == "/var/lib/docker") {
				return fs.SkipDir
			}
			if strings.HasPrefix(path, "/var/cache/man/") && !d.IsDir() {
				return nil // man-db's index files are rewritten by its trigger
			}
			paths = append(paths, path+" "+d.Type().String())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	accounts = map[string]string{}
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		accounts[f] = string(b)
	}
	return paths, accounts
}

// TestDebInstall installs the .deb of this tree as a volunteer would, with
// dpkg -i on this Debian machine (it needs root), checks the user, the unit
// and the binary's version, runs one test as the user neubot against a real
// platform, finds its record in ClickHouse, and purges the package: nothing
// may be left behind.
func TestDebInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test installs a .deb with dpkg -i: run it as root (make test does, on the project's machines)")
	}
	if installed("neubot") {
		t.Fatal("a neubot package is installed on this machine already; remove it (dpkg --purge neubot) so that this test can check a clean install and purge")
	}
	start := time.Now()
	out := t.TempDir()
	mk := exec.Command(build(t, "../../dist/mkdist", "mkdist"), "-targets", "linux/amd64", "-out", out)
	mk.Dir = "../.."
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("mkdist: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "neubot_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("mkdist made %v", debs)
	}
	deb := debs[0]
	pkgVersion := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(deb), "neubot_"), "_amd64.deb")
	built := time.Since(start)

	p := startPlatform(t, "pk-deb-server")
	beforePaths, beforeAccounts := snapshot(t)

	start = time.Now()
	t.Cleanup(func() {
		if installed("neubot") {
			dpkg(t, "--purge", "neubot")
		}
	})
	msg := dpkg(t, "-i", deb)
	installTime := time.Since(start)
	if !strings.Contains(msg, "open http://127.0.0.1:9774/ to give (or refuse) your consent") {
		t.Errorf("dpkg -i does not tell the volunteer where to consent:\n%s", msg)
	}

	// The user: a system account with no login, its home the state dir.
	pw, err := exec.Command("getent", "passwd", "neubot").Output()
	if err != nil {
		t.Fatalf("no user neubot after dpkg -i: %v", err)
	}
	f := strings.Split(strings.TrimSpace(string(pw)), ":")
	var uid int
	fmt.Sscan(f[2], &uid)
	if len(f) != 7 || uid >= 1000 || uid == 0 || f[5] != "/var/lib/neubot" || f[6] != "/usr/sbin/nologin" {
		t.Errorf("the user neubot is %q; want a system user (uid < 1000) with home /var/lib/neubot and no login", pw)
	}
	fi, err := os.Stat("/var/lib/neubot")
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || fi.Mode().Perm() != 0o750 {
		t.Errorf("/var/lib/neubot is uid %d, mode %v; want the user neubot's, 0750", st.Uid, fi.Mode().Perm())
	}
	// The unit runs the agent as that user, in that state directory.
	unit, err := os.ReadFile("/usr/lib/systemd/system/neubot-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nUser=neubot\n", "\nStateDirectory=neubot\n", "\nExecStart=/usr/bin/neubot agent --listen 127.0.0.1:9774\n", "\nNoNewPrivileges=yes\n", "\nWantedBy=multi-user.target\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/neubot-agent.service"); err != nil {
		t.Errorf("the service is not enabled: %v", err)
	}
	// The binary says the package's version and its commit.
	ver, err := exec.Command("/usr/bin/neubot", "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	head, _ := exec.Command("git", "rev-parse", "HEAD").Output()
	if !strings.HasPrefix(string(ver), "neubot "+pkgVersion+" (commit "+strings.TrimSpace(string(head))) {
		t.Errorf("neubot version says %q; want version %s and commit %s", ver, pkgVersion, head)
	}
	if _, err := os.Stat("/usr/share/man/man1/neubot.1.gz"); err != nil {
		t.Errorf("no manual page: %v", err)
	}

	// One test as the user neubot, as the service would run it.
	start = time.Now()
	agent := exec.Command("runuser", "-u", "neubot", "--", "/usr/bin/neubot", "agent", "--once", "--consent", "accept",
		"--tests", "speedtest", "--public-api", "", "--log-format", "text")
	agent.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "STATE_DIRECTORY=/var/lib/neubot", "NEUBOT_COLLECTOR=" + p.collectorURL}
	agent.Dir = "/"
	if b, err := agent.CombinedOutput(); err != nil || !strings.Contains(string(b), "test done") {
		t.Fatalf("neubot agent --once as the user neubot: %v\n%s", err, b)
	}
	p.waitRow(t, "agent_version = ? AND server_id = ?", pkgVersion, p.serverID)
	agentTime := time.Since(start)
	if fi, err := os.Stat("/var/lib/neubot/results.db"); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Errorf("the agent's results are not the user neubot's in /var/lib/neubot: %v", err)
	}

	// Purge: nothing of the package is left.
	start = time.Now()
	dpkg(t, "--purge", "neubot")
	purgeTime := time.Since(start)
	afterPaths, afterAccounts := snapshot(t)
	for f, before := range beforeAccounts {
		if afterAccounts[f] != before {
			t.Errorf("%s differs after the purge (was %d bytes, is %d)", f, len(before), len(afterAccounts[f]))
		}
	}
	for _, d := range diff(beforePaths, afterPaths) {
		t.Errorf("after the purge: %s", d)
	}
	t.Logf("build %.1f s, dpkg -i %.1f s, agent's test to its row in ClickHouse %.1f s, dpkg --purge %.1f s",
		built.Seconds(), installTime.Seconds(), agentTime.Seconds(), purgeTime.Seconds())
}

// diff lists the entries only in a ("gone ...") or only in b ("left ...").
func diff(a, b []string) []string {
	in := func(list []string) map[string]bool {
		m := map[string]bool{}
		for _, s := range list {
			m[s] = true
		}
		return m
	}
	ina, inb := in(a), in(b)
	var out []string
	for _, s := range a {
		if !inb[s] {
			out = append(out, "gone "+s)
		}
	}
	for _, s := range b {
		if !ina[s] {
			out = append(out, "left "+s)
		}
	}
	return out
}
