// Package proto is the home of Neubot's wire protocols, one package each:
//
//   - negotiate: the slot negotiation every test starts with (spec/negotiate.md);
//   - rendezvous: test servers and peers register with the collector, agents
//     ask it for servers (spec/rendezvous.md);
//   - ingest: records posted to the collector, and Forwarder, the spooled
//     client that test servers and agents deliver through (spec/ingest.md);
//   - speedtest, ndt7, bittorrent (with bittorrent/wire, the peer-wire codec
//     and flows both ends run): the tests (spec/speedtest.md, spec/ndt7.md,
//     spec/bittorrent.md).
//
// Each package holds the paths, message types, constants and Version of its
// protocol and nothing else; the specifications stay in spec/ at the root,
// one document per package. A protocol package imports only the standard
// library, schemas (the archival record), internal/ helpers and other proto
// packages, so both ends of a protocol (agent and test server, test server
// and collector) import it without importing each other. proto_test.go
// enforces that no other package spells a path or declares a message type
// of these protocols.
package proto
