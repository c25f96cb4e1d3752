package schemas

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/neubot/neubot/internal/sqltext"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one numbered .sql file of migrations/. Its statements are
// applied in order, once, and recorded by the migrator.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

// measurementColumns is what a migration writes as {{measurement_columns}}:
// the envelope and annotation columns that begin every measurement table,
// as migration 0001 declared them (server_peer came with migration 0005,
// after server_version), in the order of EnvelopeColumns and
// AnnotationColumns.
const measurementColumns = `measurement_uid UUID COMMENT 'Random UUID made by the agent at test start; idempotency key end to end',
    agent_id UUID COMMENT 'Random UUID made once at install by the agent',
    test_version String COMMENT 'Methodology version of the test',
    schema_version UInt16 COMMENT 'Version of the record layout',
    start_time DateTime COMMENT 'When the test started, UTC',
    duration_s Float64 COMMENT 'Wall time of the whole test, seconds',
    agent_software String COMMENT 'Client software name',
    agent_version String COMMENT 'Client software version',
    agent_os String COMMENT 'Client operating system (GOOS)',
    agent_arch String COMMENT 'Client CPU architecture (GOARCH)',
    server_id String COMMENT 'Test server identifier from the rendezvous',
    server_version String COMMENT 'Test server software version',
    consent_informed UInt8 COMMENT '1 when the volunteer was informed',
    consent_can_collect UInt8 COMMENT '1 when the volunteer allows collection',
    consent_can_publish UInt8 COMMENT '1 when the volunteer allows publication; 0 rows are never published',
    synthetic UInt8 COMMENT '1 for simulated records; never in a real public dump',
    client_asn UInt32 COMMENT 'Autonomous system of the client address (0 unknown)',
    client_org String COMMENT 'Organisation of the client AS',
    client_country String COMMENT 'ISO 3166-1 alpha-2 country of the client address (empty unknown)',
    client_prefix String COMMENT 'Client address truncated to /24 (IPv4) or /48 (IPv6); the full address is never stored',
    annotation_db String COMMENT 'Version of the IP-to-ASN and country databases used',
    authority UInt8 COMMENT '1 when the record carries the server merged view; the highest wins on merge',
    ingested_at DateTime COMMENT 'When the collector received the record, UTC'`

// forRE is a block of a migration written once per value:
//
//	-- {{for phase in download upload}}
//	ALTER TABLE t ADD COLUMN {{phase}}_bytes UInt64;
//	ALTER TABLE t COMMENT COLUMN {{phase}}_bytes '{{Phase}}: bytes';
//	-- {{end}}
//
// {{Phase}} is the value with its first letter in upper case. A block may
// name several variables, given together in each value:
// "-- {{for phase,side in download,client upload,server}}". {{sep}} is a
// comma in every copy but the last (the last column of a CREATE TABLE).
var forRE = regexp.MustCompile(`(?ms)^-- \{\{for ([\w,]+) in ([\w, ]+)\}\}\n(.*?)^-- \{\{end\}\}\n`)

// columnsRE is a block of columns added to a table, each written once as
// in a CREATE TABLE (name, type, COMMENT), without the comma:
//
//	-- {{add columns to t}}
//	x_bytes UInt64 DEFAULT 0 COMMENT 'X: bytes'
//	-- {{end columns}}
//
// It is written as an ADD COLUMN statement per column, then a COMMENT
// COLUMN statement per column (ClickHouse 18.16 ignores COMMENT inside ADD
// COLUMN). For blocks inside it are written out first.
var columnsRE = regexp.MustCompile(`(?ms)^-- \{\{add columns to (\w+)\}\}\n(.*?)^-- \{\{end columns\}\}\n`)

// columnRE is one column of a columns block.
var columnRE = regexp.MustCompile(`^(\w+) (.+?) COMMENT ('(?:[^']|'')*')$`)

// expand writes out a migration's templates: {{measurement_columns}}, the
// for blocks and the columns blocks.
func expand(body string) (string, error) {
	var bad error
	body = forRE.ReplaceAllStringFunc(body, func(block string) string {
		m := forRE.FindStringSubmatch(block)
		names, text := strings.Split(m[1], ","), m[3]
		var b strings.Builder
		values := strings.Fields(m[2])
		for j, v := range values {
			vals := strings.Split(v, ",")
			if len(vals) != len(names) {
				bad = fmt.Errorf("for %s: value %q has %d parts, want %d", m[1], v, len(vals), len(names))
				return block
			}
			pairs := []string{"{{sep}}", ","}
			if j == len(values)-1 {
				pairs[1] = ""
			}
			for i, name := range names {
				pairs = append(pairs, "{{"+name+"}}", vals[i], "{{"+upperFirst(name)+"}}", upperFirst(vals[i]))
			}
			b.WriteString(strings.NewReplacer(pairs...).Replace(text))
		}
		return b.String()
	})
	body = columnsRE.ReplaceAllStringFunc(body, func(block string) string {
		m := columnsRE.FindStringSubmatch(block)
		var add, comment strings.Builder
		for _, line := range strings.Split(strings.TrimSuffix(m[2], "\n"), "\n") {
			c := columnRE.FindStringSubmatch(line)
			if c == nil {
				bad = fmt.Errorf("add columns to %s: %.60q is not a column (name type COMMENT 'text')", m[1], line)
				return block
			}
			fmt.Fprintf(&add, "ALTER TABLE %s ADD COLUMN %s %s;\n", m[1], c[1], c[2])
			fmt.Fprintf(&comment, "ALTER TABLE %s COMMENT COLUMN %s %s;\n", m[1], c[1], c[3])
		}
		return add.String() + comment.String()
	})
	return strings.ReplaceAll(body, "{{measurement_columns}}", measurementColumns), bad
}

// upperFirst is s with its first letter in upper case.
func upperFirst(s string) string {
	return strings.ToUpper(s[:1]) + s[1:]
}

// Migrations returns the embedded migrations sorted by version. File names
// are NNNN_name.sql; numbers are unique and start at 1.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", e.Name())
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share number %d", prev, e.Name(), v)
		}
		seen[v] = e.Name()
		body, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		sql, err := expand(string(body))
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		if i := strings.Index(sql, "{{"); i >= 0 {
			return nil, fmt.Errorf("migration %s: unknown template %.40q", e.Name(), sql[i:])
		}
		stmts, err := SplitSQL(sql)
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: name, Statements: stmts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// SplitSQL splits a script into statements at semicolons outside quotes and
// comments (internal/sqltext), dropping comments and empty statements.
func SplitSQL(script string) ([]string, error) {
	parts, err := sqltext.Split(script, ";")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}
