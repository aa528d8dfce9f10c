"""The Pulumi entry point (`stacks/__main__.py`, what `pulumi up` runs) reads the engine's config."""

from __future__ import annotations

import runpy

import pulumi
import pytest

from stacks.config import load_stack
from stacks.plan import run_plan


def test_entry_point_builds_the_same_stack_as_the_offline_plan(record):
    flat, _ = load_stack("dev")
    regs = record(lambda: runpy.run_module("stacks.__main__", run_name="__main__"), stack="dev", config=flat)
    assert sorted(r.urn for r in regs) == sorted(r.urn for r in run_plan("dev", policies=False).resources)


def test_entry_point_stops_on_bad_config_with_the_whole_error_list(record):
    flat, _ = load_stack("dev")
    flat = {**flat, "aicloud:environment": "qa", "aicloud:allowSpot": "false"}
    with pytest.raises(pulumi.RunError) as info:
        record(lambda: runpy.run_module("stacks.__main__", run_name="__main__"), stack="dev", config=flat)
    message = str(info.value)
    assert "stack 'dev': 2 config error(s):" in message
    assert "aicloud:environment: Input should be 'dev', 'staging' or 'prod' (got 'qa')" in message
    assert "nodePools[1](gpu).spot: spot capacity is forbidden in this stack" in message
