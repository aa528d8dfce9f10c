"""The bad-stack corpus (`tests/spine/bad_stacks/`): stack files derived from the shipped stacks
with mistakes planted, one or several at a time (see `make_corpus.py`). `aicloud plan` must exit 2
without a traceback, name every planted key path, and name no other."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.cli import main

CORPUS = Path(__file__).parent / "bad_stacks"
CASES = sorted(p for p in CORPUS.iterdir() if p.suffix == ".yaml")


def expectations(case: Path) -> tuple[set[str], list[str]]:
    """The key paths (`# expect:`) and phrases (`# expect-text:`) a case's header promises."""
    header = case.with_suffix(".expect") if case.with_suffix(".expect").exists() else case
    text = header.read_bytes().decode("utf-8", errors="replace")
    paths = set(re.findall(r"^# expect: (\S+)$", text, re.M))
    phrases = re.findall(r"^# expect-text: (.+)$", text, re.M)
    return paths, phrases


def named_paths(stderr: str) -> set[str]:
    """The key paths of the error lines (`  - aicloud:<path>: <message>`)."""
    out = set()
    for line in stderr.splitlines():
        if line.startswith("  - aicloud:"):
            out.add(line[4:].split(": ", 1)[0])
    return out


def test_the_corpus_is_large_and_plants_several_mistakes_at_once():
    assert len(CASES) >= 40
    several = [c for c in CASES if len(expectations(c)[0]) >= 3]
    assert len(several) >= 8
    for c in CASES:
        head = c.with_suffix(".expect") if c.with_suffix(".expect").exists() else c
        assert head.read_bytes().startswith(b"# derived-from: stacks/Pulumi."), c.name


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_stack_exits_2_naming_every_planted_path_and_nothing_else(case: Path, tmp_path: Path, capsys):
    shutil.copyfile(case, tmp_path / f"Pulumi.{case.stem}.yaml")
    code = main(["plan", case.stem, "--stacks-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    paths, phrases = expectations(case)
    assert named_paths(err) == paths, err
    for phrase in phrases:
        assert phrase in err, err


def test_a_bad_stack_exits_2_without_traceback_as_a_process(tmp_path: Path):
    for name in ("binary", "several-prod-storage"):
        shutil.copyfile(CORPUS / f"{name}.yaml", tmp_path / f"Pulumi.{name}.yaml")
        proc = subprocess.run(
            [sys.executable, "-m", "stacks.cli", "plan", name, "--stacks-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr


def test_the_readme_quotes_the_corpus_size():
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    several = sum(1 for c in CASES if len(expectations(c)[0]) >= 2)
    not_stacks = sum(1 for c in CASES if expectations(c)[1])
    assert f"holds {len(CASES)} stack" in readme and f"all {len(CASES)} pass" in readme
    assert f"{len(CASES) - several - not_stacks} with one planted mistake, {several} with several" in readme
