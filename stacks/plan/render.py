"""Plan renderers: a terminal table, JSON for tools, Markdown for a pull-request comment."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from policies.registry import RULES
from stacks.plan.mocks import Registration
from stacks.plan.model import Plan, is_unknown
from stacks.plan.sections import build_sections

AFTER_APPLY = "(known after apply)"

# The inputs worth a reviewer's eye, per resource type; others show their first scalar inputs.
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "pulumi:providers:aws": ("region",),
    "pulumi:providers:gcp": ("project", "region"),
    "aws:ec2/vpc:Vpc": ("cidrBlock",),
    "aws:ec2/subnet:Subnet": ("availabilityZone", "cidrBlock"),
    "aws:eks/cluster:Cluster": ("version", "vpcConfig.endpointPublicAccess"),
    "aws:eks/nodeGroup:NodeGroup": ("instanceTypes", "amiType", "capacityType", "scalingConfig", "taints"),
    "aws:ec2/launchTemplate:LaunchTemplate": ("metadataOptions.httpTokens",),
    "gcp:container/cluster:Cluster": ("location", "minMasterVersion", "privateClusterConfig.enablePrivateEndpoint"),
    "gcp:container/nodePool:NodePool": (
        "nodeConfig.machineType",
        "autoscaling",
        "nodeConfig.spot",
        "nodeConfig.taints",
    ),
    "gcp:compute/subnetwork:Subnetwork": ("region", "ipCidrRange"),
    "kubernetes:helm.sh/v3:Release": ("chart", "version", "namespace"),
}


def _dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, str) and limit > 60:
        text = value
        return text if len(text) <= limit else text[: limit - 1] + "…"
    if is_unknown(value):
        return AFTER_APPLY
    if isinstance(value, list | dict):
        text = json.dumps(value, separators=(",", ":"), default=str)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def key_inputs(reg: Registration) -> str:
    """A one-line digest of the inputs that matter for review."""
    keys = KEY_INPUTS.get(reg.type)
    if keys is None:
        keys = tuple(k for k, v in reg.inputs.items() if isinstance(v, str | int | float | bool))[:2]
    parts = []
    for key in keys:
        value = _dig(reg.inputs, key)
        if value is not None:
            parts.append(f"{key.split('.')[-1]}={_short(value, 48)}")
    return _short(" ".join(parts), 110)


def _table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [[str(c) for c in columns]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return [fmt(cells[0]), fmt(["-" * w for w in widths]), *[fmt(r) for r in cells[1:]]]


def _grouped(plan: Plan) -> dict[str, dict[str, list[Registration]]]:
    groups: dict[str, dict[str, list[Registration]]] = defaultdict(lambda: defaultdict(list))
    for reg in plan.resources:
        if reg.custom:
            groups[plan.region_of(reg)][plan.component_of(reg)].append(reg)
    return groups


def _span(low: float, high: float) -> str:
    """`$low-$high`, or one figure when they agree (no spot capacity at that scale)."""
    return f"${high:,.2f}" if round(low, 2) == round(high, 2) else f"${low:,.2f}-${high:,.2f}"


def _summary_lines(plan: Plan) -> list[str]:
    from stacks.plan.readiness import figures

    s = plan.summary()
    r = figures(plan)
    gpus = ", ".join(f"{g['min']}-{g['max']} x {name}" for name, g in s["gpus"].items()) or "none"
    by_cloud = ", ".join(f"{k} {v}" for k, v in sorted(s["byCloud"].items()))
    c = s["costPerHour"]
    return [
        f"resources: {s['resources']} in {len(s['regions'])} region(s) ({by_cloud})",
        f"GPUs (min-max): {gpus}",
        f"cost per hour: {_span(c['minLow'], c['min'])} at min scale, {_span(c['maxLow'], c['max'])} at max scale "
        "(nodes, volumes, control planes, NAT, load balancers, scratch and Prometheus storage; "
        "usage-based charges excluded; see Cost per hour)",
        f"data safety: {s['protected']} protected, {s['retainOnDelete']} retained on delete",
        f"policy: {s['policy']['mandatory']} mandatory, {s['policy']['advisory']} advisory violation(s)",
        f"readiness: {r['findings']} finding(s) ({r['mandatory']} mandatory); {r['customResourcesValidated']} custom "
        f"resources validated against upstream CRDs; {r['helmKeysChecked']} Helm keys checked "
        f"({r['helmKeysUnknown']} unknown); {r['workloadsSchedulable']}/{r['workloads']} pod templates fit a pool",
    ]


def render_text(plan: Plan, *, details: bool = True) -> str:
    """The terminal view: resources per region and component, then the report sections."""
    lines = [f"Plan for stack {plan.stack!r} ({plan.config.environment}) - offline, Pulumi mock runtime", ""]
    if details:
        for region, components in _grouped(plan).items():
            lines.append(f"== {region} ==")
            rows = [
                [component, reg.type, reg.name, key_inputs(reg)]
                for component, regs in components.items()
                for reg in regs
            ]
            lines += _table(["component", "type", "name", "key inputs"], rows)
            lines.append("")
    for section in build_sections(plan).values():
        lines.append(f"== {section['title']} ==")
        lines += _table(section["columns"], section["rows"])
        lines += [f"  {n}" for n in section.get("notes", [])]
        lines.append("")
    if plan.findings:
        lines.append("== Policy violations ==")
        lines += _table(
            ["level", "policy", "resource", "message"],
            [[f["level"], f["policy"], f.get("name") or "(stack)", f["message"]] for f in plan.findings],
        )
        lines.append("")
    lines.append("== Summary ==")
    lines += _summary_lines(plan)
    return "\n".join(lines) + "\n"


def _md_table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    esc = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return [
        "| " + " | ".join(esc(c) for c in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
        *["| " + " | ".join(esc(c) for c in row) + " |" for row in rows],
    ]


GITHUB_COMMENT_LIMIT = 65_536
"""GitHub refuses comments longer than this many characters."""


def _policy_lines(plan: Plan, max_violations: int | None = None, *, all_rules: bool = True) -> list[str]:
    """Every rule with its level and result (only those with violations unless `all_rules`), then
    every violation (the first `max_violations`)."""
    lines = ["### Policy verdicts", ""]
    counts: dict[str, int] = defaultdict(int)
    for f in plan.findings:
        counts[f["policy"]] += 1
    rows = []
    for rule in RULES:
        level = plan.policy_levels.get(rule.name, rule.level.value)
        n = counts.get(rule.name, 0)
        result = "off" if level == "disabled" else f"❌ {n}" if n and level != "advisory" else f"⚠️ {n}" if n else "✅"
        if all_rules or n:
            rows.append([result, f"`{rule.name}`", rule.area, level])
    summary = f"{len(RULES)} rules: {len(RULES) - len(counts)} pass, {len(counts)} with violations"
    lines += [f"<details><summary>{summary}</summary>", ""]
    lines += _md_table(["result", "rule", "area", "level"], rows)
    if not all_rules:
        lines.append(f"\n_{len(RULES) - len(rows)} other rule(s) pass or are off: see the JSON plan._")
    lines += ["", "</details>", ""]
    findings = plan.findings if max_violations is None else plan.findings[:max_violations]
    if findings:
        lines += _md_table(
            ["level", "policy", "resource", "message"],
            [[f["level"], f"`{f['policy']}`", f.get("name") or "(stack)", f["message"]] for f in findings],
        )
        if len(findings) < len(plan.findings):
            lines.append(f"\n_… {len(plan.findings) - len(findings)} more violation(s) in the JSON plan._")
    else:
        lines.append("No violations.")
    lines.append("")
    return lines


def _resource_lines(plan: Plan, *, full: bool, types: bool = True) -> list[str]:
    """The resources per region: one row each, or (`full=False`) a count per type, or
    (`types=False` too) only the count per region."""
    lines = ["<details><summary>Resources by region and component</summary>", ""]
    for region, components in _grouped(plan).items():
        regs = [reg for regs in components.values() for reg in regs]
        lines += [f"#### {region} ({len(regs)})", ""]
        if not full and not types:
            continue
        if full:
            rows = [
                [component, f"`{reg.type}`", reg.name, len(reg.inputs)]
                for component, items in components.items()
                for reg in items
            ]
            lines += _md_table(["component", "type", "name", "inputs"], rows)
        else:
            by_type: dict[str, int] = defaultdict(int)
            for reg in regs:
                by_type[reg.type] += 1
            lines += _md_table(["type", "count"], [[f"`{t}`", n] for t, n in sorted(by_type.items())])
        lines.append("")
    lines += ["</details>", ""]
    return lines


def render_markdown(plan: Plan, *, diff_markdown: str | None = None, limit: int = GITHUB_COMMENT_LIMIT - 1_536) -> str:
    """A review page for a pull request: summary, changes, sections, policy verdicts, resources.

    The page stays under `limit` characters (GitHub's comment limit, less room for a wrapper):
    the resource list falls back to counts per type, then the violation list is cut.
    """
    mandatory = [f for f in plan.findings if f["level"] == "mandatory"]
    verdict = "❌ blocked by policy" if mandatory else "✅ passes policy"
    lines = [f"## aicloud plan: `{plan.stack}` ({plan.config.environment}) - {verdict}", ""]
    lines += [f"- {line}" for line in _summary_lines(plan)]
    lines.append("")
    if diff_markdown:
        lines += [diff_markdown, ""]
    sections = build_sections(plan).values()
    full, compact = list(lines), list(lines)
    for section in sections:
        body = [f"### {section['title']}", ""]
        body += _md_table(section["columns"], section["rows"])
        full += [*body, *(f"\n_{n}_" for n in section.get("notes", [])), ""]
        # Short of room, a section may give way to its compact form (the cost table to the
        # summary's cost line; the JSON plan keeps every line).
        compact += [*section["compact"], ""] if "compact" in section else [*body, ""]
    head = "\n".join(full) + "\n"
    for policy, resources in (
        (_policy_lines(plan), _resource_lines(plan, full=True)),
        (_policy_lines(plan), _resource_lines(plan, full=False)),
    ):
        page = head + "\n".join(policy + resources)
        if len(page) <= limit:
            return page
    head = "\n".join(compact) + "\n"
    tail = "\n".join(_resource_lines(plan, full=False))
    if len(head + "\n".join(_policy_lines(plan, 1)) + tail) > limit:
        tail = "\n".join(_resource_lines(plan, full=False, types=False))  # the JSON plan has the rest
    keep = len(plan.findings)
    while keep > 0 and len(head + "\n".join(_policy_lines(plan, keep, all_rules=False)) + tail) > limit:
        keep = keep * 3 // 4
    return head + "\n".join(_policy_lines(plan, keep, all_rules=False)) + tail


def render_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=1, sort_keys=False, default=str)
