#!/usr/bin/env bash
# Run one fuzz target's entry point on the stable toolchain for SECONDS (tests/fuzz_stable.rs;
# the cargo-fuzz targets in fuzz/ run the same entry points under nightly). The test binary is
# built, then run directly (cargo would hold the build lock for the whole run), niced so it can
# run beside other work. FUZZ_SEED=N replays a run; a panicking input lands in fuzz/artifacts/.
#   scripts/fuzz-stable.sh narrative 600
# Targets: json_body search_query narrative jwt cert_subject
set -euo pipefail
target="${1:?usage: $0 TARGET SECONDS}"
seconds="${2:?usage: $0 TARGET SECONDS}"
cd "$(dirname "$0")/.."
build=$(cargo test --test fuzz_stable --no-run 2>&1) || { echo "$build" >&2; exit 1; }
bin=$(echo "$build" | grep -o 'target/[^ )]*/fuzz_stable-[0-9a-f]*' | tail -n 1)
[ -x "$bin" ] || { echo "fuzz-stable: test binary not found" >&2; exit 1; }
FUZZ_SECONDS="$seconds" exec nice -n 19 "$bin" --ignored --exact --nocapture "$target"
