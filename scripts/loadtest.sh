#!/usr/bin/env bash
# Load test of the HTTP path: read, search and create against a release build on a fresh SQLite
# database, next to a plain actix "hello" route (the ceiling) measured in the same run.
# Loopback only. Needs wrk (Debian: apt-get install wrk).
#
#   scripts/loadtest.sh [DURATION_SECONDS] [CONNECTIONS]
#
# BIN_DIR=DIR uses DIR/sektorbro and DIR/hello_ceiling instead of building (to compare builds).
# CACHE=off runs the gateway with `cache.enabled = false` (the database path of every request).
# AUDIT=off runs it with `audit.enabled = false` (to see what recording every request costs).
# Requests authenticate as the development client (an administrator) with a fixed token.
# Each route's line also gives the server's CPU time per request (from /proc, user + system,
# including the background work a request leaves, such as its audit record's copy), and that
# as a multiple of hello's: the steadier measure of the work per request on a shared machine.
# After the table, the gateway's CPU time per request by thread (its HTTP workers, sqlx's
# SQLite threads, the tokio runtime's background tasks such as the audit ingester), from
# /proc/PID/task/*/stat, threads alive at the end: where the work per request went.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNS="${2:-32}"
THREADS=2
WORKERS=2
GW_PORT=18080
HELLO_PORT=18099
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)"; exit 2; }

if [ -n "${BIN_DIR:-}" ]; then
  GW_BIN="$BIN_DIR/sektorbro"; HELLO_BIN="$BIN_DIR/hello_ceiling"
else
  cargo build --release --bin sektorbro --example hello_ceiling >/dev/null
  GW_BIN=target/release/sektorbro; HELLO_BIN=target/release/examples/hello_ceiling
fi
WORK=$(mktemp -d)
cleanup() { kill "${GW_PID:-}" "${HELLO_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

cat > "$WORK/gw.toml" <<TOML
[server]
workers = $WORKERS
[log]
filter = "warn"
# One load generator on one address: the per-client rate limit would measure itself.
[limits]
rate_per_second = 0.0
TOML
if [ "${CACHE:-on}" = off ]; then printf '[cache]\nenabled = false\n' >> "$WORK/gw.toml"; fi
if [ "${AUDIT:-on}" = off ]; then printf '[audit]\nenabled = false\n' >> "$WORK/gw.toml"; fi
TOKEN=loadtest-development-token-0123456789
AUTH="Authorization: Bearer $TOKEN"
SEKTORBRO_DEV_TOKEN=$TOKEN SEKTORBRO_LISTEN=127.0.0.1:$GW_PORT SEKTORBRO_DATABASE_URL="sqlite://$WORK/lt.db" \
  "$GW_BIN" serve --config "$WORK/gw.toml" >"$WORK/gw.log" 2>&1 &
GW_PID=$!
"$HELLO_BIN" 127.0.0.1:$HELLO_PORT $WORKERS &
HELLO_PID=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:$GW_PORT/readyz >/dev/null && break; sleep 0.2; done

BASE=http://127.0.0.1:$GW_PORT/fhir
# Seed: 200 citizens, each with a care plan; one known patient to read.
for i in $(seq -w 1 200); do
  pid=$(curl -sf -X POST "$BASE/Patient" -H "$AUTH" -H 'Content-Type: application/fhir+json' \
    -d "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:oid:1.2.208.176.1.2\",\"value\":\"0101${i}1234\"}],\"name\":[{\"family\":\"Hansen\",\"given\":[\"Lis\"]}]}" \
    | sed -E 's/.*"id":"([^"]+)".*/\1/')
  curl -sf -X POST "$BASE/CarePlan" -H "$AUTH" -H 'Content-Type: application/fhir+json' \
    -d "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\",\"subject\":{\"reference\":\"Patient/$pid\"}}" >/dev/null
  [ "$i" = "100" ] && READ_ID=$pid
done

cat > "$WORK/create.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Authorization"] = "Bearer loadtest-development-token-0123456789"
wrk.body = '{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/x"},"effectiveDateTime":"2026-12-01T10:00:00+01:00","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}'
LUA

# CPU ticks (user + system) the process has used so far.
# Fields after the command name, which is in parentheses and may hold spaces ("actix-server
# worker 0"): counting fields from the line's start read the wrong ones for such threads (their
# majflt and utime instead of utime and stime: the HTTP workers' kernel time was left out).
stat_ticks() { sed 's/.*) //' "$1" | awk '{print $12 + $13}'; }
ticks() { stat_ticks "/proc/$1/stat"; }
# The same per thread, summed by the thread's name (names with spaces joined by `_`).
thread_ticks() {
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "$(tr ' ' _ < "$t/comm")" "$(stat_ticks "$t/stat")"
  done 2>/dev/null | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
BY_THREAD=""

run() { # name pid url [script]
  local name=$1 pid=$2 url=$3 script=${4:-}
  local out t0 t1 th0
  t0=$(ticks "$pid")
  th0=$(thread_ticks "$pid")
  if [ -n "$script" ]; then out=$(wrk -t$THREADS -c"$CONNS" -d"${DURATION}s" --latency -s "$script" "$url"); else out=$(wrk -t$THREADS -c"$CONNS" -d"${DURATION}s" --latency -H "$AUTH" "$url"); fi
  # Work the request started but finished after its response (the audit journal's copy into
  # the database) belongs to it: wait for the server to go quiet before reading its CPU time.
  sleep 0.5
  t1=$(ticks "$pid")
  local th1
  th1=$(thread_ticks "$pid")
  local rps p50 p99 non2xx requests
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  # CPU time per request (ticks are 10 ms): steadier than req/s on a machine shared with other
  # tenants, whose load moves the hello ceiling far more than it moves the work per request.
  local cpu
  cpu=$(awk -v a="$t0" -v b="$t1" -v n="$requests" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / n }')
  [ -z "${CEILING:-}" ] && CEILING=$rps && CEILING_CPU=$cpu
  local ratio cpu_ratio
  ratio=$(awk -v a="$rps" -v b="$CEILING" 'BEGIN { printf "%.0f %%", 100 * a / b }')
  cpu_ratio=$(awk -v a="$cpu" -v b="$CEILING_CPU" 'BEGIN { printf "%.1f x", a / b }')
  printf '| %-28s | %10s | %8s | %8s | %8s | %8s | %7s | %s |\n' "$name" "$rps" "$p50" "$p99" "$ratio" "$cpu" "$cpu_ratio" "${non2xx:-0}"
  if [ "$pid" = "${GW_PID:-}" ]; then
    BY_THREAD+="$name: $(join <(echo "$th0") <(echo "$th1") | awk -v n="$requests" -v hz="$(getconf CLK_TCK)" \
      '$3 > $2 { printf "%s%s %.1f", sep, $1, ($3 - $2) * 1e6 / hz / n; sep = ", " }')"$'\n'
  fi
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -srm); wrk -t$THREADS -c$CONNS -d${DURATION}s; gateway workers=$WORKERS, SQLite synchronous=full, cache ${CACHE:-on}, audit ${AUDIT:-on}"
echo "| route                        |      req/s |      p50 |      p99 | vs hello | CPU µs/req | CPU vs hello | non-2xx |"
echo "|------------------------------|-----------:|---------:|---------:|---------:|---------:|--------:|--------:|"
run "hello (actix ceiling)" "$HELLO_PID" "http://127.0.0.1:$HELLO_PORT/hello"
run "read Patient/{id}" "$GW_PID" "$BASE/Patient/$READ_ID"
run "search CarePlan by CPR chain" "$GW_PID" "$BASE/CarePlan?patient.identifier=urn:oid:1.2.208.176.1.2%7C01011001234"
run "search Patient?name=hans" "$GW_PID" "$BASE/Patient?name=hans&_count=10"
run "create Observation" "$GW_PID" "$BASE/Observation" "$WORK/create.lua"
echo
echo "gateway CPU µs/req by thread:"
printf '%s' "$BY_THREAD"
# What auditing every request cost: events written, and lost when the queue stayed full (each
# lost one is also in the gateway's log, at error level).
curl -sf -H "$AUTH" http://127.0.0.1:$GW_PORT/metrics | grep -E '^sektorbro_audit_events_(written|dropped)_total' || true
