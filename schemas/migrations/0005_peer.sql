-- Peer-to-peer mode (schema version 2): server_peer marks the tests a
-- volunteer's agent served to another agent, instead of a platform test
-- server. It is the same in every copy of one measurement (the agent learns
-- it from the rendezvous, the serving peer knows it), and rows written before
-- this migration read 0: they were all served by platform servers. ClickHouse
-- 18.16 ignores COMMENT inside ADD COLUMN, so comments are set on their own.
ALTER TABLE speedtest ADD COLUMN server_peer UInt8 DEFAULT 0 AFTER server_version;
ALTER TABLE ndt7 ADD COLUMN server_peer UInt8 DEFAULT 0 AFTER server_version;
ALTER TABLE ndt7_browser ADD COLUMN server_peer UInt8 DEFAULT 0 AFTER server_version;
ALTER TABLE bittorrent ADD COLUMN server_peer UInt8 DEFAULT 0 AFTER server_version;
ALTER TABLE speedtest COMMENT COLUMN server_peer '1 when another volunteer''s agent served the test (peer-to-peer mode); 0 for a platform test server';
ALTER TABLE ndt7 COMMENT COLUMN server_peer '1 when another volunteer''s agent served the test (peer-to-peer mode); 0 for a platform test server';
ALTER TABLE ndt7_browser COMMENT COLUMN server_peer '1 when another volunteer''s agent served the test (peer-to-peer mode); 0 for a platform test server';
ALTER TABLE bittorrent COMMENT COLUMN server_peer '1 when another volunteer''s agent served the test (peer-to-peer mode); 0 for a platform test server';
