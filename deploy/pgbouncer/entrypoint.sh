#!/bin/sh
# Writes PgBouncer's auth_file from POSTGRES_PASSWORD, so the password is in
# neither the repository nor the image, then runs PgBouncer. A plain-text
# password there lets PgBouncer check its clients' SCRAM and log in to
# PostgreSQL (SCRAM too) with it.
set -eu
: "${POSTGRES_PASSWORD:?PgBouncer needs POSTGRES_PASSWORD, the postgres role's password}"
umask 077
mkdir -p /tmp/pgbouncer
# "user" "password", a double quote in either written twice.
printf '"postgres" "%s"\n' "$(printf '%s' "$POSTGRES_PASSWORD" | sed 's/"/""/g')" >/tmp/pgbouncer/userlist.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
