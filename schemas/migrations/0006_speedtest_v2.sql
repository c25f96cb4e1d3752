-- Speedtest methodology 2 and failure records (schema version 3): per phase,
-- the stop reason, the estimation window, the parameters and the loaded
-- latency; the server's TCP_INFO series per phase; the failure code and phase
-- of a test that failed (such rows carry no goodput: figures leave them
-- out). Rows written before read the defaults (empty, 0). ClickHouse 18.16
-- ignores COMMENT inside ADD COLUMN, so comments are set on their own.
-- The download and upload phases have the same columns: each "for phase"
-- block below is written once per phase (schemas/migrations.go).
ALTER TABLE speedtest ADD COLUMN failure String;
ALTER TABLE speedtest ADD COLUMN failure_phase String;
ALTER TABLE speedtest ADD COLUMN rtt_min_ms Float64;
-- {{for phase in download upload}}
ALTER TABLE speedtest ADD COLUMN {{phase}}_stop_reason String;
ALTER TABLE speedtest ADD COLUMN {{phase}}_window_start_s Float64;
ALTER TABLE speedtest ADD COLUMN {{phase}}_window_end_s Float64;
ALTER TABLE speedtest ADD COLUMN {{phase}}_failure String;
ALTER TABLE speedtest ADD COLUMN {{phase}}_params_present UInt8;
ALTER TABLE speedtest ADD COLUMN {{phase}}_param_sample_ms Float64;
ALTER TABLE speedtest ADD COLUMN {{phase}}_param_max_phase_s Float64;
ALTER TABLE speedtest ADD COLUMN {{phase}}_param_min_window_s Float64;
ALTER TABLE speedtest ADD COLUMN {{phase}}_param_stable_rtts Float64;
ALTER TABLE speedtest ADD COLUMN {{phase}}_param_tolerance Float64;
ALTER TABLE speedtest ADD COLUMN {{phase}}_param_rtt_ms Float64;
ALTER TABLE speedtest ADD COLUMN {{phase}}_param_bdp_bytes UInt64;
ALTER TABLE speedtest ADD COLUMN {{phase}}_param_per_connection_bytes UInt64;
ALTER TABLE speedtest ADD COLUMN {{phase}}_param_initial_connections UInt8;
ALTER TABLE speedtest ADD COLUMN {{phase}}_param_max_connections UInt8;
ALTER TABLE speedtest ADD COLUMN {{phase}}_loaded_rtt_ms Array(Float64);
ALTER TABLE speedtest ADD COLUMN {{phase}}_loaded_rtt_median_ms Float64;
ALTER TABLE speedtest ADD COLUMN {{phase}}_loaded_rtt_p90_ms Float64;
-- {{end}}
-- {{for phase in download upload}}
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_present UInt8;
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_connections UInt8;
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_bytes_acked UInt64;
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_bytes_received UInt64;
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_rtt_median_ms Float64;
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_rtt_p90_ms Float64;
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_tcp_t_s Array(Float64);
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_tcp_rtt_ms Array(Float64);
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_tcp_min_rtt_ms Array(Float64);
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_tcp_delivery_rate_mbps Array(Float64);
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_tcp_bytes_acked Array(UInt64);
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_tcp_bytes_received Array(UInt64);
ALTER TABLE speedtest ADD COLUMN sv_{{phase}}_tcp_bytes_retrans Array(UInt64);
-- {{end}}
ALTER TABLE speedtest COMMENT COLUMN failure 'Empty when the test completed, else the failure code (schemas.Failures); failure rows have no goodput';
ALTER TABLE speedtest COMMENT COLUMN failure_phase 'Phase in which the test failed (negotiate, latency, download, upload, collect); empty when it did not fail';
ALTER TABLE speedtest COMMENT COLUMN rtt_min_ms 'Methodology 2: smallest rtt_ms, ms';
-- {{for phase in download upload}}
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_stop_reason '{{Phase}}: why the phase stopped (stable, time_cap, failure; empty before schema 3)';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_window_start_s '{{Phase}}: start of the estimation window, s since phase start';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_window_end_s '{{Phase}}: end of the estimation window, s since phase start';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_failure '{{Phase}}: empty when the phase ended normally, else its failure code';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_params_present '1 when the {{phase}}_param_ columns hold the methodology 2 parameters';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_param_sample_ms '{{Phase}}: receiver sampling period, ms';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_param_max_phase_s '{{Phase}}: time cap of the phase, s';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_param_min_window_s '{{Phase}}: shortest stable window, s';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_param_stable_rtts '{{Phase}}: stable window length in RTTs';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_param_tolerance '{{Phase}}: stability tolerance (relative)';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_param_rtt_ms '{{Phase}}: RTT the phase was sized with, ms';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_param_bdp_bytes '{{Phase}}: largest measured bandwidth-delay product, bytes';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_param_per_connection_bytes '{{Phase}}: bytes in flight allowed per connection';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_param_initial_connections '{{Phase}}: connections opened at the start';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_param_max_connections '{{Phase}}: most connections allowed';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_loaded_rtt_ms '{{Phase}}: ping round trips under load, ms';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_loaded_rtt_median_ms '{{Phase}}: median of {{phase}}_loaded_rtt_ms, ms';
ALTER TABLE speedtest COMMENT COLUMN {{phase}}_loaded_rtt_p90_ms '{{Phase}}: 90th percentile of {{phase}}_loaded_rtt_ms, ms';
-- {{end}}
-- {{for phase in download upload}}
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_present '1 when the sv_{{phase}}_ columns hold the server per-phase TCP_INFO view';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_connections 'Server view: {{phase}} connections served';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_bytes_acked 'Server view: {{phase}} TCP_INFO bytes_acked at the end, summed over connections';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_bytes_received 'Server view: {{phase}} TCP_INFO bytes_received at the end, summed over connections';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_rtt_median_ms 'Server view: {{phase}} median TCP_INFO RTT over the phase, ms';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_rtt_p90_ms 'Server view: {{phase}} 90th percentile TCP_INFO RTT over the phase, ms';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_tcp_t_s 'Server view: {{phase}} TCP_INFO series: time since phase start, s';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_tcp_rtt_ms 'Server view: {{phase}} TCP_INFO series: mean smoothed RTT, ms';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_tcp_min_rtt_ms 'Server view: {{phase}} TCP_INFO series: minimum RTT, ms';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_tcp_delivery_rate_mbps 'Server view: {{phase}} TCP_INFO series: summed delivery rate, Mbit/s';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_tcp_bytes_acked 'Server view: {{phase}} TCP_INFO series: summed bytes_acked';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_tcp_bytes_received 'Server view: {{phase}} TCP_INFO series: summed bytes_received';
ALTER TABLE speedtest COMMENT COLUMN sv_{{phase}}_tcp_bytes_retrans 'Server view: {{phase}} TCP_INFO series: summed bytes_retrans';
-- {{end}}
