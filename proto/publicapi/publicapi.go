// Package publicapi holds the paths of the public API that publish serves
// and anyone (the agent's ISP comparison among them) reads: its
// specification is publish/openapi.json, which publish serves at
// OpenAPIPath and whose test checks these paths and the reply types
// against it. The reply types stay in publish, beside their handlers,
// except Whoami, which the agent decodes too.
package publicapi

import "github.com/neubot/neubot/proto/ingest"

// Version of the API (the "info.version" of publish/openapi.json is the
// software's; this is the path prefix's).
const Version = "v1"

// Paths of the public API (all GET).
const (
	OpenAPIPath       = "/api/v1/openapi.json"
	WhoamiPath        = "/api/v1/whoami"
	DistributionsPath = "/api/v1/distributions"
	HistogramPath     = "/api/v1/histogram"
	HourlyPath        = "/api/v1/hourly"
	VerdictsPath      = "/api/v1/verdicts"
	ISPsPath          = "/api/v1/isps"
	DatasetsPath      = "/api/v1/datasets"
	// MeasurementsPath is the same path as the collector's ingest
	// endpoint (POST there), read here with GET on publish's server.
	MeasurementsPath = ingest.Path
)

// Whoami is the caller's network, as Neubot annotates measurements; the
// full address is not returned, only its truncated prefix.
type Whoami struct {
	ASN     uint32 `json:"asn"`
	Org     string `json:"org"`
	Country string `json:"country"`
	Prefix  string `json:"prefix"`
}
