-- The BitTorrent differential test's measurements (spec/bittorrent.md): one
-- row per measurement_uid after merges, like speedtest (same envelope and
-- annotation columns, ReplacingMergeTree(authority), read with FINAL). Flows
-- and comparisons are parallel arrays, element i of each describing one.
CREATE TABLE IF NOT EXISTS bittorrent (
    {{measurement_columns}},
    bittorrent_port UInt16 COMMENT 'Server TCP port of the BitTorrent and random flows',
    neutral_port UInt16 COMMENT 'Server TCP port of the neutral-port control flows',
    flow_duration_s Float64 COMMENT 'Planned duration of each flow, s',
    sample_every_s Float64 COMMENT 'Throughput sampling period, s',
    warmup_s Float64 COMMENT 'Samples before this time since a flow start are left out of the comparisons, s',
    outcome String COMMENT 'differentiation, none or inconclusive: the test as a whole',
    download_outcome String COMMENT 'Combined outcome of the download comparisons',
    upload_outcome String COMMENT 'Combined outcome of the upload comparisons',
    flow_index Array(UInt16) COMMENT 'Flows: position in the test',
    flow_kind Array(String) COMMENT 'Flows: bittorrent, random or neutral',
    flow_direction Array(String) COMMENT 'Flows: download or upload',
    flow_port Array(UInt16) COMMENT 'Flows: server TCP port',
    flow_start_s Array(Float64) COMMENT 'Flows: start since the test start, s',
    flow_bytes Array(UInt64) COMMENT 'Flows: bytes read by the receiver while sampled',
    flow_mbps Array(Float64) COMMENT 'Flows: mean throughput after the warm-up, Mbit/s',
    flow_error Array(String) COMMENT 'Flows: why the flow ended early, empty if it did not',
    flow_samples_t_s Array(Array(Float64)) COMMENT 'Flows: sample times since the flow start, s',
    flow_samples_mbps Array(Array(Float64)) COMMENT 'Flows: interval throughput at the receiver, Mbit/s',
    cmp_direction Array(String) COMMENT 'Comparisons: download or upload',
    cmp_control Array(String) COMMENT 'Comparisons: the control, random or neutral',
    cmp_samples Array(UInt32) COMMENT 'Comparisons: BitTorrent samples used',
    cmp_control_samples Array(UInt32) COMMENT 'Comparisons: control samples used',
    cmp_median_mbps Array(Float64) COMMENT 'Comparisons: median of the BitTorrent samples, Mbit/s',
    cmp_control_median_mbps Array(Float64) COMMENT 'Comparisons: median of the control samples, Mbit/s',
    cmp_diff_pct Array(Float64) COMMENT 'Comparisons: BitTorrent median below the control median, percent of the control',
    cmp_ks_d Array(Float64) COMMENT 'Comparisons: two-sample Kolmogorov-Smirnov statistic D',
    cmp_ks_p Array(Float64) COMMENT 'Comparisons: p-value of D',
    cmp_alpha Array(Float64) COMMENT 'Comparisons: significance level',
    cmp_threshold_pct Array(Float64) COMMENT 'Comparisons: smallest diff_pct counted as differentiation',
    cmp_reps Array(UInt8) COMMENT 'Comparisons: repetitions with samples of both kinds',
    cmp_reps_slower Array(UInt8) COMMENT 'Comparisons: repetitions whose BitTorrent flow is threshold_pct slower than its control flow',
    cmp_outcome Array(String) COMMENT 'Comparisons: differentiation, none or inconclusive',
    server_view UInt8 COMMENT '1 when the sv_ columns hold the server view',
    sv_bytes_sent UInt64 COMMENT 'Server view: bytes written on the flows',
    sv_bytes_received UInt64 COMMENT 'Server view: bytes read on the flows',
    sv_flows UInt16 COMMENT 'Server view: flows accepted'
) ENGINE = ReplacingMergeTree(authority)
PARTITION BY toYYYYMM(start_time)
ORDER BY (toDate(start_time), measurement_uid);

-- Analytics: the verdicts of the differential tests per ISP (ASN) and day,
-- filled by `neubot-server analytics` like analytics_distributions (one
-- partition per day, dropped and inserted again on recomputation).
CREATE TABLE IF NOT EXISTS analytics_verdicts (
    day Date COMMENT 'UTC day of the tests',
    test String COMMENT 'Test name, e.g. bittorrent',
    asn UInt32 COMMENT 'Autonomous system of the clients (0 unknown)',
    org String COMMENT 'Organisation of the ASN',
    country String COMMENT 'Country of the ASN (any seen)',
    synthetic UInt8 COMMENT '1: computed over simulated tests only; 0: over real tests only',
    direction String COMMENT 'any (the test outcome), download or upload',
    tests UInt64 COMMENT 'Tests of this ASN and day',
    agents UInt64 COMMENT 'Distinct agents among them',
    differentiation_tests UInt64 COMMENT 'Tests whose outcome is differentiation',
    none_tests UInt64 COMMENT 'Tests whose outcome is none',
    inconclusive_tests UInt64 COMMENT 'Tests whose outcome is inconclusive',
    share Float64 COMMENT 'differentiation_tests / (differentiation_tests + none_tests): the share among conclusive tests (0 when none are)',
    share_lo Float64 COMMENT 'Lower end of the 95% Wilson score interval of share',
    share_hi Float64 COMMENT 'Upper end of the 95% Wilson score interval of share'
) ENGINE = MergeTree
PARTITION BY day
ORDER BY (test, asn, direction, synthetic)
