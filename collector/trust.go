package collector

// What the collector trusts in a record (spec/trust.md): a row is verified,
// and only then authoritative, when its server_signature verifies against
// an enrolled test server's key and names that server; ASN, country and
// prefix come from the client address such a server observed, or else from
// the address that submitted the record, which the collector observed
// itself. The published agent identifier is a monthly pseudonym.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/neubot/neubot/internal/spool"
	"github.com/neubot/neubot/schemas"
)

// annotation derives the row's trust, pseudonym, ASN, organisation,
// country and prefix.
func (c *Collector) annotation(rec *schemas.Record, e spool.Entry) schemas.Annotation {
	a := schemas.Annotation{IngestedAt: e.Received, Pseudonym: Pseudonym(c.cfg.PseudonymSecret, rec.AgentID, rec.StartTime)}
	addr := e.Peer
	switch {
	case rec.ServerSignature == nil:
		c.metrics.verified.WithLabelValues("unsigned").Inc()
	default:
		en, err := c.records.VerifyRecord(e.Record, rec.ServerSignature)
		if err == nil && en.ID == rec.Server.ID && !rec.Server.Peer {
			a.Verified, a.ServerKey = true, rec.ServerSignature.Key
			c.metrics.verified.WithLabelValues("verified").Inc()
		} else {
			c.metrics.verified.WithLabelValues("bad_signature").Inc()
			c.log.Debug("record signature refused", "measurement_uid", rec.MeasurementUID, "server_id", rec.Server.ID, "err", err, "enrolled_as", en.ID)
		}
	}
	// Simulated records keep their invented addresses: they are never
	// published as real data, whoever sends them.
	if a.Verified || rec.Synthetic {
		addr = rec.Server.ClientAddress
	}
	if c.ipdb == nil || addr == "" {
		return a
	}
	a.DB = c.ipdb.Version()
	if ann, err := c.ipdb.LookupString(addr); err == nil {
		a.ASN, a.Org, a.Country, a.Prefix = ann.ASN, ann.Org, ann.Country, ann.Prefix
	}
	return a
}

// PseudonymPeriod is the rotation period of the published agent
// pseudonyms: the UTC calendar month of the test's start.
const PseudonymPeriod = "2006-01"

// Pseudonym is the published stand-in for agentID: the first 16 bytes of
// HMAC-SHA256(secret, agentID "|" YYYY-MM of start), in hex. Tests of one
// agent share it within a month; across months they cannot be linked
// without the secret.
func Pseudonym(secret []byte, agentID string, start time.Time) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(agentID))
	m.Write([]byte{'|'})
	m.Write([]byte(start.UTC().Format(PseudonymPeriod)))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
