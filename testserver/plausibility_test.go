package testserver

import (
	"math"
	"testing"

	"github.com/neubot/neubot/internal/goodput"
	"github.com/neubot/neubot/schemas"
)

// longRTTUpload is a methodology 2 upload as the link emulator shows it at
// 200 Mbit/s and 300 ms: the server's reports every 100 ms over a 3.9-s
// phase, slow start doubling the rate every round trip until 2.7 s, then
// the link; the client's window is the last 0.6 s it saw.
func longRTTUpload() (*schemas.Speedtest, []goodput.Sample) {
	const link = 193.0 // Mbit/s
	var reports []goodput.Sample
	var bytes float64
	for i := 1; i <= 39; i++ {
		t := float64(i) / 10
		rate := math.Min(link, 0.5*math.Pow(2, t/0.3))
		bytes += rate * 1e6 / 8 / 10
		reports = append(reports, goodput.Sample{T: t, Bytes: uint64(bytes)})
	}
	k := &schemas.Speedtest{}
	for _, r := range reports {
		k.Upload.Samples = append(k.Upload.Samples, schemas.ThroughputSample{TS: r.T, Bytes: r.Bytes})
	}
	k.Upload.StopReason, k.Upload.WindowStartS, k.Upload.WindowEndS = "time_cap", 3.2, 3.8
	k.Upload.GoodputMbps = goodput.Rate(reports, 3.2, 3.8)
	k.Upload.Bytes = uint64(bytes) + 8<<20 // what its socket buffers still held
	k.ServerView = &schemas.SpeedtestServer{BytesReceived: uint64(bytes), UploadDurationS: 3.9}
	k.ServerView.UploadMbps = bytes * 8 / 1e6 / 3.9
	return k, reports
}

// TestPlausibilityLongRTTUpload: methodology 2's upload at a long round
// trip is checked against the server's reports over the client's window.
// The phase's mean (a third of the link here, the ramp-up being most of
// the phase) flagged half of the 200 and 300 ms records of the link
// emulator's matrix as upload_mismatch, leaving them out of the published
// figures; an inflated upload is still flagged.
func TestPlausibilityLongRTTUpload(t *testing.T) {
	k, reports := longRTTUpload()
	if k.Upload.GoodputMbps < 190 || k.ServerView.UploadMbps > 110 {
		t.Fatalf("the case is not the one meant: window %.1f, phase mean %.1f Mbit/s", k.Upload.GoodputMbps, k.ServerView.UploadMbps)
	}
	if got := SpeedtestPlausibility(k, 0, reports); got != "ok" {
		t.Errorf("honest methodology 2 upload at 300 ms: %q, want ok", got)
	}
	for _, c := range []struct {
		name   string
		factor float64
	}{{"inflated by half", 1.5}, {"deflated by half", 0.5}} {
		k, reports := longRTTUpload()
		k.Upload.GoodputMbps *= c.factor
		if got := SpeedtestPlausibility(k, 0, reports); got != "upload_mismatch" {
			t.Errorf("%s: %q, want upload_mismatch", c.name, got)
		}
	}
	// A window the reports do not cover cannot vouch for any figure.
	k, reports = longRTTUpload()
	k.Upload.WindowStartS, k.Upload.WindowEndS = 5, 6
	if got := SpeedtestPlausibility(k, 0, reports); got != "upload_mismatch" {
		t.Errorf("window after the last report: %q, want upload_mismatch", got)
	}
	// Methodology 1 (no stop reason) keeps the phase-mean bound.
	k, _ = longRTTUpload()
	k.Upload.StopReason, k.Upload.Bytes = "", k.ServerView.BytesReceived
	if got := SpeedtestPlausibility(k, 0, nil); got != "upload_mismatch" {
		t.Errorf("methodology 1 upload three times its phase mean: %q, want upload_mismatch", got)
	}
}

// burstyUpload is a methodology 2 upload at loopback speed, as the server
// sees it: four streams each report every 100 ms, 25 ms apart, and the
// bytes come in bursts; the client keeps the newest report in each of its
// 100-ms sampling periods (its record's times in milliseconds) and reads
// its goodput from those over its window.
func burstyUpload() (*schemas.Speedtest, []goodput.Sample) {
	var reports []goodput.Sample
	var bytes uint64
	for i := 1; i <= 120; i++ {
		t := 0.025*float64(i) + 0.0001234*float64(i%7)
		if i%8 == 0 { // a burst of 40 MB, then little
			bytes += 40 << 20
		} else {
			bytes += 1 << 20
		}
		reports = append(reports, goodput.Sample{T: math.Round(t*1e6) / 1e6, Bytes: bytes})
	}
	k := &schemas.Speedtest{}
	var own []goodput.Sample
	for tick := 0.1; tick <= 3.0; tick += 0.1 {
		var last goodput.Sample
		for _, r := range reports {
			if r.T <= tick {
				last = r
			}
		}
		if len(own) == 0 || last.T > own[len(own)-1].T {
			own = append(own, last)
			k.Upload.Samples = append(k.Upload.Samples, schemas.ThroughputSample{TS: math.Round(last.T*1000) / 1000, Bytes: last.Bytes})
		}
	}
	k.Upload.StopReason = "stable"
	k.Upload.WindowStartS, k.Upload.WindowEndS = k.Upload.Samples[9].TS, k.Upload.Samples[13].TS
	k.Upload.GoodputMbps = goodput.Rate(own, own[9].T, own[13].T)
	k.ServerView = &schemas.SpeedtestServer{BytesReceived: bytes, UploadDurationS: 3}
	return k, reports
}

// TestPlausibilityUploadSamplesAreReports: each of the client's upload
// samples must be one of the server's reports, and its goodput is checked
// over its own samples. Checked against every report instead, over a
// window whose ends fall between the reports of other streams, the same
// honest figure read otherwise (what flagged a loopback upload once the
// reports were stamped when counted); a sample the server never sent is
// flagged whatever the goodput.
func TestPlausibilityUploadSamplesAreReports(t *testing.T) {
	k, reports := burstyUpload()
	if got := SpeedtestPlausibility(k, 0, reports); got != "ok" {
		t.Errorf("honest bursty upload: %q, want ok", got)
	}
	// The series as the server kept it before: one report per half
	// period, another subset of the same reports, reads otherwise over
	// the window (the case is the one meant).
	var thinned []goodput.Sample
	for _, r := range reports {
		if len(thinned) == 0 || r.T >= thinned[len(thinned)-1].T+0.05 {
			thinned = append(thinned, r)
		}
	}
	if other := goodput.Rate(thinned, k.Upload.WindowStartS, k.Upload.WindowEndS); plausibleGoodput(k.Upload.GoodputMbps, other) {
		t.Fatalf("the case is not the one meant: %.1f vs %.1f Mbit/s", k.Upload.GoodputMbps, other)
	}
	for _, c := range []struct {
		name  string
		forge func(k *schemas.Speedtest)
	}{
		{"one sample's bytes raised", func(k *schemas.Speedtest) { k.Upload.Samples[10].Bytes += 1 << 20 }},
		{"one sample moved in time", func(k *schemas.Speedtest) { k.Upload.Samples[10].TS += 0.002 }},
		{"a sample added", func(k *schemas.Speedtest) {
			s := k.Upload.Samples
			k.Upload.Samples = append(s[:11:11], append([]schemas.ThroughputSample{{TS: s[10].TS + 0.001, Bytes: s[10].Bytes + 1}}, s[11:]...)...)
		}},
		{"goodput inflated by half", func(k *schemas.Speedtest) { k.Upload.GoodputMbps *= 1.5 }},
		{"two samples 1 ms apart", func(k *schemas.Speedtest) {
			s := k.Upload.Samples
			k.Upload.Samples = append(s[:11:11], append([]schemas.ThroughputSample{{TS: s[10].TS + 0.001, Bytes: s[10].Bytes}}, s[11:]...)...)
		}},
		{"a window of 50 ms", func(k *schemas.Speedtest) {
			k.Upload.WindowEndS = k.Upload.WindowStartS + 0.05
		}},
	} {
		k, reports := burstyUpload()
		c.forge(k)
		if got := SpeedtestPlausibility(k, 0, reports); got != "upload_mismatch" {
			t.Errorf("%s: %q, want upload_mismatch", c.name, got)
		}
	}
}
