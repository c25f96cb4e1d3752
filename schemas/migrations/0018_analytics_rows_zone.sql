-- Speed of the daily job (issue 17): the hour-of-day profiles per ASN and
-- per country are in the volunteer's local time where the country has one
-- zone (analytics.CountryZones). The job computed that zone and local hour
-- per row in every profile (a multiIf over the countries, 6 profiles a
-- test and day); the staged copy now carries them, computed once.
ALTER TABLE analytics_rows ADD COLUMN local_zone String AFTER rtt;
ALTER TABLE analytics_rows COMMENT COLUMN local_zone 'Time zone of the client''s country where it has one, else UTC (analytics.ZoneSQL)';
ALTER TABLE analytics_rows ADD COLUMN local_hour UInt8 AFTER local_zone;
ALTER TABLE analytics_rows COMMENT COLUMN local_hour 'Hour of start_time in local_zone';
