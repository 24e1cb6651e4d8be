# Duplex build and test entry points. `make test` is what CI runs.

# The approved toolchain; go.mod names it too, so a plain `go run` in the
# repository switches to it by itself.
export GOTOOLCHAIN := go1.27.3
GO          ?= go
TOOLS_BIN   := $(CURDIR)/.tools/bin
STATICCHECK := $(TOOLS_BIN)/staticcheck
# staticcheck 2026.2.2
STATICCHECK_VERSION := v0.8.2
# Fuzzing per target: a short run inside `make test`, counted in executions
# so that its length does not depend on the machine's load; a long, timed
# one in `make fuzz`.
FUZZTIME_SHORT ?= 10000x
FUZZTIME       ?= 60s

.PHONY: all test fmt-check tidy-check vet staticcheck unit cluster services web-test interop e2e fuzz-short fuzz vulncheck conformance abuse abuse-short bench bench-gateway bench-gateway-smoke bench-cluster bench-cluster-smoke bench-peers bench-peers-smoke run tools clean

all: test

## test: everything CI checks — formatting, go mod tidy, vet, staticcheck, race tests
## (conformance and the gateway included), the browser client's tests, the
## interop matrix, the browser end-to-end tests, a short run of every fuzz
## target and the short abuse suite.
test: fmt-check tidy-check vet staticcheck unit web-test interop e2e fuzz-short bench-gateway-smoke bench-cluster-smoke abuse-short

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

## tidy-check: go.mod and go.sum, the main module's and peers/'s (which
## requires the main one), are what `go mod tidy` makes of the imports
## (prints the diff and fails otherwise).
tidy-check:
	$(GO) mod tidy -diff
	cd peers && $(GO) mod tidy -diff

vet:
	$(GO) vet ./...

$(STATICCHECK):
	GOBIN=$(TOOLS_BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

tools: $(STATICCHECK)

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

## unit: the race tests of every package; the broker and multi-node tests
## start real redis-server and nats-server processes on free loopback ports
## (scripts/services.sh installs them) and fail, not skip, without them.
unit: services
	DUPLEX_REQUIRE_SERVICES=1 $(GO) test -race -count=1 -timeout 20m ./...

## cluster: the multi-node tests of internal/cluster at the issue's full
## size (CLUSTER_FULL=1: a connect storm of 10,000 clients on one node and
## on three per broker). `unit` runs them with 2,000.
cluster: services
	CLUSTER_FULL=1 DUPLEX_REQUIRE_SERVICES=1 $(GO) test -count=1 -v -timeout 30m ./internal/cluster/

## services: installs Debian's redis-server and builds nats-server into .tools/bin.
services:
	./scripts/services.sh

## web-test: the browser client duplex.js, with Node's test runner (no npm
## packages needed).
web-test:
	cd web && node --test test/

## interop: the peers of peers/ (Chromium, Node ws, Python websockets, gorilla,
## coder) against our server and client; peers/setup.sh installs what is missing.
interop:
	./peers/setup.sh
	cd peers && $(GO) vet -tags http2legacy ./... && $(GO) test -race -count=1 -tags http2legacy ./...

## e2e: duplex.js and the demo pages in Debian's Chromium (playwright-core)
## against a real duplex serve (peers/e2e): chat and presence between two
## pages, recovery across server-side disconnects, a gateway restart, the
## whiteboard's history; saves docs/screenshots/*.png. peers/setup.sh installs
## what is missing.
e2e:
	./peers/setup.sh
	cd peers && node --test e2e/*.test.mjs

## fuzz-short: every fuzz target for FUZZTIME_SHORT executions (seed corpora always run in `unit`).
fuzz-short:
	FUZZTIME=$(FUZZTIME_SHORT) ./scripts/fuzz.sh

## fuzz: every fuzz target for FUZZTIME (default 60s each); FUZZ_PKGS
## narrows the packages (FUZZ_PKGS=./gateway/... make fuzz).
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

## vulncheck: govulncheck on ./... against a vulnerability database built
## here: these machines reach the Go module proxy but not Go's hosted database, so
## scripts/vulncheck.sh builds govulncheck and golang.org/x/vulndb's
## cmd/indexdb into .tools/bin and the database from that module's OSV files
## into .tools/vulndb/<version> (VULNDB_VERSION, default latest). About
## 3 min the first time, 30 s after. Exit status 3 when a vulnerability is
## reachable. Not part of `test`: the database changes under us (a new
## report would fail every build until handled) and a fresh machine pays the
## first build.
vulncheck:
	./scripts/vulncheck.sh

## conformance: the raw-wire RFC 6455 suite, verbosely.
conformance:
	$(GO) test -race -count=1 -v ./conformance/

## abuse: the abuse suite (internal/abuse): duplex serve and duplex echo as
## processes of their own, attacked from loopback at the sizes of issue 12
## (1,000 connections, 108,000 history commands, two stuck subscribers of
## 20 KB publications, ...); each case checks the close code or status, the
## server's RSS and heap during and after, and a healthy client's p99.
## A few minutes. Not part of `test`.
## abuse-short: every case with small counts, in about a minute, inside `test`.
abuse:
	DUPLEX_ABUSE=full $(GO) test -count=1 -timeout 20m -v ./internal/abuse/

abuse-short:
	DUPLEX_ABUSE=short $(GO) test -count=1 -timeout 5m ./internal/abuse/

## bench: library benchmarks with allocation counts.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./internal/frame/ ./websocket/

## bench-gateway: duplex serve as its own process with 10,000 clients:
## memory per idle connection (WebSocket, and HTTP streaming and SSE sessions)
## and 10 s after one publication to all 10,000 subscribers of one channel,
## deliveries/s (and per gateway CPU-second) to one channel of 10,000
## subscribers and to 10,000 channels of one, publish-to-receive latency.
## About 3 minutes. Not part of `test`.
bench-gateway:
	$(GO) run ./internal/gwbench -conns 10000 -duration 10s

## bench-gateway-smoke: the same with 200 clients for 1 s, inside `test`:
## it fails if any delivery is lost.
bench-gateway-smoke:
	$(GO) run ./internal/gwbench -conns 200 -duration 1s -settle 1s

## bench-cluster: duplex serve nodes on one broker, 15,000 clients per node
## from worker processes of at most 15,000 connections each (a process may
## hold 20,000 descriptors): the memory broker on one node as the reference,
## Redis on one node and on 4, NATS JetStream on 4 (60,000 connections);
## deliveries/s to one channel of every client and to a channel per client,
## publish-to-receive p50/p99 as fast as the clients receive and at half that
## rate, CPU of gateways, broker and load generators, RSS per connection;
## then a connect storm of 10,000 clients onto one presence channel on one
## node and on three. Fails if any publication is lost or repeated. About
## 20 minutes on 2 shared cores. Not part of `test`.
bench-cluster: services
	$(GO) run ./internal/clusterbench -nodes 4 -clients 15000 -duration 10s -storm 10000

## bench-cluster-smoke: the same on Redis and NATS with 2 nodes × 200
## clients, 1 s a phase, and a storm of 200, inside `test` (about half a
## minute): it fails if any delivery is lost or repeated.
bench-cluster-smoke: services
	$(GO) run ./internal/clusterbench -nodes 2 -clients 200 -duration 1s -setups redis:2,nats:2 -storm 200 -storm-setups memory:1,redis:2

## bench-peers: the side-by-side benchmarks against gorilla, coder, gws,
## gobwas and nbio (peers/bench, its own module): echo, idle memory,
## broadcast, compression memory and system calls per message (perf stat),
## 3 repetitions each, about 40 minutes. Writes
## docs/benchmarks/results.md, results.json and SVG charts. Not part of `test`.
## bench-peers-smoke: every server and case with tiny numbers, in under a
## minute, to prove the harness works; writes to BENCH_SMOKE_OUT.
BENCH_SMOKE_OUT ?= $(or $(TMPDIR),/tmp)/duplex-bench-smoke
bench-peers:
	cd peers && $(GO) run ./bench/cmd/loadgen -out ../docs/benchmarks

bench-peers-smoke:
	cd peers && $(GO) run ./bench/cmd/loadgen -smoke -out $(BENCH_SMOKE_OUT)

## run: the main job, the gateway on its defaults (http://127.0.0.1:8080/).
run:
	$(GO) run ./cmd/duplex serve

clean:
	rm -rf .tools
