#!/usr/bin/env python3
"""Checks that two runs logged the same numbers: their metrics.jsonl files must be identical
apart from the wall-clock `step_seconds`. How a refactoring is shown to leave a run unchanged:

    target/release/lethe unlearn --config examples/unlearn-siss.toml --steps 3 --name after
    python3 tools/same_metrics.py runs/before runs/after     # `before`: the same with the old binary

Prints the first differing line and exits 1 when they differ.
"""
import re
import sys


def lines(run):
    text = open(f"{run}/metrics.jsonl", encoding="utf-8").read()
    return re.sub(r'"step_seconds":[-+0-9.eE]+', '"step_seconds":_', text).splitlines()


def main(a, b):
    la, lb = lines(a), lines(b)
    for n, (x, y) in enumerate(zip(la, lb), start=1):
        if x != y:
            print(f"line {n} differs:\n  {a}: {x[:300]}\n  {b}: {y[:300]}")
            return 1
    if len(la) != len(lb):
        print(f"{a} has {len(la)} lines, {b} has {len(lb)}")
        return 1
    print(f"same: {len(la)} lines of metrics.jsonl, identical apart from step_seconds")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
