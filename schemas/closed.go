package schemas

import "time"

// ClosedAfter is how long after its end (UTC) a day's public record
// closes. Agents upload late (laptops offline, data caps, spools), so a day
// stays open that long; then its dumps, measurements and figures are final
// and served as immutable. A measurement that reaches the collector later
// is stored but counts nowhere in public data. Simulated rows are exempt:
// they are never in real public data, and a demo backfills them.
const ClosedAfter = 48 * time.Hour

// OnTimeSQL is a ClickHouse condition on a measurement table's row: true
// when the row reached the collector before its day closed (or is
// synthetic). It counts in Unix seconds, so the UTC day holds whatever the
// server's time zone.
const OnTimeSQL = "(synthetic = 1 OR toUInt32(ingested_at) < intDiv(toUInt32(start_time), 86400) * 86400 + 259200)"

func init() {
	if ClosedAfter+24*time.Hour != 259200*time.Second {
		panic("schemas: OnTimeSQL does not match ClosedAfter")
	}
}
