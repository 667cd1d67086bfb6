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
# A finished runs/fig-<method> is reused (so the script resumes where it stopped) when it
# was unlearned from the current assets/demo-model and its config is newer than the example.
finished_from_current() {
  local dir=runs/fig-$1
  [ -f "$dir/run.json" ] && [ "$dir/config.toml" -nt "examples/unlearn-$1.toml" ] || return 1
  python3 - "$dir/run.json" assets/demo-model/unet/diffusion_pytorch_model.safetensors <<'PY'
import hashlib, json, sys
run = json.load(open(sys.argv[1]))
sha = hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()
sys.exit(0 if run["status"] == "finished" and run["source_sha256"] == sha else 1)
PY
}
check() { "$lethe" demo-check --checkpoint "$1" --n 512 2>/dev/null | grep -E "confident|memorised"; }
if [ ! -s "$out" ]; then
  { echo "== original: assets/demo-model"; check assets/demo-model; } | tee "$out"
fi
for m in "${methods[@]}"; do
  name=fig-$m
  if finished_from_current "$m"; then
    echo "reusing runs/$name (finished, from the current demo model, newer than its config)"
  else
    rm -rf "runs/$name"
    "$lethe" unlearn --config "examples/unlearn-$m.toml" --name "$name" 2>/dev/null | tail -8
  fi
  per_step=$(python3 -c "import json;print('%.2f'%json.load(open('runs/$name/run.json'))['seconds_per_step'])")
  { echo "== $m: examples/unlearn-$m.toml → runs/$name/checkpoints/final, $per_step s/step"
    check "runs/$name/checkpoints/final"; } | tee -a "$out"
done
