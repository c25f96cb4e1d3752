# Neubot. The two set-up commands are `make up` and `make test`; both run
# scripts/setup first, which installs what is missing and nothing else.
SHELL := /bin/bash
GO ?= go
# SOAK: how long bench/soak loads the platform (make bench SOAK=3m for a shorter run).
SOAK ?= 10m
DATA ?= var/up
FUZZTIME ?= 10s

.PHONY: up test test-cluster bench lint setup build dist fuzz clean

setup:
	@scripts/setup

build: setup
	$(GO) build -o bin/neubot ./cmd/neubot
	$(GO) build -o bin/neubot-server ./cmd/neubot-server

## dist: what volunteers install, into bin/dist: the static neubot binary for
## linux/amd64, linux/arm64, darwin/amd64 and darwin/arm64, a .deb for each
## Linux one, SHA256SUMS. Reproducible: the same commit gives the same bytes.
## VERSION=X.Y.Z overrides the version (default: tag vX.Y.Z of HEAD, else a
## snapshot), COLLECTOR=URL the binary's default collector.
dist: setup
	$(GO) run ./dist/mkdist -out bin/dist $(if $(VERSION),-version $(VERSION)) $(if $(COLLECTOR),-collector $(COLLECTOR))

## up: run the whole platform on a local ClickHouse (data under $(DATA)).
up: build
	./bin/neubot-server up --data $(DATA)

## test: lint, the whole test suite against a real ClickHouse, brief fuzzing
## (scripts/test says what runs beside what, and why).
test: setup
	@GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/test

## test-cluster: only the ClickHouse cluster tests (2 shards × 2 replicas and
## ZooKeeper on loopback; `make test` runs them too, with everything else).
test-cluster: setup
	$(GO) test -count=1 -timeout 10m -run 'TestCluster|TestRewrite' -v ./cmd/neubot-server ./internal/chdb

fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz

## bench: benchmark programs; each prints a table of side-by-side ratios.
bench: setup
	$(GO) run ./bench/ingest
	$(GO) run ./bench/linkem
	$(GO) run ./bench/speedtest
	$(GO) run ./bench/bittorrent
	$(GO) run ./bench/analytics
	$(GO) run ./bench/publish
	$(GO) run ./bench/cluster
	$(GO) run ./bench/soak -duration $(SOAK)

lint: setup
	@GO=$(GO) scripts/lint

clean:
	rm -rf bin var
