package publish

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestKeyOrder: rows in either UUID order pass; a day going back, or UUIDs
// sorted under neither order, fail.
func TestKeyOrder(t *testing.T) {
	cols := []*column{{name: "start_time", dest: new(time.Time)}, {name: "measurement_uid", dest: new(uuid.UUID)}}
	day := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	feed := func(days []int, uids ...string) error {
		k := newKeyOrder(cols)
		for i, u := range uids {
			*cols[0].dest.(*time.Time) = day.AddDate(0, 0, days[i])
			*cols[1].dest.(*uuid.UUID) = uuid.MustParse(u)
			if err := k.next(); err != nil {
				return err
			}
		}
		return nil
	}
	a, b, c := "00000000-0000-0001-0000-000000000000", "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"
	for _, tc := range []struct {
		days []int
		uids []string
		ok   bool
	}{
		{[]int{0, 0, 0}, []string{a, b, c}, true},  // ClickHouse 18.16: second half first
		{[]int{0, 0, 0}, []string{b, c, a}, true},  // bytes in order
		{[]int{0, 0, 0}, []string{c, a, b}, false}, // neither
		{[]int{1, 0, 0}, []string{a, b, c}, false}, // a day back
		{[]int{0, 1, 1}, []string{c, a, b}, true},  // a new day restarts the order
	} {
		err := feed(tc.days, tc.uids...)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), "not be reproducible")) {
			t.Errorf("%v %v: %v", tc.days, tc.uids, err)
		}
	}
}
