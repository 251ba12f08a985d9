# cnm: make run starts a local 3-node cluster, make test runs every test (Go 1.26 or later).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go

# apt-get needs root: use sudo when not root and sudo exists.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || ! command -v sudo >/dev/null 2>&1 || echo sudo)
# Wait (up to 5 min) for another apt or dpkg process to let go of its lock instead of failing.
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300
# Commands the scripts and the race detector need, and the Debian packages that bring them.
TOOLS := jq curl shellcheck gcc iptables redis-server redis-cli chromium
PACKAGES := jq curl shellcheck gcc libc6-dev iptables redis-server redis-tools chromium

.PHONY: deps build run down test lint bench clean drill fuzz

# Nemesis iterations of `make drill` (make test runs a short drill), and
# the nodes' shard backend: redis (shard processes, every acknowledged
# write checked) or file.
N ?= 100
BACKEND ?= redis

deps:
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(APT) update; \
		$(APT) install -y $(PACKAGES); \
	fi
	@# Shards run their own redis-server processes; the system's service
	@# would only hold port 6379 and memory.
	@if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled redis-server >/dev/null 2>&1; then \
		$(SUDO) systemctl disable --now redis-server >/dev/null 2>&1 || true; \
	fi
	@if ! python3 -c 'import requests' 2>/dev/null && ! /usr/bin/python3 -c 'import requests' 2>/dev/null; then \
		echo "installing python3-requests (the README's Python example is run by the tests)"; \
		$(APT) update; \
		$(APT) install -y python3 python3-requests; \
	fi
	$(GO) mod download

# cnmctl --version says which tree it was built from.
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)

build:
	$(GO) build -ldflags "-X main.buildVersion=$(VERSION)" -o bin/ ./cmd/...

run: deps build
	scripts/cluster.sh up 3

down:
	scripts/cluster.sh down

test: deps
	@# The browser test's screenshots stay in .test-output/ui.
	CNM_UI_SHOTS=$(CURDIR)/.test-output/ui $(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) --no-print-directory lint
	scripts/cluster-test.sh
	scripts/smoke.sh
	scripts/readme-walk.sh
	$(MAKE) --no-print-directory fuzz FUZZEXECS=100000
	@# Every nemesis once on redis shards (N: the drill's list of nemeses,
	@# which scripts/drill's tests keep equal), then a short pass on file
	@# shards.
	$(MAKE) --no-print-directory drill N=17
	$(MAKE) --no-print-directory drill N=6 BACKEND=file

# Bounded fuzzing of command decoding, request bodies and the router.
# The budget is a count of executions, not a duration: a duration-based
# -fuzztime can fail with a spurious "context deadline exceeded" when a
# busy machine starves the workers at the deadline (golang/go#75804).
FUZZEXECS ?= 1000000
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZEXECS)x ./fsm
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBody$$' -fuzztime $(FUZZEXECS)x ./httpapi
	$(GO) test -run '^$$' -fuzz '^FuzzRouter$$' -fuzztime $(FUZZEXECS)x ./httpapi

# Failure drill on real cnmd processes (scripts/drill, docs/RELIABILITY.md).
drill: build
	$(GO) run ./scripts/drill -n $(N) -backend $(BACKEND)

lint:
	@files=$$(git ls-files --cached --others --exclude-standard '*.go'); \
	unformatted=$$(if [ -n "$$files" ]; then gofmt -l $$files; fi); \
	if [ -n "$$unformatted" ]; then echo "gofmt -l lists:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	shellcheck scripts/*.sh .ci/run

# Go benchmarks (one package at a time: the cnm and raw raft figures are
# compared as ratios and must not share the machine with each other), the
# report they make in docs/BENCHMARKS.md with its plots in docs/bench, then
# maintenance_on of a node holding 10 shards of 100 MiB of real data against
# redis-cli --rdb of the same data (scripts/bench-maintenance.sh, which also
# writes docs/BENCHMARKS.md). Not part of make test: it wants the machine to
# itself.
bench: deps build
	@mkdir -p .test-output/bench
	$(GO) test -p 1 -timeout 30m -run '^$$' -bench . -skip '^(BenchmarkFailover|BenchmarkEnslaveAtScale|BenchmarkWriteParts)$$' -benchmem -count 1 $$($(GO) list ./... | grep -v '^cnm/agent$$') | tee .test-output/bench/go.txt
	@# Benchmarks whose iterations are few and long run a fixed number of
	@# times: each switch-over sleeps 2 s outside the timer, and each
	@# failover waits for the killed node to come back.
	$(GO) test -run '^$$' -bench . -benchtime 5x -benchmem -count 1 ./agent | tee -a .test-output/bench/go.txt
	$(GO) test -run '^$$' -bench '^BenchmarkFailover$$' -benchtime 5x -count 1 ./daemon/clustertest | tee -a .test-output/bench/go.txt
	@# 4,000 turns of the write and its yardsticks, one call each.
	$(GO) test -run '^$$' -bench '^BenchmarkWriteParts$$' -benchtime 4000x -count 1 ./daemon/clustertest | tee -a .test-output/bench/go.txt
	@# Three actions at each size: the first promotes replicas on the
	@# leader's own node, the next ones replicas on another node.
	$(GO) test -run '^$$' -bench '^BenchmarkEnslaveAtScale$$' -benchtime 3x -count 1 ./daemon/clustertest | tee -a .test-output/bench/go.txt
	$(GO) run ./scripts/benchreport -in .test-output/bench/go.txt -md docs/BENCHMARKS.md -plots docs/bench -commit "$(VERSION)"
	scripts/bench-maintenance.sh

clean:
	@if [ -d .cluster ]; then CNM_DIR=.cluster scripts/cluster.sh down; fi
	rm -rf bin/ .cluster/ .test-output/
