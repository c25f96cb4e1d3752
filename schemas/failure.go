package schemas

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
)

// What ended a transfer early, in a record: a fixed vocabulary, never an
// error's text, which can carry addresses and ports ("write tcp
// 192.0.2.7:443->198.51.100.9:51234: broken pipe") that must not reach
// public data.
const (
	FailureTimeout           = "timeout"
	FailureConnectionReset   = "connection_reset"
	FailureConnectionRefused = "connection_refused"
	FailureEOF               = "eof"
	FailureClosedAbnormally  = "closed_abnormally"
	FailureCanceled          = "canceled"
	FailureProtocol          = "protocol_violation"
	FailureOther             = "other"
	// Added with schema version 3 (the speedtest's failure records).
	FailureDNS     = "dns_lookup_failed"
	FailureStalled = "stalled"
	FailureRefused = "server_refused"
)

// Failures is the whole vocabulary, "" (no failure) first. The v:"enum"
// tags of failure fields list the same words (a test checks it).
var Failures = []string{"", FailureTimeout, FailureConnectionReset, FailureConnectionRefused, FailureEOF,
	FailureClosedAbnormally, FailureCanceled, FailureProtocol, FailureOther, FailureDNS, FailureStalled, FailureRefused}

// ErrProtocol marks an error of a peer that broke the test's protocol.
var ErrProtocol = errors.New("protocol violation")

// ErrRefused marks a test server's refusal of a test request (an HTTP error
// status: no slot, unknown token, busy).
var ErrRefused = errors.New("refused by the test server")

// ErrStalled marks a transfer that moved no byte for too long while its
// connections stayed open.
var ErrStalled = errors.New("transfer stalled")

// FailureOf is err's word in the vocabulary; "" for nil. Callers map the
// errors of their own protocol (e.g. a WebSocket close) before calling it.
func FailureOf(err error) string {
	var (
		ne  net.Error
		dns *net.DNSError
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrStalled):
		return FailureStalled
	case errors.Is(err, ErrRefused):
		return FailureRefused
	case errors.Is(err, ErrProtocol):
		return FailureProtocol
	case errors.As(err, &dns):
		return FailureDNS
	case errors.Is(err, context.Canceled):
		return FailureCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return FailureTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return FailureConnectionReset
	case errors.Is(err, syscall.ECONNREFUSED):
		return FailureConnectionRefused
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return FailureEOF
	}
	return FailureOther
}

// failures is the vocabulary, for Failure.
var failures = map[string]bool{"": true, FailureTimeout: true, FailureConnectionReset: true, FailureConnectionRefused: true,
	FailureEOF: true, FailureClosedAbnormally: true, FailureCanceled: true, FailureProtocol: true, FailureOther: true}

// Failure is s if it is a word of the vocabulary (or empty), else
// FailureOther: what an older agent wrote as an error's text never reaches
// a column.
func Failure(s string) string {
	if failures[s] {
		return s
	}
	return FailureOther
}
