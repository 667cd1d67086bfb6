#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) each, JOBS (default 2) at a time, from the
# seeds (fuzz/seed.sh) and what earlier runs added to fuzz/corpus/. Logs go to
# fuzz/logs/<target>.log; prints per target the executions, the corpus size and any
# crash files, and exits non-zero if a target found something. From the repository root:
#   bash fuzz/run_all.sh                 # SECONDS_EACH=600 JOBS=2 TARGETS="idx cifar …"
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${SECONDS_EACH:-600}
JOBS=${JOBS:-2}
TARGETS=${TARGETS:-$(sed -n 's/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml | grep -v lethe-fuzz)}
# No sanitizer (safe Rust; fuzz/README.md says why), debug assertions on.
bash fuzz/seed.sh > /dev/null
cargo +nightly fuzz build -s none -a || exit 1
mkdir -p fuzz/logs
# The binaries cargo-fuzz built, run directly: `cargo fuzz run` would rebuild first, again
# for every target if the sources change meanwhile.
run_one() {
    local target=$1
    mkdir -p "fuzz/artifacts/$target"
    "fuzz/target/x86_64-unknown-linux-gnu/release/$target" "fuzz/corpus/$target" \
        -artifact_prefix="fuzz/artifacts/$target/" -max_total_time="$SECONDS_EACH" \
        -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 -print_final_stats=1 \
        > "fuzz/logs/$target.log" 2>&1
}
export -f run_one
export SECONDS_EACH
printf '%s\n' $TARGETS | xargs -P "$JOBS" -I{} bash -c 'run_one {}'
found=0
printf '%-18s %12s %8s %s\n' target executions corpus findings
for target in $TARGETS; do
    log="fuzz/logs/$target.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    crashes=$(find "fuzz/artifacts/$target" -type f 2>/dev/null | wc -l)
    [ "$crashes" -gt 0 ] && found=1
    printf '%-18s %12s %8s %s\n' "$target" "${execs:-?}" "$corpus" "$crashes"
done
exit $found
