"""Shared helpers for tests that start from a shipped stack's config and change one thing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from stacks.config import ConfigError, load_stack, namespace_values, parse_stack_config


def raw_stack(name: str) -> dict[str, Any]:
    """The `aicloud:` values of `stacks/Pulumi.<name>.yaml`, as the schema reads them."""
    flat, _ = load_stack(name)
    return namespace_values(flat)


def config_errors(raw: dict[str, Any], mutate: Callable[[dict[str, Any]], None], stack: str) -> list[str]:
    """The config errors of a copy of `raw` changed by `mutate` (it must fail validation)."""
    raw = copy.deepcopy(raw)
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw, stack)
    return info.value.errors
