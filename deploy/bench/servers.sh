#!/usr/bin/env bash
# Production HTTP server for ingest, by measurement: granian (WSGI, as `hookline ingest` runs it)
# against gunicorn's gthread worker, both serving hookline.wsgi:app with 2 worker processes and
# 8 threads each, under wrk with 32 connections posting a Kaleyra receipt.
#
#   deploy/bench/servers.sh                 # 20 s runs, each server twice, interleaved
#   DURATION=10s ROUNDS=1 deploy/bench/servers.sh
#   SERVERS=granian HOOKLINE_LOG_LEVEL=debug deploy/bench/servers.sh   # one server, one setting
#
# Needs: wrk (apt-get install -y wrk), gunicorn in the venv (pip install gunicorn; it is not a
# hookline dependency), Redis and PostgreSQL. Everything listens on loopback only. The Redis
# database named by REDIS_URL is FLUSHed before every run: give it a spare one.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PY=${PYTHON:-$ROOT/.venv/bin/python}
export HOOKLINE_LOG_LEVEL=${HOOKLINE_LOG_LEVEL:-info}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/14}
export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}
export HOOKLINE_LOG_FORMAT=${HOOKLINE_LOG_FORMAT:-json}
DURATION=${DURATION:-20s}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-32}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-8}
PORT=${PORT:-8790}
URL="http://127.0.0.1:$PORT/callbacks/kaleyra-rcs"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"; [[ -n "${SERVER:-}" ]] && kill "$SERVER" 2>/dev/null || true' EXIT

# `exec`: $SERVER is the server's own pid, so the TERM below reaches it.
start() {
  case "$1" in
    granian)
      exec "$PY" -m hookline ingest --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" \
        --threads "$THREADS" ;;
    gunicorn)
      # The same multi-process metrics `hookline ingest` uses, so both pay for them.
      PROMETHEUS_MULTIPROC_DIR="$OUT/prom-gunicorn" exec "$PY" -m gunicorn --bind "127.0.0.1:$PORT" \
        --workers "$WORKERS" --worker-class gthread --threads "$THREADS" --backlog 2048 \
        --log-level warning hookline.wsgi:app ;;
  esac
}

run() {  # run NAME ROUND
  local name=$1 round=$2 log="$OUT/$1-$2"
  mkdir -p "$OUT/prom-gunicorn" && rm -f "$OUT"/prom-gunicorn/*.db
  "$PY" -c "import redis, os; redis.Redis.from_url(os.environ['REDIS_URL']).flushdb()"
  if curl -s "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
    echo "something already answers on port $PORT" >&2
    exit 1
  fi
  start "$name" >"$log.server" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  kill -0 "$SERVER" || { cat "$log.server" >&2; exit 1; }
  wrk -t2 -c"$CONNECTIONS" -d2s -s deploy/bench/post.lua "$URL" >/dev/null  # warm-up
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s deploy/bench/post.lua "$URL" >"$log.wrk"
  kill -TERM "$SERVER"
  wait "$SERVER" || true
  SERVER=
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' "$log.wrk")
  p50=$(awk '$1 == "50%" {print $2}' "$log.wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$log.wrk")
  errors=$(awk '/Socket errors/ {sub(/^ +/, ""); printf "%s; ", $0}
                /^Not 202:/ && $3 > 0 {printf "%s not 202; ", $3}' "$log.wrk")
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$round" "$rps" "$p50" "$p99" "${errors:-none}"
}

echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg);" \
     "wrk $CONNECTIONS connections, $DURATION; log $HOOKLINE_LOG_FORMAT at $HOOKLINE_LOG_LEVEL"
echo "# Python $("$PY" -c 'import platform; print(platform.python_version())')," \
     "granian $("$PY" -c 'import granian; print(granian.__version__)')," \
     "gunicorn $("$PY" -c 'import gunicorn; print(gunicorn.__version__)')," \
     "$(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
echo
echo "| server | run | req/s | p50 | p99 | errors |"
echo "| --- | --- | --- | --- | --- | --- |"
for round in $(seq "$ROUNDS"); do
  for server in ${SERVERS:-granian gunicorn}; do
    run "$server" "$round"
  done
done
