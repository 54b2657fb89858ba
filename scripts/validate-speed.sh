#!/usr/bin/env bash
# Issue #17's speed measure, as a user runs the validator: `sektorbro validate --format json` over
# the official R4 examples against the parse floor (the same files read and parsed into
# serde_json::Value by crates/fhir-core/examples/parse_floor.rs), both as whole processes,
# alternating in one run so both see the same load. Reports wall and user CPU time per pass and
# their ratios. Figures in docs/validation.md.
#
#   cargo build --release --bin sektorbro && cargo build --release -p fhir-core --example parse_floor
#   scripts/validate-speed.sh [PASSES] [FOLDER]   (SEKTORBRO=, PARSE_FLOOR= to time other builds)
#
# FOLDER defaults to the R4 examples package extracted to a temporary folder (its package.json
# left out: 5,306 examples).
set -euo pipefail
cd "$(dirname "$0")/.."
passes="${1:-5}"
target="${CARGO_TARGET_DIR:-target}"
cli="${SEKTORBRO:-$target/release/sektorbro}"
floor="${PARSE_FLOOR:-$target/release/examples/parse_floor}"
for b in "$cli" "$floor"; do
    [ -x "$b" ] || { echo "build $b first (see the header)" >&2; exit 2; }
done
dir="${2:-}"
if [ -z "$dir" ]; then
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' EXIT
    tar -xzf ../shared/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz -C "$dir"
    rm -f "$dir/package/package.json"
    dir="$dir/package"
fi
echo "files: $(find "$dir" -name '*.json' | wc -l) in $dir; $(uptime)"

# wall and user CPU seconds of one whole process, output discarded
measure() {
    local t0 t1 f
    f="$(mktemp)"
    t0=$(date +%s.%N)
    /usr/bin/time -f '%U' -o "$f" "$@" >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    echo "$(echo "$t1 - $t0" | bc) $(tail -n 1 "$f")"
    rm -f "$f"
}

cw=0; cu=0; fw=0; fu=0
for i in $(seq "$passes"); do
    read -r w u < <(measure "$floor" "$dir")
    fw=$(echo "$fw + $w" | bc); fu=$(echo "$fu + $u" | bc)
    printf 'pass %d  parse floor  wall %6.2f s  user %6.2f s\n' "$i" "$w" "$u"
    read -r w u < <(measure "$cli" validate --format json "$dir")
    cw=$(echo "$cw + $w" | bc); cu=$(echo "$cu + $u" | bc)
    printf 'pass %d  validate     wall %6.2f s  user %6.2f s\n' "$i" "$w" "$u"
done
printf 'total over %d passes: validate wall %.2f s, user %.2f s; parse floor wall %.2f s, user %.2f s\n' \
    "$passes" "$cw" "$cu" "$fw" "$fu"
printf 'ratio: wall %.2fx, user CPU %.2fx; %s\n' \
    "$(echo "$cw / $fw" | bc -l)" "$(echo "$cu / $fu" | bc -l)" "$(uptime)"
