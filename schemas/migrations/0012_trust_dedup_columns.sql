-- The tables made after migrations 0007 (trust) and 0008 (copy_version) were
-- written on their own branches (0010 replay, 0011 ping) get the same columns,
-- so that every measurement table has the annotation columns the loader
-- writes (schemas.AnnotationColumns).
ALTER TABLE replay ADD COLUMN copy_version UInt64 DEFAULT toUInt64(authority) * 4294967296 + (4294967295 - toUInt64(toUInt32(ingested_at))) AFTER ingested_at;
ALTER TABLE replay ADD COLUMN verified UInt8 DEFAULT 0 AFTER copy_version;
ALTER TABLE replay ADD COLUMN server_key String DEFAULT '' AFTER verified;
ALTER TABLE replay ADD COLUMN plausibility String DEFAULT '' AFTER server_key;
ALTER TABLE replay ADD COLUMN agent_pseudonym String DEFAULT '' AFTER plausibility;
ALTER TABLE ping ADD COLUMN copy_version UInt64 DEFAULT toUInt64(authority) * 4294967296 + (4294967295 - toUInt64(toUInt32(ingested_at))) AFTER ingested_at;
ALTER TABLE ping ADD COLUMN verified UInt8 DEFAULT 0 AFTER copy_version;
ALTER TABLE ping ADD COLUMN server_key String DEFAULT '' AFTER verified;
ALTER TABLE ping ADD COLUMN plausibility String DEFAULT '' AFTER server_key;
ALTER TABLE ping ADD COLUMN agent_pseudonym String DEFAULT '' AFTER plausibility;
ALTER TABLE replay COMMENT COLUMN verified '1 when the row is a copy signed by an enrolled test server whose signature verified (spec/trust.md); 0 for an agent''s own copy or a forgery: never published, never in figures';
ALTER TABLE ping COMMENT COLUMN verified '1 when the row is a copy signed by an enrolled test server whose signature verified (spec/trust.md); 0 for an agent''s own copy or a forgery: never published, never in figures';
ALTER TABLE replay COMMENT COLUMN server_key 'Ed25519 public key (base64url) of the enrolled test server that signed the row; empty when verified = 0';
ALTER TABLE ping COMMENT COLUMN server_key 'Ed25519 public key (base64url) of the enrolled test server that signed the row; empty when verified = 0';
ALTER TABLE replay COMMENT COLUMN plausibility 'The test server''s cross-check of the client''s numbers (spec/trust.md): ok, download_mismatch, upload_mismatch, download_upload_mismatch; empty when not checked. Only ok or empty rows count in figures';
ALTER TABLE ping COMMENT COLUMN plausibility 'The test server''s cross-check of the client''s numbers (spec/trust.md): ok, download_mismatch, upload_mismatch, download_upload_mismatch; empty when not checked. Only ok or empty rows count in figures';
ALTER TABLE replay COMMENT COLUMN agent_pseudonym 'HMAC-SHA256(collector secret, agent_id, UTC month of start_time), 32 hex characters: the agent identifier that is published instead of agent_id (spec/trust.md)';
ALTER TABLE ping COMMENT COLUMN agent_pseudonym 'HMAC-SHA256(collector secret, agent_id, UTC month of start_time), 32 hex characters: the agent identifier that is published instead of agent_id (spec/trust.md)';
ALTER TABLE replay COMMENT COLUMN copy_version 'Order of the copies of one measurement: authority * 2^32 + (2^32 - 1 - ingested_at in Unix seconds); the loader stores no copy below the stored one, so the earliest authoritative copy wins';
ALTER TABLE ping COMMENT COLUMN copy_version 'Order of the copies of one measurement: authority * 2^32 + (2^32 - 1 - ingested_at in Unix seconds); the loader stores no copy below the stored one, so the earliest authoritative copy wins';
