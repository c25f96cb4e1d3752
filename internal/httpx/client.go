package httpx

import (
	"bytes"
	"context"
	"encoding/json"
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
	defer resp.Body.Close()
	a := &Answer{Status: resp.StatusCode, Header: resp.Header}
	a.Body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if int64(len(a.Body)) > limit {
		a.Body, a.Truncated = a.Body[:limit], true
	}
	if err != nil {
		return a, fmt.Errorf("the answer broke off: %w", err)
	}
	return a, nil
}
