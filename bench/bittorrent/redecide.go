package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/neubot/neubot/proto/bittorrent/wire"
	"github.com/neubot/neubot/proto/replay/trace"
	"github.com/neubot/neubot/schemas"
)

// redecide reads the records a run wrote with -records and decides each
// again with this build's analysis (the decision is a function of the
// record's samples and failures), printing the tally per policy: the way
// to compare decision rules on the same flows.
func redecide(files []string) error {
	want := map[string][2]string{
		policyNone: {schemas.OutcomeNone, ""}, policySNINone: {schemas.OutcomeNone, ""}, policyBytesNone: {schemas.OutcomeNone, ""},
		policyPort: {schemas.OutcomeDifferentiation, schemas.AttributionPort}, policyPayload: {schemas.OutcomeDifferentiation, schemas.AttributionPayload},
		policyHost: {schemas.OutcomeDifferentiation, schemas.AttributionHost}, policySNI: {schemas.OutcomeDifferentiation, schemas.AttributionPayload},
		policyBytes: {schemas.OutcomeDifferentiation, schemas.AttributionPort}, policyReset: {schemas.OutcomeBlocked, schemas.AttributionPayload},
	}
	type tally struct{ runs, right, diff, blocked, none, inconclusive int }
	got := map[string]*tally{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var line struct {
				Policy string          `json:"policy"`
				Record json.RawMessage `json:"record"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				f.Close()
				return fmt.Errorf("%s: %w", name, err)
			}
			rec, err := schemas.DecodeRecord(line.Record, time.Now())
			if err != nil {
				f.Close()
				return fmt.Errorf("%s: %w", name, err)
			}
			var outcome, attr string
			switch k := rec.TestKeys.(type) {
			case *schemas.BitTorrent:
				wire.Analyze(k)
				outcome, attr = k.Outcome, k.Attribution
			case *schemas.Replay:
				trace.Analyze(k)
				outcome = k.Outcome
				if outcome == schemas.OutcomeDifferentiation || outcome == schemas.OutcomeBlocked {
					attr = schemas.AttributionPayload
				}
			}
			t := got[line.Policy]
			if t == nil {
				t = &tally{}
				got[line.Policy] = t
			}
			t.runs++
			if w := want[line.Policy]; outcome == w[0] && attr == w[1] {
				t.right++
			}
			switch outcome {
			case schemas.OutcomeDifferentiation:
				t.diff++
			case schemas.OutcomeBlocked:
				t.blocked++
			case schemas.OutcomeNone:
				t.none++
			default:
				t.inconclusive++
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return err
		}
	}
	var names []string
	for p := range got {
		names = append(names, p)
	}
	sort.Strings(names)
	fmt.Printf("Decided again from the records of %s\n\n", strings.Join(files, ", "))
	fmt.Println("| policy | runs | right | differentiation | blocked | none | inconclusive |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, p := range names {
		t := got[p]
		fmt.Printf("| %s | %d | %d | %d | %d | %d | %d |\n", p, t.runs, t.right, t.diff, t.blocked, t.none, t.inconclusive)
	}
	return nil
}
