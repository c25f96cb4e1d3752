package linkem

import (
	"math"
	"strings"
	"testing"
	"time"
)

const ms = int64(time.Millisecond)

func mustDir(t *testing.T, d Dir, rtt time.Duration) Dir {
	t.Helper()
	d, err := d.withDefaults("test", rtt, 1500)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestShaperSerializesAtRate(t *testing.T) {
	// 12 Mbit/s: a 1500-byte packet takes exactly 1 ms.
	s := newShaper(mustDir(t, Dir{Rate: 12, Delay: 5 * time.Millisecond, Queue: 100}, 0), 0, 1)
	for i := 0; i < 10; i++ {
		at, v := s.admit(0, 1500)
		if v != deliver {
			t.Fatalf("packet %d: verdict %d", i, v)
		}
		if want := int64(i+1)*ms + 5*ms; at != want {
			t.Fatalf("packet %d delivered at %d ns, want %d", i, at, want)
		}
	}
	if q := s.queued(0); q != 10 {
		t.Fatalf("queued %d, want 10", q)
	}
	if q := s.queued(4 * ms); q != 6 {
		t.Fatalf("queued after 4 ms: %d, want 6", q)
	}
	// An idle link starts serializing at once.
	at, _ := s.admit(100*ms, 750)
	if want := 100*ms + ms/2 + 5*ms; at != want {
		t.Fatalf("after idle: %d, want %d", at, want)
	}
}

func TestShaperDropTail(t *testing.T) {
	s := newShaper(mustDir(t, Dir{Rate: 12, Queue: 4}, 0), 0, 1)
	var verdicts []verdict
	for i := 0; i < 6; i++ {
		_, v := s.admit(0, 1500)
		verdicts = append(verdicts, v)
	}
	want := []verdict{deliver, deliver, deliver, deliver, dropped, dropped}
	for i := range want {
		if verdicts[i] != want[i] {
			t.Fatalf("verdicts %v, want %v", verdicts, want)
		}
	}
	// The first packet has left at 1 ms: one slot is free again.
	if at, v := s.admit(ms, 1500); v != deliver || at != 5*ms {
		t.Fatalf("at 1 ms: verdict %d at %d, want delivered at 5 ms", v, at)
	}
	if _, v := s.admit(ms, 1500); v != dropped {
		t.Fatalf("at 1 ms, second packet: verdict %d, want dropped", v)
	}
}

func TestShaperNoBottleneck(t *testing.T) {
	s := newShaper(mustDir(t, Dir{Delay: 7 * time.Millisecond}, 0), 0, 1)
	for i := 0; i < 1000; i++ {
		if at, v := s.admit(int64(i), 1500); v != deliver || at != int64(i)+7*ms {
			t.Fatalf("packet %d: verdict %d at %d", i, v, at)
		}
	}
}

func TestShaperTrace(t *testing.T) {
	// 12 Mbit/s for 10 ms, nothing for 10 ms, 24 Mbit/s for 10 ms, looping.
	d := mustDir(t, Dir{Trace: []float64{12, 0, 24}, TraceInterval: 10 * time.Millisecond, Queue: 1000}, 0)
	s := newShaper(d, 0, 1)
	var got []int64
	for i := 0; i < 40; i++ {
		at, v := s.admit(0, 1500)
		if v != deliver {
			t.Fatalf("packet %d: verdict %d", i, v)
		}
		got = append(got, at)
	}
	// 10 packets at 1 ms each, then the outage, then 20 at 0.5 ms, then
	// the next round starts at 30 ms with 10 more at 1 ms.
	for i, at := range got {
		var want int64
		switch {
		case i < 10:
			want = int64(i+1) * ms
		case i < 30:
			want = 20*ms + int64(i-9)*ms/2
		default:
			want = 30*ms + int64(i-29)*ms
		}
		if at != want {
			t.Fatalf("packet %d at %v, want %v", i, time.Duration(at), time.Duration(want))
		}
	}
	// A packet that straddles a change of rate: 750 bytes at 12 Mbit/s
	// (0.5 ms) from 9.75 ms uses 0.25 ms of the first interval, then
	// waits through the outage, then 375 bytes at 24 Mbit/s (0.125 ms).
	s = newShaper(d, 0, 1)
	if at := s.serialize(9*ms+3*ms/4, 750*8); at != 20*ms+ms/8 {
		t.Fatalf("straddling packet at %v, want 20.125ms", time.Duration(at))
	}
}

func TestShaperLoss(t *testing.T) {
	s := newShaper(mustDir(t, Dir{Loss: 0.1}, 0), 0, 42)
	n, lostN := 100000, 0
	for i := 0; i < n; i++ {
		if _, v := s.admit(int64(i), 100); v == lost {
			lostN++
		}
	}
	if f := float64(lostN) / float64(n); math.Abs(f-0.1) > 0.005 {
		t.Fatalf("lost %.4f, want 0.1", f)
	}
	// A lost packet used the link: the next one waits for it.
	s = newShaper(mustDir(t, Dir{Rate: 12, Loss: 1, Queue: 10}, 0), 0, 1)
	s.admit(0, 1500)
	s.loss = 0
	if at, _ := s.admit(0, 1500); at != 2*ms {
		t.Fatalf("after a lost packet: %v, want 2ms", time.Duration(at))
	}
}

func TestDefaultQueueIsBDP(t *testing.T) {
	// 100 Mbit/s × 80 ms = 1 MB = 667 packets of 1500 bytes.
	d := mustDir(t, Dir{Rate: 100}, 80*time.Millisecond)
	if d.Queue != 667 {
		t.Fatalf("queue %d, want 667", d.Queue)
	}
	if d := mustDir(t, Dir{Rate: 1}, 0); d.Queue != MinQueue {
		t.Fatalf("queue at RTT 0: %d, want %d", d.Queue, MinQueue)
	}
	// 200 Mbit/s at RTT 0: 5 ms at the rate, 84 packets.
	if d := mustDir(t, Dir{Rate: 200}, 0); d.Queue != 84 {
		t.Fatalf("queue at 200 Mbit/s, RTT 0: %d, want 84", d.Queue)
	}
	if d := mustDir(t, Dir{Rate: 50, Queue: 7}, time.Second); d.Queue != 7 {
		t.Fatalf("queue given: %d, want 7", d.Queue)
	}
}

func TestConfigRefusesBadValues(t *testing.T) {
	for _, c := range []Config{
		{Name: "has space"},
		{Name: "waytoolongname1"},
		{MTU: 100},
		{Up: Dir{Rate: -1}},
		{Up: Dir{Rate: math.NaN()}},
		{Down: Dir{Loss: 1.5}},
		{Down: Dir{Delay: -time.Millisecond}},
		{Up: Dir{Queue: -3}},
		{Up: Dir{Trace: []float64{0, 0}}},
		{Up: Dir{Trace: []float64{1}, TraceInterval: time.Microsecond}},
		{Sysctls: map[string]string{"../../etc/passwd": "x"}},
		{Sysctls: map[string]string{"net.ipv4.tcp_rmem": "1\n2"}},
	} {
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	c, err := Config{Name: "lk-ok", Up: Dir{Rate: 10}}.withDefaults()
	if err != nil || c.MTU != 1500 {
		t.Fatalf("good config: %+v, %v", c, err)
	}
}

func TestParseTrace(t *testing.T) {
	got, err := ParseTrace(strings.NewReader("# a trace\n10\n\n 2.5 \n0\n"))
	if err != nil || len(got) != 3 || got[0] != 10 || got[1] != 2.5 || got[2] != 0 {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "# only a comment\n", "10\nfast\n", "-1\n", "NaN\n", "1e9\n", strings.Repeat("1", 5000) + "\n"} {
		if _, err := ParseTrace(strings.NewReader(bad)); err == nil {
			t.Errorf("%.20q: no error", bad)
		}
	}
}

func FuzzParseTrace(f *testing.F) {
	f.Add([]byte("10\n20\n# x\n0.5\n"))
	f.Add([]byte("1e3\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rates, err := ParseTrace(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		if len(rates) == 0 {
			t.Fatal("no rates and no error")
		}
		for _, r := range rates {
			if !(r >= 0 && r <= 100000) {
				t.Fatalf("rate %g accepted", r)
			}
		}
	})
}
