package collector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/neubot/neubot/internal/spool"
)

// metrics are the collector's Prometheus metrics, on a registry of its own
// so that several collectors can live in one process (tests).
type metrics struct {
	reg           *prometheus.Registry
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
	m := &metrics{
		reg: prometheus.NewRegistry(),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "neubot_collector_records_accepted_total",
			Help: "Records validated and durably spooled (acknowledged).",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "neubot_collector_records_rejected_total",
			Help: "Lines refused by validation.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "neubot_collector_ingest_requests_total",
			Help: "Ingest requests by HTTP status code.",
		}, []string{"code"}),
		inserted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "neubot_collector_rows_inserted_total",
			Help: "Rows inserted into ClickHouse, by test.",
		}, []string{"test"}),
		insertErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "neubot_collector_insert_errors_total",
			Help: "Failed attempts to load a spool segment into ClickHouse (each is retried).",
		}),
		inserts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "neubot_collector_inserts_total",
			Help: "Blocks inserted into ClickHouse (a segment's rows are split by table and by at most MaxPartitionsPerInsert months).",
		}),
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "neubot_collector_segment_load_seconds",
			Help:    "Time to load one spool segment into ClickHouse.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "neubot_collector_dead_letters_total",
			Help: "Spooled records refused on load and kept in deadletter.ndjson.",
		}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "neubot_collector_segments_quarantined_total",
			Help: "Damaged spool segments moved to quarantine/.",
		}),
		testServers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "neubot_collector_test_servers",
			Help: "Live test servers (registered, not expired) of the rendezvous, peers included, by test they serve.",
		}, []string{"test"}),
		peerChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "neubot_collector_peer_checks_total",
			Help: "Connections back to volunteers' agents offering to serve peers, by result (listed, unreachable).",
		}, []string{"result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "neubot_collector_ingest_refused_total",
			Help: "Ingest requests refused by an abuse bound, by reason (slow_body, per_address_concurrency, per_address_volume).",
		}, []string{"reason"}),
		loadEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "neubot_collector_load_events_total",
			Help: "Loader events by kind: transient_insert_error, permanent_row_error, read_retry, quarantine_retry, start_time_out_of_window, superseded_copy.",
		}, []string{"event"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "neubot_collector_ingest_limited_total",
			Help: "Ingest requests refused with 429, by limit (address, agent).",
		}, []string{"limit"}),
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "neubot_collector_records_loaded_total",
			Help: "Records loaded, by trust: verified (signed by an enrolled server), unsigned, bad_signature (signed, not verifying).",
		}, []string{"trust"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "neubot_collector_ingest_phase_seconds",
			Help:    "Where the time of an acknowledged (202) ingest request goes, by phase: read (headers received to body read and validated, slot wait included), slot_wait (waiting for an ingest slot), spool (durable append: write and group-committed fsync), total (to the answer).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"phase"}),
	}
	m.reg.MustRegister(m.phases, m.refused, m.loadEvents, m.inserts, m.accepted, m.rejected, m.requests, m.inserted, m.insertErrors,
		m.insertSeconds, m.deadLetters, m.quarantined, m.testServers, m.peerChecks, m.limited, m.verified,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "neubot_collector_spool_bytes",
			Help: "Bytes in the spool not yet loaded into ClickHouse.",
		}, func() float64 { b, _, _ := s.Stats(); return float64(b) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "neubot_collector_spool_records",
			Help: "Records in the spool not yet loaded into ClickHouse.",
		}, func() float64 { _, n, _ := s.Stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "neubot_collector_loader_lag_seconds",
			Help: "Age of the oldest record not yet loaded into ClickHouse (0 when the spool is empty).",
		}, func() float64 {
			_, _, oldest := s.Stats()
			if oldest.IsZero() {
				return 0
			}
			return time.Since(oldest).Seconds()
		}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}
