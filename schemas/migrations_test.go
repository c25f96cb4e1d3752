package schemas

import (
	"strings"
	"testing"
)

// TestExpand checks the for blocks of the migrations: one variable, several,
// {{sep}}, and a value with the wrong number of parts.
func TestExpand(t *testing.T) {
	got, err := expand("CREATE TABLE t (\n" +
		"-- {{for phase,side in download,client upload,server}}\n" +
		"    {{phase}}_mbps Float64 COMMENT '{{Phase}} at the {{side}} ({{Side}})'{{sep}}\n" +
		"-- {{end}}\n" +
		");\n" +
		"-- {{for table in a b}}\n" +
		"ALTER TABLE {{table}} ADD COLUMN x UInt8;\n" +
		"-- {{end}}\n")
	want := "CREATE TABLE t (\n" +
		"    download_mbps Float64 COMMENT 'Download at the client (Client)',\n" +
		"    upload_mbps Float64 COMMENT 'Upload at the server (Server)'\n" +
		");\n" +
		"ALTER TABLE a ADD COLUMN x UInt8;\n" +
		"ALTER TABLE b ADD COLUMN x UInt8;\n"
	if err != nil || got != want {
		t.Errorf("expand:\n%s\nwant:\n%s\n(%v)", got, want, err)
	}
	_, err = expand("-- {{for phase,side in download,client upload}}\nx {{phase}}\n-- {{end}}\n")
	if err == nil || !strings.Contains(err.Error(), `"upload" has 1 parts, want 2`) {
		t.Errorf("a value without its second part: %v", err)
	}
}

// TestExpandColumns checks the columns blocks: every ADD COLUMN, then every
// COMMENT COLUMN, with a for block inside, quotes in a comment, and a line
// that is not a column.
func TestExpandColumns(t *testing.T) {
	got, err := expand("-- {{add columns to t}}\n" +
		"a UInt8 DEFAULT 0 AFTER z COMMENT 'A, the server''s'\n" +
		"-- {{for phase in download upload}}\n" +
		"{{phase}}_ms Array(Float64) COMMENT '{{Phase}}: ms'\n" +
		"-- {{end}}\n" +
		"-- {{end columns}}\n")
	want := "ALTER TABLE t ADD COLUMN a UInt8 DEFAULT 0 AFTER z;\n" +
		"ALTER TABLE t ADD COLUMN download_ms Array(Float64);\n" +
		"ALTER TABLE t ADD COLUMN upload_ms Array(Float64);\n" +
		"ALTER TABLE t COMMENT COLUMN a 'A, the server''s';\n" +
		"ALTER TABLE t COMMENT COLUMN download_ms 'Download: ms';\n" +
		"ALTER TABLE t COMMENT COLUMN upload_ms 'Upload: ms';\n"
	if err != nil || got != want {
		t.Errorf("expand:\n%s\nwant:\n%s\n(%v)", got, want, err)
	}
	_, err = expand("-- {{add columns to t}}\nb UInt8\n-- {{end columns}}\n")
	if err == nil || !strings.Contains(err.Error(), `"b UInt8" is not a column`) {
		t.Errorf("a column without its comment: %v", err)
	}
}
