package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// The two topologies the bench builds:
//
//   - two-stage (the default): four namespaces in a line, server — policy
//     box — access router — client, joined by veth pairs. The policy box
//     (the ISP's DPI and shaper) throttles the flows its policy picks to
//     Share of the link on its egress both ways and lets the rest through
//     at ten times the link; the access router's egress both ways is the
//     shared bottleneck at the link rate (one htb class, one queue) that
//     the test's flows and the cross traffic (a host of its own on the
//     server's side, to the client) all cross. A throttled flow is thus
//     slowed by the policy and, like every other, by the cross traffic in
//     the shared queue: a shaper upstream of the access link.
//   - lo (the first benches'): one namespace, everything on lo, shaped by
//     one htb at the link rate whose slow class has its own queue, which
//     the cross traffic never enters.
const (
	modeTwoStage = "two-stage"
	modeLo       = "lo"
)

// topology says where each part runs; helpers get it in topoEnv.
type topology struct {
	Mode string
	// Namespaces (all the same one in mode lo): the test server and the
	// cross traffic's source, the policy box, the access router, the
	// client and the cross traffic's sink.
	Server, Policy, Access, Client string
	// PolicyDevs carry the policy's htb and filters (in Policy);
	// BottleneckDevs the shared link's (in Access).
	PolicyDevs, BottleneckDevs []string
	// Hosts are the test server's addresses (the first also serves HTTP),
	// ReplayAddr the replay test's listener, CrossAddr the cross
	// traffic's source.
	Hosts      []string
	ReplayAddr string
	CrossAddr  string
	// DPITap is the veth (in Policy) the DPI's u32 filters mirror packets
	// to; DPIRead its peer, which the policy helper reads.
	DPITap, DPIRead string
}

// The veth devices of the bench, made inside its own namespaces: every
// name begins with the prefix of its namespaces (nsPrefix without the rest).
const (
	devServer       = "s6bsp" // server -> policy box
	devPolicyServer = "s6bps" // policy box -> server (upload's policy)
	devPolicyAccess = "s6bpa" // policy box -> access router (download's policy)
	devAccessPolicy = "s6bap" // access router -> policy box (upload's bottleneck)
	devAccessClient = "s6bac" // access router -> client (download's bottleneck)
	devClient       = "s6bca" // client -> access router
	dpiTap          = "s6bdpi0"
	dpiRead         = "s6bdpi1"
)

func (t topology) names() []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range []string{t.Server, t.Policy, t.Access, t.Client} {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// httpURL is the test server's URL for the client.
func (t topology) httpURL() string {
	return "http://" + hostPort(t.Hosts[0], httpPort)
}

func loadTopology() topology {
	var t topology
	json.Unmarshal([]byte(os.Getenv(topoEnv)), &t)
	return t
}

func ipIn(ns string, args ...string) error {
	all := append([]string{"-n", ns}, args...)
	if out, err := exec.Command("ip", all...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(all, " "), err, out)
	}
	return nil
}

// newNetns makes the namespaces of mode for the set tagged tag.
func newNetns(tag, mode string) (*netns, error) {
	base := fmt.Sprintf("%s%s-%d", nsPrefix, tag, os.Getpid())
	n := &netns{topology: topology{Mode: mode, DPITap: dpiTap, DPIRead: dpiRead}}
	// steps are ip commands (in a namespace) or sysctls (name=value).
	type step struct {
		ns   string
		args []string
	}
	var steps []step
	ip := func(ns string, args ...string) { steps = append(steps, step{ns, args}) }
	switch mode {
	case modeLo:
		n.Server, n.Policy, n.Access, n.Client = base, base, base, base
		n.PolicyDevs = []string{"lo"}
		n.Hosts = []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
		n.ReplayAddr, n.CrossAddr = "127.0.0.4:443", "127.0.0.1:5001"
		ip(base, "link", "set", "lo", "mtu", "1500")
	case modeTwoStage:
		n.Server, n.Policy, n.Access, n.Client = base+"-s", base+"-p", base+"-a", base+"-c"
		n.PolicyDevs = []string{devPolicyServer, devPolicyAccess}
		n.BottleneckDevs = []string{devAccessPolicy, devAccessClient}
		n.Hosts = []string{"10.181.1.1", "10.181.1.2", "10.181.1.3"}
		n.ReplayAddr, n.CrossAddr = "10.181.1.4:443", "10.181.1.9:5001"
		// Each link: a veth pair, an address on each side, up; packets of
		// one MTU (no segmentation offload), so that every queue holds
		// what its limit says; one queue each way, as on any machine
		// (veth otherwise gets one per possible CPU, which differs from
		// machine to machine).
		link := func(a, devA, addrA, b, devB, addrB string) {
			ip(a, "link", "add", devA, "numtxqueues", "1", "numrxqueues", "1",
				"type", "veth", "peer", "name", devB, "numtxqueues", "1", "numrxqueues", "1", "netns", b)
			for _, s := range [][3]string{{a, devA, addrA}, {b, devB, addrB}} {
				ip(s[0], "link", "set", s[1], "gso_max_segs", "1")
				ip(s[0], "addr", "add", s[2], "dev", s[1])
				ip(s[0], "link", "set", s[1], "up")
			}
		}
		link(n.Server, devServer, "10.181.1.1/24", n.Policy, devPolicyServer, "10.181.1.254/24")
		link(n.Policy, devPolicyAccess, "10.181.2.1/24", n.Access, devAccessPolicy, "10.181.2.2/24")
		link(n.Access, devAccessClient, "10.181.3.254/24", n.Client, devClient, "10.181.3.1/24")
		for _, a := range []string{"10.181.1.2", "10.181.1.3", "10.181.1.4", "10.181.1.9"} {
			ip(n.Server, "addr", "add", a+"/24", "dev", devServer)
		}
		ip(n.Server, "route", "add", "default", "via", "10.181.1.254")
		ip(n.Policy, "route", "add", "10.181.3.0/24", "via", "10.181.2.2")
		ip(n.Access, "route", "add", "10.181.1.0/24", "via", "10.181.2.1")
		ip(n.Client, "route", "add", "default", "via", "10.181.3.254")
	default:
		return nil, fmt.Errorf("unknown topology %q", mode)
	}
	for _, ns := range n.names() {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			n.close()
			return nil, fmt.Errorf("ip netns add %s: %v: %s", ns, err, out)
		}
		ip(ns, "link", "set", "lo", "up")
	}
	// The DPI box's tap: packets a u32 filter matched are mirrored to
	// DPITap and read by the policy helper on DPIRead.
	ip(n.Policy, "link", "add", dpiTap, "type", "veth", "peer", "name", dpiRead)
	ip(n.Policy, "link", "set", dpiTap, "up")
	ip(n.Policy, "link", "set", dpiRead, "up")
	for _, s := range steps {
		if err := ipIn(s.ns, s.args...); err != nil {
			n.close()
			return nil, err
		}
	}
	for _, ns := range []string{n.Policy, n.Access} {
		if mode == modeTwoStage {
			if out, err := inNetns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
				n.close()
				return nil, fmt.Errorf("sysctl in %s: %v: %s", ns, err, out)
			}
		}
	}
	return n, nil
}
