"""`aicloud` as a process skips interpreter shutdown's last full garbage collection; called as a
function (tests, other programs) it leaves the caller's collector alone.

The plan runs with the collector off, so its million-odd objects were all walked once more at
interpreter exit (1.8-4 s of the prod plan's CPU). `stacks.cli.main()` without arguments is the
process entry point (console script, `python -m stacks.cli`) and freezes the heap before returning.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from stacks.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_main_with_arguments_leaves_the_collector_of_its_caller_alone(capsys, monkeypatch):
    # Recorded, not real: another test of the session (the model server) may have frozen objects
    # already, and frozen objects that die leave the count, so the count itself proves nothing here.
    freezes: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append(1))
    args = ["diff", str(ROOT / "missing-old.json"), str(ROOT / "missing-new.json")]
    assert main(args) == 2
    assert "cannot read plan" in capsys.readouterr().err
    assert freezes == []
    monkeypatch.setattr(sys, "argv", ["aicloud", *args])
    assert main() == 2
    assert freezes == [1]


def test_the_process_entry_point_freezes_the_heap_before_exit_and_keeps_its_exit_code():
    child = (
        "import gc, sys\n"
        "sys.argv = ['aicloud', 'diff', 'missing-old.json', 'missing-new.json']\n"
        "from stacks.cli import main\n"
        "code = main()\n"
        "print(code, gc.get_freeze_count() > 0, gc.isenabled())\n"
    )
    done = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "True", "True"]
    assert "cannot read plan missing-old.json" in done.stderr
