#!/usr/bin/env bash
# Instructions the gateway's process executes per HTTP request (user space, every thread),
# counted by callgrind: the same on every run to about half a per cent, where wall-clock load
# tests on a shared machine move by a fifth. Issue 19's measure of the request path.
#
#   scripts/request-instructions.sh [N] [PATH]
#
# Starts the release build under valgrind with instrumentation off, seeds one Patient, turns
# instrumentation on, sends N requests (default 4000) for PATH (default: that Patient's read)
# on one keep-alive connection, waits 2 s for background work (the audit record's copy into
# the database), and prints the count for N and for 0 requests and their difference per
# request. BODY=FILE sends each request as a POST of that FHIR JSON to PATH (a create; default path:
# the body's resource type), expecting 201. AUDIT=off runs with `audit.enabled = false`; BIN= picks
# the binary; KEEP_CG=PREFIX keeps
# the callgrind files (PREFIX.0, PREFIX.N) for callgrind_annotate. Loopback only.
# Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-4000}"
REQ_PATH="${2:-}"
BIN="${BIN:-target/release/sektorbro}"
[ -n "${BIN_BUILT:-}" ] || cargo build --release --bin sektorbro >/dev/null
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)"; exit 2; }
PORT=18097
TOKEN=loadtest-development-token-0123456789

count() { # requests -> instructions
  local n=$1 work gw pid path
  work=$(mktemp -d)
  printf '[server]\nworkers = 1\n[log]\nfilter = "warn"\n[limits]\nrate_per_second = 0.0\n' > "$work/gw.toml"
  if [ "${AUDIT:-on}" = off ]; then printf '[audit]\nenabled = false\n' >> "$work/gw.toml"; fi
  SEKTORBRO_DEV_TOKEN=$TOKEN SEKTORBRO_LISTEN=127.0.0.1:$PORT SEKTORBRO_DATABASE_URL="sqlite://$work/db" \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" \
    "$BIN" serve --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
  gw=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
  pid=$(curl -sf -X POST "http://127.0.0.1:$PORT/fhir/Patient" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/fhir+json' \
    -d '{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.208.176.1.2","value":"0101011234"}],"name":[{"family":"Hansen","given":["Lis"]}]}' \
    | sed -E 's/.*"id":"([^"]+)".*/\1/')
  if [ -n "${BODY:-}" ]; then
    path=${REQ_PATH:-/fhir/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["resourceType"])' "$BODY")}
  else
    path=${REQ_PATH:-/fhir/Patient/$pid}
  fi
  callgrind_control -i on "$gw" >/dev/null 2>&1
  python3 - "$PORT" "$n" "$path" "$TOKEN" "${BODY:-}" <<'PY'
import http.client, sys
port, n, path, token, body = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
data = open(body, 'rb').read() if body else None
headers = {'Authorization': 'Bearer ' + token}
if data:
    headers['Content-Type'] = 'application/fhir+json'
want = 201 if data else 200
c = http.client.HTTPConnection('127.0.0.1', port)
for _ in range(n):
    c.request('POST' if data else 'GET', path, body=data, headers=headers)
    r = c.getresponse()
    r.read()
    if r.status != want:
        sys.exit(f'{path}: HTTP {r.status}')
PY
  sleep 2
  kill -INT "$gw"
  wait "$gw" || true
  sed -n 's/^summary: //p' "$work/cg.out"
  [ -n "${KEEP_CG:-}" ] && cp "$work/cg.out" "$KEEP_CG.$n"
  rm -rf "$work"
}

zero=$(count 0)
full=$(count "$N")
echo "instructions: $full for $N requests, $zero for none"
echo "per request: $(( (full - zero) / N ))"
