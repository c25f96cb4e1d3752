package schemas

// Headline is the headline numbers of a record, as the agent's history and
// `neubot run` show them; 0 where the test does not measure one.
type Headline struct {
	DownloadMbps, UploadMbps float64
	// RTTMS is the test's round-trip time figure (its own kind: HTTP
	// HEAD median, TCP_INFO minimum, ping median), milliseconds.
	RTTMS float64
	// Bytes is the data the test used, both directions.
	Bytes int64
}

// Headliner is implemented by the keys of every test, so that the agent
// and the command line show a new test without knowing it.
type Headliner interface {
	Headline() Headline
}

// Headline implements Headliner.
func (s *Speedtest) Headline() Headline {
	return Headline{DownloadMbps: s.Download.GoodputMbps, UploadMbps: s.Upload.GoodputMbps, RTTMS: s.RTTMedianMS,
		Bytes: int64(s.Download.Bytes + s.Upload.Bytes)}
}

// Headline implements Headliner.
func (n *NDT7) Headline() Headline {
	h := Headline{RTTMS: n.MinRTTMS()}
	for _, sub := range []*NDT7Subtest{n.Download, n.Upload} {
		if sub != nil {
			h.Bytes += int64(sub.Bytes)
		}
	}
	if n.Download != nil {
		h.DownloadMbps = n.Download.GoodputMbps
	}
	if n.Upload != nil {
		h.UploadMbps = n.Upload.GoodputMbps
	}
	return h
}

// Headline implements Headliner: every byte of the flows, both ways, as the
// server counted them (0 in a copy without the server's view).
func (b *BitTorrent) Headline() Headline {
	if b.ServerView == nil {
		return Headline{}
	}
	return Headline{Bytes: int64(b.ServerView.BytesSent + b.ServerView.BytesReceived)}
}

// Headline implements Headliner: every byte of the flows, both ways, as the
// server counted them (0 in a copy without the server's view).
func (r *Replay) Headline() Headline {
	if r.ServerView == nil {
		return Headline{}
	}
	return Headline{Bytes: int64(r.ServerView.BytesSent + r.ServerView.BytesReceived)}
}
