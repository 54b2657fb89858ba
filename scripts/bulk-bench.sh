#!/usr/bin/env bash
# Bulk Data export speed and memory on SQLite (docs/bulk.md; figures in docs/benchmarks.md,
# "Bulk export"): seed RESOURCES Observations, then export them all in a fresh process that runs
# the whole gateway state, and print resources/s and the process's peak resident memory.
#
#   scripts/bulk-bench.sh [RESOURCES]        # default 1000000
#
# Needs about 1.5 GB of disk per million resources (database and NDJSON) under $TMPDIR.
# Record `uptime` next to the figure: the machine's load changes it.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
cargo build --release --bin sektorbro --example hello_ceiling --example workload_load --example bulk_export >/dev/null
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "load before: $(uptime)"
target/release/examples/bulk_export seed "$WORK" "$N"
target/release/examples/bulk_export export "$WORK"
echo "load after: $(uptime)"
