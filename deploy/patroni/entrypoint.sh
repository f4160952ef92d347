#!/bin/sh
# db1, db2: renders Patroni's configuration from its template and runs
# Patroni, which runs PostgreSQL. Patroni is PID 1 then, which it supports
# (it reaps the children and passes SIGTERM on).
#   immut-patroni           render into $IMMUT_PATRONI_CONFIG and run Patroni
#   immut-patroni render    print the rendered configuration and exit
# POSIX sh: the image's /bin/sh is dash.
set -eu
template=${IMMUT_PATRONI_TEMPLATE:-/etc/patroni/immut.yml.in}
config=${IMMUT_PATRONI_CONFIG:-/tmp/patroni.yml}
archive_timeout=${ARCHIVE_TIMEOUT:-60s}
case $archive_timeout in
'' | [!0-9]* | *[!0-9a-z]*)
    echo "ARCHIVE_TIMEOUT=$archive_timeout: want a PostgreSQL duration such as 60s or 5min" >&2
    exit 2
    ;;
esac
: "${PATRONI_NAME:?PATRONI_NAME must be set (docker-compose.yml)}"
: "${PATRONI_SUPERUSER_PASSWORD:?PATRONI_SUPERUSER_PASSWORD must be set (POSTGRES_PASSWORD in .env)}"
: "${PATRONI_REPLICATION_PASSWORD:?PATRONI_REPLICATION_PASSWORD must be set (REPLICATION_PASSWORD in .env)}"
: "${PATRONI_REWIND_PASSWORD:?PATRONI_REWIND_PASSWORD must be set (REWIND_PASSWORD in .env)}"
render() {
    sed "s/@ARCHIVE_TIMEOUT@/$archive_timeout/g" "$template"
}
if [ "${1:-}" = render ]; then
    render
    exit 0
fi
render >"$config"
exec patroni "$config"
