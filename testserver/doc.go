// Package testserver is the generic part of a Neubot test server: the
// negotiator (tokens, FIFO queue with long polling, per-test timer, rate
// limit per client address), the forwarder that delivers authoritative
// records to the collector through a spool, and the registrar that keeps the
// server listed in the collector's rendezvous. The providers of each test
// live in their own sub-packages (testserver/speedtest) and package service
// assembles them.
package testserver
