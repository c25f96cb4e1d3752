-- The BitTorrent test's methodology version 2 (schema version 3,
-- spec/bittorrent.md): the factorial design (payload × port × server
-- address), server-side samples in both directions, the outcome blocked
-- with its evidence, and what a difference is attributed to. Rows of version
-- 1 read the defaults. ClickHouse 18.16 ignores COMMENT inside ADD COLUMN,
-- so comments are set on their own.
ALTER TABLE bittorrent ADD COLUMN web_port UInt16 DEFAULT 0;
ALTER TABLE bittorrent ADD COLUMN hosts UInt8 DEFAULT 0;
ALTER TABLE bittorrent ADD COLUMN max_flow_bytes UInt64 DEFAULT 0;
ALTER TABLE bittorrent ADD COLUMN download_attribution String DEFAULT '';
ALTER TABLE bittorrent ADD COLUMN upload_attribution String DEFAULT '';
ALTER TABLE bittorrent ADD COLUMN attribution String DEFAULT '';
ALTER TABLE bittorrent ADD COLUMN client_check_flows UInt16 DEFAULT 0;
ALTER TABLE bittorrent ADD COLUMN client_check_disagree UInt16 DEFAULT 0;
ALTER TABLE bittorrent ADD COLUMN flow_payload Array(String);
ALTER TABLE bittorrent ADD COLUMN flow_port_role Array(String);
ALTER TABLE bittorrent ADD COLUMN flow_host Array(UInt8);
ALTER TABLE bittorrent ADD COLUMN flow_server_samples_t_s Array(Array(Float64));
ALTER TABLE bittorrent ADD COLUMN flow_server_samples_mbps Array(Array(Float64));
ALTER TABLE bittorrent ADD COLUMN flow_server_mbps Array(Float64);
ALTER TABLE bittorrent ADD COLUMN flow_server_error Array(String);
ALTER TABLE bittorrent ADD COLUMN flow_pipeline Array(UInt16);
ALTER TABLE bittorrent ADD COLUMN cmp_tested Array(String);
ALTER TABLE bittorrent ADD COLUMN cmp_factor Array(String);
ALTER TABLE bittorrent ADD COLUMN blk_direction Array(String);
ALTER TABLE bittorrent ADD COLUMN blk_kind Array(String);
ALTER TABLE bittorrent ADD COLUMN blk_failure Array(String);
ALTER TABLE bittorrent ADD COLUMN blk_flows Array(UInt8);
ALTER TABLE bittorrent ADD COLUMN blk_failed Array(UInt8);
ALTER TABLE bittorrent COMMENT COLUMN web_port 'Version 2: server TCP port of the web-port flows (443 in production; 0 none)';
ALTER TABLE bittorrent COMMENT COLUMN hosts 'Version 2: server addresses the flows were spread over (0 in version 1)';
ALTER TABLE bittorrent COMMENT COLUMN max_flow_bytes 'Version 2: a flow ends once its receiver has read this many bytes';
ALTER TABLE bittorrent COMMENT COLUMN download_attribution 'Version 2: payload, port, both or host: what download differentiation or blocking is attributed to';
ALTER TABLE bittorrent COMMENT COLUMN upload_attribution 'Version 2: the same for upload';
ALTER TABLE bittorrent COMMENT COLUMN attribution 'Version 2: the attribution of the direction(s) that gave the outcome; mixed when they differ';
ALTER TABLE bittorrent COMMENT COLUMN client_check_flows 'Version 2: download flows measured by both the client (receiver) and the server (sender)';
ALTER TABLE bittorrent COMMENT COLUMN client_check_disagree 'Version 2: of those, flows whose two means differ by more than 25%';
ALTER TABLE bittorrent COMMENT COLUMN flow_payload 'Flows (version 2): bittorrent or random bytes';
ALTER TABLE bittorrent COMMENT COLUMN flow_port_role 'Flows (version 2): application, neutral or web port';
ALTER TABLE bittorrent COMMENT COLUMN flow_host 'Flows (version 2): index of the server address';
ALTER TABLE bittorrent COMMENT COLUMN flow_server_samples_t_s 'Flows (version 2): server sample times since the flow start, s';
ALTER TABLE bittorrent COMMENT COLUMN flow_server_samples_mbps 'Flows (version 2): interval throughput the server measured (acknowledged in download, read in upload), Mbit/s';
ALTER TABLE bittorrent COMMENT COLUMN flow_server_mbps 'Flows (version 2): mean server-side throughput after the warm-up, Mbit/s';
ALTER TABLE bittorrent COMMENT COLUMN flow_server_error 'Flows (version 2): why the flow ended early as the server saw it (failure vocabulary; unseen: never admitted)';
ALTER TABLE bittorrent COMMENT COLUMN flow_pipeline 'Flows (version 2): most block requests outstanding';
ALTER TABLE bittorrent COMMENT COLUMN cmp_tested 'Comparisons (version 2): the tested flows, a kind or host_N';
ALTER TABLE bittorrent COMMENT COLUMN cmp_factor 'Comparisons (version 2): payload, port or host';
ALTER TABLE bittorrent COMMENT COLUMN blk_direction 'Blocking evidence (version 2): direction';
ALTER TABLE bittorrent COMMENT COLUMN blk_kind 'Blocking evidence (version 2): kind of flow that failed in most repetitions';
ALTER TABLE bittorrent COMMENT COLUMN blk_failure 'Blocking evidence (version 2): most common failure';
ALTER TABLE bittorrent COMMENT COLUMN blk_flows 'Blocking evidence (version 2): flows of that kind and direction';
ALTER TABLE bittorrent COMMENT COLUMN blk_failed 'Blocking evidence (version 2): of those, flows that failed';
-- Verdicts per ISP and day weigh agents, not tests: one vote per agent
-- (analytics/verdicts.go), and blocked tests are counted apart.
ALTER TABLE analytics_verdicts ADD COLUMN blocked_tests UInt64 DEFAULT 0;
ALTER TABLE analytics_verdicts ADD COLUMN agent_votes UInt64 DEFAULT 0;
ALTER TABLE analytics_verdicts ADD COLUMN agents_differentiation UInt64 DEFAULT 0;
ALTER TABLE analytics_verdicts COMMENT COLUMN blocked_tests 'Tests whose outcome is blocked';
ALTER TABLE analytics_verdicts COMMENT COLUMN agent_votes 'Agents with a conclusive test (differentiation, none or blocked): one vote each';
ALTER TABLE analytics_verdicts COMMENT COLUMN agents_differentiation 'Agents whose vote is differentiation: most of their conclusive tests said differentiation or blocked';

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
