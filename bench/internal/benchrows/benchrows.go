// Package benchrows generates measurements inside ClickHouse for the
// benchmark programs: deterministic hashes of the row number give 10 ISPs,
// 833,333 agents and plan speeds from 1 to 1000 Mbit/s, so every run of a
// benchmark measures the same rows.
package benchrows

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/internal/localch"
)

// SQL fills the speedtest table with n rows of one day (YYYY-MM-DD),
// marked synthetic or not.
func SQL(n int, day string, synthetic bool) string {
	syn := "toUInt8(0)"
	if synthetic {
		syn = "toUInt8(1)"
	}
	h := func(salt int) string { return fmt.Sprintf("cityHash64(number, %d)", salt) }
	// 16 hex digits of a UInt64 (hex of a number drops leading zeros; of a
	// FixedString(8) it does not).
	hex16 := func(x string) string { return fmt.Sprintf("lower(hex(toFixedString(reinterpretAsString(%s), 8)))", x) }
	uuid := func(a, b string) string {
		return fmt.Sprintf("toUUID(concat(substring(%[1]s, 1, 8), '-', substring(%[1]s, 9, 4), '-4', substring(%[1]s, 14, 3), '-8', substring(%[2]s, 2, 3), '-', substring(%[2]s, 5, 12)))", hex16(a), hex16(b))
	}
	plan := "[1., 2., 7., 20., 30., 100., 200., 1000.][1 + " + h(3) + " % 8]"
	down := fmt.Sprintf("round(%s * (0.90 + (%s %% 700) / 10000.), 3)", plan, h(4))
	cols := map[string]string{
		"measurement_uid":        uuid(h(1), h(2)),
		"agent_id":               uuid("cityHash64(number % 833333, 10)", "cityHash64(number % 833333, 11)"),
		"agent_pseudonym":        "concat(" + hex16("cityHash64(number % 833333, 13)") + ", " + hex16("cityHash64(number % 833333, 14)") + ")",
		"test_version":           "'1'",
		"schema_version":         "toUInt16(1)",
		"start_time":             fmt.Sprintf("toDateTime('%s 00:00:00') + toUInt32(%s %% 86400)", day, h(5)),
		"duration_s":             "7.",
		"agent_software":         "'neubot'",
		"agent_version":          "'0.1.0'",
		"agent_os":               "'linux'",
		"agent_arch":             "'amd64'",
		"server_id":              "'bench'",
		"server_version":         "'0.1.0'",
		"consent_informed":       "toUInt8(1)",
		"consent_can_collect":    "toUInt8(1)",
		"consent_can_publish":    "toUInt8(1)",
		"synthetic":              syn,
		"client_asn":             "[toUInt32(3269), 12874, 30722, 1267, 3320, 3215, 7922, 12322, 2856, 5089][1 + cityHash64(number % 833333, 12) % 10]",
		"client_org":             "'bench ISP'",
		"client_country":         "'IT'",
		"client_prefix":          "'192.0.2.0/24'",
		"annotation_db":          "'bench'",
		"authority":              "toUInt8(1)",
		"ingested_at":            fmt.Sprintf("toDateTime('%s 00:00:00') + toUInt32(%s %% 86400) + 600", day, h(5)), // on time
		"connect_ms":             "[12.5, 13.1]",
		"rtt_ms":                 "[11., 12., 13.]",
		"rtt_median_ms":          fmt.Sprintf("toFloat64(5 + %s %% 150)", h(6)),
		"download_mbps":          down,
		"download_bytes":         "toUInt64(10000000)",
		"download_duration_s":    "3.",
		"download_connections":   "toUInt8(2)",
		"download_samples_t_s":   "[0.25, 0.5]",
		"download_samples_bytes": "[toUInt64(1000), 2000]",
		"download_samples_mbps":  "[1., 2.]",
		"upload_mbps":            "round(" + down + " / 4, 3)",
		"upload_bytes":           "toUInt64(2500000)",
		"upload_duration_s":      "3.",
		"upload_connections":     "toUInt8(2)",
		"upload_samples_t_s":     "[0.25, 0.5]",
		"upload_samples_bytes":   "[toUInt64(1000), 2000]",
		"upload_samples_mbps":    "[1., 2.]",
		"server_view":            "toUInt8(1)",
		"sv_bytes_sent":          "toUInt64(10000000)",
		"sv_bytes_received":      "toUInt64(2500000)",
		"sv_download_duration_s": "3.",
		"sv_upload_duration_s":   "3.",
		"sv_upload_mbps":         "1.",
		"sv_tcp_rtt_ms":          "toNullable(10.)",
		"sv_tcp_rttvar_ms":       "toNullable(1.)",
		"sv_tcp_retransmits":     "toNullable(toUInt64(0))",
	}
	var names, exprs []string
	for k := range cols {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		exprs = append(exprs, cols[k])
	}
	return fmt.Sprintf("INSERT INTO speedtest (%s) SELECT %s FROM system.numbers LIMIT %d", strings.Join(names, ", "), strings.Join(exprs, ", "), n)
}

// Server is a benchmark's own ClickHouse: data in Dir (a temporary
// directory the benchmark may also use, or one it keeps), database
// "bench", migrations applied.
type Server struct {
	Dir  string
	CH   *localch.Server
	Conn driver.Conn
	keep bool
}

// Start starts and connects to a benchmark's ClickHouse, with maxMemory
// per query, in a temporary directory that Stop removes.
func Start(ctx context.Context, name string, maxMemory int64) (*Server, error) {
	dir, err := os.MkdirTemp("", "neubot-bench-"+name+"-")
	if err != nil {
		return nil, err
	}
	return start(ctx, dir, false, maxMemory)
}

// StartIn is Start in dir, which Stop keeps: its rows outlive the run, so
// that a benchmark can generate them once and measure many times.
func StartIn(ctx context.Context, dir string, maxMemory int64) (*Server, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	return start(ctx, dir, true, maxMemory)
}

func start(ctx context.Context, dir string, keep bool, maxMemory int64) (*Server, error) {
	s := &Server{Dir: dir, keep: keep}
	cleanup := func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}
	var err error
	if s.CH, err = localch.Start(ctx, localch.Config{Dir: filepath.Join(dir, "clickhouse"), Database: "bench", MaxMemoryBytes: maxMemory}); err != nil {
		cleanup()
		return nil, err
	}
	if s.Conn, err = s.CH.Connect(ctx); err != nil {
		s.CH.Stop()
		cleanup()
		return nil, err
	}
	return s, nil
}

// Stop closes the connection, stops ClickHouse and removes Dir unless the
// server was started by StartIn.
func (s *Server) Stop() {
	s.Conn.Close()
	s.CH.Stop()
	if !s.keep {
		os.RemoveAll(s.Dir)
	}
}
