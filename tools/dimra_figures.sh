#!/usr/bin/env bash
# Issue #3's DiMRA verdict on the bundled demo (class setting, forget the digit 7):
#   1. unlearn 7 with EraseDiff (examples/unlearn-class-erasediff.toml → runs/erasediff-7)
#      and with DiMUM (examples/unlearn-class-dimum.toml → runs/dimum-7);
#   2. attack each result with DiMRA (examples/attack-dimra.toml, attack-dimra-dimum.toml:
#      500 fine-tuning steps on MNIST without 7s, the forgotten-class rate probed every 100).
# The papers' claim: fine-tuning-based forgetting (EraseDiff) comes back under the attack,
# DiMUM's does not. Output: runs/dimra-figures.txt. A finished step is reused, so the script
# resumes where it stopped.  Usage: tools/dimra_figures.sh [lethe binary]
set -euo pipefail
cd "$(dirname "$0")/.."
lethe=${1:-./target/release/lethe}
out=runs/dimra-figures.txt
finished() {
  [ -f "runs/$1/run.json" ] && python3 -c "import json,sys;sys.exit(json.load(open('runs/$1/run.json'))['status']!='finished')"
}
step() { # step NAME SUBCOMMAND CONFIG
  if finished "$1"; then
    echo "reusing runs/$1 (finished)"
  else
    rm -rf "runs/$1"
    "$lethe" "$2" --config "$3" --name "$1" 2>/dev/null | tail -12
  fi
}
{
  for method in erasediff dimum; do
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
  done
} 2>&1 | tee "$out"
