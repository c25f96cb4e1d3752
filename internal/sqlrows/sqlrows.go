// Package sqlrows reads the rows of a query into a slice: the one loop over
// rows of Neubot, for ClickHouse's driver (internal/chdb) and database/sql
// (the agent's SQLite store) alike. It imports no database driver.
package sqlrows

// Rows are the rows of a query: *sql.Rows and clickhouse-go's driver.Rows.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Close() error
	Err() error
}

// Append runs scan on each row of rows, got with err from a query, and
// appends the values to out; it closes rows.
func Append[T any, R Rows](out []T, rows R, err error, scan func(rows R, x *T) error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var x T
		if err := scan(rows, &x); err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}
