package httpx

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Answer is what a request made by Fetch got back: the status, the headers
// and the body, read up to a bound.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
	// Truncated says the body went on beyond the bound; Body holds its
	// first bytes only.
	Truncated bool
}

// StatusLine is the answer's status as net/http writes it ("404 Not Found").
func (a *Answer) StatusLine() string {
	return strconv.Itoa(a.Status) + " " + http.StatusText(a.Status)
}

// ErrorText is the message of a refusal: the "error" member of a JSON
// answer, or else the body's text.
func (a *Answer) ErrorText() string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(a.Body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(a.Body))
}

// NewJSONRequest makes a request of method to url whose body is in encoded
// as JSON; it returns the body too (for signatures).
func NewJSONRequest(ctx context.Context, method, url string, in any) (*http.Request, []byte, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, nil, fmt.Errorf("encode the request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, body, nil
}

// Fetch sends req with client and reads at most limit bytes of the answer's
// body, then closes it: the one HTTP exchange of Neubot's clients, which
// judge the status themselves. When the server cannot be reached the
// answer is nil; when its body breaks off, the answer holds the status,
// headers and what came, and the error says why.
func Fetch(client *http.Client, req *http.Request, limit int64) (*Answer, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	return Read(resp, limit)
}

// Read reads at most limit bytes of resp's body and closes it, as Fetch
// does: for a response that came another way (a refused WebSocket
// handshake).
//
// A body the server gzip'ed (Content-Encoding: gzip, asked for with
// Accept-Encoding on a client whose transport does not decode it: see
// WriteJSONFor) is decoded, and limit bounds what it decodes to.
func Read(resp *http.Response, limit int64) (*Answer, error) {
	defer resp.Body.Close()
	a := &Answer{Status: resp.StatusCode, Header: resp.Header}
	var body io.Reader = resp.Body
	if !resp.Uncompressed && strings.EqualFold(strings.TrimSpace(resp.Header.Get("Content-Encoding")), "gzip") {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return a, fmt.Errorf("the answer's gzip is broken: %w", err)
		}
		defer zr.Close()
		body = zr
		resp.Header.Del("Content-Encoding")
	}
	var err error
	a.Body, err = io.ReadAll(io.LimitReader(body, limit+1))
	if int64(len(a.Body)) > limit {
		a.Body, a.Truncated = a.Body[:limit], true
	}
	if err != nil {
		return a, fmt.Errorf("the answer broke off: %w", err)
	}
	return a, nil
}

// FetchJSON is Fetch for an exchange whose answer is JSON: the body of a
// 200 OK answer is decoded into out. The answer is nil when the server
// could not be reached; another status is a *StatusError, returned with
// the answer (whose refusal the caller may read); a body that broke off or
// is not JSON of out's type is an error (ErrNotJSON for the latter).
func FetchJSON(client *http.Client, req *http.Request, limit int64, out any) (*Answer, error) {
	a, err := Fetch(client, req, limit)
	switch {
	case err != nil:
		return a, err
	case a.Status != http.StatusOK:
		return a, &StatusError{URL: req.URL.String(), Answer: a}
	}
	if err := json.Unmarshal(a.Body, out); err != nil {
		return a, fmt.Errorf("%w: %w", ErrNotJSON, err)
	}
	return a, nil
}

// ErrNotJSON is the error of FetchJSON for an answer that is not JSON of
// the type asked for.
var ErrNotJSON = errors.New("not the JSON answer expected")

// StatusError is the error of FetchJSON for an answer other than 200 OK.
type StatusError struct {
	URL    string
	Answer *Answer
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s answered %s", e.URL, e.Answer.StatusLine())
}

// RetryAfter is the wait the answer's Retry-After header asks for, in
// seconds; 0 when it asks for none (absent, not a positive number of
// seconds).
func (a *Answer) RetryAfter() int {
	s, err := strconv.Atoi(a.Header.Get("Retry-After"))
	if err != nil || s < 0 {
		return 0
	}
	return s
}
