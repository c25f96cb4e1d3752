package collector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	metricsreg "github.com/neubot/neubot/internal/metrics"
	"github.com/neubot/neubot/internal/spool"
)

// metrics are the collector's Prometheus metrics, on a registry of its own
// so that several collectors can live in one process (tests).
type metrics struct {
	reg           metricsreg.Registry
	accepted      prometheus.Counter
	rejected      prometheus.Counter
	requests      *prometheus.CounterVec
	inserted      *prometheus.CounterVec
	insertErrors  prometheus.Counter
	inserts       prometheus.Counter
	insertSeconds prometheus.Histogram
	deadLetters   prometheus.Counter
	quarantined   prometheus.Counter
	testServers   *prometheus.GaugeVec
	peerChecks    *prometheus.CounterVec
	refused       *prometheus.CounterVec
	loadEvents    *prometheus.CounterVec
	limited       *prometheus.CounterVec
	verified      *prometheus.CounterVec
	phases        *prometheus.HistogramVec
}

func newMetrics(s *spool.Spool) *metrics {
	r := metricsreg.New()
	m := &metrics{reg: r}
	for _, c := range []struct {
		dst        *prometheus.Counter
		name, help string
	}{
		{&m.accepted, "neubot_collector_records_accepted_total", "Records validated and durably spooled (acknowledged)."},
		{&m.rejected, "neubot_collector_records_rejected_total", "Lines refused by validation."},
		{&m.insertErrors, "neubot_collector_insert_errors_total", "Failed attempts to load a spool segment into ClickHouse (each is retried)."},
		{&m.inserts, "neubot_collector_inserts_total", "Blocks inserted into ClickHouse (a segment's rows are split by table and by at most MaxPartitionsPerInsert months)."},
		{&m.deadLetters, "neubot_collector_dead_letters_total", "Spooled records refused on load and kept in deadletter.ndjson."},
		{&m.quarantined, "neubot_collector_segments_quarantined_total", "Damaged spool segments moved to quarantine/."},
	} {
		*c.dst = r.Counter(c.name, c.help)
	}
	// Each counter vector has one label, named last.
	for _, c := range []struct {
		dst               **prometheus.CounterVec
		name, help, label string
	}{
		{&m.requests, "neubot_collector_ingest_requests_total", "Ingest requests by HTTP status code.", "code"},
		{&m.inserted, "neubot_collector_rows_inserted_total", "Rows inserted into ClickHouse, by test.", "test"},
		{&m.peerChecks, "neubot_collector_peer_checks_total", "Connections back to volunteers' agents offering to serve peers, by result (listed, unreachable).", "result"},
		{&m.refused, "neubot_collector_ingest_refused_total", "Ingest requests refused by an abuse bound, by reason (slow_body, per_address_concurrency, per_address_volume).", "reason"},
		{&m.loadEvents, "neubot_collector_load_events_total", "Loader events by kind: transient_insert_error, permanent_row_error, read_retry, quarantine_retry, start_time_out_of_window, superseded_copy.", "event"},
		{&m.limited, "neubot_collector_ingest_limited_total", "Ingest requests refused with 429, by limit (address, agent).", "limit"},
		{&m.verified, "neubot_collector_records_loaded_total", "Records loaded, by trust: verified (signed by an enrolled server), unsigned, bad_signature (signed, not verifying).", "trust"},
	} {
		*c.dst = r.CounterVec(c.name, c.help, c.label)
	}
	m.insertSeconds = r.Histogram("neubot_collector_segment_load_seconds",
		"Time to load one spool segment into ClickHouse.", prometheus.ExponentialBuckets(0.01, 2, 12))
	m.testServers = r.GaugeVec("neubot_collector_test_servers",
		"Live test servers (registered, not expired) of the rendezvous, peers included, by test they serve.", "test")
	m.phases = r.HistogramVec("neubot_collector_ingest_phase_seconds",
		"Where the time of an acknowledged (202) ingest request goes, by phase: read (headers received to body read and validated, slot wait included), slot_wait (waiting for an ingest slot), spool (durable append: write and group-committed fsync), total (to the answer).",
		prometheus.ExponentialBuckets(0.001, 2, 14), "phase")
	r.GaugeFunc("neubot_collector_spool_bytes", "Bytes in the spool not yet loaded into ClickHouse.",
		func() float64 { b, _, _ := s.Stats(); return float64(b) })
	r.GaugeFunc("neubot_collector_spool_records", "Records in the spool not yet loaded into ClickHouse.",
		func() float64 { _, n, _ := s.Stats(); return float64(n) })
	r.GaugeFunc("neubot_collector_loader_lag_seconds", "Age of the oldest record not yet loaded into ClickHouse (0 when the spool is empty).",
		func() float64 {
			_, _, oldest := s.Stats()
			if oldest.IsZero() {
				return 0
			}
			return time.Since(oldest).Seconds()
		})
	return m
}
