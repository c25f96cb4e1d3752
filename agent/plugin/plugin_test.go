package plugin

import (
	"testing"

	"github.com/neubot/neubot/schemas"
)

// TestAppendSample: rates over the interval since the previous sample; a
// sample closer than 10 ms to the previous one replaces it, so that a
// megabyte over microseconds never reads as Tbit/s; and the series stops
// growing at schemas.MaxThroughputSamples.
func TestAppendSample(t *testing.T) {
	var ss []schemas.ThroughputSample
	var mbps float64
	ss, mbps = AppendSample(ss, 0.25, 250_000)
	if mbps != 8 || len(ss) != 1 || ss[0] != (schemas.ThroughputSample{TS: 0.25, Bytes: 250_000, Mbps: 8}) {
		t.Fatalf("first sample: %+v, %g Mbit/s", ss, mbps)
	}
	ss, mbps = AppendSample(ss, 0.5, 500_000)
	if mbps != 8 || len(ss) != 2 {
		t.Fatalf("second sample: %+v, %g Mbit/s", ss, mbps)
	}
	// 1 MB 3 µs later: the previous sample is replaced, and the rate is
	// over the 250 ms since the one before it.
	ss, mbps = AppendSample(ss, 0.500003, 1_500_000)
	if len(ss) != 2 || ss[1].TS != 0.5 || ss[1].Bytes != 1_500_000 || mbps != 40 {
		t.Fatalf("a sample 3 µs after the previous one: %+v, %g Mbit/s", ss, mbps)
	}
	for i := len(ss); i < schemas.MaxThroughputSamples+5; i++ {
		ss, _ = AppendSample(ss, float64(i), uint64(i)*1000)
	}
	if len(ss) != schemas.MaxThroughputSamples {
		t.Fatalf("%d samples, want at most %d", len(ss), schemas.MaxThroughputSamples)
	}
}
