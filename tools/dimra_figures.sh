#!/usr/bin/env bash
# Issue #3's DiMRA verdict on the bundled demo (class setting, forget the digit 7):
#   1. unlearn 7 with EraseDiff (examples/unlearn-class-erasediff.toml → runs/erasediff-7)
#      and with DiMUM (examples/unlearn-class-dimum.toml → runs/dimum-7);
#   2. attack each result with DiMRA (examples/attack-dimra.toml, attack-dimra-dimum.toml:
#      500 fine-tuning steps on MNIST without 7s, the forgotten-class rate probed every 100).
# The papers' claim: fine-tuning-based forgetting (EraseDiff) comes back under the attack,
# DiMUM's does not. Output: runs/dimra-figures-<method>.txt. A finished step is reused, so the
# script resumes where it stopped; the two methods may run as two processes side by side.
#   Usage: LETHE=<binary> tools/dimra_figures.sh [erasediff] [dimum]   (default: both, in turn)
set -euo pipefail
cd "$(dirname "$0")/.."
lethe=${LETHE:-./target/release/lethe}
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(erasediff dimum)
status() {
  [ -f "runs/$1/run.json" ] && python3 -c "import json;print(json.load(open('runs/$1/run.json'))['status'])" || echo none
}
step() { # step NAME SUBCOMMAND CONFIG
  case $(status "$1") in
    finished) echo "reusing runs/$1 (finished)" ;;
    # Never delete a run another process may still be writing.
    running) echo "runs/$1 is marked running (another process, or one that was killed: remove it)"; exit 1 ;;
    *) rm -rf "runs/$1"
       "$lethe" "$2" --config "$3" --name "$1" 2>/dev/null | tail -12 ;;
  esac
}
# 256 samples of class 7 (DDIM-50, no guidance, seed 0) judged by lethe-mnist11: the share
# classified 7, a steadier figure than the runs' 64-sample probes.
judge() {
  "$lethe" demo-check --class 7 --n 256 --checkpoint "$1" 2>/dev/null \
    | python3 -c "import sys,re
t=sys.stdin.read(); c=int(re.search(r' 7:(\d+)', t).group(1))
print('  judged $1: %d/256 = %.1f%% classified 7' % (c, 100*c/256))"
}
[ -s runs/dimra-figures-original.txt ] || judge assets/demo-model | tee runs/dimra-figures-original.txt
for method in "${methods[@]}"; do
  {
    echo "== $method: unlearn the digit 7 (examples/unlearn-class-$method.toml)"
    step "$method-7" unlearn "examples/unlearn-class-$method.toml"
    python3 - "runs/$method-7/metrics.jsonl" <<'PY'
import json, sys
pct = lambda v: "-" if v is None else "%.1f%%" % (100 * v)
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("kind") == "eval":
        ev = e["evaluation"]
        print("  step %5d %-8s forgotten class %6s  P(y=7) %5.3f  confident kept %6s" % (e["step"], e["model"],
              pct(ev["forgotten_class_rate"]), ev["forgotten_class_probability"] or 0, pct(ev["confident_kept_rate"])))
PY
    attack=examples/attack-dimra.toml
    [ "$method" = dimum ] && attack=examples/attack-dimra-dimum.toml
    echo "== DiMRA on runs/$method-7 ($attack)"
    step "dimra-$method-7" attack "$attack"
    judge "runs/$method-7/checkpoints/final"
    judge "runs/dimra-$method-7/checkpoints/final"
  } 2>&1 | tee "runs/dimra-figures-$method.txt"
done
