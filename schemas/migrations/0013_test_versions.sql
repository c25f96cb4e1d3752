-- Which methodology versions each figure pools (issue 15): the speedtest has
-- two (test_version 1 and 2, spec/speedtest.md), whose records coexist. The
-- votes and the distributions carry the sorted distinct test_version of the
-- tests inside the goodset they were computed from. Rows computed before
-- this migration have an empty list (unknown).
ALTER TABLE analytics_agent_days ADD COLUMN test_versions Array(String) AFTER tests;
ALTER TABLE analytics_agent_days COMMENT COLUMN test_versions 'Distinct test_version (methodology) of the tests inside the goodset, sorted';
ALTER TABLE analytics_distributions ADD COLUMN test_versions Array(String) AFTER agents_total;
ALTER TABLE analytics_distributions COMMENT COLUMN test_versions 'Distinct test_version (methodology) of the tests this figure pools, sorted; empty for rows computed before migration 13';
