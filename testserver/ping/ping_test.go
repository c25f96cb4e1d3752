package ping

import (
	"testing"
	"time"
)

// TestSettle: the view is read after the session's echo connection ended
// (the last echo counted), however late the handler gets to it; without a
// connection at once; with one that never ends, after the bound.
func TestSettle(t *testing.T) {
	v := &view{}
	v.begin()
	go func() {
		time.Sleep(100 * time.Millisecond)
		v.mu.Lock()
		v.echoed = 5
		v.mu.Unlock()
		v.end()
	}()
	v.settle(10 * time.Second)
	v.mu.Lock()
	if v.echoed != 5 || v.running != 0 {
		t.Errorf("after settle: echoed %d, running %d; want 5, 0", v.echoed, v.running)
	}
	v.mu.Unlock()

	began := time.Now()
	v.settle(10 * time.Second)
	if d := time.Since(began); d > time.Second {
		t.Errorf("settle without a connection took %s", d)
	}

	v.begin()
	began = time.Now()
	v.settle(200 * time.Millisecond)
	if d := time.Since(began); d < 200*time.Millisecond || d > 5*time.Second {
		t.Errorf("settle with a connection that does not end took %s, want the 200 ms bound", d)
	}
	v.end()
}
