package schemas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// TestFailureTags: every failure field of every record accepts exactly the
// vocabulary, so that FailureOf's words always validate.
func TestFailureTags(t *testing.T) {
	want := "enum=" + strings.Join(Failures, "|")
	n := 0
	for _, typ := range []reflect.Type{reflect.TypeOf(Speedtest{}), reflect.TypeOf(SpeedtestPhase{}), reflect.TypeOf(NDT7Subtest{}), reflect.TypeOf(NDT7ServerSubtest{})} {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if f.Name != "Failure" {
				continue
			}
			n++
			if tag := f.Tag.Get("v"); tag != want {
				t.Errorf("%s.Failure: v:%q, want %q", typ.Name(), tag, want)
			}
		}
	}
	if n != 4 {
		t.Fatalf("found %d failure fields, want 4", n)
	}
}

func TestFailureOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fmt.Errorf("x: %w", ErrStalled), FailureStalled},
		{fmt.Errorf("x: %w", ErrRefused), FailureRefused},
		{&net.DNSError{Err: "no such host", Name: "example.invalid", IsNotFound: true}, FailureDNS},
		{context.DeadlineExceeded, FailureTimeout},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), FailureConnectionReset},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), FailureConnectionRefused},
		{io.ErrUnexpectedEOF, FailureEOF},
		{errors.New("192.0.2.7:443: something"), FailureOther},
	} {
		if got := FailureOf(c.err); got != c.want {
			t.Errorf("FailureOf(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
