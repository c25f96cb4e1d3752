-- ndt7's measurements (schemas/ndt7.go), one row per measurement_uid after
-- merges, like the speedtest's: ReplacingMergeTree(authority) keeps the
-- server's merged copy over the client's own; keys use only fields that are
-- the same in every copy. ndt7_browser, the same columns, holds the tests run
-- from the test server's browser page (test_name ndt7-browser): another
-- methodology, kept apart. Read with FINAL. The download and upload columns
-- are written once, in "for phase" blocks (schemas/migrations.go).
CREATE TABLE IF NOT EXISTS ndt7 (
    {{measurement_columns}},
-- {{for phase in download upload}}
    {{phase}}_present UInt8 COMMENT '1 when the {{phase}} subtest ran',
    {{phase}}_goodput_mbps Float64 COMMENT '{{Phase}} goodput at the receiver, Mbit/s',
    {{phase}}_measured_at String COMMENT 'Whose counters {{phase}}_goodput_mbps comes from: client or server',
    {{phase}}_bytes UInt64 COMMENT '{{Phase}} payload bytes counted by the client',
    {{phase}}_duration_s Float64 COMMENT '{{Phase}} duration since the handshake by the client clock, s',
    {{phase}}_samples_t_s Array(Float64) COMMENT '{{Phase}} client time series: time since the handshake, s',
    {{phase}}_samples_bytes Array(UInt64) COMMENT '{{Phase}} client time series: cumulative payload bytes',
    {{phase}}_samples_mbps Array(Float64) COMMENT '{{Phase}} client time series: interval goodput, Mbit/s',
    {{phase}}_uuid String COMMENT '{{Phase}} connection identifier given by the server',
    {{phase}}_failure String COMMENT 'Empty when the {{phase}} ended normally, else what ended it',
    {{phase}}_srv_present UInt8 COMMENT '1 when the server sent a measurement message during the {{phase}}',
    {{phase}}_srv_app_elapsed_s Float64 COMMENT '{{Phase}}: last in-band server AppInfo time, s',
    {{phase}}_srv_app_bytes UInt64 COMMENT '{{Phase}}: last in-band server AppInfo payload bytes',
    {{phase}}_srv_tcp_present UInt8 COMMENT '1 when the {{Phase}}: last in-band server TCP_INFO columns hold values',
    {{phase}}_srv_tcp_elapsed_s Float64 COMMENT '{{Phase}}: last in-band server TCP_INFO: when read, s since the handshake',
    {{phase}}_srv_tcp_rtt_ms Float64 COMMENT '{{Phase}}: last in-band server TCP_INFO: smoothed RTT, ms',
    {{phase}}_srv_tcp_min_rtt_ms Float64 COMMENT '{{Phase}}: last in-band server TCP_INFO: minimum RTT, ms',
    {{phase}}_srv_tcp_rttvar_ms Float64 COMMENT '{{Phase}}: last in-band server TCP_INFO: RTT variance, ms',
    {{phase}}_srv_tcp_bytes_acked UInt64 COMMENT '{{Phase}}: last in-band server TCP_INFO: bytes acked',
    {{phase}}_srv_tcp_bytes_received UInt64 COMMENT '{{Phase}}: last in-band server TCP_INFO: bytes received',
    {{phase}}_srv_tcp_bytes_sent UInt64 COMMENT '{{Phase}}: last in-band server TCP_INFO: bytes sent incl. retransmissions',
    {{phase}}_srv_tcp_bytes_retrans UInt64 COMMENT '{{Phase}}: last in-band server TCP_INFO: bytes retransmitted',
    {{phase}}_srv_tcp_busy_s Float64 COMMENT '{{Phase}}: last in-band server TCP_INFO: send queue busy time, s',
    {{phase}}_srv_tcp_rwnd_limited_s Float64 COMMENT '{{Phase}}: last in-band server TCP_INFO: time limited by the receive window, s',
    {{phase}}_srv_tcp_sndbuf_limited_s Float64 COMMENT '{{Phase}}: last in-band server TCP_INFO: time limited by the send buffer, s',
-- {{end}}
    server_view UInt8 COMMENT '1 when the sv_ columns hold the Neubot server view',
-- {{for phase in download upload}}
    sv_{{phase}}_present UInt8 COMMENT 'Server view: 1 when a {{phase}} ran under the token',
    sv_{{phase}}_uuid String COMMENT 'Server view: {{phase}} connection identifier',
    sv_{{phase}}_bytes UInt64 COMMENT 'Server view: {{phase}} payload bytes sent or received',
    sv_{{phase}}_duration_s Float64 COMMENT 'Server view: {{phase}} duration since the handshake, s',
    sv_{{phase}}_goodput_mbps Float64 COMMENT 'Server view: {{phase}} goodput, Mbit/s',
    sv_{{phase}}_max_message_bytes UInt32 COMMENT 'Server view: largest {{phase}} binary message, bytes',
    sv_{{phase}}_client_measurements UInt32 COMMENT 'Server view: measurement messages the client sent in the {{phase}}',
    sv_{{phase}}_failure String COMMENT 'Server view: empty when the {{phase}} ended normally on the server side, else what ended it',
    sv_{{phase}}_tcp_present UInt8 COMMENT '1 when the Server view: {{phase}} final TCP_INFO columns hold values',
    sv_{{phase}}_tcp_elapsed_s Float64 COMMENT 'Server view: {{phase}} final TCP_INFO: when read, s since the handshake',
    sv_{{phase}}_tcp_rtt_ms Float64 COMMENT 'Server view: {{phase}} final TCP_INFO: smoothed RTT, ms',
    sv_{{phase}}_tcp_min_rtt_ms Float64 COMMENT 'Server view: {{phase}} final TCP_INFO: minimum RTT, ms',
    sv_{{phase}}_tcp_rttvar_ms Float64 COMMENT 'Server view: {{phase}} final TCP_INFO: RTT variance, ms',
    sv_{{phase}}_tcp_bytes_acked UInt64 COMMENT 'Server view: {{phase}} final TCP_INFO: bytes acked',
    sv_{{phase}}_tcp_bytes_received UInt64 COMMENT 'Server view: {{phase}} final TCP_INFO: bytes received',
    sv_{{phase}}_tcp_bytes_sent UInt64 COMMENT 'Server view: {{phase}} final TCP_INFO: bytes sent incl. retransmissions',
    sv_{{phase}}_tcp_bytes_retrans UInt64 COMMENT 'Server view: {{phase}} final TCP_INFO: bytes retransmitted',
    sv_{{phase}}_tcp_busy_s Float64 COMMENT 'Server view: {{phase}} final TCP_INFO: send queue busy time, s',
    sv_{{phase}}_tcp_rwnd_limited_s Float64 COMMENT 'Server view: {{phase}} final TCP_INFO: time limited by the receive window, s',
    sv_{{phase}}_tcp_sndbuf_limited_s Float64 COMMENT 'Server view: {{phase}} final TCP_INFO: time limited by the send buffer, s'{{sep}}
-- {{end}}
) ENGINE = ReplacingMergeTree(authority)
PARTITION BY toYYYYMM(start_time)
ORDER BY (toDate(start_time), measurement_uid);

CREATE TABLE IF NOT EXISTS ndt7_browser AS ndt7;
