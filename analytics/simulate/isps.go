package simulate

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
)

// DefaultISPs are the ISPs of a default fleet: real access networks of
// Italy, Germany, France, the United Kingdom and the United States, each
// with a plan mix typical of its offer (legacy ADSL, VDSL/FTTC, FTTH,
// DOCSIS), a round-trip time typical of the access technology to a test
// server in the same country, and an evening rush hour. The Italian ADSL
// plans of 1, 2 and 7 Mbit/s are those whose peaks the paper that founded
// Neubot saw (Basso, Servetti, De Martin, ISCC 2011).
//
// Every ASN is in the IP database installed by scripts/setup with IPv4
// ranges registered in the ISP's country (a test checks it). The figures
// are plausible, not market data: a simulation needs a realistic shape,
// not anybody's real market share.
//
// The table is data, in default_isps.json (the JSON form of []ISP).
var DefaultISPs = mustISPs(defaultISPsJSON)

//go:embed default_isps.json
var defaultISPsJSON []byte

// mustISPs decodes an embedded table of ISPs; a malformed one is a
// programming error, caught by every test of the package.
func mustISPs(b []byte) []ISP {
	isps, err := decodeISPs(b)
	if err != nil {
		panic(err)
	}
	return isps
}

// decodeISPs decodes a JSON array of ISPs, refusing unknown fields and
// ISPs without a name, an ASN or plans.
func decodeISPs(b []byte) ([]ISP, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var isps []ISP
	if err := dec.Decode(&isps); err != nil {
		return nil, fmt.Errorf("simulate: ISPs: %w", err)
	}
	for i, isp := range isps {
		if isp.Name == "" || isp.ASN == 0 || len(isp.Plans) == 0 || isp.Agents <= 0 {
			return nil, fmt.Errorf("simulate: ISP %d (%q): name, asn, plans and agents are required", i, isp.Name)
		}
		for _, p := range isp.Plans {
			if p.Name == "" || p.DownMbps <= 0 || p.UpMbps <= 0 || p.Weight <= 0 || p.RTTms <= 0 {
				return nil, fmt.Errorf("simulate: ISP %q: plan %q: down_mbps, up_mbps, weight and rtt_ms must be positive", isp.Name, p.Name)
			}
		}
	}
	return isps, nil
}
