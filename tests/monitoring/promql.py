"""Metric and label names of a PromQL expression (or a Grafana `label_values(...)` query), read by
a real PromQL parser (`promql-parser`, the Python binding of the Rust parser GreptimeDB uses), so
an expression that is not valid PromQL fails here instead of being scanned.

Grafana interpolates its variables before it sends a query: `$__rate_interval` and friends
become a duration, `$var` inside a label matcher's string stays a string. `parse` does the same
for the variables our dashboards use, then parses.
"""

from __future__ import annotations

import re
from typing import Any

import promql_parser

_GRAFANA_INTERVALS = re.compile(
    r"\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval|__range)\}"
)
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$")


def parse(expr: str) -> Any:
    """The PromQL syntax tree of `expr` (ValueError if it is not valid PromQL)."""
    m = _LABEL_VALUES.match(expr)
    if m:
        expr = m.group(1)
    return promql_parser.parse(_GRAFANA_INTERVALS.sub("5m", expr))


def _nodes(expr: str) -> list[Any]:
    seen: list[Any] = []
    promql_parser.walk(parse(expr), pre_visit=lambda node: seen.append(node))
    return seen


def _selectors(expr: str) -> list[Any]:
    out = []
    for node in _nodes(expr):
        if isinstance(node, promql_parser.MatrixSelector):
            node = node.vector_selector
        if isinstance(node, promql_parser.VectorSelector):
            out.append(node)
    return out


def metric_names(expr: str) -> set[str]:
    """Every metric name `expr` selects (by name or by a `__name__` equality matcher)."""
    names = set()
    for vs in _selectors(expr):
        if vs.name:
            names.add(vs.name)
        names |= {m.value for m in vs.matchers.matchers if m.name == "__name__" and str(m.op).endswith("Equal")}
    return names


def label_names(expr: str) -> set[str]:
    """Label names in grouping clauses (`by (...)`, `on (...)`, `group_left (...)`) and matchers."""
    out: set[str] = set()
    for vs in _selectors(expr):
        out |= {m.name for m in vs.matchers.matchers if m.name != "__name__"}
    for node in _nodes(expr):
        modifier = getattr(node, "modifier", None)
        if isinstance(node, promql_parser.AggregateExpr) and modifier is not None:
            out |= set(modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and modifier is not None:
            if modifier.matching is not None:
                out |= set(modifier.matching.labels)
            out |= set(modifier.group_labels or ())
    return out
