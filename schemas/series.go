package schemas

// The throughput series of the records (ThroughputSample): the rule they
// follow and the columns they are stored as.

// decreasingAt is the index of the first sample whose time is before the
// previous sample's (or below -1 for the first), -1 when there is none.
func decreasingAt(samples []ThroughputSample) int {
	prev := -1.0
	for i, s := range samples {
		if s.TS < prev {
			return i
		}
		prev = s.TS
	}
	return -1
}

// seriesColumns are the columns of one series: its times, cumulative bytes
// and Mbit/s.
func seriesColumns(samples []ThroughputSample) (ts []float64, by []uint64, mb []float64) {
	ts, by, mb = make([]float64, len(samples)), make([]uint64, len(samples)), make([]float64, len(samples))
	for i, s := range samples {
		ts[i], by[i], mb[i] = s.TS, s.Bytes, s.Mbps
	}
	return ts, by, mb
}

// flowSeriesColumns are the columns of one series per flow, as arrays of
// arrays: the times and the Mbit/s of each flow's samples.
func flowSeriesColumns[F any](flows []F, samples func(*F) []ThroughputSample) (ts, mb [][]float64) {
	ts, mb = make([][]float64, len(flows)), make([][]float64, len(flows))
	for i := range flows {
		s := samples(&flows[i])
		ts[i], mb[i] = make([]float64, len(s)), make([]float64, len(s))
		for j, x := range s {
			ts[i][j], mb[i][j] = x.TS, x.Mbps
		}
	}
	return ts, mb
}
