#!/bin/sh
# Patroni's post_bootstrap (deploy/patroni/patroni.yml): runs once, on the
# member that initialises the cluster, with a connection string to it as the
# superuser as its one argument. Creates the database immut uses; the
# migrate service creates its tables.
set -eu
psql -v ON_ERROR_STOP=1 -d "$1" -c 'CREATE DATABASE immut'
