package clock

import (
	"testing"
	"time"
)

// TestEvery: the loop ends when f says so, or when done is closed, and
// calls f once a period meanwhile.
func TestEvery(t *testing.T) {
	calls := 0
	Every(nil, time.Millisecond, func() bool { calls++; return calls < 3 })
	if calls != 3 {
		t.Fatalf("f returned false on the third call, and was called %d times", calls)
	}

	done, ended := make(chan struct{}), make(chan struct{})
	ticks := make(chan struct{}, 100)
	go func() {
		defer close(ended)
		Every(done, time.Millisecond, func() bool { ticks <- struct{}{}; return true })
	}()
	<-ticks
	<-ticks
	close(done)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("Every went on after done was closed")
	}
}
