"""Imports flow one way, and no modules import each other in a circle.

    contracts  <-  workloads, components  <-  stacks (config, program, steps, plan)  <-  stacks.cli
    policies: read config types (stacks.config) and components; imported only by the plan and the CLI

Every import counts: module level, inside functions, and under `TYPE_CHECKING` (an annotation-only
import still means "this module knows that one"). Imports are read with `ast`, nothing is executed.
A package's own `__init__` running before its submodules is Python's doing, not an edge here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contracts", "workloads", "components", "stacks", "policies")

# What each layer may import from our packages (a module always may import its own package).
# Longest matching prefix wins.
ALLOWED: dict[str, tuple[str, ...]] = {
    "contracts": ("contracts",),
    "workloads": ("contracts", "workloads"),
    "components": ("contracts", "components"),
    # A new module under stacks/ imports nothing of ours until it is given a layer here.
    "stacks": (),
    # The config and its sections' types: components only, never the pack or the program.
    "stacks.config": ("contracts", "components", "stacks.config", "stacks.policy_settings"),
    "stacks.policy_settings": ("contracts", "components"),
    "stacks.deployment": ("contracts", "components", "stacks.config"),
    # The plan as data: the steps read it, so it may not reach the program or the renderers.
    "stacks.plan.model": ("contracts", "components", "stacks.config", "stacks.plan.mocks", "stacks.plan.cost"),
    "stacks.plan.cost": ("contracts", "components"),
    "stacks.plan.mocks": (),
    "stacks.plan.diff": (),
    "stacks.steps": (
        "contracts",
        "components",
        "stacks.config",
        "stacks.deployment",
        "stacks.plan.model",
        "stacks.plan.mocks",
    ),
    "stacks.program": ("contracts", "components", "stacks.config", "stacks.deployment", "stacks.steps"),
    "stacks.__main__": ("contracts", "components", "stacks.config", "stacks.program"),
    # The offline plan runs the program and the pack.
    "stacks.plan": (
        "contracts",
        "components",
        "stacks.config",
        "stacks.deployment",
        "stacks.steps",
        "stacks.program",
        "stacks.plan",
        "policies",
    ),
    "stacks.cli": ("contracts", "components", "workloads", "stacks", "policies"),
    # Policies read config types, never the program, the steps or the plan.
    "policies": ("contracts", "components", "policies", "stacks.config", "stacks.policy_settings"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules `name` imports, anywhere in the file."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known]
            targets = subs if len(subs) == len(node.names) else [mod, *subs]
        else:
            continue
        for target in targets:
            # `import a.b.c` of a module we do not have (a name inside it): its nearest module.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def _rule(module: str) -> tuple[str, ...]:
    best = max((k for k in ALLOWED if module == k or module.startswith(k + ".")), key=len)
    return ALLOWED[best]


def direction_errors(edges: dict[str, set[str]]) -> list[str]:
    errors = []
    for module, targets in sorted(edges.items()):
        allowed = _rule(module)
        for target in sorted(targets):
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                errors.append(f"{module} imports {target}")
    return errors


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def edges() -> dict[str, set[str]]:
    return graph()


def test_the_graph_is_read(edges):
    """The checker sees real imports (a parser that finds nothing would pass everything)."""
    assert "stacks.steps.storage" in edges["stacks.program"]
    assert "stacks.plan.model" in edges["stacks.steps.serving"]  # a TYPE_CHECKING import
    assert "stacks.program" in edges["stacks.plan"]  # an import inside a function
    assert "contracts.lake" in edges["workloads.storage"]
    assert "policies.common.values" in edges["policies.common.pools"]


def test_every_module_has_a_layer(edges):
    for module in edges:
        _rule(module)


def test_imports_flow_one_way(edges):
    errors = direction_errors(edges)
    assert not errors, (
        "imports against the direction contracts <- workloads, components <- stacks <- cli:\n" + "\n".join(errors)
    )


def test_no_import_cycles(edges):
    found = cycles(edges)
    assert not found, "modules that import each other in a circle:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checks_catch_what_they_claim():
    """A component reaching into workloads, and a three-module circle, are reported."""
    bad = {"components.x": {"workloads.storage"}, "a.b": {"a.c"}, "a.c": {"a.d"}, "a.d": {"a.b"}}
    assert direction_errors({"components.x": bad["components.x"]}) == ["components.x imports workloads.storage"]
    assert cycles(bad) == [["a.b", "a.c", "a.d"]]
