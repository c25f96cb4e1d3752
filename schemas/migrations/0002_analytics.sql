-- Analytics: distributions per day, goodset, scope and key, materialised by
-- `neubot-server analytics`. One partition per day: recomputing a day drops
-- its partition and inserts it again, so running a day twice leaves the same
-- rows (no timestamps in them; runs are logged in analytics_runs).
CREATE TABLE IF NOT EXISTS analytics_distributions (
    day Date COMMENT 'UTC day of the tests',
    test String COMMENT 'Test name, e.g. speedtest',
    goodset String COMMENT 'Name of the goodset (the rule selecting the tests)',
    goodset_version UInt32 COMMENT 'Version of the goodset rule',
    goodset_def String COMMENT 'The goodset definition as JSON, stored with every result computed from it',
    scope String COMMENT 'What key is: asn, country, agent or all',
    key String COMMENT 'The ASN in decimal, the ISO country code, the agent_id, or empty for all',
    org String COMMENT 'Organisation of the ASN (scope asn), else any seen',
    country String COMMENT 'Country of the key (scope asn, country), else any seen',
    synthetic UInt8 COMMENT '1: computed over simulated tests only; 0: over real tests only',
    metric String COMMENT 'download_mbps, upload_mbps or rtt_ms',
    tests_total UInt64 COMMENT 'Tests of this key and day before the goodset rule',
    tests UInt64 COMMENT 'Tests in the goodset',
    agents UInt64 COMMENT 'Distinct agents among the tests in the goodset',
    mean Float64 COMMENT 'Mean of the metric over the tests in the goodset',
    p10 Float64 COMMENT '10th percentile (exact)',
    p25 Float64 COMMENT '25th percentile (exact)',
    p50 Float64 COMMENT 'Median (exact)',
    p75 Float64 COMMENT '75th percentile (exact)',
    p90 Float64 COMMENT '90th percentile (exact)',
    hist Array(UInt64) COMMENT 'Log-scale histogram: bucket i (from 0) counts values in [10^((i-20)/10), 10^((i-19)/10)); first and last buckets are open',
    modes Array(Float64) COMMENT 'Detected modes: geometric centres of histogram peaks holding at least 5% of the tests'
) ENGINE = MergeTree
PARTITION BY day
ORDER BY (test, goodset, scope, key, metric, synthetic);

CREATE TABLE IF NOT EXISTS analytics_hourly (
    day Date COMMENT 'UTC day of the tests',
    test String COMMENT 'Test name',
    goodset String COMMENT 'Name of the goodset',
    goodset_version UInt32 COMMENT 'Version of the goodset rule',
    scope String COMMENT 'asn, country or all',
    key String COMMENT 'The ASN, the country code, or empty for all',
    synthetic UInt8 COMMENT '1: simulated tests only; 0: real tests only',
    metric String COMMENT 'download_mbps, upload_mbps or rtt_ms',
    hour UInt8 COMMENT 'Hour of the day, UTC, 0-23',
    tests UInt64 COMMENT 'Tests in the goodset in this hour',
    p50 Float64 COMMENT 'Median of the metric in this hour'
) ENGINE = MergeTree
PARTITION BY day
ORDER BY (test, goodset, scope, key, metric, synthetic, hour);

CREATE TABLE IF NOT EXISTS analytics_runs (
    day Date COMMENT 'The day recomputed',
    source_rows UInt64 COMMENT 'Rows of the measurement tables for that day when it was computed',
    source_max_ingested DateTime COMMENT 'Newest ingested_at among them',
    run_at DateTime COMMENT 'When the job ran',
    duration_s Float64 COMMENT 'How long it took, seconds'
) ENGINE = MergeTree
ORDER BY (day, run_at)
