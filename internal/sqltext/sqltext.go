// Package sqltext reads SQL text the one way the project needs everywhere:
// quoted literals ('...', "..." and `...`, with backslash escapes and a
// doubled quote inside), -- line comments, and everything else. The
// migrations' statement splitter (schemas.SplitSQL) and the cluster
// rewrite (internal/chdb) both read SQL through it, so a quote inside a
// string or a comment means the same to both.
package sqltext

import (
	"fmt"
	"regexp"
	"strings"
)

// Kind is what a Span of SQL text is.
type Kind int

const (
	Code    Kind = iota // anything outside literals and comments
	Quoted              // a quoted literal or identifier, quotes included
	Comment             // a -- comment, up to (not including) the line break
)

// Span is s[Start:End] of the text given to Spans.
type Span struct {
	Kind       Kind
	Start, End int
}

// Spans cuts s into Code, Quoted and Comment spans that follow each other
// and cover all of s. An unterminated quote is an error.
func Spans(s string) ([]Span, error) {
	var out []Span
	code := 0 // start of the current Code span
	flush := func(end int) {
		if end > code {
			out = append(out, Span{Code, code, end})
		}
	}
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '\'' || ch == '"' || ch == '`':
			j, err := endQuote(s, i)
			if err != nil {
				return nil, err
			}
			flush(i)
			out = append(out, Span{Quoted, i, j + 1})
			i, code = j, j+1
		case ch == '-' && i+1 < len(s) && s[i+1] == '-':
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				j = len(s) - i
			}
			flush(i)
			out = append(out, Span{Comment, i, i + j})
			i, code = i+j-1, i+j
		}
	}
	flush(len(s))
	return out, nil
}

// endQuote returns the index of the quote that closes the one at s[i]: a
// backslash escapes the next byte, and a doubled quote stands for one.
func endQuote(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\':
			j++
		case s[j] == q && j+1 < len(s) && s[j+1] == q:
			j++
		case s[j] == q:
			return j, nil
		}
	}
	return 0, fmt.Errorf("unterminated quote %c", q)
}

// Split cuts s at every byte of seps found in code at parenthesis depth 0
// (outside literals, comments and parentheses), and returns the pieces
// trimmed of white space, comments dropped. Unbalanced parentheses are an
// error.
func Split(s, seps string) ([]string, error) {
	spans, err := Spans(s)
	if err != nil {
		return nil, err
	}
	var (
		out   []string
		cur   strings.Builder
		depth int
	)
	for _, sp := range spans {
		switch sp.Kind {
		case Comment:
			continue
		case Quoted:
			cur.WriteString(s[sp.Start:sp.End])
			continue
		}
		for i := sp.Start; i < sp.End; i++ {
			ch := s[i]
			switch {
			case ch == '(':
				depth++
			case ch == ')':
				depth--
			case depth == 0 && strings.IndexByte(seps, ch) >= 0:
				out = append(out, strings.TrimSpace(cur.String()))
				cur.Reset()
				continue
			}
			cur.WriteByte(ch)
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced parentheses")
	}
	return append(out, strings.TrimSpace(cur.String())), nil
}

// Closing returns the index of the parenthesis that closes s[0], read
// outside literals and comments.
func Closing(s string) (int, error) {
	spans, err := Spans(s)
	if err != nil {
		return 0, err
	}
	depth := 0
	for _, sp := range spans {
		for i := sp.Start; sp.Kind == Code && i < sp.End; i++ {
			switch s[i] {
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 {
					return i, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("unbalanced parentheses")
}

// commentKW is a COMMENT keyword at the end of a code span, before the
// literal that follows it.
var commentKW = regexp.MustCompile(`(?i)(^|[^A-Za-z0-9_])COMMENT\s*$`)

// Comments finds every COMMENT '...' clause of s (the keyword in code, the
// literal right after it). It returns s without them and their literals,
// quotes included, in order.
func Comments(s string) (bare string, literals []string, err error) {
	spans, err := Spans(s)
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	for k, sp := range spans {
		text := s[sp.Start:sp.End]
		if sp.Kind == Code && k+1 < len(spans) && spans[k+1].Kind == Quoted && s[spans[k+1].Start] == '\'' {
			if m := commentKW.FindStringSubmatchIndex(text); m != nil {
				text = text[:m[3]] // keep what precedes the keyword
				spans[k+1].Kind = Comment
				literals = append(literals, s[spans[k+1].Start:spans[k+1].End])
			}
		}
		if sp.Kind != Comment {
			b.WriteString(text)
		}
	}
	return b.String(), literals, nil
}
