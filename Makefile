# bankd's front door. `make run` starts a local 3-node cluster; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
CONFIG ?= cluster.hcl

# Tool versions live here and nowhere else.
PROTOC_GEN_GO_VERSION := v1.36.11
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1
# staticcheck 2025.1.1: the module proxy serves it only under its semver tag.
STATICCHECK_VERSION := v0.6.1
BTCD_VERSION := v0.25.0
LND_VERSION := v0.20.0-beta

# The previous release: the rolling-upgrade tests (systemtest/upgrade_test.go, the jepsen upgrade
# nemesis) start the cluster on it and upgrade it node by node to this tree's bankd. Named here
# only; `make prev` builds it into $(PREV_BIN).
PREVIOUS_RELEASE := 27b41341f2733c7fb895e9047f4f37ba9fe3edf7
PREV_BIN := $(BIN)/bankd-prev

.PHONY: all build run test test-short bench lint proto clean jepsen prev

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/bankd ./cmd/bankd
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/bankctl ./cmd/bankctl
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/signerd ./cmd/signerd
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/coldvault ./cmd/coldvault

## prev: bankd of PREVIOUS_RELEASE as $(PREV_BIN), from `git archive` (the work tree is not
## touched); rebuilt only when PREVIOUS_RELEASE changes.
prev:
	GO=$(GO) ./scripts/build-prev.sh $(PREVIOUS_RELEASE) $(PREV_BIN)

## run: build, start a regtest btcd (bin/regtestd) and the cluster described by cluster.hcl as
## local processes following it (Ctrl-C stops everything). BTCD=off runs the cluster without a
## chain; MINE_EVERY=10s mines a block every 10 seconds.
run: build deps-btcd deps-lnd
	CGO_ENABLED=0 $(GO) build -o $(BIN)/regtestd ./regtest/cmd/regtestd
	./scripts/run-cluster.sh $(CONFIG)

## images: FROM-scratch container images of the static binaries (no registry needed):
## bankd/bankd, bankd/bankctl, bankd/signerd, bankd/coldvault tagged $(VERSION) and latest, and
## bankd/btcd and bankd/lnd (tagged with their versions and latest) for deploy/compose; see
## docs/CONTAINERS.md.
.PHONY: images
images: build deps-btcd deps-lnd
	./deploy/images/build.sh $(BIN) $(VERSION) $(BTCD_VERSION) $(LND_VERSION)

## test: every test, including the multi-process cluster tests and those against a real btcd.
test: build prev deps-btcd deps-lnd deps-postgres deps-prometheus deps-chromium images
	BANKD_REQUIRE_DOCKER=1 BANKD_REQUIRE_CHROMIUM=1 BANKD_REQUIRE_PROMTOOL=1 BANKD_BIN=$(BIN)/bankd BANKD_PREV_BIN=$(PREV_BIN) BANKD_BTCD=$(BIN)/btcd BANKD_REQUIRE_BTCD=1 BANKD_LND=$(BIN)/lnd BANKD_REQUIRE_LND=1 $(GO) test -count=1 -p 1 -timeout 40m ./...

## test-short: unit and in-process tests only.
test-short:
	$(GO) test -count=1 -short ./...

## bench: benchmarks that print figures (they pass or fail nothing). cmd/bankbench runs its
## workload on bankd (clients on the leader, then spread over the nodes) and on a PostgreSQL
## double-entry ledger it starts itself from Debian's package (fsync and synchronous_commit
## on), and prints both side by side with their ratio.
bench: build deps-btcd deps-lnd deps-postgres
	$(GO) test -run '^$$' -bench . -benchtime 3s ./fsm/
	$(GO) test -run '^$$' -bench ReplyCompression -benchtime 100x ./rpc/
	$(GO) test -run '^$$' -bench . -benchtime 1x ./chainwatch/watchset/
	$(GO) test -run '^$$' -bench . -benchtime 3x -benchmem ./payout/coinselect/
	$(GO) test -run '^$$' -bench Plan1000 -benchtime 3x -benchmem ./payout/
	BANKD_BIN=$(BIN)/bankd BANKD_BTCD=$(BIN)/btcd $(GO) test -run '^$$' -bench PayoutPipeline -benchtime 1x ./systemtest/
	BANKD_BIN=$(BIN)/bankd $(GO) test -run '^$$' -bench BackupRestoreThroughTheCluster -benchtime 1x -timeout 60m ./systemtest/
	BANKD_BIN=$(BIN)/bankd $(GO) run ./cmd/bankbench -plaintext -failovers 0 -spread=false -postgres=false
	BANKD_BIN=$(BIN)/bankd $(GO) run ./cmd/bankbench
	BANKD_BIN=$(BIN)/bankd BANKD_BTCD=$(BIN)/btcd BANKD_LND=$(BIN)/lnd $(GO) run ./cmd/lnbench
	$(GO) run ./jepsen/cmd/jepsen -bench-regions -bin $(BIN)/bankd

## deps-postgres: Debian's postgresql, which bankbench's baseline runs from
## /usr/lib/postgresql/<major>/bin; installed only when no such server binary is there.
.PHONY: deps-postgres
deps-postgres:
	@if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
		echo "installing Debian's postgresql for bankbench"; \
		export DEBIAN_FRONTEND=noninteractive; apt-get update && apt-get install -y postgresql; \
	fi

JEPSEN_NEMESES ?= kill pause partition-leader partition-halves partition-oneway partition-ring loss leader-storm membership upgrade
JEPSEN_WORKLOADS ?= bank register lightning
JEPSEN_NODES ?= 3 5
JEPSEN_TIME ?= 30s
JEPSEN_SEED ?= 7
JEPSEN_FLAGS ?= -progress 1h

## jepsen: one chaos run per nemesis x workload x cluster size under real faults (needs root);
## one verdict line each. Default 10 x 3 x 2 = 60 runs of 30 s, one of the register workload
## on 5 nodes of which 2 are read replicas, and the lightning workload under lnd faults (kill,
## cut off from the leader, slow, errors, payments held across a leader change) with bankd
## kills on 3 and 5 nodes: about 40 minutes. The upgrade nemesis starts the cluster on
## $(PREV_BIN).
jepsen: build prev
	$(GO) build -o $(BIN)/jepsen ./jepsen/cmd/jepsen
	@rc=0; for n in $(JEPSEN_NEMESES); do for w in $(JEPSEN_WORKLOADS); do for s in $(JEPSEN_NODES); do \
		$(BIN)/jepsen -bin $(BIN)/bankd -prev-bin $(PREV_BIN) -workload $$w -nemesis $$n -nodes $$s -time $(JEPSEN_TIME) -seed $(JEPSEN_SEED) $(JEPSEN_FLAGS) || rc=1; \
	done; done; done; \
	$(BIN)/jepsen -bin $(BIN)/bankd -workload register -nemesis partition-leader,partition-halves,kill -nodes 5 -nonvoters 2 -time $(JEPSEN_TIME) -seed $(JEPSEN_SEED) $(JEPSEN_FLAGS) || rc=1; \
	for s in $(JEPSEN_NODES); do \
		$(BIN)/jepsen -bin $(BIN)/bankd -workload lightning -nemesis lnd,kill -nodes $$s -time $(JEPSEN_TIME) -seed $(JEPSEN_SEED) $(JEPSEN_FLAGS) || rc=1; \
	done; \
	exit $$rc

lint: $(BIN)/staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...

## deps-prometheus: Debian's prometheus package, for promtool, which checks and unit-tests the
## alert rules in deploy/prometheus (make test); installed only when promtool is missing.
.PHONY: deps-prometheus
deps-prometheus:
	@command -v promtool >/dev/null || { echo "installing Debian's prometheus (promtool)"; export DEBIAN_FRONTEND=noninteractive; apt-get update && apt-get install -y prometheus; }

## deps-chromium: Debian's chromium, the headless browser the console's tests drive (console/,
## systemtest/console_test.go); installed only when chromium is missing.
.PHONY: deps-chromium
deps-chromium:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the console's browser tests"; export DEBIAN_FRONTEND=noninteractive; apt-get update && apt-get install -y chromium; }

## deps: build the pinned btcd, btcctl, lnd and lncli into bin/ (rebuilt only when a version changes).
.PHONY: deps deps-btcd deps-lnd
deps: deps-btcd deps-lnd

deps-btcd:
	GO=$(GO) ./scripts/deps.sh btcd $(BTCD_VERSION) $(BIN)

deps-lnd:
	GO=$(GO) ./scripts/deps.sh lnd $(LND_VERSION) $(BIN)

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## proto: regenerate gen/ from proto/ (needs protoc: apt-get install protobuf-compiler).
proto: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-connect-go
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler"; exit 1; }
	rm -rf gen
	protoc -I proto \
		--plugin=$(BIN)/protoc-gen-go --go_out=. --go_opt=module=github.com/bankd/bankd \
		--plugin=$(BIN)/protoc-gen-connect-go --connect-go_out=. --connect-go_opt=module=github.com/bankd/bankd \
		proto/bankd/v1/*.proto

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-connect-go:
	GOBIN=$(BIN) $(GO) install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION)

clean:
	rm -rf $(BIN) data
