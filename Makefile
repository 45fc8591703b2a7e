# The two commands a new user needs: `make run` and `make test`.

GO ?= go

.PHONY: run test build check services compose-config chaos soak fuzz bench mutate

# make run is a developer's machine: the development secrets (secrets.go),
# which a serving process accepts only with ORDERSTREAM_DEV=true.
DEV_ENV = ORDERSTREAM_DEV=true ADMIN_TOKEN=$${ADMIN_TOKEN:-dev-admin-token} \
	AUTH_JWT_SECRET=$${AUTH_JWT_SECRET:-dev-jwt-secret-for-local-use-only-000}

## run: start PostgreSQL and Redis if needed, then the whole application, printing development tokens
run: services build
	@echo "orderstream: development tokens, to send as 'Authorization: Bearer <token>':"
	@echo "export CUSTOMER_TOKEN=$$($(DEV_ENV) bin/orderstream token demo-customer)"
	@echo "export ADMIN_JWT=$$($(DEV_ENV) bin/orderstream token demo-admin --admin)"
	@echo "export ADMIN_TOKEN=$${ADMIN_TOKEN:-dev-admin-token}"
	@echo "orderstream: the live page and metrics are on http://127.0.0.1:9090/ (OPS_ADDR)"
	$(DEV_ENV) bin/orderstream all

## test: start PostgreSQL and Redis if needed, then every test with the race detector
test: services
	$(GO) test -race -count=1 ./...

## build: the binary in bin/
build:
	$(GO) build -trimpath -o bin/orderstream .

## check: formatting and vet, of the application and of the tools module (tools/)
check:
	@test -z "$$(gofmt -l .)" || (gofmt -l . && echo "gofmt: the files above need formatting" && exit 1)
	$(GO) vet ./...
	cd tools && $(GO) vet ./... && $(GO) build ./...

services:
	@./scripts/services.sh

## bench: measure placement (with and without the rate limiter), latency under load and of single orders (also with a durable Redis), the forwarder's drain of SQL- and HTTP-built backlogs, worker throughput, idle cost and memory; writes BENCHMARKS.md
# The tools are a module of their own (tools/go.mod); built into bin/ and run
# from here, so -out, -profile and -bin name paths from the repository root.
bench: services build
	cd tools && $(GO) build -o ../bin/bench ./bench
	bin/bench -bin bin/orderstream $(BENCH_FLAGS)

FUZZTIME ?= 60s

## fuzz: run the fuzz targets for FUZZTIME each; new findings land in testdata/fuzz
fuzz:
	cd httpapi && $(GO) test -run '^$$' -fuzz FuzzDecodeOrder -fuzztime $(FUZZTIME) -fuzzminimizetime 100x .
	cd httpapi && $(GO) test -run '^$$' -fuzz FuzzHTTP -fuzztime $(FUZZTIME) -fuzzminimizetime 100x .
	cd redisstreams && $(GO) test -run '^$$' -fuzz FuzzDecodeMessage -fuzztime $(FUZZTIME) -fuzzminimizetime 100x .

GREMLINS ?= $(GO) run github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
MUTATE_PKGS ?= orders inventory postgres events outbox redisstreams worker httpapi live
MUTATE_OUT ?= bin/mutate

## mutate: mutation testing (.gremlins.yaml) of MUTATE_PKGS, one package at a time; slow, not part of test
# -count=1: gremlins times each mutant against the coverage run, which a
# cached test result would make instant. Per package: the log, the JSON
# results and the mutants that lived; the figures of all at the end.
mutate: services
	@mkdir -p $(MUTATE_OUT); rm -f $(MUTATE_OUT)/*; \
	for p in $(MUTATE_PKGS); do \
		echo "== mutate $$p"; \
		{ GOFLAGS="$$GOFLAGS -count=1" $(GREMLINS) unleash --config $(CURDIR)/.gremlins.yaml \
			-o $(CURDIR)/$(MUTATE_OUT)/$$p.json $(CURDIR)/$$p 2>&1 || echo "$$p" >> $(MUTATE_OUT)/failed; } \
			| tee $(MUTATE_OUT)/$$p.log; \
		grep ' LIVED ' $(MUTATE_OUT)/$$p.log | sed "s|$(CURDIR)/||" >> $(MUTATE_OUT)/survivors.txt; \
	done; \
	echo "== mutate: figures per package (survivors in $(MUTATE_OUT)/survivors.txt)"; \
	for p in $(MUTATE_PKGS); do \
		printf '%-10s %s\n' "$$p" "$$(grep -E 'Killed:|Timed out:|efficacy|coverage:|completed in' $(MUTATE_OUT)/$$p.log | sed 's/^ *//' | paste -sd ' ' -)"; \
	done; \
	test ! -s $(MUTATE_OUT)/failed || { echo "mutate: gremlins failed on: $$(cat $(MUTATE_OUT)/failed)"; exit 1; }

## chaos: crash processes, Redis and PostgreSQL, hold locks, stop processes gracefully, make Redis forget what it acknowledged and fail a Redis master over to its replica through Sentinels, under load, then check every guarantee; CHAOS_FLAGS=-pgbouncer runs it all through a PgBouncer in transaction pooling mode
chaos: build
	cd tools && $(GO) build -o ../bin/chaos ./chaos
	bin/chaos -bin bin/orderstream $(CHAOS_FLAGS)

# docker compose (v2) where installed, else Debian's docker-compose (v1).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

## compose-config: validate the compose files of every profile, and that "scale" refuses to run without its secrets (needs compose, not a Docker engine)
# The main file must render with none of the scale profile's secrets set;
# the scale profile (deploy/docker-compose.scale.yml) with throwaway ones,
# and not without any one of them. An empty env file stands for .env, which
# could set them.
compose-config:
	@mkdir -p bin && : > bin/compose-config.env
	env -u ADMIN_TOKEN -u AUTH_JWT_SECRET -u POSTGRES_PASSWORD -u REDIS_PASSWORD $(COMPOSE) --env-file bin/compose-config.env config -q
	env -u ADMIN_TOKEN -u AUTH_JWT_SECRET -u POSTGRES_PASSWORD -u REDIS_PASSWORD $(COMPOSE) --env-file bin/compose-config.env --profile app config -q
	env -u ADMIN_TOKEN -u AUTH_JWT_SECRET -u POSTGRES_PASSWORD -u REDIS_PASSWORD $(COMPOSE) --env-file bin/compose-config.env --profile observability config -q
	@scale="$(COMPOSE) --env-file bin/compose-config.env -f docker-compose.yml -f deploy/docker-compose.scale.yml --profile scale"; \
	secrets="ADMIN_TOKEN=throwaway-admin-token-for-compose-config AUTH_JWT_SECRET=throwaway-jwt-secret-for-compose-config \
		POSTGRES_PASSWORD=throwawaypostgrespassword REDIS_PASSWORD=throwawayredispassword"; \
	echo "$$scale config -q (with throwaway secrets)"; \
	env $$secrets $$scale config -q || exit 1; \
	for v in ADMIN_TOKEN AUTH_JWT_SECRET POSTGRES_PASSWORD REDIS_PASSWORD; do \
		echo "$$scale config -q (without $$v: must be refused)"; \
		others=$$(for kv in $$secrets; do case $$kv in "$$v="*) ;; *) printf '%s ' "$$kv" ;; esac; done); \
		if out=$$(env -u $$v $$others $$scale config -q 2>&1); then \
			echo "compose-config: the scale profile renders without $$v"; exit 1; \
		fi; \
		case $$out in *"$$v"*) ;; *) echo "compose-config: the scale profile fails without $$v, but not for want of it:"; echo "$$out"; exit 1 ;; esac; \
	done

SOAK_FOR ?= 1h
SOAK_RATE ?= 120

## soak: an hour (SOAK_FOR) of orders at SOAK_RATE a second, a quarter of the raw pipeline on a 2-core machine, cancels included, without faults, against a PostgreSQL that syncs its commits and autovacuums and a Redis of appendfsync always; every minute each process's memory and goroutines, the tables' and streams' sizes and the settle p50/p99; writes its tables into BENCHMARKS.md
soak: build
	cd tools && $(GO) build -o ../bin/chaos ./chaos
	bin/chaos -bin bin/orderstream -scenarios soak -soak-for $(SOAK_FOR) -soak-rate $(SOAK_RATE) -soak-out BENCHMARKS.md $(SOAK_FLAGS)
