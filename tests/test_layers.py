"""The layer order of `minibert/`, read from every import in its source (those inside functions too):
tokenizer and config -> model -> pipelines -> front ends, each floor importing only floors below it; the
front ends (Ray, the server, the sentence-transformers API) independent of each other; only `__main__`
imports the CLI; and no import cycle anywhere."""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "minibert")

# Floors, lowest first; a module is on the floor of the longest prefix listed.
FLOORS = [
    ("base", ["minibert._tensorflow", "minibert.config", "minibert.cpu", "minibert.textio", "minibert.spm",
              "minibert.tokenizer_files", "minibert.tokenizer", "minibert.outputs", "minibert.weight_changes",
              "minibert.families", "minibert.sentence_folder", "minibert.checkpoint"]),
    ("model", ["minibert.layers", "minibert.heads", "minibert.modeling", "minibert.models", "minibert.auto",
               "minibert.interp", "minibert.compiled", "minibert.engine", "minibert.runtime",
               "minibert.default_model"]),
    ("pipelines", ["minibert.pipelines", "minibert.trace", "minibert.frontend"]),
    ("front ends", ["minibert.ray", "minibert.serve", "minibert.sentence_transformers"]),
    ("command", ["minibert.cli", "minibert.__main__"]),
]
FRONT_ENDS = ["minibert.ray", "minibert.serve", "minibert.sentence_transformers"]
EXEMPT = {"minibert"}  # the package's __init__ re-exports the public names of every floor


def modules() -> dict[str, str]:
    found = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = "minibert." + os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: str, known: dict) -> set[str]:
    """The minibert modules `name` imports, anywhere in its source."""
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "minibert":
                base = node.module
            else:
                continue
            for target in [base] + [f"{base}.{a.name}" for a in node.names]:
                if target in known:
                    out.add(target)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
    # A submodule's own packages are imported before it by Python itself: not an edge of the code's.
    return {m for m in out if m != name and not name.startswith(m + ".")}


def floor(name: str) -> int:
    best, level = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    return level


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def violations(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for a, targets in sorted(edges.items()):
        if a in EXEMPT:
            continue
        for b in sorted(targets):
            if b in EXEMPT:
                found.append(f"{a} imports the package root {b}: import the module it re-exports")
                continue
            fa, fb = floor(a), floor(b)
            if fa is None or fb is None:
                found.append(f"{a if fa is None else b} is on no floor: add it to FLOORS")
            elif fb > fa:
                found.append(f"{a} ({FLOORS[fa][0]}) imports {b} ({FLOORS[fb][0]}), a floor above it")
            front_a = next((f for f in FRONT_ENDS if a == f or a.startswith(f + ".")), None)
            front_b = next((f for f in FRONT_ENDS if b == f or b.startswith(f + ".")), None)
            if front_a and front_b and front_a != front_b:
                found.append(f"front end {front_a} imports front end {front_b} ({a} -> {b})")
            if b == "minibert.cli" and a != "minibert.__main__":
                found.append(f"{a} imports the CLI")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle (as one path through it), by depth-first search."""
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if m in EXEMPT:
                continue
            if state.get(m) == "open":
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(edges):
        if n not in state and n not in EXEMPT:
            visit(n)
    return found


def test_every_import_runs_down_the_floors():
    assert violations(graph()) == []


def test_no_import_cycle():
    loops = [" -> ".join(c) for c in cycles(graph())]
    assert loops == [], "\n".join(loops)


@pytest.mark.parametrize("a, b", [("minibert.serve.app", "minibert.ray.actor"),
                                  ("minibert.pipelines.base", "minibert.serve.app"),
                                  ("minibert.serve.model", "minibert.cli")])
def test_the_contract_fails_on_purpose(a, b):
    """A front end importing another, a floor importing one above it, and the CLI imported: each is caught."""
    edges = graph()
    edges[a] = edges[a] | {b}
    assert violations(edges), f"{a} -> {b} was not caught"
