# Sourced by the scripts that run on a lent GPU machine (tools/gpu_figures.sh,
# tools/gpu_recipes.sh): unpacks the carried `lethe` binary ($BIN.xz, default .dev/lethe),
# the Vulkan loader (.gl/*.deb, where the machine has none) and the Python wheels
# (.whl/*.whl, e.g. diffusers; PyTorch is on the machine), and points Vulkan at NVIDIA's ICD.
BIN=${BIN:-.dev/lethe}
if [ -f "$BIN.xz" ] && [ ! -f "$BIN" ]; then
    xz -dk "$BIN.xz" 2>/dev/null || python3 -c "import lzma, sys; open(sys.argv[1], 'wb').write(lzma.open(sys.argv[1] + '.xz').read())" "$BIN"
    chmod +x "$BIN"
fi
if ! ldconfig -p | grep -q libvulkan.so.1 && ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
