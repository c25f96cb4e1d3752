package main

// The capacity part: one test server on unshaped loopback, N concurrent
// tests.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// result is what `neubot run speedtest --json` prints.
type result struct {
	DownloadMbps float64 `json:"download_mbps"`
	UploadMbps   float64 `json:"upload_mbps"`
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 19775
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// cpuSeconds is the user+system CPU time of a process so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// capacity runs N concurrent tests against one test server on unshaped
// loopback and reports the total goodput and the server's CPU.
func capacity(dir string) error {
	port := freePort()
	ts := exec.Command(filepath.Join(dir, "neubot-server"), "testserver", "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--collector", "", "--spool-dir", filepath.Join(dir, "spool-cap"), "--id", "bench", "--capacity", "64", "--negotiate-rate", "100", "--log-level", "warn",
		"--bittorrent-listen", "", "--neutral-listen", "") // on the host: no BitTorrent listeners on fixed ports
	if err := ts.Start(); err != nil {
		return err
	}
	defer func() { ts.Process.Kill(); ts.Wait() }()
	time.Sleep(time.Second)
	fmt.Printf("\nSpeedtest capacity: one test server on unshaped loopback, N concurrent `neubot run speedtest` (2 connections each); 2 CPUs shared by server and clients.\n\n")
	fmt.Println("| concurrent tests | completed | total download Gbit/s | total upload Gbit/s | server CPU s per wall s |")
	fmt.Println("|---|---|---|---|---|")
	for _, n := range []int{1, 2, 4, 8, 16} {
		cpu0 := cpuSeconds(ts.Process.Pid)
		t0 := time.Now()
		var mu sync.Mutex
		var down, up float64
		done := 0
		var wg sync.WaitGroup
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := exec.CommandContext(ctx, filepath.Join(dir, "neubot"), "run", "speedtest", "--server", fmt.Sprintf("http://127.0.0.1:%d", port), "--json").Output()
				if err != nil {
					return
				}
				var res result
				if json.Unmarshal(out, &res) == nil {
					mu.Lock()
					down += res.DownloadMbps
					up += res.UploadMbps
					done++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		cancel()
		wall := time.Since(t0).Seconds()
		cpu := cpuSeconds(ts.Process.Pid) - cpu0
		fmt.Printf("| %d | %d | %.2f | %.2f | %.2f |\n", n, done, down/1000, up/1000, cpu/wall)
	}
	return nil
}
