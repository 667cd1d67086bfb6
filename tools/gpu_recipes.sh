#!/usr/bin/env bash
# Two checks on a lent GPU machine (no package registry), in one short call:
#
# 1. Issue #24's recipe search: what does it take for a demo-sized model to reach 70%
#    confident digits? Three PyTorch trainings of tools/pytorch_demo_train.py run side by
#    side on the GPU for $TRAIN_SECONDS each (the demo UNet, a wider one, the wider one with
#    attention at 7×7; batch 128, LR 2e-4 cosine-decayed to 5% over the time box, 450 T-shirt
#    copies, 20% null labels), keeping an EMA checkpoint every $EVERY steps; each variant's
#    last checkpoint and one midway are then judged by `lethe demo-check` (512 DDIM-50
#    samples, lethe-mnist11) on the GPU, after Lethe's own GPU self-check on that model.
#    PyTorch only finds the recipe; the bundled model stays trained by Lethe.
# 2. Issue #26's gradient accumulation on a GPU: a random google/ddpm-cifar10-32-shaped model
#    (35.7M), SISS at batch 64, two steps with grad_accumulation 1 and 4 on wgpu; each run's
#    losses and peak memory (device pools) land in $OUT.
#
# Needs: a `lethe` release binary at $BIN (or $BIN.xz), the Vulkan loader's Debian packages in
# .gl/, diffusers + importlib_metadata wheels in .whl/ (PyTorch is on the machine).
#   OUT=/tmp/recipes BIN=target/release/lethe tools/gpu_recipes.sh
set -u
OUT=${OUT:-/tmp/recipes-out}
WORK=${WORK:-/tmp/recipes}
TRAIN_SECONDS=${TRAIN_SECONDS:-300}
EVERY=${EVERY:-3000}
DEVICE=${DEVICE:-cuda}
BACKEND=${BACKEND:-wgpu}
N=${N:-512}               # samples per demo-check
ACC_BATCH=${ACC_BATCH:-64}
mkdir -p "$OUT" "$WORK"
export LETHE_CACHE_DIR=$WORK/cache PYTHONUNBUFFERED=1

. "$(dirname "$0")/gpu_machine_setup.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/machine.txt" 2>&1
python3 -c "import torch, diffusers; print(torch.__version__, diffusers.__version__)" >>"$OUT/machine.txt" 2>&1

# 1. the trainings, in the background
train() {
    local name=$1
    shift
    python3 tools/pytorch_demo_train.py --device "$DEVICE" --out "$WORK/$name" --batch 128 \
        --lr 2e-4 --decay 0.05 --warmup 200 --steps 1000000 --seconds "$TRAIN_SECONDS" \
        --copies 450 --drop 0.2 --every "$EVERY" --keep "$@" >"$WORK/$name.log" 2>&1
}
train small --channels 32,64,64 --layers 1 --groups 8 &
train wide --channels 64,128,128 --layers 2 --groups 16 &
train wide-attn --channels 64,128,128 --layers 2 --groups 16 --attention &

# 2. gradient accumulation on the GPU, meanwhile
python3 - "$WORK/acc" "$ACC_BATCH" <<'EOF' >"$WORK/acc.log" 2>&1
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
from diffusers import UNet2DModel
root, batch = Path(sys.argv[1]), int(sys.argv[2])
UNet2DModel(sample_size=32, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=None, dropout=0.1).save_pretrained(root / "ckpt/unet")
(root / "ckpt/scheduler").mkdir(parents=True, exist_ok=True)
(root / "ckpt/scheduler/scheduler_config.json").write_text(json.dumps({
    "_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear",
    "beta_start": 0.0001, "beta_end": 0.02, "variance_type": "fixed_large", "clip_sample": True}))
rng = np.random.default_rng(0)
for name, count in (("retain", 64), ("forget", 4)):
    (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
for k in (1, 4):
    (root / f"siss-{k}.toml").write_text(f"""checkpoint = "{root}/ckpt"
runs_dir = "{root}/runs"
name = "acc-{k}"
[data]
retain = ["{root}/retain"]
forget = ["{root}/forget"]
[method]
name = "siss"
[train]
steps = 2
batch_size = {batch}
grad_accumulation = {k}
[eval]
every = 0
at_end = false
""")
EOF
for k in 1 4; do
    timeout 150 "$BIN" unlearn --config "$WORK/acc/siss-$k.toml" --backend "$BACKEND" >"$OUT/accumulation-$k.txt" 2>&1
    echo "exit $?" >>"$OUT/accumulation-$k.txt"
    cat "$WORK/acc/runs/acc-$k/metrics.jsonl" >>"$OUT/accumulation-$k.txt" 2>/dev/null
    grep -o '"peak_memory":{[^}]*}' "$WORK/acc/runs/acc-$k/run.json" >>"$OUT/accumulation-$k.txt" 2>/dev/null
done
cp "$WORK/acc.log" "$OUT/" 2>/dev/null

wait
for name in small wide wide-attn; do
    sed 's/.*\r//' "$WORK/$name.log" >"$OUT/train-$name.log"
done

# 3. judge each variant's last checkpoint and one midway, three at a time
judge() {
    local name=$1 dir last mid
    last=$(ls -d "$WORK/$name"/checkpoint-* 2>/dev/null | sort -t- -k2 -n | tail -1)
    mid=$(ls -d "$WORK/$name"/checkpoint-* 2>/dev/null | sort -t- -k2 -n | tail -3 | head -1)
    for dir in $mid $last; do
        echo "== $dir" >>"$OUT/judge-$name.txt"
        timeout 120 "$BIN" demo-check --checkpoint "$dir" --n "$N" --backend "$BACKEND" 2>&1 |
            sed 's/.*\r//' >>"$OUT/judge-$name.txt"
    done
}
judge small &
judge wide &
judge wide-attn &
wait
last=$(ls -d "$WORK/small"/checkpoint-* | sort -t- -k2 -n | tail -1)
tar -C "$(dirname "$last")" -cJf "$OUT/small-last.tar.xz" "$(basename "$last")" 2>/dev/null
echo "done in ${SECONDS}s"
