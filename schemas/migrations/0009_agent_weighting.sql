-- Sound statistics (issue 17): every published figure gives each agent one
-- vote per day. analytics_agent_days holds the votes: per day, test, goodset
-- and agent (and network), the agent's tests before and inside the goodset
-- and the median of its day (or, for a one-per-agent-per-day goodset, the
-- value of the test drawn among its tests inside the goodset). The
-- distributions per provider, country and overall are computed over these
-- rows; distinct agents over any period are counted exactly from them
-- (uniqExact(agent_id)). One partition per day, recomputed as a whole.
CREATE TABLE IF NOT EXISTS analytics_agent_days (
    day Date COMMENT 'UTC day of the tests',
    test String COMMENT 'Test name: speedtest, ndt7 or ndt7-browser; never mixed',
    goodset String COMMENT 'Name of the goodset',
    goodset_version UInt32 COMMENT 'Version of the goodset rule',
    synthetic UInt8 COMMENT '1: simulated tests; 0: real tests',
    agent_id UUID COMMENT 'The agent',
    asn UInt32 COMMENT 'Autonomous system of the tests (an agent on two networks in a day has a row for each)',
    org String COMMENT 'Organisation of the AS',
    country String COMMENT 'Country of the tests',
    tests_total UInt64 COMMENT 'Tests of the agent this day on this network, before the goodset rule',
    tests UInt64 COMMENT 'Tests inside the goodset (1 when the goodset draws one test per agent and day, 0 when none passed)',
    download_mbps Float64 COMMENT 'Median download of the tests inside the goodset (internal/stats.Quantile), or the drawn test’s; 0 when tests is 0',
    upload_mbps Float64 COMMENT 'Likewise for upload, Mbit/s',
    rtt_ms Float64 COMMENT 'Likewise for the round-trip time, ms',
    download_sum Float64 COMMENT 'Sum of download over the tests inside the goodset (for the test-weighted mean, labelled so)',
    upload_sum Float64 COMMENT 'Sum of upload over the tests inside the goodset',
    rtt_sum Float64 COMMENT 'Sum of the round-trip time over the tests inside the goodset'
) ENGINE = MergeTree
PARTITION BY day
ORDER BY (test, goodset, synthetic, asn, agent_id);

-- The distributions now say how they weigh (agents: one vote per agent and
-- day; tests: the agent scope, one agent's own tests), how many agents were
-- seen before the goodset, and the 95% confidence interval of the median.
-- Rows written before this migration were test-weighted.
-- {{add columns to analytics_distributions}}
weighting String DEFAULT 'tests' AFTER metric COMMENT 'agents: each agent one vote per day (the median of its day); tests: every test one vote (scope agent, and rows computed before migration 9)'
agents_total UInt64 DEFAULT 0 AFTER agents COMMENT 'Distinct agents of this key and day before the goodset rule'
p50_ci_low Float64 DEFAULT nan AFTER p50 COMMENT 'Lower end of the 95% confidence interval of p50: an order statistic of the votes (internal/stats.MedianCI); NaN for none'
p50_ci_high Float64 DEFAULT nan AFTER p50_ci_low COMMENT 'Upper end of the 95% confidence interval of p50'
-- {{end columns}}

-- Hour-of-day profiles: each agent one vote per hour (the median of its tests
-- in that hour), in the volunteer's local time where the country has one time
-- zone, UTC otherwise; zone says which.
-- {{add columns to analytics_hourly}}
zone String DEFAULT 'UTC' AFTER hour COMMENT 'Time zone of hour: the IANA zone of the country when it has one (analytics.CountryZones), else UTC'
agents UInt64 DEFAULT 0 AFTER tests COMMENT 'Distinct agents with tests in the goodset in this hour'
-- {{end columns}}

-- The columns say what they now hold (they were test-weighted exact order
-- statistics before).
ALTER TABLE analytics_distributions COMMENT COLUMN agents 'Distinct agents with a test in the goodset (each one vote)';
ALTER TABLE analytics_distributions COMMENT COLUMN mean 'Mean of the metric over the votes (weighting agents) or the tests (weighting tests)';
ALTER TABLE analytics_distributions COMMENT COLUMN p10 '10th percentile of the votes, linear interpolation between order statistics (type 7; internal/stats.Quantile)';
ALTER TABLE analytics_distributions COMMENT COLUMN p25 '25th percentile, the same method';
ALTER TABLE analytics_distributions COMMENT COLUMN p50 'Median, the same method (the mean of the two middle votes for an even count)';
ALTER TABLE analytics_distributions COMMENT COLUMN p75 '75th percentile, the same method';
ALTER TABLE analytics_distributions COMMENT COLUMN p90 '90th percentile, the same method';
ALTER TABLE analytics_distributions COMMENT COLUMN hist 'Log-scale histogram of the votes: bucket i (from 0) counts values in [10^((i-20)/10), 10^((i-19)/10)); first and last buckets are open';
ALTER TABLE analytics_distributions COMMENT COLUMN modes 'Detected modes: geometric centres of histogram peaks holding at least 5% of the votes';
ALTER TABLE analytics_hourly COMMENT COLUMN hour 'Hour of the day, 0-23, in zone';
ALTER TABLE analytics_hourly COMMENT COLUMN p50 'Median over agents of each agent''s median in this hour (internal/stats.Quantile)';
