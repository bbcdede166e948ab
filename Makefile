# Makefile for gpt-load. Run `make` (or `make help`) to see the targets.
#
# Recipes are plain POSIX sh, so they work with GNU make on Linux and macOS.
# .env is never included here: the binary reads it itself, and the
# management targets pick PORT and AUTH_KEY out of it with sed, because
# values may contain characters make would mangle ($, #, quotes).

.DEFAULT_GOAL := help

BINARY    := gpt-load
PKG       := ./cmd/gpt-load
BIN_DIR   := bin
DIST_DIR  := dist
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64

# VERSION can be given on the command line: make build VERSION=v1.2.3
ifeq ($(origin VERSION),undefined)
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
endif
ifeq ($(strip $(VERSION)),)
VERSION := dev
endif
LDFLAGS := -s -w -X main.version=$(VERSION)

# The race detector needs cgo (a C compiler). Without one, tests still run,
# only without -race, and `make test` says so.
RACE := $(shell [ "$$(go env CGO_ENABLED 2>/dev/null)" = 1 ] && echo -race)

# Extra arguments for run/dev, e.g. make run ARGS="-env-file prod.env"
ARGS ?=

.PHONY: help run demo dev build build-all test fuzz coverage bench docs lint fmt tidy clean \
        health stats blacklist reset-keys

help: ## list the targets (default)
	@echo "gpt-load $(VERSION): make <target>"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN { FS = ":.*## " } { printf "  %-15s %s\n", $$1, $$2 }'
	@echo
	@echo "Management targets talk to http://localhost:PORT (PORT from the environment,"
	@echo "then .env, else 3000) and send AUTH_KEY as a bearer token when it is set."

# run and dev build into bin/ and then start the binary, rather than use
# `go run`: go run exits 1 when it sees Ctrl-C, whatever the program's own
# status. And a terminal's Ctrl-C reaches make too, which then dies by it even
# after a clean stop; so on a terminal the binary runs as a job of its own
# (bash -m) that alone gets the Ctrl-C, and make ends with its status: 0
# after a clean stop, 130 after a second Ctrl-C cut the drain short.
RUN_BIN := $(BIN_DIR)/.run/$(BINARY)
define foreground
	if [ -t 0 ] && command -v bash >/dev/null 2>&1; then \
		exec bash -m -c '"$$0" "$$@"; exit $$?' $(1); \
	else exec $(1); fi
endef

run: ## run the proxy from source (reads .env and keys.txt in this directory)
	@echo "make run: building $(RUN_BIN); the first build downloads and compiles the dependencies (a minute or two), listing each package"
	@go build -v -ldflags '-X main.version=$(VERSION)' -o $(RUN_BIN) $(PKG)
	@$(call foreground,$(RUN_BIN) $(ARGS))

demo: ## try it without provider keys: a simulated provider (3 healthy keys, 1 revoked, 1 rate-limited) and gpt-load in front on 127.0.0.1:3000 (PORT=n); Ctrl-C stops both
	@echo "building gpt-load (the first build takes a minute or two)..."
	@go build -ldflags '-X main.version=$(VERSION)' -o $(BIN_DIR)/$(BINARY)-demo $(PKG)
	@$(call foreground,$(BIN_DIR)/$(BINARY)-demo -demo)

dev: ## run with LOG_LEVEL=debug and the race detector
	@echo "make dev: building $(RUN_BIN) with the race detector; the first build takes a minute or two, listing each package"
	@go build -v $(RACE) -ldflags '-X main.version=$(VERSION)' -o $(RUN_BIN) $(PKG)
	@LOG_LEVEL=debug; export LOG_LEVEL; $(call foreground,$(RUN_BIN) $(ARGS))

build: ## build a static binary into bin/gpt-load
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN_DIR)/$(BINARY) $(PKG)
	@echo "built $(BIN_DIR)/$(BINARY) ($(VERSION))"

build-all: ## cross-compile for linux, darwin and windows (amd64, arm64) into dist/
	@mkdir -p $(DIST_DIR)
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; ext=; \
		if [ "$$os" = windows ]; then ext=.exe; fi; \
		out=$(DIST_DIR)/$(BINARY)-$$os-$$arch$$ext; \
		echo "building $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath -ldflags '$(LDFLAGS)' -o $$out $(PKG); \
	done

test: ## run every test with the race detector (the project's test command)
ifeq ($(RACE),)
	@echo "note: cgo is unavailable (no C compiler), so the tests run without -race" >&2
endif
	go test $(RACE) -count=1 ./...
ifneq ($(RACE),)
	@# The race detector's larger frames and shadow memory would fail the
	@# stack and heap limits these tests hold a stream to, and the RSS a
	@# release returns, so under -race they skip; here they run.
	go test -count=1 -run '^(TestStreamStackStaysSmall|TestOpenStreamMemory|TestReleaseGivesBackABurst)$$' ./internal/server/ ./internal/gctune/
endif

fuzz: ## run every Fuzz* target of the repo for FUZZTIME each (default 3s)
	bash scripts/fuzz.sh

coverage: ## run the tests with coverage; writes coverage.html and prints the total
	go test $(RACE) -count=1 -covermode=atomic -coverprofile=coverage.out ./...
	go tool cover -html=coverage.out -o coverage.html
	@go tool cover -func=coverage.out | tail -n 1 | awk '{ print "total coverage: " $$NF " (details in coverage.html)" }'

bench: ## Go benchmarks (no tests), then the short loopback load run
	go test -run '^$$' -bench . -benchmem ./...
	SHORT=1 bash scripts/loadtest.sh

.PHONY: loadtest loadtest-short
loadtest: ## end-to-end load test on loopback: direct, nginx, the floor (cmd/bareproxy) and gpt-load, HTTP/1.1 and TLS+HTTP/2 mocks (~7 min); writes docs/benchmarks.md
	bash scripts/loadtest.sh

loadtest-short: ## the load test with every duration shrunk (about two minutes); prints only
	SHORT=1 bash scripts/loadtest.sh

docs: ## regenerate .env.example and the settings table of docs/configuration.md from internal/config
	go test -count=1 -run '^TestGenerated$$' ./internal/config -update

lint: ## go vet, a gofmt check, and staticcheck when it is installed
	go vet ./...
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then \
		echo "these files need gofmt (run: make fmt):"; echo "$$unformatted"; exit 1; \
	fi; \
	echo "gofmt: ok"
	@sc=$$(command -v staticcheck 2>/dev/null || true); \
	for d in "$$(go env GOBIN)" "$$(go env GOPATH)/bin"; do \
		if [ -z "$$sc" ] && [ -n "$$d" ] && [ -x "$$d/staticcheck" ]; then sc="$$d/staticcheck"; fi; \
	done; \
	if [ -n "$$sc" ]; then \
		echo "staticcheck ./..."; "$$sc" ./...; \
	else \
		echo "staticcheck is not installed, skipped (install: go install honnef.co/go/tools/cmd/staticcheck@latest)"; \
	fi

fmt: ## format every Go file in place with gofmt
	gofmt -w .

tidy: ## go mod tidy
	go mod tidy

clean: ## remove build output and coverage files
	rm -rf $(BIN_DIR) $(DIST_DIR) coverage.out coverage.html

.PHONY: scenarios
scenarios: ## gpt-load against the provider simulator through the scenarios: per-account limits, bad keys, model access, 429 storms, bursts, client mistakes, a target down, hostile clients, groups with a fallback (~4 min); writes docs/scenarios.md (TITLE="…" names the section)
	go run ./cmd/scenarios -out docs/scenarios.md -title "$(if $(TITLE),$(TITLE),Latest run)" $(ARGS)

# make chaos: CHAOS_SEEDS seeds from CHAOS_SEED_BASE, CHAOS_DURATION of
# traffic each; CHAOS_SEED=n reruns one seed. `make test` runs 3 seeds of 4s.
# Then the replicas' convergence harness: CONVERGE_SEEDS seeds (3 in make
# test); CONVERGE_SEED=n reruns one.
CHAOS_SEEDS    ?= 100
CHAOS_DURATION ?= 4s
CONVERGE_SEEDS ?= 100
.PHONY: chaos
chaos: ## the chaos invariant harnesses: CHAOS_SEEDS (100) seeds of CHAOS_DURATION (4s) of traffic, about 13 min, then CONVERGE_SEEDS (100) seeds of three replicas and a real Redis, about 6 min; CHAOS_SEED=n / CONVERGE_SEED=n rerun one (see docs/chaos.md)
	CHAOS_SEEDS=$(CHAOS_SEEDS) CHAOS_DURATION=$(CHAOS_DURATION) go test -count=1 -timeout 0 -run '^TestChaos$$' ./internal/chaos
	CONVERGE_SEEDS=$(CONVERGE_SEEDS) go test -count=1 -timeout 0 -run '^TestConvergence$$' ./internal/cluster

.PHONY: validate-keys
validate-keys: ## check each key of KEYS_FILE against the upstream (python3; ARGS="-c 20" passes options)
	@command -v python3 >/dev/null 2>&1 || { echo "make $@: python3 is not installed" >&2; exit 2; }
	@python3 scripts/validate-keys.py $(ARGS)

# The management targets share one recipe; these lines give them their help.
health: ## GET /health of the local server
stats: ## GET /stats of the local server (make stats KEYS=1 adds per-key details)
blacklist: ## GET /blacklist of the local server
reset-keys: ## POST /reset-keys: re-read the keys file and clear every key's state

health stats blacklist reset-keys:
	@if ! command -v curl >/dev/null 2>&1; then \
		echo "make $@: curl is not installed; install it (e.g. apt-get install curl, brew install curl)" >&2; \
		exit 1; \
	fi; \
	dotenv() { \
		[ -f .env ] || return 0; \
		v=$$(sed -n -E "s/^[[:space:]]*(export[[:space:]]+)?$$1[[:space:]]*=[[:space:]]*//p" .env | tail -n 1 | tr -d '\r'); \
		case "$$v" in \
			\"*) v=$${v#\"}; v=$${v%%\"*} ;; \
			\'*) v=$${v#\'}; v=$${v%%\'*} ;; \
			*) v=$$(printf '%s' "$$v" | sed -E 's/[[:space:]]+#.*$$//; s/[[:space:]]+$$//') ;; \
		esac; \
		printf '%s' "$$v"; \
	}; \
	port=$${PORT:-$$(dotenv PORT)}; port=$${port:-3000}; \
	token=$${AUTH_KEY:-$$(dotenv AUTH_KEY)}; \
	method=GET; path=/$@; \
	if [ "$@" = reset-keys ]; then method=POST; fi; \
	if [ "$@" = stats ] && [ -n "$(KEYS)" ]; then path="/stats?keys=1"; fi; \
	url="http://localhost:$$port$$path"; \
	body=$$(mktemp); trap 'rm -f "$$body"' EXIT; \
	code=$$(printf 'Authorization: Bearer %s\n' "$$token" | \
		if [ -n "$$token" ]; then curl -s -o "$$body" -w '%{http_code}' --max-time 30 -X "$$method" -H @- "$$url"; \
		else curl -s -o "$$body" -w '%{http_code}' --max-time 30 -X "$$method" "$$url"; fi); \
	rc=$$?; \
	if [ "$$rc" -ne 0 ]; then \
		echo "make $@: could not reach gpt-load at $$url (curl exit $$rc)." >&2; \
		echo "Is it running (make run)? Is PORT right? (environment, then .env, else 3000)" >&2; \
		exit 1; \
	fi; \
	cat "$$body"; \
	case "$$code" in \
		2??) ;; \
		401) echo "make $@: HTTP 401: set AUTH_KEY (environment or .env) to the server's token" >&2; exit 1 ;; \
		*) echo "make $@: HTTP $$code" >&2; exit 1 ;; \
	esac
