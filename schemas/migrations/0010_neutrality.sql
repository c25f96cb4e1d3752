-- The BitTorrent test's methodology version 2 (schema version 3,
-- spec/bittorrent.md): the factorial design (payload × port × server
-- address), server-side samples in both directions, the outcome blocked
-- with its evidence, and what a difference is attributed to. Rows of version
-- 1 read the defaults. ClickHouse 18.16 ignores COMMENT inside ADD COLUMN,
-- so comments are set on their own.
-- {{add columns to bittorrent}}
web_port UInt16 DEFAULT 0 COMMENT 'Version 2: server TCP port of the web-port flows (443 in production; 0 none)'
hosts UInt8 DEFAULT 0 COMMENT 'Version 2: server addresses the flows were spread over (0 in version 1)'
max_flow_bytes UInt64 DEFAULT 0 COMMENT 'Version 2: a flow ends once its receiver has read this many bytes'
download_attribution String DEFAULT '' COMMENT 'Version 2: payload, port, both or host: what download differentiation or blocking is attributed to'
upload_attribution String DEFAULT '' COMMENT 'Version 2: the same for upload'
attribution String DEFAULT '' COMMENT 'Version 2: the attribution of the direction(s) that gave the outcome; mixed when they differ'
client_check_flows UInt16 DEFAULT 0 COMMENT 'Version 2: download flows measured by both the client (receiver) and the server (sender)'
client_check_disagree UInt16 DEFAULT 0 COMMENT 'Version 2: of those, flows whose two means differ by more than 25%'
flow_payload Array(String) COMMENT 'Flows (version 2): bittorrent or random bytes'
flow_port_role Array(String) COMMENT 'Flows (version 2): application, neutral or web port'
flow_host Array(UInt8) COMMENT 'Flows (version 2): index of the server address'
flow_server_samples_t_s Array(Array(Float64)) COMMENT 'Flows (version 2): server sample times since the flow start, s'
flow_server_samples_mbps Array(Array(Float64)) COMMENT 'Flows (version 2): interval throughput the server measured (acknowledged in download, read in upload), Mbit/s'
flow_server_mbps Array(Float64) COMMENT 'Flows (version 2): mean server-side throughput after the warm-up, Mbit/s'
flow_server_error Array(String) COMMENT 'Flows (version 2): why the flow ended early as the server saw it (failure vocabulary; unseen: never admitted)'
flow_pipeline Array(UInt16) COMMENT 'Flows (version 2): most block requests outstanding'
cmp_tested Array(String) COMMENT 'Comparisons (version 2): the tested flows, a kind or host_N'
cmp_factor Array(String) COMMENT 'Comparisons (version 2): payload, port or host'
blk_direction Array(String) COMMENT 'Blocking evidence (version 2): direction'
blk_kind Array(String) COMMENT 'Blocking evidence (version 2): kind of flow that failed in most repetitions'
blk_failure Array(String) COMMENT 'Blocking evidence (version 2): most common failure'
blk_flows Array(UInt8) COMMENT 'Blocking evidence (version 2): flows of that kind and direction'
blk_failed Array(UInt8) COMMENT 'Blocking evidence (version 2): of those, flows that failed'
-- {{end columns}}
-- Verdicts per ISP and day weigh agents, not tests: one vote per agent
-- (analytics/verdicts.go), and blocked tests are counted apart.
-- {{add columns to analytics_verdicts}}
blocked_tests UInt64 DEFAULT 0 COMMENT 'Tests whose outcome is blocked'
agent_votes UInt64 DEFAULT 0 COMMENT 'Agents with a conclusive test (differentiation, none or blocked): one vote each'
agents_differentiation UInt64 DEFAULT 0 COMMENT 'Agents whose vote is differentiation: most of their conclusive tests said differentiation or blocked'
-- {{end columns}}

-- The replay differential test (spec/replay.md): one row per
-- measurement_uid after merges, like bittorrent (same envelope and
-- annotation columns, ReplacingMergeTree(authority), read with FINAL);
-- server_peer follows server_version, as migration 0005 put it in the others.
CREATE TABLE IF NOT EXISTS replay (
    {{measurement_columns}},
    trace String COMMENT 'Name of the replayed trace',
    trace_version UInt16 COMMENT 'Version of the trace data file',
    sni String COMMENT 'Server name of the original flows’ TLS ClientHello (empty: not TLS)',
    port UInt16 COMMENT 'Server TCP port of the flows',
    flow_duration_s Float64 COMMENT 'Longest replay time of each flow, s',
    sample_every_s Float64 COMMENT 'Throughput sampling period, s',
    warmup_s Float64 COMMENT 'Samples before this time since a flow start are left out, s',
    outcome String COMMENT 'differentiation, none, inconclusive or blocked',
    blocked_failure String COMMENT 'With outcome blocked: the original flows’ most common failure',
    flow_index Array(UInt16) COMMENT 'Flows: position in the test',
    flow_kind Array(String) COMMENT 'Flows: original or inverted',
    flow_start_s Array(Float64) COMMENT 'Flows: start since the test start, s',
    flow_bytes Array(UInt64) COMMENT 'Flows: bytes of the server’s part acknowledged by the client',
    flow_mbps Array(Float64) COMMENT 'Flows: mean server-side throughput after the warm-up, Mbit/s',
    flow_client_mbps Array(Float64) COMMENT 'Flows: mean throughput the client measured, Mbit/s',
    flow_error Array(String) COMMENT 'Flows: why the flow ended early, client side (failure vocabulary)',
    flow_server_error Array(String) COMMENT 'Flows: why the flow ended early, server side (unseen: never admitted)',
    flow_samples_t_s Array(Array(Float64)) COMMENT 'Flows: server sample times since the flow start, s',
    flow_samples_mbps Array(Array(Float64)) COMMENT 'Flows: interval throughput the server measured, Mbit/s',
    cmp_samples UInt32 COMMENT 'Comparison: original samples used',
    cmp_control_samples UInt32 COMMENT 'Comparison: inverted samples used',
    cmp_median_mbps Float64 COMMENT 'Comparison: median of the original samples, Mbit/s',
    cmp_control_median_mbps Float64 COMMENT 'Comparison: median of the inverted samples, Mbit/s',
    cmp_diff_pct Float64 COMMENT 'Comparison: original median below the inverted median, percent',
    cmp_ks_d Float64 COMMENT 'Comparison: two-sample Kolmogorov-Smirnov statistic D',
    cmp_ks_p Float64 COMMENT 'Comparison: p-value of D',
    cmp_alpha Float64 COMMENT 'Comparison: significance level',
    cmp_threshold_pct Float64 COMMENT 'Comparison: smallest diff_pct counted as differentiation',
    cmp_reps UInt8 COMMENT 'Comparison: repetitions with samples of both kinds',
    cmp_reps_slower UInt8 COMMENT 'Comparison: repetitions whose original flow is threshold_pct slower',
    cmp_outcome String COMMENT 'Comparison: differentiation, none or inconclusive',
    server_view UInt8 COMMENT '1 when the sv_ columns hold the server view',
    sv_bytes_sent UInt64 COMMENT 'Server view: bytes written on the flows',
    sv_bytes_received UInt64 COMMENT 'Server view: bytes read on the flows',
    sv_flows UInt16 COMMENT 'Server view: flows accepted'
) ENGINE = ReplacingMergeTree(authority)
PARTITION BY toYYYYMM(start_time)
ORDER BY (toDate(start_time), measurement_uid);
ALTER TABLE replay ADD COLUMN server_peer UInt8 DEFAULT 0 AFTER server_version;
ALTER TABLE replay COMMENT COLUMN server_peer '1 when the agent of another volunteer served the test (peer-to-peer mode); 0 for a platform test server';
