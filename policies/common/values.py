"""Reading props safely: the `UNKNOWN` marker, `plain`, `dig` and friends, shared label names."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy.proxy import UnknownValueError


class _Unknown:
    """A value only known after apply."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
"""Marker for a prop that is computed at apply time."""

_PLACEHOLDER = re.compile(r"^\$\{[^}]+\}$")
_SECRET = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")
"""Pulumi's wire form of a secret value, `{<sig key>: <secret sig>, "value": ...}` (as the offline
plan records a secret input): rules see the value, as the object the API server gets holds it."""

# Labels and taints aicloud's node pools carry (components/nodepool.py).
POOL_LABEL = "aicloud.dev/pool"
ROLE_LABEL = "aicloud.dev/role"
GPU_LABEL = "aicloud.dev/gpu"
INTERRUPTIBLE_LABEL = "aicloud.dev/interruptible"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"

ENVIRONMENTS = ("dev", "staging", "prod")


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def plain(value: Any) -> Any:
    """A plain copy of props: dicts, lists and whole numbers as ints, with every apply-time value
    replaced by `UNKNOWN`."""
    if isinstance(value, str):
        return UNKNOWN if _PLACEHOLDER.match(value) else value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the engine sends every number as a double: 2.0 nodes are 2 nodes
    if isinstance(value, Mapping):
        if value.get(_SECRET[0]) == _SECRET[1]:
            return plain(value.get("value"))
        out = {}
        for key in list(value):
            try:
                out[key] = plain(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = []
        for i in range(len(value)):
            try:
                items.append(plain(value[i]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def dig(node: Any, path: str, default: Any = None) -> Any:
    """The value at a dotted path (`vpcConfig.publicAccessCidrs`); `UNKNOWN` if a step is unknown."""
    for part in path.split("."):
        if node is UNKNOWN:
            return UNKNOWN
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def as_list(value: Any) -> list[Any]:
    """A list prop as a list (`None` and unknown lists become empty)."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def truthy(value: Any) -> bool | None:
    """A boolean prop that may arrive as a string ("true"); None when unset, UNKNOWN stays UNKNOWN."""
    if value is UNKNOWN or value is None:
        return value
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def stack_of(urn: str) -> str:
    """The stack name in a URN (`urn:pulumi:<stack>::<project>::...`)."""
    parts = urn.split(":")
    return parts[2] if len(parts) > 2 else ""


def environment(config: Mapping[str, Any], urn: str | None) -> str | None:
    """The stack's environment: the rule's `environment` config, else the stack name if it is one."""
    env = config.get("environment")
    if env in ENVIRONMENTS:
        return env
    stack = stack_of(urn or "")
    return stack if stack in ENVIRONMENTS else None


def quote_list(items: Iterable[str]) -> str:
    return ", ".join(items)


_SUFFIX = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
    "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "m": 1e-3, "": 1,
}  # fmt: skip
_QUANTITY = re.compile(r"^([0-9.]+)([A-Za-z]*)$")


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity (`500m`, `4Gi`, `2`) as a number of units; None when unreadable."""
    if isinstance(value, bool) or value is None or value is UNKNOWN:
        return None
    if isinstance(value, int | float):
        return float(value)
    m = _QUANTITY.match(str(value).strip())
    if not m or m.group(2) not in _SUFFIX:
        return None
    return float(m.group(1)) * _SUFFIX[m.group(2)]
