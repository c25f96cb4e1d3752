package agent

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	_ "modernc.org/sqlite" // pure Go SQLite: no cgo in what volunteers install

	"github.com/neubot/neubot/internal/sqlrows"
	"github.com/neubot/neubot/schemas"
)

// Store keeps every result locally, with the server's authoritative record,
// in SQLite (results.db in the state directory).
type Store struct {
	db *sql.DB
}

// Result is one row of the history, as the API shows it.
type Result struct {
	MeasurementUID string    `json:"measurement_uid"`
	Test           string    `json:"test"`
	StartTime      time.Time `json:"start_time"`
	DownloadMbps   float64   `json:"download_mbps"`
	UploadMbps     float64   `json:"upload_mbps"`
	RTTMS          float64   `json:"rtt_ms"`
	Bytes          int64     `json:"bytes"`
	ServerID       string    `json:"server_id"`
	// Peer is true for a test against another volunteer's agent.
	Peer     bool `json:"peer"`
	Uploaded bool `json:"uploaded"`
}

const storeSchema = `
CREATE TABLE IF NOT EXISTS results (
	measurement_uid TEXT PRIMARY KEY,
	test            TEXT NOT NULL,
	start_time      INTEGER NOT NULL, -- Unix seconds, UTC
	download_mbps   REAL NOT NULL,
	upload_mbps     REAL NOT NULL,
	rtt_ms          REAL NOT NULL,
	bytes           INTEGER NOT NULL,
	server_id       TEXT NOT NULL,
	uploaded        INTEGER NOT NULL DEFAULT 0,
	record          TEXT NOT NULL     -- the server's authoritative record, JSON
);
CREATE INDEX IF NOT EXISTS results_start ON results (start_time);
`

// OpenStore opens (creating) the database at path.
func OpenStore(path string) (*Store, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(storeSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// summary extracts the headline numbers of a record.
func summary(rec *schemas.Record) Result {
	r := Result{MeasurementUID: rec.MeasurementUID, Test: rec.TestName, StartTime: rec.StartTime.UTC(), ServerID: rec.Server.ID}
	if k, ok := rec.TestKeys.(schemas.Headliner); ok {
		h := k.Headline()
		r.DownloadMbps, r.UploadMbps, r.RTTMS, r.Bytes = h.DownloadMbps, h.UploadMbps, h.RTTMS, h.Bytes
	}
	return r
}

// Add stores a record (once: the same measurement_uid again is ignored).
func (s *Store) Add(ctx context.Context, rec *schemas.Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	r := summary(rec)
	_, err = s.db.ExecContext(ctx, `INSERT OR IGNORE INTO results
		(measurement_uid, test, start_time, download_mbps, upload_mbps, rtt_ms, bytes, server_id, record)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.MeasurementUID, r.Test, r.StartTime.Unix(), r.DownloadMbps, r.UploadMbps, r.RTTMS, r.Bytes, r.ServerID, string(b))
	return err
}

// MarkUploaded notes that the collector accepted these measurements.
func (s *Store) MarkUploaded(ctx context.Context, uids []string) error {
	for _, u := range uids {
		if _, err := s.db.ExecContext(ctx, `UPDATE results SET uploaded = 1 WHERE measurement_uid = ?`, u); err != nil {
			return err
		}
	}
	return nil
}

// Results returns the newest results first.
func (s *Store) Results(ctx context.Context, limit int) ([]Result, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT measurement_uid, test, start_time, download_mbps, upload_mbps,
		rtt_ms, bytes, server_id, uploaded FROM results ORDER BY start_time DESC, measurement_uid LIMIT ?`, limit)
	return sqlrows.Append([]Result{}, rows, err, func(rows *sql.Rows, r *Result) error {
		var ts int64
		if err := rows.Scan(&r.MeasurementUID, &r.Test, &ts, &r.DownloadMbps, &r.UploadMbps, &r.RTTMS, &r.Bytes, &r.ServerID, &r.Uploaded); err != nil {
			return err
		}
		r.StartTime = time.Unix(ts, 0).UTC()
		r.Peer = r.ServerID == schemas.PeerServerID
		return nil
	})
}

// Record returns the stored authoritative record of a measurement.
func (s *Store) Record(ctx context.Context, uid string) (*schemas.Record, error) {
	var b string
	if err := s.db.QueryRowContext(ctx, `SELECT record FROM results WHERE measurement_uid = ?`, uid).Scan(&b); err != nil {
		return nil, err
	}
	return schemas.DecodeRecord([]byte(b), time.Now())
}

// Usage is data used in a period.
type Usage struct {
	Period string `json:"-"`
	Day    string `json:"day,omitempty"`
	Month  string `json:"month,omitempty"`
	Bytes  int64  `json:"bytes"`
}

// UsageBy sums bytes per day ("%Y-%m-%d") or month ("%Y-%m") since since.
func (s *Store) UsageBy(ctx context.Context, format string, since time.Time) ([]Usage, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT strftime(?, start_time, 'unixepoch') AS p, SUM(bytes)
		FROM results WHERE start_time >= ? GROUP BY p ORDER BY p`, format, since.Unix())
	return sqlrows.Append([]Usage{}, rows, err, func(rows *sql.Rows, u *Usage) error {
		return rows.Scan(&u.Period, &u.Bytes)
	})
}

// BytesSince sums the bytes of tests started since t.
func (s *Store) BytesSince(ctx context.Context, t time.Time) (int64, error) {
	var n sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT SUM(bytes) FROM results WHERE start_time >= ?`, t.Unix()).Scan(&n)
	return n.Int64, err
}

// Prune deletes results older than the retention.
func (s *Store) Prune(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM results WHERE start_time < ?`, before.Unix())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
