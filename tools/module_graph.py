#!/usr/bin/env python3
"""Prints Lethe's module graph from the `use` paths in src/ and checks the layering rules of
docs/design.md: no import cycle between modules, and nothing but the binary's `cli` imports a
command or `pretrain`. Exits non-zero when a rule is broken.

    python3 tools/module_graph.py          # from the repository root

Test modules (`#[cfg(test)]` to the end of a file) and comments are ignored; a child module
using its parent's items (`super::`) is not counted as an edge.
"""
import collections
import glob
import re
import sys


def module_name(path):
    name = path[len("src/"):-len(".rs")]
    if name.endswith("/mod"):
        name = name[: -len("/mod")]
    return name.replace("/", "::")


def code_of(path):
    text = open(path, encoding="utf-8").read()
    cut = text.find("#[cfg(test)]")
    body = text if cut < 0 else text[:cut]
    return "\n".join(l for l in body.split("\n") if not l.lstrip().startswith("//"))


def references(module, body):
    parent = module.rsplit("::", 1)[0] if "::" in module else ""
    refs = re.findall(r"\b(?:crate|lethe)::([a-z_:]+)", body)
    refs += [f"{parent}::{p}" if parent else p for p in re.findall(r"\bsuper::([a-z_:]+)", body)]
    for head, items in re.findall(r"use (?:crate|lethe)::([a-z_]+)::\{([^}]*)\}", body):
        refs += [f"{head}::{i.strip().split('::')[0]}" for i in items.split(",") if i.strip()[:1].islower()]
    return refs


def main():
    files = glob.glob("src/**/*.rs", recursive=True)
    modules = {module_name(f) for f in files}
    edges = collections.defaultdict(set)
    for path in files:
        module = module_name(path)
        if module in ("lib", "main"):
            continue
        for ref in references(module, code_of(path)):
            parts = ref.strip(":").split("::")
            target = next(
                ("::".join(parts[:k]) for k in range(len(parts), 0, -1) if "::".join(parts[:k]) in modules),
                None,
            )
            if target and target != module and not module.startswith(target + "::"):
                edges[module].add(target)

    top = collections.defaultdict(set)
    for a, targets in edges.items():
        for b in targets:
            ta, tb = a.split("::")[0], b.split("::")[0]
            if ta != tb:
                top[ta].add(tb)
    print("top-level modules and what they import:")
    for module in sorted(top):
        print(f"  {module:11} -> {', '.join(sorted(top[module]))}")

    def reaches(a, b, seen):
        if a == b:
            return True
        seen.add(a)
        return any(reaches(n, b, seen) for n in edges.get(a, ()) if n not in seen)

    problems = sorted({" <-> ".join(sorted((a, b))) for a in edges for b in edges[a] if reaches(b, a, set())})
    problems = [f"import cycle: {p}" for p in problems]
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            upward = target.split("::")[0] in ("cli", "pretrain")
            if upward and not module.startswith("cli"):
                problems.append(f"upward arrow: {module} imports {target}")
    print("\n".join(problems) if problems else "no import cycle, no upward arrow into cli or pretrain")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
