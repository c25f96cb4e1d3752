package testserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/proto/negotiate"
	"github.com/neubot/neubot/schemas"
)

// The end of every test's session is the same: the client posts its record
// to the test's collect endpoint with its token, the provider merges its
// own view into it, and the authoritative record is validated, spooled for
// the collector and sent back, which ends the session. A provider's collect
// handler is Collected, its own merging, then Deliver.

// Fail answers a refused request with the JSON error body that every test
// protocol uses, {"error": "..."}.
func Fail(w http.ResponseWriter, code int, format string, args ...any) {
	httpx.WriteJSON(w, code, negotiate.Error{Error: fmt.Sprintf(format, args...)})
}

// Collected authorizes a collect request of test (see AuthorizeTest) and
// decodes the record it posts (at most max bytes, valid, of the negotiated
// measurement_uid when the negotiation named one). On a problem it answers
// the client and returns nils.
func (n *Negotiator) Collected(w http.ResponseWriter, r *http.Request, test Test, max int64) (*Session, *schemas.Record) {
	s, err := n.AuthorizeTest(r, test)
	if err != nil {
		Fail(w, StatusOf(err), "%v", err)
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			Fail(w, http.StatusRequestEntityTooLarge, "record over %d bytes", max)
		} else {
			Fail(w, http.StatusBadRequest, "cannot read the record: %v", err)
		}
		return nil, nil
	}
	rec, err := schemas.DecodeRecord(bytes.TrimSpace(body), time.Now())
	if err != nil {
		Fail(w, http.StatusBadRequest, "%v", err)
		return nil, nil
	}
	if s.MeasurementUID != "" && rec.MeasurementUID != s.MeasurementUID {
		Fail(w, http.StatusBadRequest, "measurement_uid %s is not the one negotiated (%s)", rec.MeasurementUID, s.MeasurementUID)
		return nil, nil
	}
	return s, rec
}

// Deliver validates rec, the record merged with the server's view, hands
// it to forward (which must make it durable), ends session s and answers
// r with the record (gzip'ed when r accepts it: httpx.WriteJSONFor).
func (n *Negotiator) Deliver(w http.ResponseWriter, r *http.Request, s *Session, rec *schemas.Record, forward func(*schemas.Record) error, log *slog.Logger) {
	if err := rec.Validate(time.Now()); err != nil {
		Fail(w, http.StatusBadRequest, "merged record: %v", err)
		return
	}
	if forward != nil {
		if err := forward(rec); err != nil {
			log.Error("cannot spool a record for the collector", "err", err, "measurement_uid", rec.MeasurementUID)
			Fail(w, http.StatusServiceUnavailable, "cannot store the record now")
			return
		}
	}
	n.Release(s)
	httpx.WriteJSONFor(w, r, http.StatusOK, rec)
}
