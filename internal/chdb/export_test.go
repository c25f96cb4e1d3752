package chdb

import (
	"context"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/schemas"
)

// MigrateClusterWith is MigrateCluster with the given migrations instead of
// the embedded ones; the migrations table must exist (MigrateCluster first).
func MigrateClusterWith(ctx context.Context, conn driver.Conn, o Options, migs []schemas.Migration) ([]int, error) {
	return migrateCluster(ctx, conn, o, o.Database, migs, nil)
}
