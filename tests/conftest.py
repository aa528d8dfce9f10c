"""Test harness: Pulumi's mock runtime, installed per test.

- `pulumi_mocks` (autouse): every test runs with fresh mocks, so `@pulumi.runtime.test` tests that
  create resources directly work, and no test sees another's resources. (Calling `set_mocks` at
  import time in several modules breaks: the last module imported wins.)
- `record`: run a callable that creates components under the mock engine and get back every
  registration (type, name, parent, provider, inputs, protect, retainOnDelete, aliases, outputs),
  wrapped in `Recorded` for lookups. This is the same recorder the offline plan uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from stacks.plan import record as _record
from stacks.plan.mocks import PlanMocks, Registration, open_event_loop


class Recorded(list):
    """Registrations of one mock run, with lookups that fail loudly."""

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Registration:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Registration:
        found = [r for r in self if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
        return found[0]

    def children_of(self, reg: Registration) -> list[Registration]:
        return [r for r in self if r.parent == reg.urn]

    def ancestors(self, reg: Registration) -> list[Registration]:
        by_urn = {r.urn: r for r in self}
        out, node = [], by_urn.get(reg.parent or "")
        while node is not None:
            out.append(node)
            node = by_urn.get(node.parent or "")
        return out


@pytest.fixture(autouse=True)
def pulumi_mocks():
    open_event_loop()  # an earlier test may have closed the loop it left current
    mocks = PlanMocks()
    pulumi.runtime.set_mocks(mocks, project="aicloud", stack="test", preview=False)
    yield mocks


@pytest.fixture
def record() -> Callable[..., Recorded]:
    def _run(program: Callable[[], Any], *, stack: str = "test", config: dict[str, str] | None = None) -> Recorded:
        return Recorded(_record(program, stack=stack, flat_config=config))

    return _run
