"""The plan before and after a change: same bytes, and how long each takes (issue 12's plan-time figure).

Extracts `--base REF` (a commit, branch or tag) with `git archive` into a temporary folder (the
repository's worktrees and refs are left alone), then, for each stack, runs
`python -m stacks.cli plan STACK --json --markdown --diagram` once in the base tree and once in this
working tree (uncommitted changes included) and compares the four outputs (JSON, review Markdown,
SVG diagram, the full text listing on stdout) byte for byte. The only canonicalisation: each tree's
own absolute path is replaced by `<root>` (no output of the shipped stacks contains it today; a plan
that printed its source folder would otherwise differ for that reason alone).

Then it times `python -m stacks.cli plan prod --summary --quiet` in fresh processes, alternating
base and head (`--repeat` pairs) so both see the same machine load, with `/usr/bin/time`: wall,
CPU (user + system) and peak RSS. Exit status 1 if any output differs.

    python benchmarks/plan_before_after.py --base main [--stacks dev staging prod] [--repeat 3]
    python benchmarks/plan_before_after.py --base HEAD   # `make bench`: uncommitted changes vs the last commit
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _extract(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True)
    tree = into / "base"
    tree.mkdir()
    tar_path = into / "base.tar"
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _env(tree: Path) -> dict[str, str]:
    # The tree's packages win over any editable install of another checkout.
    return {**os.environ, "PYTHONPATH": str(tree)}


def _outputs(tree: Path, stack: str, out: Path) -> dict[str, bytes]:
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", "stacks.cli", "plan", stack, "--no-fail"]
    cmd += ["--json", str(out / "plan.json"), "--markdown", str(out / "plan.md"), "--diagram", str(out / "plan.svg")]
    done = subprocess.run(cmd, cwd=tree, env=_env(tree), capture_output=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: plan {stack} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    files = {name: (out / name).read_bytes() for name in ("plan.json", "plan.md", "plan.svg")}
    files["stdout"] = done.stdout
    root = str(tree.resolve()).encode()
    return {name: data.replace(root, b"<root>") for name, data in files.items()}


def _timed(tree: Path, stack: str) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system), peak RSS in MB of one fresh `plan --summary`."""
    cmd = ["/usr/bin/time", "-f", "%U %S %M", sys.executable, "-m", "stacks.cli", "plan", stack, "--summary"]
    started = time.perf_counter()
    done = subprocess.run([*cmd, "--quiet"], cwd=tree, env=_env(tree), capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{tree}: plan {stack} --summary exited {done.returncode}: {done.stderr[-2000:]}")
    user, system, kb = done.stderr.split()[-3:]
    return wall, float(user) + float(system), int(kb) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="git ref to compare with (e.g. main, a commit)")
    parser.add_argument("--stacks", nargs="+", default=["dev", "staging", "prod"])
    parser.add_argument("--repeat", type=int, default=3, help="timed base/head pairs of the prod plan")
    parser.add_argument("--timed-stack", default="prod")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plan-before-after-") as tmp:
        base = _extract(args.base, Path(tmp))
        differing = []
        for stack in args.stacks:
            old = _outputs(base, stack, Path(tmp) / "out" / "base" / stack)
            new = _outputs(ROOT, stack, Path(tmp) / "out" / "head" / stack)
            for name in old:
                same = old[name] == new[name]
                print(f"{stack:8} {name:10} {len(old[name]):>9,} bytes  {'same' if same else 'DIFFERENT'}")
                if not same:
                    differing.append(f"{stack}/{name}")
        runs: dict[str, list[tuple[float, float, float]]] = {"base": [], "head": []}
        for _ in range(args.repeat):
            runs["base"].append(_timed(base, args.timed_stack))
            runs["head"].append(_timed(ROOT, args.timed_stack))
        for label, rows in runs.items():
            walls, cpus, mbs = zip(*rows, strict=True)
            print(
                f"{label} `plan {args.timed_stack} --summary`, {args.repeat} fresh processes: "
                f"wall {min(walls):.1f}-{max(walls):.1f} s (median {statistics.median(walls):.1f}), "
                f"CPU {min(cpus):.1f}-{max(cpus):.1f} s (median {statistics.median(cpus):.1f}), "
                f"peak RSS {max(mbs):.0f} MB"
            )
    if differing:
        print(f"outputs differ: {', '.join(differing)}")
        return 1
    print(f"all outputs identical ({len(args.stacks)} stacks x 4 outputs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
