package main

import (
	"bufio"
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/neubot/neubot/internal/linkem"
)

// counters are a namespace's TCP/IP counters (/proc/net/netstat and
// /proc/net/snmp, "TcpExt.PruneCalled" and the like) and its devices'
// drops, read with -records beside each test's output: what dropped or
// held back a packet that the link itself did not (its own drops are in
// the progress lines).
type counters map[string]int64

func readCounters(l *linkem.Link, s linkem.Side) counters {
	c := counters{}
	// /proc/net/dev: "name: rx bytes packets errs drop ... tx bytes
	// packets errs drop ..." (no space after the colon once a count is
	// wide).
	dev, _ := l.Command(s, "cat", "/proc/net/dev").Output()
	for _, line := range strings.Split(string(dev), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if f := strings.Fields(rest); ok && len(f) == 16 {
			for i, what := range map[int]string{2: "rx_errs", 3: "rx_drop", 10: "tx_errs", 11: "tx_drop"} {
				if v, err := strconv.ParseInt(f[i], 10, 64); err == nil {
					c[strings.TrimSpace(name)+"."+what] = v
				}
			}
		}
	}
	out, err := l.Command(s, "cat", "/proc/net/netstat", "/proc/net/snmp").Output()
	if err != nil {
		return c
	}
	var head []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch {
		case head != nil && f[0] == head[0]:
			for i := 1; i < len(f) && i < len(head); i++ {
				if v, err := strconv.ParseInt(f[i], 10, 64); err == nil {
					c[strings.TrimSuffix(head[0], ":")+"."+head[i]] = v
				}
			}
			head = nil
		default:
			if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
				head = f
			}
		}
	}
	return c
}

// delta lists the counters that changed from before to c, one a line.
func (c counters) delta(before counters) string {
	var lines []string
	for k, v := range c {
		if d := v - before[k]; d != 0 {
			lines = append(lines, fmt.Sprintf("%s %d", k, d))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}
