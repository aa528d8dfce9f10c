"""The README's countable facts are the code's: resources per stack, rule count, test count, the
`aicloud plan prod --summary` excerpt, and the scripts `make bench` runs versus the scripts the
figures cite. `python benchmarks/readme_facts.py --write` regenerates them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_facts  # noqa: E402

README = (ROOT / "README.md").read_text()


def _whole_suite(config: pytest.Config) -> bool:
    """Whether this session collected every test (so its item count is the suite's)."""
    args = [a for a in config.args if not a.startswith("-")]
    whole = not args or [str(Path(a).resolve()) for a in args] == [str(ROOT / "tests")]
    return whole and not config.option.keyword and not config.option.markexpr and not config.option.deselect


def test_every_figure_script_exists_and_make_bench_runs_it():
    bench = readme_facts.bench_scripts()
    cited = readme_facts.cited_scripts(README)
    assert cited, "the figures table cites no script"
    assert sorted(set(cited) - set(bench)) == [], "cited in the README's figures but not run by `make bench`"
    missing = [b for b in bench if not (ROOT / "benchmarks" / b).is_file()]
    assert not missing, f"`make bench` runs scripts that do not exist: {missing}"


def test_the_generated_facts_are_current(request):
    facts = readme_facts.plan_facts()
    facts["bench"] = readme_facts.bench_scripts()
    if _whole_suite(request.config):
        facts["tests"] = len(request.session.items)
    else:  # a partial run cannot count the suite: take the README's word for that one number
        facts["tests"] = int(re.search(r"Test suite: (\d+) tests", README).group(1))
    expected = readme_facts.apply(README, facts)
    if expected != README:
        diff = [
            f"README: {a!r}\n  code: {b!r}"
            for a, b in zip(README.splitlines(), expected.splitlines(), strict=False)
            if a != b
        ]
        pytest.fail("README.md is stale (python benchmarks/readme_facts.py --write):\n" + "\n".join(diff))


def test_the_generator_rewrites_every_quoted_count():
    facts = {
        "stacks": {"prod": {"regions": 5, "resources": 999, "components": 1, "helm": 2}},
        "rules": 77,
        "tests": 1234,
        "bench": ["a.py"],
        "excerpt": ["region key  X", "aws-use1  Y", "GPUs (min-max): Z", "cost per hour: W"],
    }
    out = readme_facts.apply(README, facts)
    assert "The policy pack in `policies/` (77 rules" in out
    assert "Test suite: 1234 tests" in out and "`make bench` runs `a.py`" in out
    assert "\naws-use1  Y\n" in out and "\ncost per hour: W\n" in out


def test_the_policy_pack_readme_counts_the_rules():
    from policies.registry import RULES

    text = readme_facts.POLICIES_README.read_text()
    assert re.match(r"^\d+ guardrails ", text.splitlines()[2]), "policies/README.md opens with its rule count"
    assert readme_facts.apply_policies(text, len(RULES)) == text, "policies/README.md: run make facts"
    assert readme_facts.apply_policies("# x\n\n3 guardrails for y", 7) == "# x\n\n7 guardrails for y"
