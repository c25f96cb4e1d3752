-- Speedtest methodology 2 and failure records (schema version 3): per phase,
-- the stop reason, the estimation window, the parameters and the loaded
-- latency; the server's TCP_INFO series per phase; the failure code and phase
-- of a test that failed (such rows carry no goodput: figures leave them
-- out). Rows written before read the defaults (empty, 0). ClickHouse 18.16
-- ignores COMMENT inside ADD COLUMN, so comments are set on their own: the
-- "add columns" block below is written as an ADD COLUMN statement per column,
-- then a COMMENT COLUMN statement per column. The download and upload phases
-- have the same columns: each "for phase" block is written once per phase
-- (schemas/migrations.go).
-- {{add columns to speedtest}}
failure String COMMENT 'Empty when the test completed, else the failure code (schemas.Failures); failure rows have no goodput'
failure_phase String COMMENT 'Phase in which the test failed (negotiate, latency, download, upload, collect); empty when it did not fail'
rtt_min_ms Float64 COMMENT 'Methodology 2: smallest rtt_ms, ms'
-- {{for phase in download upload}}
{{phase}}_stop_reason String COMMENT '{{Phase}}: why the phase stopped (stable, time_cap, failure; empty before schema 3)'
{{phase}}_window_start_s Float64 COMMENT '{{Phase}}: start of the estimation window, s since phase start'
{{phase}}_window_end_s Float64 COMMENT '{{Phase}}: end of the estimation window, s since phase start'
{{phase}}_failure String COMMENT '{{Phase}}: empty when the phase ended normally, else its failure code'
{{phase}}_params_present UInt8 COMMENT '1 when the {{phase}}_param_ columns hold the methodology 2 parameters'
{{phase}}_param_sample_ms Float64 COMMENT '{{Phase}}: receiver sampling period, ms'
{{phase}}_param_max_phase_s Float64 COMMENT '{{Phase}}: time cap of the phase, s'
{{phase}}_param_min_window_s Float64 COMMENT '{{Phase}}: shortest stable window, s'
{{phase}}_param_stable_rtts Float64 COMMENT '{{Phase}}: stable window length in RTTs'
{{phase}}_param_tolerance Float64 COMMENT '{{Phase}}: stability tolerance (relative)'
{{phase}}_param_rtt_ms Float64 COMMENT '{{Phase}}: RTT the phase was sized with, ms'
{{phase}}_param_bdp_bytes UInt64 COMMENT '{{Phase}}: largest measured bandwidth-delay product, bytes'
{{phase}}_param_per_connection_bytes UInt64 COMMENT '{{Phase}}: bytes in flight allowed per connection'
{{phase}}_param_initial_connections UInt8 COMMENT '{{Phase}}: connections opened at the start'
{{phase}}_param_max_connections UInt8 COMMENT '{{Phase}}: most connections allowed'
{{phase}}_loaded_rtt_ms Array(Float64) COMMENT '{{Phase}}: ping round trips under load, ms'
{{phase}}_loaded_rtt_median_ms Float64 COMMENT '{{Phase}}: median of {{phase}}_loaded_rtt_ms, ms'
{{phase}}_loaded_rtt_p90_ms Float64 COMMENT '{{Phase}}: 90th percentile of {{phase}}_loaded_rtt_ms, ms'
-- {{end}}
-- {{for phase in download upload}}
sv_{{phase}}_present UInt8 COMMENT '1 when the sv_{{phase}}_ columns hold the server per-phase TCP_INFO view'
sv_{{phase}}_connections UInt8 COMMENT 'Server view: {{phase}} connections served'
sv_{{phase}}_bytes_acked UInt64 COMMENT 'Server view: {{phase}} TCP_INFO bytes_acked at the end, summed over connections'
sv_{{phase}}_bytes_received UInt64 COMMENT 'Server view: {{phase}} TCP_INFO bytes_received at the end, summed over connections'
sv_{{phase}}_rtt_median_ms Float64 COMMENT 'Server view: {{phase}} median TCP_INFO RTT over the phase, ms'
sv_{{phase}}_rtt_p90_ms Float64 COMMENT 'Server view: {{phase}} 90th percentile TCP_INFO RTT over the phase, ms'
sv_{{phase}}_tcp_t_s Array(Float64) COMMENT 'Server view: {{phase}} TCP_INFO series: time since phase start, s'
sv_{{phase}}_tcp_rtt_ms Array(Float64) COMMENT 'Server view: {{phase}} TCP_INFO series: mean smoothed RTT, ms'
sv_{{phase}}_tcp_min_rtt_ms Array(Float64) COMMENT 'Server view: {{phase}} TCP_INFO series: minimum RTT, ms'
sv_{{phase}}_tcp_delivery_rate_mbps Array(Float64) COMMENT 'Server view: {{phase}} TCP_INFO series: summed delivery rate, Mbit/s'
sv_{{phase}}_tcp_bytes_acked Array(UInt64) COMMENT 'Server view: {{phase}} TCP_INFO series: summed bytes_acked'
sv_{{phase}}_tcp_bytes_received Array(UInt64) COMMENT 'Server view: {{phase}} TCP_INFO series: summed bytes_received'
sv_{{phase}}_tcp_bytes_retrans Array(UInt64) COMMENT 'Server view: {{phase}} TCP_INFO series: summed bytes_retrans'
-- {{end}}
-- {{end columns}}
