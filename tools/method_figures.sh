#!/usr/bin/env bash
# The per-method figures of issue #3 on the bundled demo: runs each example config with
# `lethe unlearn` (into runs/fig-<method>) and judges the original and every result with
# `lethe demo-check` (512 unconditional DDIM-50 samples, seed 0): memorised T-shirt rate
# (SISS criterion) and confident-digit share. Seconds per step come from run.json.
#   tools/method_figures.sh [method ...]     (default: all seven; needs a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
lethe=./target/release/lethe
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(siss siss-no-is erasediff neggrad finetune vdu dimum)
out=runs/method-figures.txt
check() { "$lethe" demo-check --checkpoint "$1" --n 512 2>/dev/null | grep -E "confident|memorised"; }
if [ ! -s "$out" ]; then
  { echo "== original: assets/demo-model"; check assets/demo-model; } | tee "$out"
fi
for m in "${methods[@]}"; do
  name=fig-$m
  rm -rf "runs/$name"
  "$lethe" unlearn --config "examples/unlearn-$m.toml" --name "$name" 2>/dev/null | tail -8
  per_step=$(python3 -c "import json;print('%.2f'%json.load(open('runs/$name/run.json'))['seconds_per_step'])")
  { echo "== $m: examples/unlearn-$m.toml → runs/$name/checkpoints/final, $per_step s/step"
    check "runs/$name/checkpoints/final"; } | tee -a "$out"
done
