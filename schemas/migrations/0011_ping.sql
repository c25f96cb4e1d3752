-- The ping test's measurements (spec/ping.md, schemas/ping.go): round trips
-- of small WebSocket messages, one row per measurement_uid after merges,
-- like the other tests (ReplacingMergeTree(authority), read with FINAL).
CREATE TABLE IF NOT EXISTS ping (
    measurement_uid UUID COMMENT 'Random UUID made by the agent at test start; idempotency key end to end',
    agent_id UUID COMMENT 'Random UUID made once at install by the agent',
    test_version String COMMENT 'Methodology version of the test',
    schema_version UInt16 COMMENT 'Version of the record layout',
    start_time DateTime COMMENT 'When the test started, UTC',
    duration_s Float64 COMMENT 'Wall time of the whole test, seconds',
    agent_software String COMMENT 'Client software name',
    agent_version String COMMENT 'Client software version',
    agent_os String COMMENT 'Client operating system (GOOS)',
    agent_arch String COMMENT 'Client CPU architecture (GOARCH)',
    server_id String COMMENT 'Test server identifier from the rendezvous',
    server_version String COMMENT 'Test server software version',
    server_peer UInt8 COMMENT '1 when the agent of another volunteer served the test (peer-to-peer mode); 0 for a platform test server',
    consent_informed UInt8 COMMENT '1 when the volunteer was informed',
    consent_can_collect UInt8 COMMENT '1 when the volunteer allows collection',
    consent_can_publish UInt8 COMMENT '1 when the volunteer allows publication; 0 rows are never published',
    synthetic UInt8 COMMENT '1 for simulated records; never in a real public dump',
    client_asn UInt32 COMMENT 'Autonomous system of the client address (0 unknown)',
    client_org String COMMENT 'Organisation of the client AS',
    client_country String COMMENT 'ISO 3166-1 alpha-2 country of the client address (empty unknown)',
    client_prefix String COMMENT 'Client address truncated to /24 (IPv4) or /48 (IPv6); the full address is never stored',
    annotation_db String COMMENT 'Version of the IP-to-ASN and country databases used',
    authority UInt8 COMMENT '1 when the record carries the server merged view; the highest wins on merge',
    ingested_at DateTime COMMENT 'When the collector received the record, UTC',
    rtt_ms Array(Float64) COMMENT 'Round-trip times of the pings, ms',
    rtt_min_ms Float64 COMMENT 'Minimum of rtt_ms, ms',
    rtt_median_ms Float64 COMMENT 'Median of rtt_ms, ms',
    server_view UInt8 COMMENT '1 when the server view fields below are present',
    sv_echoed UInt32 COMMENT 'Server view: pings echoed',
    sv_tcp_rtt_ms Nullable(Float64) COMMENT 'Server view: TCP_INFO smoothed RTT at the end, ms (NULL where unavailable)'
) ENGINE = ReplacingMergeTree(authority)
PARTITION BY toYYYYMM(start_time)
ORDER BY (toDate(start_time), measurement_uid);
