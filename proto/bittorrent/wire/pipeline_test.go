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
