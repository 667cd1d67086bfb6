#!/usr/bin/env bash
# The figures of README's "GPU" section, taken on a machine with an NVIDIA GPU and no
# package registry (how they were taken for the README; see there for the results):
#   - a `lethe` release binary built elsewhere, at $BIN (default .dev/lethe);
#   - the Vulkan loader as Debian packages in .gl/ (unpacked into / when the machine has none);
#   - diffusers and importlib_metadata wheels in .whl/ (PyTorch is on the machine).
# Every step's output goes to $OUT/log.txt (and the terminal's tail); a step that fails does
# not stop the others.
#   OUT=/tmp/gpu BIN=target/release/lethe tools/gpu_figures.sh
set -u
OUT=${OUT:-/tmp/gpu-figures}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
export LETHE_CACHE_DIR=/tmp/lethe-cache

. "$(dirname "$0")/gpu_machine_setup.sh"

T0=$(date +%s)
BUDGET=${BUDGET:-420}   # seconds for all steps: later steps get what is left, or are skipped
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - ($(date +%s) - T0)))
    if [ "$left" -lt 15 ]; then echo "== $name: skipped (time budget spent)" | tee -a "$LOG"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name: $*" >>"$LOG"
    local start=$(date +%s%N)
    timeout "$limit" "$@" >/tmp/step.txt 2>&1
    local rc=$?
    local ms=$((($(date +%s%N) - start) / 1000000))
    # Progress bars redraw with carriage returns: keep each bar's last state only.
    sed 's/.*\r//' /tmp/step.txt >>"$LOG"
    echo "== $name: exit $rc, wall $ms ms" >>"$LOG"
    echo "== $name: exit $rc, wall $ms ms"
}

step machine 20 sh -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; python3 -c "import torch, diffusers; print(torch.__version__, diffusers.__version__, torch.cuda.get_device_name())"'
step doctor-wgpu 90 "$BIN" doctor --backend wgpu --probe-upsample --json "$OUT/doctor-wgpu.json"
step bench-demo-wgpu 60 "$BIN" bench --backend wgpu --train-batch 32,128 --sample-batch 64,256 --runs 5
step bench-demo-torch 60 python3 bench/pytorch_reference.py --device cuda --train-batch 32,128 --sample-batch 64,256 --runs 5
step bench-cifar-wgpu 90 "$BIN" bench --backend wgpu --model cifar10 --train-batch 32,128 --sample-batch 128 --runs 5
step bench-cifar-torch 60 python3 bench/pytorch_reference.py --device cuda --model cifar10 --train-batch 32,128 --sample-batch 128 --runs 5
step siss-demo-wgpu 150 "$BIN" unlearn --config examples/unlearn-siss.toml --steps 50 --backend wgpu --name gpu-siss
cp runs/gpu-siss/run.json "$OUT/siss-run.json" 2>/dev/null
cp runs/gpu-siss/metrics.jsonl "$OUT/siss-metrics.jsonl" 2>/dev/null
step doctor-attention 45 "$BIN" doctor --backend wgpu --checkpoint tests/fixtures/golden/cond
step doctor-auto 30 "$BIN" doctor
step doctor-cpu 30 "$BIN" doctor --backend cpu --repeats 1
# A google/ddpm-cifar10-32-sized model with random weights, written by diffusers.
step cifar-model 30 python3 -c '
import sys; sys.path.insert(0, "bench")
import torch
from diffusers import UNet2DModel, DDPMScheduler
from pytorch_reference import CIFAR10
torch.manual_seed(0)
UNet2DModel(**CIFAR10).save_pretrained("/tmp/cifar-random/unet")
DDPMScheduler(num_train_timesteps=1000).save_pretrained("/tmp/cifar-random/scheduler")
print("written /tmp/cifar-random")'
step doctor-cifar 90 "$BIN" doctor --backend wgpu --checkpoint /tmp/cifar-random --batch 8 --repeats 2
