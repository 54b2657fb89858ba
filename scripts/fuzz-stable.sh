#!/usr/bin/env bash
# Run one fuzz target's entry point on the stable toolchain for SECONDS (tests/fuzz_stable.rs;
# the cargo-fuzz targets in fuzz/ run the same entry points under nightly). Niced, so it can run
# beside other work. FUZZ_SEED=N replays a run.
#   scripts/fuzz-stable.sh narrative 600
# Targets: json_body search_query narrative jwt cert_subject
set -euo pipefail
target="${1:?usage: $0 TARGET SECONDS}"
seconds="${2:?usage: $0 TARGET SECONDS}"
cd "$(dirname "$0")/.."
FUZZ_SECONDS="$seconds" exec nice -n 19 cargo test --test fuzz_stable -- \
    --ignored --exact --nocapture "$target"
