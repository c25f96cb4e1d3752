package httpx

import "net/http"

// Mux is the project's one router: http.ServeMux, with its method and
// wildcard patterns ("GET /isp/{asn}", "GET /static/", "GET /{$}"), that
// also remembers the patterns it was given, so that a test can check that
// the documentation lists every route (publish's OpenAPI test).
type Mux struct {
	mux      http.ServeMux
	patterns []string
}

// NewMux returns an empty router.
func NewMux() *Mux { return &Mux{} }

// Handle routes pattern to h (http.ServeMux's rules).
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.mux.Handle(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

// HandleFunc routes pattern to f.
func (m *Mux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// Patterns returns the patterns routed, in the order given.
func (m *Mux) Patterns() []string { return append([]string(nil), m.patterns...) }

func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }
