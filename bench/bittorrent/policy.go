package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/neubot/neubot/agent/replay"
	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/proto/replay/trace"
)

// The policies the bench plays, each a kind of differentiation deployed
// today, built from htb classes, u32 filters and the kernel's own tools
// (no iptables, no netem: this kernel has neither):
//
//   - none: a neutral link.
//   - port: every packet from or to port 6881 goes to the slow class.
//   - host: every packet from or to the server's second address.
//   - payload: a stateful DPI box: a u32 filter matches the BitTorrent
//     handshake ("\x13BitTorrent protocol") at the TCP payload offset and
//     mirrors that packet to a tap; the policy helper reads the tap and adds
//     filters putting that connection (both ways) into the slow class, as a
//     classifier installs a flow rule.
//   - reset: the same DPI, which resets the connection instead: the helper
//     destroys the client's socket (ss -K), so the server gets a real RST.
//   - sni: the same DPI matching a video service's name in the TLS
//     ClientHello of the replay test (8 bytes of the server name at their
//     offset), throttling the connection; the bench runs the replay test
//     (agent/replay: tls-video, original against bit-inverted flows).
//   - bytes: a byte-count trigger on port 6881: u32 filters mirror every
//     packet from or to port 6881 to the tap; the helper counts each
//     connection's TCP payload bytes (both ways) and moves the connection
//     to the slow class once it has carried triggerBytes, as a DPI box
//     counting in-band does.
//
// The helper adds its rules through one tc process it keeps open (tc
// -batch reading its stdin), so that a rule takes effect within
// milliseconds even when the machine is loaded (a tc process forked per
// rule took up to seconds at load average 30 and more, longer than a flow).
const (
	policyNone    = "none"
	policyPort    = "port"
	policyHost    = "host"
	policyPayload = "payload"
	policyReset   = "reset"
	policyBytes   = "bytes"
	policySNI     = "sni"
	// policySNINone is the neutral link under the replay test,
	// policyBytesNone under the byte-count scenario's test.
	policySNINone   = "sni-none"
	policyBytesNone = "bytes-none"
)

// triggerBytes is the byte count after which the bytes policy throttles a
// connection: 4 MB, 1.6 s at 20 Mbit/s: more than a default flow of 1.5 s
// can carry, well within a long one. The helper gets it in triggerEnv.
var triggerBytes int64 = 4_000_000

const triggerEnv = "NEUBOT_BTBENCH_TRIGGER"

var debug = os.Getenv("NEUBOT_BTBENCH_DEBUG") != ""

// sniMatch is the u32 match of the replay's ClientHello carrying
// replay.DefaultSNI: the two aligned 32-bit words of the server name that
// follow the name's offset (IPv4 header 20 bytes, TCP header 32), and the
// TLS handshake record's first byte.
func sniMatch() []string {
	start := 52 + trace.SNIOffset
	at := (start + 3) / 4 * 4
	name := replay.DefaultSNI
	m := []string{"match", "ip", "protocol", "6", "0xff", "match", "u8", "0x80", "0xf0", "at", "32", "match", "u8", "0x16", "0xff", "at", "52"}
	for w := 0; w < 2; w++ {
		i := at + 4*w - start
		m = append(m, "match", "u32", fmt.Sprintf("0x%08x", binary.BigEndian.Uint32([]byte(name[i:i+4]))), "0xffffffff", "at", strconv.Itoa(at+4*w))
	}
	return m
}

// handshakeMatch is the u32 match of a TCP segment whose payload starts
// with "\x13Bit" (IPv4 header of 20 bytes, TCP header of 32: timestamps,
// Linux's default).
var handshakeMatch = []string{"match", "ip", "protocol", "6", "0xff", "match", "u8", "0x80", "0xf0", "at", "32", "match", "u32", "0x13426974", "0xffffffff", "at", "52"}

// filter is the u32 filter on dev putting the packets that match into
// the slow class.
func filter(dev, prio string, match ...string) []string {
	return append(append([]string{"filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", prio, "u32"}, match...), "flowid", "1:20")
}

// staticFilters are the filters of policy that never change, on each of
// t's policy devices.
func staticFilters(policy string, t topology) [][]string {
	port := strconv.Itoa(spec.BitTorrentPort)
	var out [][]string
	for _, dev := range t.PolicyDevs {
		switch policy {
		case policyPort:
			out = append(out, filter(dev, "1", "match", "ip", "sport", port, "0xffff"), filter(dev, "1", "match", "ip", "dport", port, "0xffff"))
		case policyHost:
			out = append(out, filter(dev, "1", "match", "ip", "src", t.Hosts[1]+"/32"), filter(dev, "1", "match", "ip", "dst", t.Hosts[1]+"/32"))
		case policyPayload, policyReset, policySNI, policyBytes:
			matches := [][]string{handshakeMatch}
			switch policy {
			case policySNI:
				matches = [][]string{sniMatch()}
			case policyBytes:
				matches = [][]string{{"match", "ip", "sport", port, "0xffff"}, {"match", "ip", "dport", port, "0xffff"}}
			}
			for _, m := range matches {
				mirror := append([]string{"filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "2", "u32"}, m...)
				out = append(out, append(mirror, "flowid", "1:10", "action", "mirred", "egress", "mirror", "dev", t.DPITap))
			}
		}
	}
	return out
}

// runPolicy is the policy helper, in t's policy box, until SIGTERM.
func runPolicy(policy string, t topology) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch policy {
	case policyPayload, policyReset, policySNI, policyBytes:
		return dpi(ctx, policy, t)
	}
	fmt.Println("ready")
	<-ctx.Done()
	return nil
}

// tcBatch is a tc process reading commands on its stdin.
type tcBatch struct {
	cmd *exec.Cmd
	in  io.WriteCloser
}

func startTC() (*tcBatch, error) {
	cmd := exec.Command("tc", "-force", "-batch", "-")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tc -batch: %w", err)
	}
	return &tcBatch{cmd: cmd, in: in}, nil
}

func (b *tcBatch) close() {
	b.in.Close()
	b.cmd.Wait()
}

// throttle puts the connection between ports a and b into the slow class
// of every policy device of t.
func (b *tcBatch) throttle(t topology, p, q uint16) error {
	var lines strings.Builder
	for _, dev := range t.PolicyDevs {
		for _, m := range [][2]uint16{{p, q}, {q, p}} {
			lines.WriteString(strings.Join(filter(dev, "1", "match", "ip", "sport", strconv.Itoa(int(m[0])), "0xffff", "match", "ip", "dport", strconv.Itoa(int(m[1])), "0xffff"), " ") + "\n")
		}
	}
	_, err := io.WriteString(b.in, lines.String())
	return err
}

func htons(x uint16) uint16 { return x<<8 | x>>8 }

// dpi reads the packets mirrored to the tap and acts on each new
// connection: throttle it (payload) or reset it (reset).
func dpi(ctx context.Context, policy string, t topology) error {
	tc, err := startTC()
	if err != nil {
		return err
	}
	defer tc.close()
	trigger := triggerBytes
	if v, err := strconv.ParseInt(os.Getenv(triggerEnv), 10, 64); err == nil && v > 0 {
		trigger = v
	}
	counted := map[[2]uint16]int64{}
	ifi, err := net.InterfaceByName(t.DPIRead)
	if err != nil {
		return err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return err
	}
	tv := syscall.Timeval{Usec: 200_000}
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	fmt.Println("ready")
	seen := map[[2]uint16]bool{}
	buf := make([]byte, 65536)
	for ctx.Err() == nil {
		n, err := syscall.Read(fd, buf)
		if err != nil || n < 14+20+4 {
			continue
		}
		ip := buf[:n]
		if binary.BigEndian.Uint16(ip[12:14]) == 0x0800 {
			ip = ip[14:]
		}
		if ip[0]>>4 != 4 || ip[9] != 6 {
			continue
		}
		ihl := int(ip[0]&0x0f) * 4
		if len(ip) < ihl+4 {
			continue
		}
		sport, dport := binary.BigEndian.Uint16(ip[ihl:]), binary.BigEndian.Uint16(ip[ihl+2:])
		key := [2]uint16{min(sport, dport), max(sport, dport)}
		if seen[key] {
			continue
		}
		if policy == policyBytes {
			if len(ip) < ihl+13 {
				continue
			}
			counted[key] += int64(binary.BigEndian.Uint16(ip[2:4])) - int64(ihl) - int64(ip[ihl+12]>>4)*4
			if counted[key] < trigger {
				continue
			}
			if debug {
				fmt.Fprintf(os.Stderr, "bench policy: ports %d and %d throttled after %d bytes\n", sport, dport, counted[key])
			}
		}
		seen[key] = true
		if debug {
			fmt.Fprintf(os.Stderr, "bench policy %s: ports %d and %d\n", policy, sport, dport)
		}
		switch policy {
		case policyPayload, policySNI, policyBytes:
			err = tc.throttle(t, sport, dport)
		case policyReset:
			// Destroy the client's socket (the one whose local port is
			// the ephemeral one): the kernel sends the server a RST, as
			// an injected one would reach it.
			client := sport
			if isServerPort(sport) {
				client = dport
			}
			var out []byte
			out, err = inNetns(t.Client, "ss", "-K", "-tn", "sport", "=", ":"+strconv.Itoa(int(client))).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("ss -K: %v: %s", err, out)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench policy:", err)
		}
	}
	return nil
}

func isServerPort(p uint16) bool {
	return p == spec.BitTorrentPort || p == spec.NeutralPort || p == spec.WebPort
}
