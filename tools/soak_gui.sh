#!/usr/bin/env bash
# Soak of the workbench window (issue #30): the demo SISS run, 1,000 steps evaluated every
# 100, started in the real window under Xvfb (`lethe --config … --start`). The window writes
# its frame statistics (the app's own work per frame: events, layout, plots, grids) and its
# resident memory every 5 s (`--frame-log`). Prints them, then the memory after warm-up (the
# first tenth of the steps) and its growth from there, and the worst frame p99, and saves a
# screenshot of the screen at the end.
#   bash tools/soak_gui.sh              # STEPS=1000 EVERY=100 LETHE=target/release/lethe
# Needs xvfb (Xvfb) and ImageMagick (`import`); on a machine without a GPU, Mesa's lavapipe.
# Exits non-zero when the growth after warm-up exceeds BOUND_MIB (default 64) or a frame p99
# exceeds P99_MS (default 16).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-1000}
EVERY=${EVERY:-100}
BOUND_MIB=${BOUND_MIB:-64}
P99_MS=${P99_MS:-16}
LETHE=${LETHE:-$PWD/target/release/lethe}
DISPLAY_NUMBER=${DISPLAY_NUMBER:-:97}
out=$(mktemp -d)
sed -e "s#^runs_dir = .*#runs_dir = \"$out/runs\"#" \
    -e "s/^steps = .*/steps = $STEPS/" \
    -e "s/^every = .*/every = $EVERY/" \
    examples/unlearn-siss.toml > "$out/soak.toml"

Xvfb "$DISPLAY_NUMBER" -screen 0 1600x1000x24 > "$out/xvfb.log" 2>&1 &
xvfb=$!
trap 'kill "$xvfb" 2>/dev/null || true' EXIT
sleep 2
# A fresh settings folder: the window opens with this config, not a saved session.
DISPLAY=$DISPLAY_NUMBER XDG_DATA_HOME="$out/data" HOME="$out" \
    "$LETHE" --config "$out/soak.toml" --start --frame-log "$out/frames.jsonl" > "$out/log.txt" 2>&1 &
pid=$!
start=$(date +%s)
finished() { grep -qs '"status": *"finished"' "$out"/runs/*/run.json; }
while ! finished; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "the workbench exited before the run finished; its log: $out/log.txt" >&2
        tail -n 20 "$out/log.txt" >&2
        exit 1
    fi
    if [ $(($(date +%s) - start)) -gt $((STEPS * 10)) ]; then
        echo "the run did not finish in $((STEPS * 10)) s" >&2
        exit 1
    fi
    sleep 5
done
sleep 6 # the evaluation after the last step arrives; one more frame-log line
DISPLAY=$DISPLAY_NUMBER import -window root "$out/end.png" || true
kill "$pid"
wait "$pid" 2>/dev/null || true
echo "seconds step rss_mib p50_ms p99_ms max_ms (each line: the last 600 frames)"
status=0
python3 - "$out/frames.jsonl" "$STEPS" "$BOUND_MIB" "$P99_MS" <<'PY' || status=$?
import json, sys
path, steps, bound, p99_limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
lines = [json.loads(l) for l in open(path)]
for l in lines:
    print(f"{l['seconds']:.0f} {l['step'] or 0} {l['rss_kib'] / 1024:.0f} "
          f"{l['p50_ms'] or 0:.2f} {l['p99_ms'] or 0:.2f} {l['max_ms'] or 0:.2f}")
warm = [l for l in lines if (l["step"] or 0) >= steps // 10]
rss = [l["rss_kib"] / 1024 for l in warm]
p99 = max(l["p99_ms"] or 0 for l in lines)
growth = max(rss) - rss[0]
print(f"after warm-up (step >= {steps // 10}, {len(rss)} samples): first {rss[0]:.0f} MiB, "
      f"min {min(rss):.0f} MiB, max {max(rss):.0f} MiB, growth {growth:.0f} MiB (bound {bound:.0f} MiB)")
print(f"frames: {lines[-1]['frames']}; worst p99 of any 600-frame window {p99:.2f} ms (bound {p99_limit:.0f} ms), "
      f"worst frame {max(l['max_ms'] or 0 for l in lines):.2f} ms")
sys.exit(1 if growth > bound or p99 > p99_limit else 0)
PY
echo "screenshot at the end: $out/end.png; frame log: $out/frames.jsonl"
exit $status
