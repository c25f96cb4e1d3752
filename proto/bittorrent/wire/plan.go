package wire

import "github.com/neubot/neubot/schemas"

// Side is one flow of a duel: its kind and the index of the server address
// it goes to.
type Side struct {
	Kind string
	Host int
}

// Slot is a duel: two flows that run at the same time, in each direction
// the test runs.
type Slot [2]Side

// duels are the duels of a repetition (methodology 3): each pairs two
// kinds that differ in one factor. The payload duels (BitTorrent against
// random bytes on one port) and the port duels (BitTorrent's port against
// the neutral one, same bytes) run in every repetition; the duels of the
// web port (the neutral port against 443, same bytes) take turns between
// the two payloads.
var duels = [][][2]string{
	{{schemas.FlowBitTorrent, schemas.FlowRandom}},
	{{schemas.FlowBitTorrent, schemas.FlowNeutral}},
	{{schemas.FlowNeutral, schemas.FlowRandomNeutral}},
	{{schemas.FlowRandom, schemas.FlowRandomNeutral}},
	{{schemas.FlowNeutral, schemas.FlowWeb}, {schemas.FlowRandomNeutral, schemas.FlowRandomWeb}},
}

// Plan returns the duels of a test among kinds, reps repetitions over
// hosts server addresses, in the order run. In repetition r the duels'
// order is rotated by r and their two sides swap on odd repetitions; the
// first kind of duel t goes to address a = (r + t) mod hosts, the second
// to a + 1 + (r / hosts) mod (hosts - 1): over hosts repetitions each kind
// of a duel meets every address once, and its partner every other address
// (a throttled address slows both kinds of a duel alike, so it does not
// read as payload or port).
func Plan(kinds []string, reps, hosts int) []Slot {
	has := map[string]bool{}
	for _, k := range kinds {
		has[k] = true
	}
	var out []Slot
	for r := 0; r < reps; r++ {
		var round []Slot
		for t, alts := range duels {
			d := alts[r%len(alts)]
			if !has[d[0]] || !has[d[1]] {
				// This turn's duel is not run: another of the
				// alternatives, if any is.
				d = [2]string{}
				for _, a := range alts {
					if has[a[0]] && has[a[1]] {
						d = a
						break
					}
				}
				if d[0] == "" {
					continue
				}
			}
			sl := Slot{{d[0], 0}, {d[1], 0}}
			if hosts >= 2 {
				a := (r + t) % hosts
				sl[0].Host, sl[1].Host = a, (a+1+(r/hosts)%(hosts-1))%hosts
			}
			if r%2 == 1 {
				sl[0], sl[1] = sl[1], sl[0]
			}
			round = append(round, sl)
		}
		for i := range round {
			out = append(out, round[(i+r)%len(round)])
		}
	}
	return out
}
