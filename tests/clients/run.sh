#!/usr/bin/env bash
# The client scenario (tests/clients/README.md): starts the already built gateway binary on a
# random loopback port with a fresh SQLite file, the development token and gateway.toml, runs fhirpy,
# fhirclient and fhir-kit-client against it, checks every body the Node client saw with
# fhirclient's strict R4 models, and stops the gateway. Builds nothing: run `cargo build` and
# tests/clients/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${SEKTORBRO_BIN:-target/debug/sektorbro}"
VENV="${SEKTORBRO_CLIENTS_VENV:-target/clients-venv}"
PY="$VENV/bin/python"

[ -x "$BIN" ] || { echo "clients: $BIN is not built (cargo build)" >&2; exit 2; }
[ -x "$PY" ] && [ -d tests/clients/node/node_modules/fhir-kit-client ] ||
    { echo "clients: the clients are not installed (tests/clients/setup.sh)" >&2; exit 2; }

WORK="$(mktemp -d)"
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export SEKTORBRO_DEV_TOKEN="clients-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
export SEKTORBRO_FHIR_BASE="http://127.0.0.1:$PORT/fhir"
export SEKTORBRO_RECORD="$WORK/node-responses.jsonl"

SEKTORBRO_LISTEN="127.0.0.1:$PORT" SEKTORBRO_DATABASE_URL="sqlite://$WORK/gateway.db" \
    RUST_LOG="${RUST_LOG:-warn}" "$BIN" serve --config tests/clients/gateway.toml >"$WORK/gateway.log" 2>&1 &
GATEWAY=$!
stop() {
    kill -TERM "$GATEWAY" 2>/dev/null && wait "$GATEWAY" 2>/dev/null || true
    if [ "${FAILED:-0}" != 0 ]; then
        echo "---- gateway log (last 40 lines)"; tail -n 40 "$WORK/gateway.log"
    fi
    rm -rf "$WORK"
}
trap stop EXIT

for _ in $(seq 1 300); do
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "http://127.0.0.1:$PORT/readyz" 2>/dev/null && break
    kill -0 "$GATEWAY" 2>/dev/null || { cat "$WORK/gateway.log"; echo "clients: the gateway did not start" >&2; exit 1; }
    sleep 0.1
done

PASSED=0
FAILED=0
part() {
    local name="$1"; shift
    echo "== clients: $name"
    if "$@"; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); echo "clients: $name FAILED"; fi
}
part fhirpy "$PY" tests/clients/python/fhirpy_scenario.py
part fhirclient "$PY" tests/clients/python/fhirclient_scenario.py
part fhir-kit-client node tests/clients/node/scenario.mjs
part "strict R4 models on fhir-kit-client's responses" "$PY" tests/clients/python/strict.py "$SEKTORBRO_RECORD"

echo "clients: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
