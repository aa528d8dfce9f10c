"""Helm values as Helm reads them: merged into the chart's defaults, every key checked against the
pinned chart's own `values.yaml` (and `values.schema.json` where it ships one)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from components.upstream import ChartTruth, chart_truth

SUBCHART_KEYS = frozenset({"enabled", "global"})
"""Keys a parent chart may set on any subchart besides its values (`condition`, globals)."""


def merge(defaults: Any, ours: Any) -> Any:
    """Helm's coalescing of user values into chart defaults: maps merge key by key, lists and
    scalars replace, a `null` removes the default."""
    if not isinstance(defaults, dict) or not isinstance(ours, dict):
        return ours
    out = dict(defaults)
    for key, value in ours.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(defaults.get(key), value)
    return out


def merged_values(truth: ChartTruth, ours: dict[str, Any]) -> dict[str, Any]:
    """The values a chart renders with: its defaults (subcharts' under their alias) plus ours."""
    defaults = dict(truth.values)
    for alias, sub in truth.subcharts.items():
        sub_truth = chart_truth(sub)
        if sub_truth is not None:
            defaults[alias] = merge(sub_truth.values, defaults.get(alias) or {})
    return merge(defaults, ours)


@dataclass(frozen=True)
class UnknownKey:
    path: str
    """Dotted path of the key we set (`grafana.sidecar.dashbords`)."""
    chart: str
    """The chart (or subchart) whose values do not have it."""


def _is_free_form(default: Any) -> bool:
    """An empty map or a null default: the chart takes whatever map the user gives (labels,
    annotations, nodeSelector, resources...)."""
    return default is None or default == {}


def check_keys(truth: ChartTruth, ours: dict[str, Any]) -> tuple[int, list[UnknownKey]]:
    """(keys checked, keys the chart does not have) for the values we set on `truth`.

    A key must exist in the chart's defaults at the same path or be read by its templates
    (`.Values.<path>`); below a pass-through path (listed in `pins.yaml`), an empty-map or null
    default (labels, annotations, resources...) or a key without default, the chart takes what it
    is given. A subchart's keys are checked against that subchart's own values.
    """
    checked = 0
    unknown: list[UnknownKey] = []

    def walk(node: dict[str, Any], defaults: Any, chart: ChartTruth, rel: str, where: str) -> None:
        nonlocal checked
        for key, value in node.items():
            rel_path, path = f"{rel}{key}", f"{where}{key}"
            checked += 1
            if rel_path in chart.passthrough:
                continue
            if not rel and key in chart.subcharts:
                sub = chart_truth(chart.subcharts[key])
                if sub is None:
                    unknown.append(UnknownKey(path, f"{chart.subcharts[key]} (subchart of {chart.name}, not vendored)"))
                elif isinstance(value, dict):
                    sub_defaults = merge(sub.values, as_dict(as_dict(defaults).get(key)))
                    checked += sum(1 for k in value if k in SUBCHART_KEYS)
                    own = {k: v for k, v in value.items() if k not in SUBCHART_KEYS}
                    walk(own, sub_defaults, sub, "", f"{path}.")
                continue
            if not isinstance(defaults, dict) or key not in defaults:
                # No default, but the templates may read it (a commented-out example in values.yaml).
                if rel_path not in chart.template_refs and not any(
                    r.startswith(f"{rel_path}.") for r in chart.template_refs
                ):
                    unknown.append(UnknownKey(path, chart.name))
                continue
            default = defaults[key]
            if isinstance(value, dict) and isinstance(default, dict) and not _is_free_form(default):
                walk(value, default, chart, f"{rel_path}.", f"{path}.")

    walk(ours, truth.values, truth, "", "")
    return checked, unknown


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def dicts_named(node: Any, names: frozenset[str], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every map under a key in `names`, anywhere in a values tree, with its dotted path."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key in names and isinstance(value, dict):
                yield where, value
            yield from dicts_named(value, names, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from dicts_named(item, names, f"{path}[{i}]")
