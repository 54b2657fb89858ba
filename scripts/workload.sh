#!/usr/bin/env bash
# The realistic workload (issue 19): many citizens, each resource touched rarely, audit on, caches
# at most a tenth of the data, against a release build; the actix "hello" ceiling in the same run.
# Loopback only. Needs wrk (Debian: apt-get install wrk) and, for DB=postgres, psql.
#
#   scripts/workload.sh [CITIZENS] [SECONDS] [CONNECTIONS]
#
# CITIZENS (default 10000) citizens are loaded through the REST API, ten resources each, in
# transaction Bundles (examples/workload_load.rs). Then the gateway restarts with its caches sized
# to a tenth of the database (cold caches), and wrk runs scripts/workload.lua: 70 % reads by random
# id, 20 % searches for a random citizen's CarePlans by CPR chain, 10 % creates and updates.
#
# DB=sqlite (default) uses a fresh file; DB=postgres drops and recreates the database
# `sektorbro_workload` on PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres).
# BIN_DIR=DIR uses DIR/sektorbro, DIR/examples/hello_ceiling and DIR/examples/workload_load.
# KEEP=DIR keeps the loaded database in DIR (SQLite) to rerun the mix with LOADED=DIR.
# READ_PCT and SEARCH_PCT (default 70 and 20; the rest are writes) change the mix, for example
# READ_PCT=100 SEARCH_PCT=0 for reads alone. UPDATE_PCT (default 50) is the share of the writes
# that are updates of existing Goals; the rest create Observations.
# Each row also gives the process's CPU time (user + system) and the bytes it wrote to storage
# (/proc/PID/io write_bytes: the WAL, the checkpoints, the audit journal) per request, read a
# second after the run so that the work a request leaves behind counts. write_bytes counts pages
# as the kernel accounts them and overstates what strace sees written, several times over under
# writes (docs/benchmarks.md, "The date index"): compare builds with it, not disks.
# EXTRA_TOML='…' is appended to the gateway's configuration, while loading and for the mix (for
# example EXTRA_TOML=$'[audit]\nenabled = false' to see what the audit trail costs, or
# EXTRA_TOML=$'[database]\nsqlite_page_size = 2048' for a file with smaller pages).
set -euo pipefail
cd "$(dirname "$0")/.."
CITIZENS="${1:-10000}"
DURATION="${2:-20}"
CONNS="${3:-32}"
THREADS=2
WORKERS=2
GW_PORT=18180
HELLO_PORT=18199
DB="${DB:-sqlite}"
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)"; exit 2; }

if [ -n "${BIN_DIR:-}" ]; then
  GW_BIN="$BIN_DIR/sektorbro"; HELLO_BIN="$BIN_DIR/examples/hello_ceiling"; LOAD_BIN="$BIN_DIR/examples/workload_load"
else
  cargo build --release --bin sektorbro --example hello_ceiling --example workload_load >/dev/null
  GW_BIN=target/release/sektorbro; HELLO_BIN=target/release/examples/hello_ceiling
  LOAD_BIN=target/release/examples/workload_load
fi
WORK=$(mktemp -d)
cleanup() { kill "${GW_PID:-}" "${HELLO_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

DATA="${LOADED:-${KEEP:-$WORK}}"
mkdir -p "$DATA"
case "$DB" in
  sqlite) DB_URL="sqlite://$DATA/workload.db" ;;
  postgres)
    PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
    if [ -z "${LOADED:-}" ]; then
      psql -q "$PG_ADMIN_URL" -c 'DROP DATABASE IF EXISTS sektorbro_workload' -c 'CREATE DATABASE sektorbro_workload'
    fi
    DB_URL="${PG_ADMIN_URL%/*}/sektorbro_workload" ;;
  *) echo "DB must be sqlite or postgres"; exit 2 ;;
esac

TOKEN=workload-development-token-0123456789
start_gateway() { # cache_mib
  local mib=$1
  cat > "$WORK/gw.toml" <<TOML
[server]
workers = $WORKERS
[log]
filter = "warn"
# One load generator on one address: the per-client rate limit would measure itself.
[limits]
rate_per_second = 0.0
[cache]
resources_mib = $mib
searches_mib = $(( (mib + 1) / 2 ))
TOML
  [ -n "${2:-}" ] && printf '%s\n' "$2" >> "$WORK/gw.toml"
  SEKTORBRO_DEV_TOKEN=$TOKEN SEKTORBRO_LISTEN=127.0.0.1:$GW_PORT SEKTORBRO_DATABASE_URL="$DB_URL" \
    "$GW_BIN" serve --config "$WORK/gw.toml" >>"$WORK/gw.log" 2>&1 &
  GW_PID=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$GW_PORT/readyz >/dev/null && return 0; sleep 0.2; done
  echo "gateway did not start:"; cat "$WORK/gw.log"; exit 1
}
stop_gateway() { kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
db_mib() {
  if [ "$DB" = sqlite ]; then du -sm "$DATA" | awk '{print $1}'
  else psql -qtA "$PG_ADMIN_URL" -c "SELECT pg_database_size('sektorbro_workload') / 1048576"; fi
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -srm); load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "${LOADED:-}" ]; then
  start_gateway 64 "${EXTRA_TOML:-}"
  echo "loading $CITIZENS citizens ($((CITIZENS * 10)) resources) into $DB"
  "$LOAD_BIN" "http://127.0.0.1:$GW_PORT/fhir" "$TOKEN" "$CITIZENS" 8
  echo "gateway RSS after load: $(rss_mib "$GW_PID") MiB"
  stop_gateway
fi
SIZE=$(db_mib)
CACHE_MIB=$(( SIZE / 10 )); [ "$CACHE_MIB" -lt 1 ] && CACHE_MIB=1
echo "database: $SIZE MiB; caches: $CACHE_MIB MiB resources + $(( (CACHE_MIB + 1) / 2 )) MiB searches"
start_gateway "$CACHE_MIB" "${EXTRA_TOML:-}"
"$HELLO_BIN" 127.0.0.1:$HELLO_PORT $WORKERS &
HELLO_PID=$!
sleep 0.5

# CPU ticks (user + system) and bytes written to storage by a process so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
written() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
printf '| %-24s | %10s | %8s | %8s | %8s | %8s | %8s | %10s | %12s |\n' run req/s p50 p99 "vs hello" non-2xx "RSS MiB" "CPU µs/req" "written/req"
echo "|--------------------------|-----------:|---------:|---------:|---------:|---------:|---------:|-----------:|-------------:|"
row() { # name output pid cpu_ticks_before bytes_before
  local out=$2 rps p50 p99 non2xx ratio requests cpu io
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  # The work a request leaves behind (its audit record's copy, the WAL's checkpoint) is its
  # own: wait for the process to go quiet before reading its CPU time and bytes written.
  sleep 1
  cpu=$(awk -v a="$4" -v b="$(ticks "$3")" -v n="$requests" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / n }')
  io=$(awk -v a="$5" -v b="$(written "$3")" -v n="$requests" 'BEGIN { printf "%.1f KiB", (b - a) / 1024 / n }')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [ -z "${CEILING:-}" ] && CEILING=$rps
  ratio=$(awk -v a="$rps" -v b="$CEILING" 'BEGIN { printf "%.0f %%", 100 * a / b }')
  printf '| %-24s | %10s | %8s | %8s | %8s | %8s | %8s | %10s | %12s |\n' "$1" "$rps" "$p50" "$p99" "$ratio" "${non2xx:-0}" "$(rss_mib "$3")" "$cpu" "$io"
}
measure() { # name pid wrk-arguments...
  local name=$1 pid=$2 t0 b0 out
  shift 2
  t0=$(ticks "$pid"); b0=$(written "$pid")
  out=$(wrk -t$THREADS -c"$CONNS" -d"${DURATION}s" --latency "$@")
  row "$name" "$out" "$pid" "$t0" "$b0"
}
measure "hello (actix ceiling)" "$HELLO_PID" "http://127.0.0.1:$HELLO_PORT/hello"
MIX="${READ_PCT:-70}/${SEARCH_PCT:-20}/$((100 - ${READ_PCT:-70} - ${SEARCH_PCT:-20}))"
export CITIZENS TOKEN
measure "mix $MIX, $DB" "$GW_PID" -s scripts/workload.lua "http://127.0.0.1:$GW_PORT"
curl -sf -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$GW_PORT/metrics \
  | grep -E '^sektorbro_audit_events_(written|dropped)_total' || true
if grep -qiE 'error|panic' "$WORK/gw.log"; then echo "gateway log errors:"; grep -iE 'error|panic' "$WORK/gw.log" | head -5; fi
