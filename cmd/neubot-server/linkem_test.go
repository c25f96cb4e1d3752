package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLinkemCommand runs `neubot-server linkem` as a user would: it prints
// ready with the namespaces, a ping across them takes the configured RTT,
// and SIGTERM removes them.
func TestLinkemCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("linkem makes network namespaces: this test needs root (CI runs as root)")
	}
	bin := buildServer(t)
	name := fmt.Sprintf("lkc%d", os.Getpid()%1000000)
	cmd := exec.Command(bin, "linkem", "--rtt", "30", "--rate", "20", "--name", name)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var ready string
	select {
	case ready = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatalf("no ready line in 30 s; stderr: %s", stderr.String())
	}
	want := fmt.Sprintf("ready a %s-a 198.18.0.1 b %s-b 198.18.0.2", name, name)
	if ready != want {
		t.Fatalf("printed %q, want %q; stderr: %s", ready, want, stderr.String())
	}
	// The emulator's delay is its minimum RTT: ten pings, and up to three
	// rounds, since on a loaded machine (CI, the whole suite at once)
	// three pings were all 2 ms late once. A delay configured wrong is
	// wrong in every round.
	var min float64
	for round := 1; ; round++ {
		out, err := exec.Command("ip", "netns", "exec", name+"-a", "ping", "-c", "10", "-i", "0.1", "-q", "198.18.0.2").CombinedOutput()
		if err != nil {
			t.Fatalf("ping: %v: %s", err, out)
		}
		// rtt min/avg/max/mdev = 30.412/30.561/30.790/0.154 ms
		if i := strings.Index(string(out), "= "); i < 0 {
			t.Fatalf("ping printed %q", out)
		} else if _, err := fmt.Sscanf(string(out[i+2:]), "%g/", &min); err != nil {
			t.Fatalf("ping printed %q: %v", out, err)
		}
		if min < 30 {
			t.Fatalf("ping's minimum RTT %g ms, below the 30 configured", min)
		}
		if min <= 31 {
			break
		}
		if round == 3 {
			t.Fatalf("ping's minimum RTT %g ms in round %d, want 30 to 31", min, round)
		}
		t.Logf("ping's minimum RTT %g ms in round %d; again", min, round)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v; stderr: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "linkem: stopped") {
		t.Errorf("stderr: %s", stderr.String())
	}
	list, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(list), name+"-") {
		t.Errorf("namespaces left after SIGTERM: %s", list)
	}
}
