package sqltext_test

import (
	"reflect"
	"testing"

	"github.com/neubot/neubot/internal/sqltext"
)

func TestSplit(t *testing.T) {
	got, err := sqltext.Split("a 'x;y' ; b \"q;\" -- c; d\n; (e; f); 'it''s; ok' ;g `h;` ; 'back\\'s;'", ";")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a 'x;y'", "b \"q;\"", "(e; f)", "'it''s; ok'", "g `h;`", "'back\\'s;'"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	for _, bad := range []string{"'open", "'it''s", "(a", "a)"} {
		if _, err := sqltext.Split(bad, ";"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestClosing(t *testing.T) {
	s := "(a String COMMENT 'it''s (not) a ) paren', b Array(UInt8)) ENGINE = x"
	i, err := sqltext.Closing(s)
	if err != nil || s[i+1:] != " ENGINE = x" {
		t.Errorf("Closing = %d, %v: rest %q", i, err, s[i+1:])
	}
}

// A doubled quote inside a COMMENT is part of the literal: the clause goes
// whole (the cluster rewrite once left "'s comment'" behind).
func TestComments(t *testing.T) {
	bare, lits, err := sqltext.Comments("(a String COMMENT 'the volunteer''s agent', b UInt8 comment 'x', note_comment String DEFAULT 'COMMENT ''y''')")
	if err != nil {
		t.Fatal(err)
	}
	if want := "(a String , b UInt8 , note_comment String DEFAULT 'COMMENT ''y''')"; bare != want {
		t.Errorf("bare %q\nwant %q", bare, want)
	}
	if want := []string{"'the volunteer''s agent'", "'x'"}; !reflect.DeepEqual(lits, want) {
		t.Errorf("literals %q, want %q", lits, want)
	}
}

func FuzzSpans(f *testing.F) {
	f.Add("a 'b''c' -- d\n\"e\\\"\" `f`")
	f.Fuzz(func(t *testing.T, s string) {
		spans, err := sqltext.Spans(s)
		if err != nil {
			return
		}
		at := 0
		for _, sp := range spans {
			if sp.Start != at || sp.End <= sp.Start {
				t.Fatalf("%q: spans %v do not tile the text", s, spans)
			}
			at = sp.End
		}
		if at != len(s) {
			t.Fatalf("%q: spans end at %d of %d", s, at, len(s))
		}
	})
}
