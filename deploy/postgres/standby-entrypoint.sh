#!/bin/bash
# db-standby: on first start, `immut standby setup` takes a base backup of
# the primary and writes the standby's configuration (restore_command =
# immut wal-fetch from the shared archive); every start then runs PostgreSQL
# in standby mode, replaying the archive.
set -euo pipefail
: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_DSN:?PRIMARY_DSN must be set}"
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # The primary archives by its own -c settings (docker-compose.yml); the
    # replicator role may not ALTER SYSTEM, so only check them.
    immut standby setup --primary "$PRIMARY_DSN" --archive /wal-archive --data "$PGDATA" \
        --primary-configured --no-start
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
