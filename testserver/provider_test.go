package testserver

import (
	"errors"
	"net/http"
	"testing"

	"github.com/neubot/neubot/schemas"
)

// TestKeysOf: a provider's Merge takes the keys of its own test and refuses
// another test's record with a 400 that names the tests its path takes.
func TestKeysOf(t *testing.T) {
	rec := &schemas.Record{TestKeys: &schemas.Speedtest{}}
	if k, err := KeysOf[*schemas.Speedtest](rec, schemas.SpeedtestName); err != nil || k != rec.TestKeys {
		t.Fatalf("own test: %v %v", k, err)
	}
	_, err := KeysOf[*schemas.NDT7](rec, schemas.NDT7Name, schemas.NDT7BrowserName)
	var r *Refusal
	if !errors.As(err, &r) || r.Status != http.StatusBadRequest || r.Msg != "test_name must be ndt7 or ndt7-browser" {
		t.Fatalf("another test's record: %v", err)
	}
}
