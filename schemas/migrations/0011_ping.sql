-- The ping test's measurements (spec/ping.md, schemas/ping.go): round trips
-- of small WebSocket messages, one row per measurement_uid after merges,
-- like the other tests (ReplacingMergeTree(authority), read with FINAL);
-- server_peer follows server_version, as migration 0005 put it in the others.
CREATE TABLE IF NOT EXISTS ping (
    {{measurement_columns}},
    rtt_ms Array(Float64) COMMENT 'Round-trip times of the pings, ms',
    rtt_min_ms Float64 COMMENT 'Minimum of rtt_ms, ms',
    rtt_median_ms Float64 COMMENT 'Median of rtt_ms, ms',
    server_view UInt8 COMMENT '1 when the server view fields below are present',
    sv_echoed UInt32 COMMENT 'Server view: pings echoed',
    sv_tcp_rtt_ms Nullable(Float64) COMMENT 'Server view: TCP_INFO smoothed RTT at the end, ms (NULL where unavailable)'
) ENGINE = ReplacingMergeTree(authority)
PARTITION BY toYYYYMM(start_time)
ORDER BY (toDate(start_time), measurement_uid);
ALTER TABLE ping ADD COLUMN server_peer UInt8 DEFAULT 0 AFTER server_version;
ALTER TABLE ping COMMENT COLUMN server_peer '1 when the agent of another volunteer served the test (peer-to-peer mode); 0 for a platform test server';
