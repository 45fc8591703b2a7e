# The two commands a new user needs: `make run` and `make test`.

GO ?= go
DEV_ADMIN_TOKEN ?= dev-admin-token

.PHONY: run test build check services compose-config chaos fuzz bench

## run: start PostgreSQL and Redis if needed, then the whole application
run: services
	@echo "orderstream: ADMIN_TOKEN=$${ADMIN_TOKEN:-$(DEV_ADMIN_TOKEN)} (send it as 'Authorization: Bearer <token>' to PUT /inventory)"
	ADMIN_TOKEN=$${ADMIN_TOKEN:-$(DEV_ADMIN_TOKEN)} $(GO) run . all

## test: start PostgreSQL and Redis if needed, then every test with the race detector
test: services
	$(GO) test -race -count=1 ./...

## build: the binary in bin/
build:
	$(GO) build -trimpath -o bin/orderstream .

## check: formatting and vet
check:
	@test -z "$$(gofmt -l .)" || (gofmt -l . && echo "gofmt: the files above need formatting" && exit 1)
	$(GO) vet ./...

services:
	@./scripts/services.sh

## bench: measure placement, latency, drain, worker throughput, idle cost and memory; writes BENCHMARKS.md
bench: services build
	$(GO) run ./cmd/bench -bin bin/orderstream $(BENCH_FLAGS)

FUZZTIME ?= 60s

## fuzz: run the fuzz targets for FUZZTIME each; new findings land in testdata/fuzz
fuzz:
	cd router && $(GO) test -run '^$$' -fuzz FuzzDecodeOrder -fuzztime $(FUZZTIME) -fuzzminimizetime 100x .
	cd router && $(GO) test -run '^$$' -fuzz FuzzHTTP -fuzztime $(FUZZTIME) -fuzzminimizetime 100x .
	cd events && $(GO) test -run '^$$' -fuzz FuzzDecodeMessage -fuzztime $(FUZZTIME) -fuzzminimizetime 100x .

## chaos: crash processes, Redis and PostgreSQL, hold locks and stop processes gracefully under load, then check every guarantee
chaos: build
	$(GO) run ./cmd/chaos -bin bin/orderstream $(CHAOS_FLAGS)

# docker compose (v2) where installed, else Debian's docker-compose (v1).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

## compose-config: validate docker-compose.yml (needs compose, not a Docker engine)
compose-config:
	$(COMPOSE) config -q
	$(COMPOSE) --profile app config -q
	$(COMPOSE) --profile observability config -q
