package metrics

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxScrape bounds what Scrape reads of one /metrics page.
const maxScrape = 4 << 20

// Scrape reads series from the Prometheus text page of the component at
// base (its /metrics). A series with labels (`name{k="v"}`) is that one
// line; a bare name is the sum of the name's unlabelled line and of all its
// labelled ones. found is false when the page has none of it. For the
// tests and the benches, which watch a component from outside.
func Scrape(base, series string) (value float64, found bool, err error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("metrics: %s/metrics: %s", base, resp.Status)
	}
	return Find(io.LimitReader(resp.Body, maxScrape), series)
}

// Find is Scrape on a page already read.
func Find(page io.Reader, series string) (value float64, found bool, err error) {
	sc := bufio.NewScanner(page)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	labelled := strings.Contains(series, "{")
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:i]
		if name != series && (labelled || !strings.HasPrefix(name, series+"{")) {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return 0, false, fmt.Errorf("metrics: %q: %w", line, err)
		}
		value, found = value+v, true
	}
	return value, found, sc.Err()
}
