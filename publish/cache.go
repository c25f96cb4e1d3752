package publish

import (
	"bytes"
	"net/http"
	"sync"
	"time"
)

// cache keeps the answers of the read-only API endpoints in memory for a
// short while: a dashboard or a news article sends many readers to the same
// few URLs, and ClickHouse should see each of them once per TTL. Only 200s
// are kept, each at most maxEntryBytes, at most maxEntries of them and
// maxBytes in all (when full, expired entries go first, then everything: a
// cache, not a store).
type cache struct {
	ttl   time.Duration
	mu    sync.Mutex
	m     map[string]*cached
	bytes int
}

type cached struct {
	header  http.Header
	body    []byte
	expires time.Time
}

const (
	maxEntries    = 4096
	maxEntryBytes = 1 << 20
	maxBytes      = 64 << 20
)

func newCache(ttl time.Duration) *cache { return &cache{ttl: ttl, m: map[string]*cached{}} }

// key is the URL with its query in canonical order.
func cacheKey(r *http.Request) string { return r.URL.Path + "?" + r.URL.Query().Encode() }

func (c *cache) get(key string, now time.Time) *cached {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if e == nil || now.After(e.expires) {
		return nil
	}
	return e
}

func (c *cache) put(key string, e *cached, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxEntries || c.bytes+len(e.body) > maxBytes {
		for k, v := range c.m {
			if now.After(v.expires) {
				c.bytes -= len(v.body)
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxEntries || c.bytes+len(e.body) > maxBytes {
			clear(c.m)
			c.bytes = 0
		}
	}
	if old := c.m[key]; old != nil {
		c.bytes -= len(old.body)
	}
	c.m[key] = e
	c.bytes += len(e.body)
}

// recorder captures an answer while passing it on.
type recorder struct {
	http.ResponseWriter
	code int
	buf  bytes.Buffer
	over bool
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	if !r.over {
		if r.buf.Len()+len(p) > maxEntryBytes {
			r.over = true
			r.buf = bytes.Buffer{}
		} else {
			r.buf.Write(p)
		}
	}
	return r.ResponseWriter.Write(p)
}

// middleware serves GETs from the cache, and fills it.
func (c *cache) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c == nil || c.ttl <= 0 || r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		key, now := cacheKey(r), time.Now()
		if e := c.get(key, now); e != nil {
			for k, v := range e.header {
				w.Header()[k] = v
			}
			w.Header().Set("X-Cache", "hit")
			_, _ = w.Write(e.body)
			return
		}
		w.Header().Set("X-Cache", "miss")
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.code == http.StatusOK && !rec.over {
			h := w.Header().Clone()
			h.Del("X-Cache")
			c.put(key, &cached{header: h, body: rec.buf.Bytes(), expires: now.Add(c.ttl)}, now)
		}
	})
}
