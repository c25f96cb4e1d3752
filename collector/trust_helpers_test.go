package collector

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/neubot/neubot/internal/identity"
)

// The collector's own tests register test servers of many IDs: each ID
// gets a fixed key, enrolled in testAllow (the allow-list every test
// collector of this package uses) when it is first signed with.
var (
	testAllow  = identity.StaticAllowList()
	testKeysMu sync.Mutex
	testKeys   = map[string]*identity.Key{}
)

func testKey(id string) *identity.Key {
	testKeysMu.Lock()
	defer testKeysMu.Unlock()
	k := testKeys[id]
	if k == nil {
		seed := sha256.Sum256([]byte("collector test " + id))
		k = identity.KeyFromSeed(seed[:])
		testKeys[id] = k
		testAllow.Add(identity.Enrolled{Key: k.PublicKey(), ID: id})
	}
	return k
}

// signRegistration signs req (a registration whose body is body) with the
// key of the ID the body names ("s1" when it names none).
func signRegistration(req *http.Request, body []byte) {
	var reg struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &reg)
	if reg.ID == "" {
		reg.ID = "s1"
	}
	testKey(reg.ID).SignRequest(req, body, time.Now())
}
