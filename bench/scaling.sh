#!/usr/bin/env bash
# How training-step time, sampling-forward time and peak memory grow with batch size and
# image side, for Lethe (burn-flex) and PyTorch side by side: one process per (side, batch)
# so that each peak RSS (GNU time's %M) belongs to that configuration alone.
#
#   bash bench/scaling.sh                       # defaults below
#   SIDES="28 64" BATCHES="8 256" bash bench/scaling.sh
#
# Needs target/release/lethe (cargo build --release) and, for the PyTorch columns, a venv
# with torch and diffusers at $PYTHON (default /tmp/venv/bin/python; see
# bench/pytorch_reference.py). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

SIDES=${SIDES:-"28 32 64"}
BATCHES=${BATCHES:-"8 32 128 256"}
RUNS=${RUNS:-3}
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-/tmp/venv/bin/python}
LETHE=${LETHE:-target/release/lethe}

# Prints "train_ms sample_ms peak_MiB" for one run of a benchmark command.
measure() {
    local out
    out=$( { /usr/bin/time -f "PEAK_KB %M" "$@" 2>&1; } )
    local train sample peak
    train=$(echo "$out" | grep "training step" | awk -F'|' '{print $4}' | tr -d ' ')
    sample=$(echo "$out" | grep "sampling forward" | awk -F'|' '{print $4}' | tr -d ' ')
    peak=$(echo "$out" | awk '/PEAK_KB/ {printf "%.0f", $2 / 1024}')
    echo "${train:-?} ${sample:-?} ${peak:-?}"
}

have_torch=0
if "$PYTHON" -c "import torch, diffusers" 2>/dev/null; then have_torch=1; fi

echo "| side | batch | Lethe train ms | PyTorch train ms | ratio | Lethe sample ms | PyTorch sample ms | ratio | Lethe peak MiB | PyTorch peak MiB |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for side in $SIDES; do
    for batch in $BATCHES; do
        read -r lt ls lm < <(measure "$LETHE" bench --threads "$THREADS" --runs "$RUNS" \
            --size "$side" --train-batch "$batch" --sample-batch "$batch")
        pt="-"; ps="-"; pm="-"
        if [ "$have_torch" = 1 ]; then
            read -r pt ps pm < <(measure "$PYTHON" bench/pytorch_reference.py --threads "$THREADS" \
                --runs "$RUNS" --size "$side" --train-batch "$batch" --sample-batch "$batch")
        fi
        ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f×", a / b; else print "-" }'; }
        echo "| $side | $batch | $lt | $pt | $(ratio "$lt" "$pt") | $ls | $ps | $(ratio "$ls" "$ps") | $lm | $pm |"
    done
done
