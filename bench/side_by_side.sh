#!/usr/bin/env bash
# Lethe and PyTorch timing the same work on the same model, one right after the other, as
# one table with their ratio and the share of the CPU's fp32 peak each reaches (GFLOP per row
# from `lethe bench`: the convolutions' and attention products, forward ×3 for a training
# step). Arguments go to both `lethe bench` and `bench/pytorch_reference.py`:
#
#   bash bench/side_by_side.sh                                   # the demo UNet
#   bash bench/side_by_side.sh --checkpoint DIR --train-batch 16 --sample-batch 16
#
# BEFORE=path/to/an/older/lethe adds its column (a before/after table from one command);
# BEFORE_ARGS replaces the arguments for it (e.g. `--model cifar10` for a build that predates
# `--checkpoint`: the same architecture with random weights).
# Needs target/release/lethe and a venv with torch and diffusers at $PYTHON (default
# /tmp/venv/bin/python; see bench/pytorch_reference.py). THREADS (default 2) for all.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-/tmp/venv/bin/python}
LETHE=${LETHE:-target/release/lethe}
BEFORE=${BEFORE:-}

# "what|batch|median ms|GFLOP" per row of a bench table on stdin.
rows() { awk -F'|' '/^\| (training|sampling)/ {gsub(/^ +| +$/, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $4); gsub(/ /, "", $7); print $2 "|" $3 "|" $4 "|" $7}'; }

lethe_out=$("$LETHE" bench --threads "$THREADS" "$@" 2>&1)
echo "$lethe_out" | grep -E "UNet \(|^fp32 peak" | sed 's/^/Lethe: /'
torch_out=$("$PYTHON" bench/pytorch_reference.py --threads "$THREADS" "$@" 2>&1)
echo "$torch_out" | grep -E "UNet" | sed 's/^/PyTorch: /'
before_out=""
if [ -n "$BEFORE" ]; then
    # shellcheck disable=SC2086 # BEFORE_ARGS is a list of words on purpose
    before_out=$("$BEFORE" bench --threads "$THREADS" ${BEFORE_ARGS:-"$@"} 2>&1) || echo "before: $before_out" >&2
fi
peak=$(echo "$lethe_out" | sed -n 's/^fp32 peak \([0-9.]*\) GFLOP.*/\1/p')

header="| what | batch |"; rule="|---|---:|"
if [ -n "$BEFORE" ]; then header="$header Lethe before ms | before ÷ PyTorch |"; rule="$rule---:|---:|"; fi
echo "$header Lethe ms | PyTorch ms | Lethe ÷ PyTorch | Lethe of fp32 peak | PyTorch of fp32 peak |"
echo "$rule---:|---:|---:|---:|---:|"
echo "$lethe_out" | rows | while IFS='|' read -r what batch lethe_ms gflop; do
    torch_ms=$(echo "$torch_out" | awk -F'|' -v w="$what" -v b="$batch" '{gsub(/^ +| +$/, "", $2); gsub(/ /, "", $3)} $2 == w && $3 == b {gsub(/ /, "", $4); print $4; exit}')
    share() { awk -v g="$gflop" -v ms="$1" -v p="$peak" 'BEGIN { if (p == "" || ms == "") print "—"; else printf "%.0f%%", 100 * g / (ms / 1e3) / p }'; }
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "—"; else printf "**%.2f×**", a / b }'; }
    line="| $what | $batch |"
    if [ -n "$BEFORE" ]; then
        before_ms=$(echo "$before_out" | awk -F'|' -v w="$what" -v b="$batch" '{gsub(/^ +| +$/, "", $2); gsub(/ /, "", $3)} $2 == w && $3 == b {gsub(/ /, "", $4); print $4; exit}')
        line="$line ${before_ms:-—} | $(ratio "$before_ms" "$torch_ms") |"
    fi
    echo "$line $lethe_ms | ${torch_ms:-—} | $(ratio "$lethe_ms" "$torch_ms") | $(share "$lethe_ms") | $(share "$torch_ms") |"
done
