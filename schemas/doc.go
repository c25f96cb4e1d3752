// Package schemas is Neubot's data contract: the record every test produces,
// the rules that validate it, the JSON Schema documents published for it and
// the ClickHouse migrations that store it.
//
// Everything else (agent, test servers, collector, analytics, publish) imports
// this package; it imports none of them and none of the storage drivers, so
// the volunteer's agent can use it without pulling in ClickHouse or Arrow.
//
// The record is archival. Fields are added, never renamed or removed; adding
// one bumps SchemaVersion. Every field carries a `doc` tag, and the same tags
// (`v:"..."`) drive both the validator and the JSON Schema, so the two cannot
// disagree. Run `go generate ./schemas` after changing a type: a test fails
// while the committed JSON Schema and FIELDS.md differ from the Go types.
package schemas

//go:generate go run ./internal/gen
