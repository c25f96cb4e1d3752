package wire

import (
	"net"
	"testing"
	"time"

	spec "github.com/neubot/neubot/proto/bittorrent"
)

// delayed forwards everything from src to dst delay after it arrived, as
// a path with that one-way delay would (unbounded rate).
func delayed(src, dst net.Conn, delay time.Duration) {
	type chunk struct {
		at time.Time
		b  []byte
	}
	q := make(chan chunk, 1<<14)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 64<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{time.Now().Add(delay), b[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer dst.Close()
		for c := range q {
			time.Sleep(time.Until(c.at))
			if _, err := dst.Write(c.b); err != nil {
				return
			}
		}
	}()
}

// TestPipelineScalesWithRTT: through a 50 ms round trip, a fixed pipeline
// of 16 blocks would cap the flow at 256 KiB per round trip (about 42
// Mbit/s); the leecher sizes its pipeline from throughput × RTT and goes
// past that cap.
func TestPipelineScalesWithRTT(t *testing.T) {
	a, b := pair(t) // leecher's side: a; proxy's: b
	c, d := pair(t) // proxy's: c; seeder's: d
	delayed(b, c, 25*time.Millisecond)
	delayed(c, b, 25*time.Millisecond)
	seeder := &Flow{Conn: d, Duration: 2 * time.Second, SampleEvery: 100 * time.Millisecond}
	go seeder.Seed()
	leecher := &Flow{Conn: a, Duration: 2 * time.Second, SampleEvery: 100 * time.Millisecond}
	samples, err := leecher.Leech()
	a.Close()
	if err != nil {
		t.Fatal(err)
	}
	const fixed = 16 // methodology version 1's pipeline
	capMbps := float64(fixed*spec.BlockSize) * 8 / 1e6 / 0.050
	mbps := FlowMbps(samples, 1)
	t.Logf("pipeline up to %d requests; %.1f Mbit/s in the second second (a fixed pipeline of %d: at most %.1f)", leecher.MaxOutstanding, mbps, fixed, capMbps)
	if leecher.MaxOutstanding <= 2*fixed || mbps <= capMbps {
		t.Fatalf("the pipeline did not grow past the fixed cap: %d requests, %.1f Mbit/s", leecher.MaxOutstanding, mbps)
	}
}

// paced forwards everything from src to dst at about mbps, as a
// bottleneck of that rate would.
func paced(src, dst net.Conn, mbps float64) {
	go func() {
		defer dst.Close()
		start, sent := time.Now(), 0
		b := make([]byte, 8<<10)
		for {
			n, err := src.Read(b)
			if n > 0 {
				sent += n
				time.Sleep(time.Until(start.Add(time.Duration(float64(sent*8) / mbps * float64(time.Microsecond)))))
				if _, err := dst.Write(b[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
}

// TestKneeFlow: with KneeBytes a leecher's flow runs until it has read
// KneeBytes and then as long again, well short of its Duration, so that
// the tail TailRate uses (the second half of the sampled time) begins
// after the first KneeBytes.
func TestKneeFlow(t *testing.T) {
	a, b := pair(t) // leecher's side: a; proxy's: b
	c, d := pair(t) // proxy's: c; seeder's: d
	paced(b, c, 100)
	paced(c, b, 40) // the seeder's pieces: about 40 Mbit/s
	seeder := &Flow{Conn: d, Duration: 5 * time.Second, SampleEvery: 50 * time.Millisecond}
	go seeder.Seed()
	const knee = 2 << 20
	leecher := &Flow{Conn: a, Duration: 5 * time.Second, SampleEvery: 50 * time.Millisecond, KneeBytes: knee}
	samples, err := leecher.Leech()
	a.Close()
	if err != nil {
		t.Fatal(err)
	}
	var at float64 // when the leecher had read knee bytes
	for _, s := range samples {
		if s.Bytes >= knee {
			at = s.TS
			break
		}
	}
	end := samples[len(samples)-1].TS
	t.Logf("%d samples; %d bytes read by %.3f s, flow ended at %.3f s", len(samples), knee, at, end)
	if at == 0 || end > 2*at+1 || end < 2*at-0.2 {
		t.Fatalf("the flow read %d bytes by %.3f s and ended at %.3f s: want about twice that, well before its 5 s", knee, at, end)
	}
	// The tail starts no earlier than one sample period before the knee.
	if end/2 < at-0.05 {
		t.Fatalf("the tail starts at %.3f s, before the knee at %.3f s", end/2, at)
	}
}
