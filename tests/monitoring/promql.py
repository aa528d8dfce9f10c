"""Metric names referenced by a PromQL expression (or a Grafana `label_values(...)` query).

A small scanner, enough for the expressions aicloud writes: strings, label matchers, ranges,
numbers and grouping label lists are removed; what remains is functions and aggregations (a name
followed by `(`), keywords, and metric names.
"""

from __future__ import annotations

import re

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBERS = re.compile(r"(?<![A-Za-z0-9_:])\d+(\.\d+)?([eE][-+]?\d+)?")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """Every metric name `expr` selects."""
    m = _LABEL_VALUES.match(expr)
    if m:
        expr = m.group(1)
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBERS.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        token = match.group(0)
        if token in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(token)
    return names


def label_names(expr: str) -> set[str]:
    """Label names in grouping clauses (`by (...)`, `on (...)`, `group_left (...)`) and matchers."""
    out: set[str] = set()
    for group in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        out |= {x.strip() for x in group.group(1).split(",") if x.strip()}
    for matcher in _MATCHERS.finditer(_STRINGS.sub('""', expr)):
        out |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matcher.group(0)))
    return out
