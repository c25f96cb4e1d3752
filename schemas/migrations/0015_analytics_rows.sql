-- Speed of the daily job (issue 17): the job reads a day's eligible rows of a
-- test once (deduplicated with FINAL, through the trust filter and the daily
-- cap per agent, analytics.EligibleSQL) and keeps them here, narrow and
-- sorted by a hash of the agent, while it computes the day; every goodset,
-- scope and hourly profile reads them from here, and the per-agent scope
-- reads its chunks of agents by ranges of agent_hash (the sorting key prunes
-- them). A scratch table: the job drops the day partition before and after
-- the day; nothing is published from it.
CREATE TABLE IF NOT EXISTS analytics_rows (
    day Date COMMENT 'UTC day of the tests',
    test String COMMENT 'Test name: speedtest, ndt7 or ndt7-browser',
    uid UUID COMMENT 'The measurement (measurement_uid; named so that the cluster keeps this scratch table whole on every server, docs/cluster.md)',
    agent_id UUID COMMENT 'The agent (never published)',
    agent_hash UInt64 COMMENT 'cityHash64 of the agent_id as a string: the chunks of the per-agent scope are ranges of it',
    agent_pseudonym String COMMENT 'The published agent identifier (spec/trust.md)',
    asn UInt32 COMMENT 'Autonomous system of the client',
    client_org String COMMENT 'Organisation of the AS',
    client_country String COMMENT 'Country of the client',
    synthetic UInt8 COMMENT '1: simulated tests; 0: real tests',
    start_time DateTime COMMENT 'Start of the test',
    test_version String COMMENT 'Methodology version of the test (the figures say which versions they pool)',
    down Float64 COMMENT 'Download goodput, Mbit/s',
    up Float64 COMMENT 'Upload goodput, Mbit/s',
    rtt Float64 COMMENT 'Round-trip time, ms (analytics.Test.RTT)'
) ENGINE = MergeTree
PARTITION BY day
ORDER BY (test, agent_hash);
