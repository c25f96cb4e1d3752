package schemas

import (
	"strings"
	"testing"
)

// TestExpand checks the templates of the migrations: for blocks (one
// variable, several, {{sep}}, a value with the wrong number of parts) and
// columns blocks (every ADD COLUMN, then every COMMENT COLUMN, with a for
// block inside and quotes in a comment; a line that is not a column).
func TestExpand(t *testing.T) {
	for _, c := range []struct{ name, in, want, err string }{
		{name: "for blocks",
			in: "CREATE TABLE t (\n" +
				"-- {{for phase,side in download,client upload,server}}\n" +
				"    {{phase}}_mbps Float64 COMMENT '{{Phase}} at the {{side}} ({{Side}})'{{sep}}\n" +
				"-- {{end}}\n" +
				");\n" +
				"-- {{for table in a b}}\n" +
				"ALTER TABLE {{table}} ADD COLUMN x UInt8;\n" +
				"-- {{end}}\n",
			want: "CREATE TABLE t (\n" +
				"    download_mbps Float64 COMMENT 'Download at the client (Client)',\n" +
				"    upload_mbps Float64 COMMENT 'Upload at the server (Server)'\n" +
				");\n" +
				"ALTER TABLE a ADD COLUMN x UInt8;\n" +
				"ALTER TABLE b ADD COLUMN x UInt8;\n"},
		{name: "a value without its second part",
			in:  "-- {{for phase,side in download,client upload}}\nx {{phase}}\n-- {{end}}\n",
			err: `"upload" has 1 parts, want 2`},
		{name: "columns block",
			in: "-- {{add columns to t}}\n" +
				"a UInt8 DEFAULT 0 AFTER z COMMENT 'A, the server''s'\n" +
				"-- {{for phase in download upload}}\n" +
				"{{phase}}_ms Array(Float64) COMMENT '{{Phase}}: ms'\n" +
				"-- {{end}}\n" +
				"-- {{end columns}}\n",
			want: "ALTER TABLE t ADD COLUMN a UInt8 DEFAULT 0 AFTER z;\n" +
				"ALTER TABLE t ADD COLUMN download_ms Array(Float64);\n" +
				"ALTER TABLE t ADD COLUMN upload_ms Array(Float64);\n" +
				"ALTER TABLE t COMMENT COLUMN a 'A, the server''s';\n" +
				"ALTER TABLE t COMMENT COLUMN download_ms 'Download: ms';\n" +
				"ALTER TABLE t COMMENT COLUMN upload_ms 'Upload: ms';\n"},
		{name: "a column without its comment",
			in:  "-- {{add columns to t}}\nb UInt8\n-- {{end columns}}\n",
			err: `"b UInt8" is not a column`},
	} {
		got, err := expand(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one with %q", c.name, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%s: expand:\n%s\nwant:\n%s\n(%v)", c.name, got, c.want, err)
		}
	}
}
