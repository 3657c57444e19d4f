# edgekv: `make run` starts a 3-member cluster on 127.0.0.1, `make test` runs
# the test suite. Both need only Go; what else they need they install.

SHELL       := /bin/bash
.SHELLFLAGS := -eo pipefail -c

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# grpcnotrace leaves grpc's golang.org/x/net/trace out: its HTML templates
# call methods by name, which turns off the linker's dead-code elimination of
# methods (a fifth of the binary). tests/framework.EdgekvTags says the same.
TAGS      := grpcnotrace
BUILD     := CGO_ENABLED=0 $(GO) build -trimpath -tags "$(TAGS)" -ldflags "$(LDFLAGS)"
FUZZTIME  ?= 10s
STATICCHECK ?= v0.8.2

.PHONY: all build run test unit unit-arm e2e fuzz cross lint tools bench bench-quick bench-disk bench-watch torture clean

all: build

build:
	$(BUILD) -o bin/edgekv ./cmd/edgekv

# A 3-member cluster in the foreground with etcd's Procfile ports
# (clients on 2379, 22379, 32379). Ctrl-C stops all three.
run: build
	scripts/run-cluster.sh

cross:
	GOOS=linux GOARCH=arm64 $(BUILD) -o bin/edgekv-linux-arm64 ./cmd/edgekv
	GOOS=linux GOARCH=arm GOARM=7 $(BUILD) -o bin/edgekv-linux-armv7 ./cmd/edgekv
	GOOS=linux GOARCH=arm GOARM=6 $(BUILD) -o bin/edgekv-linux-armv6 ./cmd/edgekv
	GOOS=linux GOARCH=amd64 $(BUILD) -o bin/edgekv-linux-amd64 ./cmd/edgekv

test: lint unit unit-arm fuzz e2e

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tests && $(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./...
	cd tests && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./...

unit:
	$(GO) test -race -count=1 ./...
	@# The power-loss simulation at its full 3000 crash points (-race runs 1000).
	$(GO) test -count=1 -v -run 'TestWAL_PowerLoss' ./persist/wal | grep -E 'crash points|^(---|ok|FAIL)'


# The storage packages' unit tests on emulated arm64 and armv7 (qemu-user).
unit-arm: tools
	scripts/test-arm.sh ./persist/... ./core/mvcc/...

# Every fuzz target, briefly. Longer: make fuzz FUZZTIME=5m
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

# End-to-end: real processes, the official client, etcdctl, real etcd, and
# the ARM binaries under qemu-user.
e2e: build cross tools
	cd tests && EDGEKV_BIN=$(CURDIR)/bin/edgekv EDGEKV_BIN_DIR=$(CURDIR)/bin $(GO) test -count=1 -timeout 30m ./...

# Installs qemu-user (for the ARM runs) when it is missing and we may.
tools:
	@scripts/install-tools.sh

# edgekv against real etcd on this machine, 5 rounds: every load's throughput
# and latency, memory, disk writes and syncs per put, binary size, restart
# time, an emulated SD card. Writes bench/RESULTS.md and
# bench/latency-throughput.png; bench/README.md says how to read them.
bench: build
	@scripts/install-tools.sh strace
	cd tests && EDGEKV_BIN=$(CURDIR)/bin/edgekv $(GO) run ./bench/compare --rounds 5 \
		--results $(CURDIR)/bench/RESULTS.md --chart $(CURDIR)/bench/latency-throughput.png

# The same in under 3 minutes: 1 round, loads at half their totals, chart
# points at 1, 64 and 256 clients, no restart measurement.
bench-quick: build
	@scripts/install-tools.sh strace
	cd tests && EDGEKV_BIN=$(CURDIR)/bin/edgekv $(GO) run ./bench/compare --quick \
		--results $(CURDIR)/bench/RESULTS.md --chart $(CURDIR)/bench/latency-throughput.png

# Bytes written and fdatasyncs per put, edgekv next to real etcd (issue 3).
bench-disk: build
	cd tests && EDGEKV_BIN=$(CURDIR)/bin/edgekv $(GO) run ./bench/diskwrites --total 20000 --rounds 3

bench-watch: build
	cd tests && EDGEKV_BIN=$(CURDIR)/bin/edgekv $(GO) run ./bench/watchers --rounds 3

# make torture DURATION=60s SEED=7 [SCENARIOS=kill-one,pause-leader]
DURATION ?= 30s
SEED ?= 1
SCENARIOS ?= none,kill-one,kill-leader,kill-all,pause-leader,pause-follower,partition-leader,partition-half,partition-bridge,flapping,packet-loss,delay-reorder,disk-fault,power-loss
torture: build
	mkdir -p .run && rm -f .run/torture-results.md
	status=0; cd tests && EDGEKV_BIN=$(CURDIR)/bin/edgekv TORTURE_DURATION=$(DURATION) TORTURE_SEED=$(SEED) \
		TORTURE_SCENARIOS=$(SCENARIOS) TORTURE_ETCD_SCENARIOS=$(SCENARIOS) TORTURE_OUT=$(CURDIR)/.run \
		TORTURE_RESULTS=$(CURDIR)/.run/torture-results.md $(GO) test ./torture -count=1 -timeout 0 -v -run Torture \
		| grep -E '^\s*--- |^(ok|FAIL|PASS)|not linearizable|: watch: ' || status=$$?; \
		cat $(CURDIR)/.run/torture-results.md; exit $$status

clean:
	rm -rf bin .run
