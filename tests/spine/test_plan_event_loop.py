"""A plan after `asyncio.run`: `asyncio.run` unsets the thread's event loop when it ends (a server
test, an HTTP client), while the Pulumi runtime's worker threads still hand their results to the
loop that was current before. The next plan must run on that loop again, not hang on a new one
(it did: 300 s, the pytest timeout, whenever tests/server ran before tests/endpoints)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio

    import pulumi
    import pulumi_kubernetes as k8s

    from stacks.plan import record
    from stacks.plan.mocks import PlanMocks, open_event_loop


    def program():
        provider = k8s.Provider("k8s", kubeconfig="{}")
        k8s.core.v1.Namespace("ns", metadata={"name": "x"}, opts=pulumi.ResourceOptions(provider=provider))


    def mocks_as_the_test_session_sets_them():
        open_event_loop()
        pulumi.runtime.set_mocks(PlanMocks(), project="aicloud", stack="test", preview=False)


    async def unrelated():
        return 1


    mocks_as_the_test_session_sets_them()  # a test that plans nothing: its loop is current
    asyncio.run(unrelated())  # ... and unset when asyncio.run ends
    mocks_as_the_test_session_sets_them()
    print(len(record(program, stack="test")))
    """
)


def test_a_plan_after_asyncio_run_completes():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2"], done.stdout
