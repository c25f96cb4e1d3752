package testserver

// The cross-checks of a client's numbers against the server's own, made at
// collect (spec/trust.md): the server knows what it sent (bytes, and the
// bytes the client's kernel acknowledged, TCP_INFO bytes_acked) and when;
// a client that reports more than was sent, or far less than it
// acknowledged, or an upload other than the one the server received, is
// flagged in server.plausibility, and flagged records are left out of the
// figures. The tolerances are wide: they catch an edited number, not the
// noise of a measurement.

import (
	"github.com/neubot/neubot/internal/goodput"
	"github.com/neubot/neubot/schemas"
)

// Tolerances of the cross-checks.
const (
	// InflationSlackBytes is what a client may count beyond the bytes the
	// server sent (per connection; framing the two count differently).
	InflationSlackBytes = 64 << 10
	// InflationRatio bounds the client's bytes by the server's sent bytes.
	InflationRatio = 1.01
	// AckedRatio and AckedSlackBytes bound the client's bytes from below
	// by what its kernel acknowledged: it may stop reading with data
	// acknowledged in its receive buffer.
	AckedRatio      = 0.75
	AckedSlackBytes = 4 << 20
	// GoodputTolerance is the relative difference allowed between the
	// client's goodput and the server's timing of the same bytes, plus
	// GoodputSlackMbps.
	GoodputTolerance = 0.25
	GoodputSlackMbps = 0.5
)

// plausible reports whether the client's byte count is within the bounds
// of what the server sent and what was acknowledged (0: unknown).
func plausibleBytes(client, sent, acked uint64, conns int) bool {
	if sent > 0 && float64(client) > float64(sent)*InflationRatio+float64(max(conns, 1)*InflationSlackBytes) {
		return false
	}
	if acked > 0 && float64(client) < float64(acked)*AckedRatio-AckedSlackBytes {
		return false
	}
	return true
}

// plausibleGoodput reports whether client is within the tolerance of server.
func plausibleGoodput(client, server float64) bool {
	d := client - server
	if d < 0 {
		d = -d
	}
	return d <= server*GoodputTolerance+GoodputSlackMbps
}

// Verdict combines the two directions' checks into server.plausibility.
func Verdict(downloadOK, uploadOK bool) string {
	switch {
	case downloadOK && uploadOK:
		return "ok"
	case uploadOK:
		return "download_mismatch"
	case downloadOK:
		return "upload_mismatch"
	}
	return "download_upload_mismatch"
}

// LateWindow is the share of a speedtest phase over which the client
// computes its goodput (the last two thirds, spec/speedtest.md): at best
// every byte of the phase arrived in it, so the client's goodput is at most
// the phase's mean rate over LateWindow.
const LateWindow = 2.0 / 3

// SpeedtestPlausibility cross-checks a merged speedtest record: the
// download's bytes and samples against the bytes sent and acknowledged,
// its goodput against the most the server's sending allows; the upload's
// bytes against the bytes the server received, its goodput likewise, or
// with methodology 2 against the rate of reports (the server's upload
// reports, as the client counts them) over the client's window.
func SpeedtestPlausibility(k *schemas.Speedtest, ackedBytes uint64, reports []goodput.Sample) string {
	sv := k.ServerView
	if sv == nil {
		return ""
	}
	d, u := &k.Download, &k.Upload
	down := plausibleBytes(d.Bytes, sv.BytesSent, ackedBytes, int(d.Connections))
	for _, smp := range d.Samples { // the time series too
		down = down && plausibleBytes(smp.Bytes, sv.BytesSent, 0, int(d.Connections))
	}
	if sv.DownloadDurationS > 0 && sv.BytesSent > 0 {
		most := float64(sv.BytesSent) * 8 / 1e6 / (sv.DownloadDurationS * LateWindow)
		down = down && d.GoodputMbps <= most*(1+GoodputTolerance)+GoodputSlackMbps
	}
	up := true
	// Methodology 2 (a stop reason recorded) takes the upload's samples and
	// goodput from the server's own reports, so there is no client figure
	// to check; the client's byte count also includes what was still in its
	// socket buffers when the phase stopped (megabytes per connection at
	// loopback speeds).
	if u.StopReason == "" && (sv.BytesReceived > 0 || u.Bytes > 0) {
		diff := float64(u.Bytes) - float64(sv.BytesReceived)
		up = diff <= float64(sv.BytesReceived)*GoodputTolerance+AckedSlackBytes && -diff <= float64(sv.BytesReceived)*GoodputTolerance+AckedSlackBytes
	}
	switch {
	case u.StopReason != "" && u.GoodputMbps > 0 && u.WindowEndS-u.WindowStartS < MinCheckedWindow:
		// Any two reports a millisecond apart (two streams') can span a
		// burst: a window that short vouches for no rate. One sampling
		// period (100 ms) reads what arrived in it; an agent's shortest
		// window is a third of a 1.5-s phase, 0.1 s in the tests that
		// shorten the phases to 0.3 s.
		up = false
	case u.StopReason != "" && u.WindowEndS > u.WindowStartS && len(reports) > 1:
		// Methodology 2: the client computed its goodput over its window
		// from the server's reports. Each of its samples must be one of
		// them; then the server computes the goodput again over the
		// window, from those samples when they cover it (the client
		// took one report in each of its sampling periods, and another
		// subset of the same series can read otherwise over a short
		// window at loopback speeds), else from every report. The
		// ramp-up before the window can be most of the phase (2.7 of
		// 3.9 s at 200 Mbit/s and 300 ms), so the phase's mean says
		// nothing of the window's rate.
		own, ok := reportedSeries(u.Samples, reports)
		series := reports
		if len(own) > 1 && own[0].T <= u.WindowStartS+sampleTSSlack && own[len(own)-1].T >= u.WindowEndS-sampleTSSlack {
			series = own
		}
		up = up && ok && plausibleGoodput(u.GoodputMbps, goodput.Rate(series, u.WindowStartS, u.WindowEndS))
	case sv.UploadMbps > 0:
		up = up && u.GoodputMbps <= sv.UploadMbps/LateWindow*(1+GoodputTolerance)+GoodputSlackMbps
	}
	return Verdict(down, up)
}

// MinCheckedWindow is the shortest upload window of methodology 2 the
// cross-check accepts, seconds: about one sampling period.
const MinCheckedWindow = 0.09

// minSampleGap is the closest two recorded samples can be
// (schemas.MinSampleGapS), less a millisecond for the rounding of their
// times.
const minSampleGap = schemas.MinSampleGapS - 0.001

// sampleTSSlack is how far a recorded sample's time may be from the
// report it copies: the record keeps milliseconds, the reports
// microseconds.
const sampleTSSlack = 0.0006

// reportedSeries returns the client's upload samples as a series, and
// whether each is one of the server's reports (the same bytes, at the
// same time within sampleTSSlack) at least minSampleGap after the one
// before. Both are in time order.
func reportedSeries(samples []schemas.ThroughputSample, reports []goodput.Sample) ([]goodput.Sample, bool) {
	out := make([]goodput.Sample, 0, len(samples))
	j := 0
	for i, smp := range samples {
		if i > 0 && smp.TS-samples[i-1].TS < minSampleGap {
			return nil, false
		}
		for j < len(reports) && reports[j].T < smp.TS-sampleTSSlack {
			j++
		}
		found := false
		for k := j; k < len(reports) && reports[k].T <= smp.TS+sampleTSSlack; k++ {
			if reports[k].Bytes == smp.Bytes {
				found = true
				break
			}
		}
		if !found {
			return nil, false
		}
		out = append(out, goodput.Sample{T: smp.TS, Bytes: smp.Bytes})
	}
	return out, true
}

// NDT7Plausibility cross-checks a merged ndt7 record: the client's
// download against what the server sent and what TCP_INFO says was
// acknowledged, and its goodput against the server's; the upload when the
// client, not the server, measured it.
func NDT7Plausibility(k *schemas.NDT7) string {
	sv := k.ServerView
	if sv == nil {
		return ""
	}
	down, up := true, true
	if d, s := k.Download, sv.Download; d != nil && s != nil {
		var acked uint64
		if s.TCPInfo != nil {
			acked = s.TCPInfo.BytesAcked
		}
		down = plausibleBytes(d.Bytes, s.Bytes, acked, 1) &&
			(s.GoodputMbps <= 0 || d.GoodputMbps <= s.GoodputMbps*(1+GoodputTolerance)+GoodputSlackMbps)
	}
	if u, s := k.Upload, sv.Upload; u != nil && s != nil && u.MeasuredAt == "client" && s.GoodputMbps > 0 {
		up = plausibleGoodput(u.GoodputMbps, s.GoodputMbps)
	}
	return Verdict(down, up)
}

// BitTorrentPlausibility cross-checks the download flows' bytes, counted
// by the client, against the bytes the server wrote on the test's flows
// (the upload flows' numbers are the server's own).
func BitTorrentPlausibility(k *schemas.BitTorrent) string {
	if k.ServerView == nil {
		return ""
	}
	var client uint64
	flows := 0
	for _, f := range k.Flows {
		if f.Direction == schemas.DirDownload {
			client += f.Bytes
			flows++
		}
	}
	return Verdict(plausibleBytes(client, k.ServerView.BytesSent, 0, flows), true)
}
