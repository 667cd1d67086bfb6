#!/usr/bin/env bash
# Builds fuzz/corpus/<target>/ from the repository's own files: test fixtures, examples and
# bundled assets, cut down to a few kilobytes where the originals are large (a fuzzer mutates
# small inputs faster). Targets whose input starts with a selector byte (lethe::fuzz says
# which) get it prepended here. Run from anywhere; safe to re-run (adds, never deletes).
# CORPUS=DIR writes there instead (the test suite's mutation pass does).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
corpus="${CORPUS:-$root/fuzz/corpus}"
cd "$root"

seed() { # seed TARGET NAME [SELECTOR] < content
    mkdir -p "$corpus/$1"
    if [ -n "${3:-}" ]; then
        { printf "\\x$3"; cat; } > "$corpus/$1/$2"
    else
        cat > "$corpus/$1/$2"
    fi
}

# Checkpoint weights: the golden conditional UNet is the model lethe::fuzz's config describes.
seed safetensors cond.safetensors < tests/fixtures/golden/cond/unet/diffusion_pytorch_model.safetensors
seed safetensors dpm_solver.safetensors < tests/fixtures/golden/dpm_solver.safetensors

for config in assets/demo-model/unet/config.json tests/fixtures/golden/*/unet/config.json \
    tests/fixtures/golden/public/small/*/config.json; do
    seed diffusers_config "unet-$(echo "$config" | tr / _)" 00 < "$config"
done
for config in assets/demo-model/scheduler/scheduler_config.json \
    tests/fixtures/golden/*/scheduler/scheduler_config.json; do
    seed diffusers_config "scheduler-$(echo "$config" | tr / _)" 01 < "$config"
done

# IDX: the header of the bundled MNIST subset with its count cut to 3, and its first 3 images
# (raw and gzip); its labels file the same way.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
gunzip -c assets/data/mnist-10k-images-idx3-ubyte.gz > "$scratch/images"
gunzip -c assets/data/mnist-10k-labels-idx1-ubyte.gz > "$scratch/labels"
first_three() { # first_three FILE HEADER_BYTES ITEM_BYTES: the file cut to 3 items
    head -c 4 "$1"
    printf '\x00\x00\x00\x03'
    head -c $(( $2 + 3 * $3 )) "$1" | tail -c +9
}
first_three "$scratch/images" 16 784 | seed idx images 00
first_three "$scratch/images" 16 784 | gzip -n | seed idx images.gz 00
first_three "$scratch/labels" 8 1 | seed idx labels 01
first_three "$scratch/labels" 8 1 | gzip -n | seed idx labels.gz 01

# CIFAR-10: two records (label byte + 3×32×32), pixels taken from the MNIST images.
{ printf '\x03'; head -c 3088 "$scratch/images" | tail -c 3072
  printf '\x07'; head -c 6160 "$scratch/images" | tail -c 3072
} | seed cifar two-records.bin

# Images: the bundled T-shirt in every format Lethe reads (ImageMagick), 28×28 and 7×5.
seed image tshirt.png < assets/data/tshirt.png
if command -v convert > /dev/null; then
    for ext in jpg bmp webp gif; do
        convert assets/data/tshirt.png -resize 28x28 "$ext:-" | seed image "tshirt.$ext"
        convert assets/data/tshirt.png -resize 7x5! "$ext:-" | seed image "small.$ext"
    done
    convert assets/data/tshirt.png -resize 7x5! -alpha on png:- | seed image small-alpha.png
else
    echo "seed.sh: no ImageMagick \`convert\`: the image corpus has the PNG only" >&2
fi

for f in examples/unlearn-*.toml; do seed experiment_toml "$(basename "$f")" < "$f"; done
for f in examples/*.yaml; do seed siss_yaml "$(basename "$f")" < "$f"; done
for f in examples/pretrain-*.toml; do seed pretrain_toml "$(basename "$f")" < "$f"; done
for f in examples/attack-*.toml; do seed attack_toml "$(basename "$f")" < "$f"; done
# Sweep files name their base config relative to the current directory: run the fuzzer
# from the repository root.
seed sweep_file sweep-siss-lambda.toml 00 < examples/sweep-siss-lambda.toml
seed sweep_file sweep-siss-tshirt.yaml 01 < examples/sweep-siss-tshirt.yaml

for f in tests/fixtures/fid/fewer_samples_than_dims_a.npy tests/fixtures/fid/near_collinear_a.npy; do
    seed npy "$(basename "$f")" 00 < "$f"
done
seed npy stats_a.npz 01 < tests/fixtures/fid/stats_a.npz

for f in tests/fixtures/inception/*.pth; do seed pytorch_weights "$(basename "$f")" < "$f"; done
seed pytorch_weights dpm_solver.safetensors < tests/fixtures/golden/dpm_solver.safetensors

for dir in "$corpus"/*/; do
    echo "$(basename "$dir"): $(find "$dir" -type f | wc -l) inputs, $(du -sh "$dir" | cut -f1)"
done
