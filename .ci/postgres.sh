# Sourced by .ci/run: a throwaway PostgreSQL server on loopback for the store tests.
# Installs Debian's postgresql when missing, runs it as the postgres user from a temporary
# data directory on port 55432, exports METAREC_PG_URL, and stops it when CI exits.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")"
PG_DIR="$(mktemp -d /tmp/metarec-pg.XXXXXX)"
chown postgres:postgres "$PG_DIR"
runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
  -o "-p 55432 -k $PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null
runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p 55432 -U postgres metarec_test
export METAREC_PG_URL="postgresql://postgres@127.0.0.1:55432/metarec_test"
stop_postgres() { runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; }
