#!/usr/bin/env bash
# Several `metarec serve` replicas on one PostgreSQL store, on one machine.
#
#   deploy/replicas.sh MODEL_DIR POSTGRES_URL [REPLICAS=2] [FIRST_PORT=8001]
#
# Each replica is its own process on its own port (put a load balancer such as nginx or
# HAProxy in front for one address). They share the event store: an event acknowledged by any
# replica is durable in PostgreSQL and is in every replica's next recommendation for that
# user (each replica reads the store on every call). They share one --service name
# ($METAREC_SERVICE_NAME, or one made per run of this script), so a POST /admin/reload to any
# replica reaches them all (the directory must be readable at the same path by each). Writes
# need METAREC_API_KEY. Ctrl-C stops them all.
set -euo pipefail
model="${1:?model directory}"; store="${2:?postgresql://user@host:port/db}"
replicas="${3:-2}"; first="${4:-8001}"
: "${METAREC_API_KEY:?set METAREC_API_KEY (the key for writes)}"
metarec="${METAREC:-metarec}"
service="${METAREC_SERVICE_NAME:-replicas-$(date +%s)-$$}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for ((r = 0; r < replicas; r++)); do
  port=$((first + r))
  "$metarec" serve --model "$model" --store "$store" --port "$port" --service "$service" &
  pids+=($!)
done
for ((r = 0; r < replicas; r++)); do
  port=$((first + r))
  for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break
    sleep 0.5
  done
  echo "replica $r: http://127.0.0.1:$port"
done
wait
