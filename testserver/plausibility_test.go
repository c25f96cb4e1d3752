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
