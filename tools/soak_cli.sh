#!/usr/bin/env bash
# Soak (issue #30): a long demo SISS run (2,000 steps, evaluated every 250) with the
# process's resident memory sampled every 5 s. Prints the samples, then the resident
# memory after warm-up (the first tenth of the steps) and how much it grew from there.
#   bash tools/soak_cli.sh                 # STEPS=2000 EVERY=250 LETHE=target/release/lethe
# Takes ~20 minutes on a 2-core CPU. Exits non-zero when the growth after warm-up exceeds
# BOUND_MIB (default 64).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-2000}
EVERY=${EVERY:-250}
BOUND_MIB=${BOUND_MIB:-64}
LETHE=${LETHE:-target/release/lethe}
out=$(mktemp -d)
sed -e "s#^runs_dir = .*#runs_dir = \"$out\"#" \
    -e "s/^steps = .*/steps = $STEPS/" \
    -e "s/^every = .*/every = $EVERY/" \
    examples/unlearn-siss.toml > "$out/soak.toml"
"$LETHE" unlearn --config "$out/soak.toml" --name soak > "$out/log.txt" 2>&1 &
pid=$!
start=$(date +%s)
echo "seconds rss_mib step"
while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status" 2>/dev/null || true)
    step=$(grep -o '"step":[0-9]*' "$out/soak/metrics.jsonl" 2>/dev/null | tail -n1 | cut -d: -f2 || true)
    if [ -n "$rss" ]; then
        echo "$(($(date +%s) - start)) $rss ${step:-0}" | tee -a "$out/rss.txt"
    fi
    sleep 5
done
if ! wait "$pid"; then
    echo "the run failed; its log: $out/log.txt" >&2
    tail -n 20 "$out/log.txt" >&2
    exit 1
fi
tail -n 4 "$out/log.txt"
awk -v warm=$((STEPS / 10)) -v bound="$BOUND_MIB" '
    $3 >= warm { if (first == "") first = $2; if ($2 > max) max = $2; if (min == "" || $2 < min) min = $2; n++ }
    END {
        printf "after warm-up (step >= %d, %d samples): first %d MiB, min %d MiB, max %d MiB, growth %d MiB (bound %d MiB)\n", warm, n, first, min, max, max - first, bound
        exit (max - first > bound)
    }' "$out/rss.txt"
