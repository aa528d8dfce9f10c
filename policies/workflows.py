"""Guardrails for the GitHub Actions workflows that preview and deploy the stacks.

The workflows are not Pulumi resources, so these rules are not in the policy pack: they run in the
tests (tests/ci/test_workflows.py) and in `benchmarks/security_scan.py`. Each rule is named like a
pack rule and reports whole sentences.

What the rules assume about GitHub's settings (documented in the workflow headers and in
components/ci.py, where the clouds enforce it through the roles' OIDC subject conditions):
environments named `preview-*` require a maintainer's approval, and the deploy environments admit
`main` only. Under that, a job "holds credentials" when it can mint an OIDC token or reads a secret,
and is "reachable from an unreviewed branch" when a pull request (or any push) can run it without
passing such a gate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
TAG_COMMENT = re.compile(r"#\s*v\d+(\.\d+)*\s*$")
CREDENTIAL_ACTIONS = (
    "aws-actions/configure-aws-credentials",
    "google-github-actions/auth",
    "pulumi/auth-actions",
    "pulumi/actions",
)
"""Actions that obtain or use cloud or Pulumi credentials."""
UNREVIEWED_TRIGGERS = {"pull_request", "pull_request_target", "workflow_run", "issue_comment", "push"}
PREVIEW_PREFIX = "preview-"
DEPLOY_ENVIRONMENTS = {"dev", "staging", "prod"}
LOCK_FILE = "requirements/ci.lock"


@dataclass(frozen=True)
class Violation:
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.where}: {self.message}"


@dataclass
class Workflow:
    path: Path
    text: str
    doc: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def triggers(self) -> set[str]:
        # YAML 1.1 reads the key `on` as True.
        on = self.doc.get("on", self.doc.get(True))
        if isinstance(on, str):
            return {on}
        if isinstance(on, list):
            return set(on)
        return set(on or {})

    @property
    def jobs(self) -> Mapping[str, dict[str, Any]]:
        return self.doc.get("jobs") or {}


def load(directory: Path) -> list[Workflow]:
    """Every workflow file of a `.github/workflows` directory, parsed."""
    out = []
    for path in sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]):
        text = path.read_text()
        out.append(Workflow(path, text, yaml.safe_load(text) or {}))
    return out


def steps(job: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from job.get("steps") or []


def _uses(step: Mapping[str, Any]) -> str:
    return str(step.get("uses") or "")


def holds_credentials(job: Mapping[str, Any]) -> bool:
    """Can the job mint an OIDC token, read a secret or run a credential action?"""
    perms = job.get("permissions")
    if isinstance(perms, Mapping) and perms.get("id-token") == "write":
        return True
    if perms in ("write-all",):
        return True
    text = yaml.safe_dump(job)
    if "secrets." in text and "secrets.GITHUB_TOKEN" not in text:
        return True
    if job.get("secrets") == "inherit":
        return True
    return any(_uses(s).split("@")[0] in CREDENTIAL_ACTIONS for s in steps(job))


def credential_jobs_reachable_unreviewed(workflows: list[Workflow]) -> list[str]:
    """Jobs that hold credentials and that an unreviewed branch can run without a gate.

    Gated means: in a pull-request workflow, the job runs in a `preview-*` environment (required
    reviewers); in a push workflow, in a deploy environment (`main` only) or a reusable workflow
    called only with such environments. A reusable workflow's job is judged by its callers.
    """
    found = []
    for wf in workflows:
        triggers = wf.triggers
        if triggers == {"workflow_call"}:
            continue  # judged where it is called (its `environment:` comes from the caller's input)
        for job_id, job in wf.jobs.items():
            where = f"{wf.name}:{job_id}"
            uses = str(job.get("uses") or "")
            if uses.startswith("./"):
                stack = (job.get("with") or {}).get("stack")
                if stack in DEPLOY_ENVIRONMENTS and triggers <= {"push", "workflow_dispatch"}:
                    continue
                if _called_holds_credentials(wf.path.parent, uses):
                    found.append(where)
                continue
            if not holds_credentials(job):
                continue
            env = job.get("environment")
            env_name = env.get("name") if isinstance(env, Mapping) else env
            if not env_name:
                found.append(where)
            elif triggers & {"pull_request", "pull_request_target", "workflow_run", "issue_comment"}:
                if not str(env_name).startswith(PREVIEW_PREFIX):
                    found.append(where)
            elif not (str(env_name) in DEPLOY_ENVIRONMENTS or "inputs.stack" in str(env_name)):
                found.append(where)
    return found


def _called_holds_credentials(directory: Path, uses: str) -> bool:
    path = directory / Path(uses).name
    if not path.exists():
        return True
    called = Workflow(path, path.read_text(), yaml.safe_load(path.read_text()) or {})
    return any(holds_credentials(j) for j in called.jobs.values())


def check(workflows: list[Workflow], repo_root: Path | None = None) -> list[Violation]:
    """Every workflow rule over every workflow."""
    out: list[Violation] = []
    for wf in workflows:
        out += _pinned(wf)
        out += _permissions(wf)
        out += _checkout(wf)
        out += _installs(wf)
        out += _triggers(wf)
        out += _injection(wf)
    out += [
        Violation("gha-credentials-behind-review", j, "holds credentials but runs without a reviewed environment")
        for j in credential_jobs_reachable_unreviewed(workflows)
    ]
    return out


def unpinned_actions(workflows: list[Workflow]) -> int:
    return sum(1 for v in check(workflows) if v.rule == "gha-actions-pinned-by-sha")


def _pinned(wf: Workflow) -> list[Violation]:
    out = []
    for n, line in enumerate(wf.text.splitlines(), 1):
        m = re.match(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", line)
        if not m or m.group(1).startswith("./"):
            continue
        ref, rest = m.group(1), m.group(2)
        if not SHA_PIN.match(ref):
            out.append(
                Violation(
                    "gha-actions-pinned-by-sha",
                    f"{wf.name}:{n}",
                    f"`{ref}` is a mutable reference; pin the full commit SHA and keep the tag in a comment.",
                )
            )
        elif not TAG_COMMENT.search(rest):
            out.append(
                Violation(
                    "gha-actions-pinned-by-sha", f"{wf.name}:{n}", f"`{ref}` has no `# vX.Y.Z` comment naming its tag."
                )
            )
    return out


def _permissions(wf: Workflow) -> list[Violation]:
    out = []
    if wf.doc.get("permissions") != {}:
        out.append(
            Violation(
                "gha-permissions-least",
                wf.name,
                "the workflow's default permissions must be `{}`; grant each job what it needs.",
            )
        )
    for job_id, job in wf.jobs.items():
        if "permissions" not in job:
            out.append(
                Violation("gha-permissions-least", f"{wf.name}:{job_id}", "the job does not declare its permissions.")
            )
        elif job["permissions"] in ("write-all", "read-all"):
            out.append(
                Violation("gha-permissions-least", f"{wf.name}:{job_id}", "blanket permissions; list the scopes.")
            )
    return out


def _checkout(wf: Workflow) -> list[Violation]:
    out = []
    for job_id, job in wf.jobs.items():
        for step in steps(job):
            if _uses(step).startswith("actions/checkout@"):
                if (step.get("with") or {}).get("persist-credentials") is not False:
                    out.append(
                        Violation(
                            "gha-checkout-no-persisted-credentials",
                            f"{wf.name}:{job_id}",
                            "actions/checkout leaves the token in .git/config; set `persist-credentials: false`.",
                        )
                    )
    return out


def _installs(wf: Workflow) -> list[Violation]:
    out = []
    for job_id, job in wf.jobs.items():
        for step in steps(job):
            for line in str(step.get("run") or "").splitlines():
                if not re.search(r"\bpip3?\s+install\b", line):
                    continue
                locked = "--require-hashes" in line and LOCK_FILE in line
                own_package = "--no-deps" in line and re.search(r"-e\s+\.(\s|$)", line)
                if not (locked or own_package):
                    out.append(
                        Violation(
                            "gha-install-from-lock",
                            f"{wf.name}:{job_id}",
                            f"`{line.strip()}` resolves dependencies at install time; install "
                            f"`--require-hashes -r {LOCK_FILE}`, then the project with `--no-deps`.",
                        )
                    )
    return out


def _triggers(wf: Workflow) -> list[Violation]:
    bad = wf.triggers & {"pull_request_target", "workflow_run"}
    return [
        Violation(
            "gha-no-privileged-pr-triggers",
            wf.name,
            f"`{t}` runs with the base repository's secrets on code a pull request controls; use `pull_request`.",
        )
        for t in sorted(bad)
    ]


def _injection(wf: Workflow) -> list[Violation]:
    out = []
    for job_id, job in wf.jobs.items():
        for step in steps(job):
            run = str(step.get("run") or "")
            if "${{" in run:
                out.append(
                    Violation(
                        "gha-no-expressions-in-scripts",
                        f"{wf.name}:{job_id}",
                        "a `${{ }}` expression inside `run:` is pasted into the script; pass it through `env:`.",
                    )
                )
    return out
