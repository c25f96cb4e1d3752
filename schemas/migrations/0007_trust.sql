-- Trust (schema version 3, spec/trust.md): a row is verified, and only then
-- authoritative, when an enrolled test server's signature of it verified;
-- the server's cross-check of the client's numbers; the monthly pseudonym
-- that is published instead of agent_id. Rows stored before this migration
-- read verified = 0: they were accepted under the old rule (a server view
-- was enough), which anyone could forge, so they are not published.
-- ClickHouse 18.16 ignores COMMENT inside ADD COLUMN: comments on their own.
-- Each "for table" block below is written once per measurement table
-- (schemas/migrations.go).
-- {{for table in speedtest ndt7 ndt7_browser bittorrent}}
ALTER TABLE {{table}} ADD COLUMN verified UInt8 DEFAULT 0 AFTER ingested_at;
ALTER TABLE {{table}} ADD COLUMN server_key String DEFAULT '' AFTER verified;
ALTER TABLE {{table}} ADD COLUMN plausibility String DEFAULT '' AFTER server_key;
ALTER TABLE {{table}} ADD COLUMN agent_pseudonym String DEFAULT '' AFTER plausibility;
-- {{end}}
-- {{for table in speedtest ndt7 ndt7_browser bittorrent}}
ALTER TABLE {{table}} COMMENT COLUMN verified '1 when the row is a copy signed by an enrolled test server whose signature verified (spec/trust.md); 0 for an agent''s own copy or a forgery: never published, never in figures';
ALTER TABLE {{table}} COMMENT COLUMN server_key 'Ed25519 public key (base64url) of the enrolled test server that signed the row; empty when verified = 0';
ALTER TABLE {{table}} COMMENT COLUMN plausibility 'The test server''s cross-check of the client''s numbers (spec/trust.md): ok, download_mismatch, upload_mismatch, download_upload_mismatch; empty when not checked. Only ok or empty rows count in figures';
ALTER TABLE {{table}} COMMENT COLUMN agent_pseudonym 'HMAC-SHA256(collector secret, agent_id, UTC month of start_time), 32 hex characters: the agent identifier that is published instead of agent_id (spec/trust.md)';
-- {{end}}
