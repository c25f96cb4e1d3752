package metrics

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/neubot/neubot/internal/httpx"
)

// maxScrape bounds what Scrape reads of one /metrics page.
const maxScrape = 4 << 20

// Scrape reads series from the Prometheus text page of the component at
// base (its /metrics). A series with labels (`name{k="v"}`) is that one
// line; a bare name is the sum of the name's unlabelled line and of all its
// labelled ones. found is false when the page has none of it. For the
// tests and the benches, which watch a component from outside.
func Scrape(base, series string) (value float64, found bool, err error) {
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, false, err
	}
	a, err := httpx.Fetch(&http.Client{Timeout: 10 * time.Second}, req, maxScrape)
	switch {
	case err != nil:
		return 0, false, fmt.Errorf("metrics: %s/metrics: %w", base, err)
	case a.Status != http.StatusOK:
		return 0, false, fmt.Errorf("metrics: %s/metrics: %s", base, a.StatusLine())
	case a.Truncated:
		return 0, false, fmt.Errorf("metrics: %s/metrics is larger than %d bytes", base, maxScrape)
	}
	return Find(bytes.NewReader(a.Body), series)
}

// Find is Scrape on a page already read.
func Find(page io.Reader, series string) (value float64, found bool, err error) {
	sc := bufio.NewScanner(page)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	labelled := strings.Contains(series, "{")
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest := splitSeries(line)
		if name != series && (labelled || !strings.HasPrefix(name, series+"{")) {
			continue
		}
		// The value, then maybe a timestamp.
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, false, fmt.Errorf("metrics: %q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, false, fmt.Errorf("metrics: %q: %w", line, err)
		}
		value, found = value+v, true
	}
	return value, found, sc.Err()
}

// splitSeries splits a sample line into its series (the name and its
// labels, whose quoted values may hold spaces, braces and escaped quotes)
// and the rest.
func splitSeries(line string) (series, rest string) {
	i := strings.IndexAny(line, " {")
	if i < 0 {
		return line, ""
	}
	if line[i] == ' ' {
		return line[:i], line[i:]
	}
	quoted := false
	for j := i + 1; j < len(line); j++ {
		switch c := line[j]; {
		case quoted && c == '\\':
			j++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return line[:j+1], line[j+1:]
		}
	}
	return line, ""
}
