"""The stack's `aicloud:policy` section, and the policy-pack config it becomes.

A stack says which regions its data may live in, its GPU cost and size ceilings and, per rule, an
enforcement level:

    aicloud:policy:
      allowedRegions: [us-east-1, us-west-2, us-central1]
      maxGpuCostPerHour: 600
      maxGpusPerPool: 32
      enforcement:
        aicloud-gpu-cost-ceiling: advisory     # or mandatory | disabled; `all` sets every rule

The Pulumi CLI hands a pack its settings as policy-pack config (one object per rule, with an
`enforcementLevel` and the properties of the rule's config schema). `pack_config` writes that object
for a stack, so the real preview and `aicloud plan` see the same settings:

    python -m policies.config prod > policy-config.prod.json
    pulumi preview --stack prod --policy-pack policies --policy-pack-config policy-config.prod.json

`resolve` reads it back the way the CLI reconciles it (schema defaults, then `all`, then the rule's
own entry), which is what the offline plan does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.guardrails import ENVIRONMENT_LEVELS, LEVELS, Level  # noqa: F401 (re-exported)
from policies.common import Rule
from policies.registry import BY_NAME, RULES
from stacks.policy_settings import PolicySpec  # noqa: F401 (re-exported: the section's type)


def _settings(environment: str, spec: PolicySpec) -> dict[str, Any]:
    """Values for the properties rules declare in their config schema."""
    values: dict[str, Any] = {"environment": environment}
    if spec.allowed_regions:
        values["allowedRegions"] = list(spec.allowed_regions)
    if spec.max_gpu_cost_per_hour is not None:
        values["maxGpuCostPerHour"] = spec.max_gpu_cost_per_hour
    if spec.max_gpus_per_pool is not None:
        values["maxGpusPerPool"] = spec.max_gpus_per_pool
    return values


def _level(rule: Rule, *layers: Mapping[str, str]) -> str:
    level = rule.level.value
    for layer in layers:
        level = layer.get("all", level)
        level = layer.get(rule.name, level)
    return level


def pack_config(
    environment: str, spec: PolicySpec | None = None, overrides: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """The policy-pack config of a stack: every rule's enforcement level and config properties.

    Levels: the rule's default (mandatory, or advisory for the rules in
    `contracts.guardrails.ADVISORY_BY_DEFAULT`), then the environment's
    (`contracts.guardrails.ENVIRONMENT_LEVELS`: prod makes the capacity guardrail mandatory), then
    the stack's `enforcement` (`all` first, then the rule), then `overrides` (the same way;
    `aicloud plan --enforcement`).
    """
    spec = spec or PolicySpec()
    values = _settings(environment, spec)
    env_levels = ENVIRONMENT_LEVELS.get(environment, {})
    config: dict[str, dict[str, Any]] = {}
    for rule in RULES:
        entry: dict[str, Any] = {"enforcementLevel": _level(rule, env_levels, spec.enforcement, overrides or {})}
        entry.update({k: values[k] for k in rule.config if k in values})
        config[rule.name] = entry
    return config


def resolve(rule: Rule, config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A rule's enforcement level and properties under a pack config, as the Pulumi CLI reconciles them."""
    level, props = rule.level.value, rule.defaults()
    for key in ("all", rule.name):
        entry = config.get(key)
        if isinstance(entry, str):
            level = entry
        elif isinstance(entry, Mapping):
            level = entry.get("enforcementLevel", level)
            if key == rule.name:
                props.update({k: v for k, v in entry.items() if k != "enforcementLevel"})
    return level, props


def parse_overrides(items: list[str]) -> dict[str, str]:
    """`RULE=LEVEL` (or a bare `LEVEL` for every rule) from the command line; ValueError if invalid."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, level = item.rpartition("=")
        name = name if sep else "all"
        if level not in LEVELS:
            raise ValueError(f"--enforcement {item!r}: level must be one of {', '.join(LEVELS)}")
        if name != "all" and name not in BY_NAME:
            raise ValueError(f"--enforcement {item!r}: unknown rule {name!r}; rules: all, {', '.join(sorted(BY_NAME))}")
        out[name] = level
    return out


def main(argv: list[str] | None = None) -> int:
    """Print (or write) the policy-pack config of a stack."""
    from stacks.config import ConfigError, load_stack, stacks_dir

    parser = argparse.ArgumentParser(prog="python -m policies.config", description=main.__doc__)
    parser.add_argument("stack", help="stack name: stacks/Pulumi.<stack>.yaml")
    parser.add_argument("-o", "--output", help="file to write (default: stdout)")
    parser.add_argument(
        "--stacks-dir",
        metavar="DIR",
        help="where Pulumi.<stack>.yaml is (default: found from Pulumi.yaml, as `aicloud plan`)",
    )
    args = parser.parse_args(argv)
    try:
        _, config = load_stack(args.stack, stacks_dir(args.stacks_dir))
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    text = json.dumps(pack_config(config.environment, config.policy), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
