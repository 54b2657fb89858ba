#!/usr/bin/env bash
# Installs the third-party clients tests/clients/run.sh drives, pinned: fhirpy and fhirclient in a
# virtual environment (target/clients-venv, hashes checked), fhir-kit-client with `npm ci`.
# CI (.ci/run) calls it; run it once by hand before tests/clients/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${SEKTORBRO_CLIENTS_VENV:-target/clients-venv}"

if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else
        echo "setup: python3's venv module is missing (Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r tests/clients/python/requirements.txt

command -v npm >/dev/null || { echo "setup: npm is missing (node 20 and npm are needed)" >&2; exit 1; }
(cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error)
echo "setup: clients installed (venv $VENV, tests/clients/node/node_modules)"
