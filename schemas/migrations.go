package schemas

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
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
		stmts, err := SplitSQL(string(body))
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: name, Statements: stmts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// SplitSQL splits a script into statements at semicolons outside quotes and
// comments, dropping comments and empty statements.
func SplitSQL(script string) ([]string, error) {
	var (
		out  []string
		cur  strings.Builder
		quot byte
	)
	for i := 0; i < len(script); i++ {
		ch := script[i]
		switch {
		case quot != 0:
			cur.WriteByte(ch)
			if ch == '\\' && i+1 < len(script) {
				i++
				cur.WriteByte(script[i])
			} else if ch == quot {
				quot = 0
			}
		case ch == '\'' || ch == '`' || ch == '"':
			quot = ch
			cur.WriteByte(ch)
		case ch == '-' && i+1 < len(script) && script[i+1] == '-':
			for i < len(script) && script[i] != '\n' {
				i++
			}
			cur.WriteByte('\n')
		case ch == ';':
			if s := strings.TrimSpace(cur.String()); s != "" {
				out = append(out, s)
			}
			cur.Reset()
		default:
			cur.WriteByte(ch)
		}
	}
	if quot != 0 {
		return nil, fmt.Errorf("unterminated quote %c", quot)
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out, nil
}
