-- Dedup (issue 19): copy_version orders the copies of one measurement so that
-- the earliest authoritative copy wins: authority first, then the earliest
-- ingested_at (schemas.CopyVersion). The loader inserts no copy whose version
-- is not above the stored one, so a late copy (an agent offline for days) never
-- replaces an on-time row under FINAL. The engines keep ReplacingMergeTree(authority),
-- which agrees with copy_version on every copy the loader lets in; changing an
-- engine's version column would need a table rebuild, which neither ALTER nor the
-- cluster migrator can do. Rows loaded before this migration get the same formula
-- as their DEFAULT.
ALTER TABLE speedtest ADD COLUMN copy_version UInt64 DEFAULT toUInt64(authority) * 4294967296 + (4294967295 - toUInt64(toUInt32(ingested_at))) AFTER ingested_at;
ALTER TABLE ndt7 ADD COLUMN copy_version UInt64 DEFAULT toUInt64(authority) * 4294967296 + (4294967295 - toUInt64(toUInt32(ingested_at))) AFTER ingested_at;
ALTER TABLE ndt7_browser ADD COLUMN copy_version UInt64 DEFAULT toUInt64(authority) * 4294967296 + (4294967295 - toUInt64(toUInt32(ingested_at))) AFTER ingested_at;
ALTER TABLE bittorrent ADD COLUMN copy_version UInt64 DEFAULT toUInt64(authority) * 4294967296 + (4294967295 - toUInt64(toUInt32(ingested_at))) AFTER ingested_at;
ALTER TABLE speedtest COMMENT COLUMN copy_version 'Order of the copies of one measurement: authority * 2^32 + (2^32 - 1 - ingested_at in Unix seconds); the loader stores no copy below the stored one, so the earliest authoritative copy wins';
ALTER TABLE ndt7 COMMENT COLUMN copy_version 'Order of the copies of one measurement: authority * 2^32 + (2^32 - 1 - ingested_at in Unix seconds); the loader stores no copy below the stored one, so the earliest authoritative copy wins';
ALTER TABLE ndt7_browser COMMENT COLUMN copy_version 'Order of the copies of one measurement: authority * 2^32 + (2^32 - 1 - ingested_at in Unix seconds); the loader stores no copy below the stored one, so the earliest authoritative copy wins';
ALTER TABLE bittorrent COMMENT COLUMN copy_version 'Order of the copies of one measurement: authority * 2^32 + (2^32 - 1 - ingested_at in Unix seconds); the loader stores no copy below the stored one, so the earliest authoritative copy wins';
