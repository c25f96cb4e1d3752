-- The speedtest's measurements: one row per measurement_uid after merges.
-- ReplacingMergeTree(authority) keeps the server's merged copy over the
-- agent's own; sorting and partition keys use only fields that are the same in
-- every copy of one measurement, so copies collapse. Read with FINAL.
-- The download and upload columns are written once, in a "for phase" block
-- (schemas/migrations.go).
CREATE TABLE IF NOT EXISTS speedtest (
    {{measurement_columns}},
    connect_ms Array(Float64) COMMENT 'TCP connect times, ms',
    rtt_ms Array(Float64) COMMENT 'HTTP HEAD round-trip times, ms',
    rtt_median_ms Float64 COMMENT 'Median of rtt_ms, ms',
-- {{for phase,receiver in download,client upload,server}}
    {{phase}}_mbps Float64 COMMENT '{{Phase}} goodput at the receiver ({{receiver}}), Mbit/s',
    {{phase}}_bytes UInt64 COMMENT '{{Phase}} payload bytes',
    {{phase}}_duration_s Float64 COMMENT '{{Phase}} phase duration, s',
    {{phase}}_connections UInt8 COMMENT 'Parallel connections in the {{phase}}',
    {{phase}}_samples_t_s Array(Float64) COMMENT '{{Phase}} time series: time since phase start, s',
    {{phase}}_samples_bytes Array(UInt64) COMMENT '{{Phase}} time series: cumulative bytes',
    {{phase}}_samples_mbps Array(Float64) COMMENT '{{Phase}} time series: interval goodput, Mbit/s',
-- {{end}}
    server_view UInt8 COMMENT '1 when the sv_ columns hold the server view',
    sv_bytes_sent UInt64 COMMENT 'Server view: payload bytes sent',
    sv_bytes_received UInt64 COMMENT 'Server view: payload bytes received',
    sv_download_duration_s Float64 COMMENT 'Server view: time spent sending, s',
    sv_upload_duration_s Float64 COMMENT 'Server view: time spent receiving, s',
    sv_upload_mbps Float64 COMMENT 'Server view: upload goodput timed at the server, Mbit/s',
    sv_tcp_rtt_ms Nullable(Float64) COMMENT 'Server view: TCP_INFO smoothed RTT, ms (NULL where unavailable)',
    sv_tcp_rttvar_ms Nullable(Float64) COMMENT 'Server view: TCP_INFO RTT variance, ms (NULL where unavailable)',
    sv_tcp_retransmits Nullable(UInt64) COMMENT 'Server view: TCP_INFO total retransmitted segments (NULL where unavailable)'
) ENGINE = ReplacingMergeTree(authority)
PARTITION BY toYYYYMM(start_time)
ORDER BY (toDate(start_time), measurement_uid)
