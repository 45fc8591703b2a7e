#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer at DATABASE_URL and REDIS_URL (or
# their defaults): already running, else started with docker compose when a
# Docker engine answers, else started from the locally installed servers.
# Exits non-zero, saying what is missing, when none of that works.
set -euo pipefail
cd "$(dirname "$0")/.."

db_url=${DATABASE_URL:-postgres://postgres@localhost:5432/orderstream?sslmode=disable}
redis_url=${REDIS_URL:-redis://localhost:6379/0}

# host_port URL DEFAULT_PORT prints "host port" of a URL such as
# postgres://user@host:port/db or redis://:pass@host:port/0.
host_port() {
	local rest=${1#*://}
	rest=${rest%%/*}
	rest=${rest%%\?*}
	rest=${rest##*@}
	local host=${rest%%:*} port=$2
	[[ $rest == *:* ]] && port=${rest##*:}
	[[ -z $host || $host == localhost ]] && host=127.0.0.1
	echo "$host $port"
}
read -r pg_host pg_port < <(host_port "$db_url" 5432)
read -r redis_host redis_port < <(host_port "$redis_url" 6379)

answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
both_answer() { answers "$pg_host" "$pg_port" && answers "$redis_host" "$redis_port"; }
wait_both() {
	for _ in $(seq 1 60); do
		both_answer && return 0
		sleep 0.5
	done
	return 1
}
is_local() { [[ $1 == 127.* || $1 == ::1 ]]; }

if both_answer; then
	exit 0
fi

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
	if docker compose version >/dev/null 2>&1; then
		echo "services: starting postgres and redis with docker compose" >&2
		docker compose up -d --wait postgres redis
	elif command -v docker-compose >/dev/null; then
		echo "services: starting postgres and redis with docker-compose" >&2
		docker-compose up -d postgres redis
	fi
	wait_both && exit 0
fi

if ! answers "$pg_host" "$pg_port" && is_local "$pg_host"; then
	if command -v pg_ctlcluster >/dev/null; then
		for version in $(ls /etc/postgresql 2>/dev/null); do
			echo "services: starting the local PostgreSQL $version cluster" >&2
			pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null ||
				pg_ctlcluster "$version" main start || true
		done
	elif command -v pg_ctl >/dev/null && [[ -n ${PGDATA:-} ]]; then
		echo "services: starting the local PostgreSQL in $PGDATA" >&2
		pg_ctl -D "$PGDATA" -l "$PGDATA/server.log" start || true
	fi
fi

if ! answers "$redis_host" "$redis_port" && is_local "$redis_host" && command -v redis-server >/dev/null; then
	echo "services: starting a local redis-server on port $redis_port (AOF synced on every write, data in .run/redis)" >&2
	mkdir -p .run/redis
	# Append-only persistence, on disk before each answer: the forwarder acks
	# an outbox row once Redis has the entry, so an entry Redis acknowledged
	# and then lost in a crash is an event lost for good.
	redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" \
		--appendonly yes --appendfsync always --no-appendfsync-on-rewrite no \
		--dir "$PWD/.run/redis" --logfile "$PWD/.run/redis/redis.log"
fi

wait_both && exit 0

{
	echo "services: cannot reach the services orderstream needs:"
	answers "$pg_host" "$pg_port" || echo "  - PostgreSQL at $pg_host:$pg_port (DATABASE_URL)"
	answers "$redis_host" "$redis_port" || echo "  - Redis at $redis_host:$redis_port (REDIS_URL)"
	echo "Start them with a Docker engine ('docker compose up -d postgres redis'),"
	echo "or install them locally (Debian/Ubuntu: apt-get install postgresql redis-server;"
	echo "macOS: brew install postgresql@15 redis) and run this again, or point"
	echo "DATABASE_URL and REDIS_URL at servers that run."
} >&2
exit 1
