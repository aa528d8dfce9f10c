"""The same stack gives the same plan on every run: every section lists its rows in one order.

The mock engine receives registrations as their inputs resolve, so their arrival order changed
between runs (and with the interpreter's hash seed): the prod plan's Node pools, Cluster platform,
Cluster access, Capacity, Readiness sections and the resource list came out in a different order
from one run to the next. `canonical_order` fixes the order; these tests plan twice and compare.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from stacks.plan import canonical_order
from stacks.plan.mocks import Registration

ROOT = Path(__file__).resolve().parents[2]


def _plan_files(tmp_path: Path, seed: int, stack: str) -> tuple[bytes, bytes]:
    out = tmp_path / f"{stack}-{seed}"
    env = {**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [
            sys.executable, "-m", "stacks.cli", "plan", stack, "--quiet", "--no-fail",
            "--json", f"{out}.json", "--markdown", f"{out}.md",
        ],
        cwd=ROOT, env=env, check=True, timeout=300,
    )  # fmt: skip
    return Path(f"{out}.json").read_bytes(), Path(f"{out}.md").read_bytes()


def test_planning_prod_twice_gives_the_same_sections_and_review(tmp_path):
    """Two processes with different hash seeds (which reorder every set and the registrations)."""
    json_a, md_a = _plan_files(tmp_path, 1, "prod")
    json_b, md_b = _plan_files(tmp_path, 2, "prod")
    a, b = json.loads(json_a), json.loads(json_b)
    differing = [key for key in a["sections"] if a["sections"][key] != b["sections"].get(key)]
    assert differing == []
    assert [r["urn"] for r in a["resources"]] == [r["urn"] for r in b["resources"]]
    assert a["policy"] == b["policy"]
    assert json_a == json_b and md_a == md_b
    # Pools follow the stack file: regions as listed, each region's pools as listed.
    assert [(p["regionKey"], p["pool"]) for p in a["pools"]][:3] == [
        ("aws-use1", "system"),
        ("aws-use1", "train"),
        ("aws-use1", "train-spot"),
    ]


def _reg(urn: str, parent: str | None) -> Registration:
    name = urn.rsplit("::", 1)[-1]
    return Registration(urn, "t:m:T", name, parent, True, None, {}, False, False)


def test_canonical_order_ignores_arrival_order_and_keeps_parents_first():
    regs = [
        _reg("root", None),
        _reg("u::b", "root"),
        _reg("u::a", "root"),
        _reg("u::a-child-2", "u::a"),
        _reg("u::a-child-1", "u::a"),
        _reg("u::orphan", "missing-parent"),
    ]
    expected = [r.urn for r in canonical_order(regs)]
    for seed in range(20):
        shuffled = regs[:]
        random.Random(seed).shuffle(shuffled)
        got = [r.urn for r in canonical_order(shuffled)]
        assert got == expected
    assert len(expected) == len(regs)
    position = {u: i for i, u in enumerate(expected)}
    for r in regs:
        if r.parent in position:
            assert position[r.parent] < position[r.urn]
    assert expected.index("u::a") < expected.index("u::b")
    assert expected.index("u::a-child-1") < expected.index("u::a-child-2")
