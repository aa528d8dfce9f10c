"""The pack as the Pulumi CLI runs it: `python -m pulumi.policy ENGINE policies` starts the analyzer's
gRPC server on 127.0.0.1 and prints its port; these tests speak the analyzer protocol to it (info,
configure, analyze, analyze-stack), including values unknown during preview."""

from __future__ import annotations

import select
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from contracts.guardrails import ADVISORY_BY_DEFAULT
from policies.registry import BY_NAME, PACK_NAME

REPO = Path(__file__).resolve().parents[2]


def _struct(value: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


@pytest.fixture(scope="module")
def analyzer():
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "policies"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    channel = None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 90)
        assert ready, "the policy pack did not print its port within 90 s"
        port = int(proc.stdout.readline().strip())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        if channel is not None:
            channel.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_pack_describes_every_rule(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == PACK_NAME
    assert {p.name for p in info.policies} == set(BY_NAME)
    region = next(p for p in info.policies if p.name == "aicloud-region-allowed")
    assert "allowedRegions" in region.configSchema.properties
    # Every rule is mandatory by default except the ones listed, with a reason, as advisory.
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert {n for n, lvl in levels.items() if lvl != analyzer_pb2.MANDATORY} == set(ADVISORY_BY_DEFAULT)
    assert {levels[n] for n in ADVISORY_BY_DEFAULT} == {analyzer_pb2.ADVISORY}


def test_resource_rules_run_on_preview_props(analyzer):
    urn = "urn:pulumi:prod::aicloud::gcp:storage/bucket:Bucket::lake"
    props = {
        "encryption": {"defaultKmsKeyName": UNKNOWN_STRING_VALUE},  # a key created in the same preview
        "publicAccessPrevention": "enforced",
        "versioning": {"enabled": True},
        "forceDestroy": True,
    }
    resp = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(type="gcp:storage/bucket:Bucket", properties=_struct(props), urn=urn, name="lake"),
        timeout=30,
    )
    # The engine attaches a resource rule's diagnostics to the analyzed resource (urn left empty).
    assert [(d.policyName, d.enforcementLevel) for d in resp.diagnostics] == [
        ("aicloud-data-disallow-force-destroy", analyzer_pb2.MANDATORY)
    ]
    assert resp.diagnostics[0].message.endswith(
        "GCS bucket 'lake' sets forceDestroy, so deleting the resource deletes every object in it. Remove "
        "forceDestroy (it defaults to false)."
    )


def test_stack_rules_use_the_pack_config(analyzer):
    config = {
        "aicloud-gpus-per-pool-ceiling": analyzer_pb2.PolicyConfig(
            enforcementLevel=analyzer_pb2.ADVISORY, properties=_struct({"maxGpusPerPool": 8})
        )
    }
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=config), timeout=30)
    urn = "urn:pulumi:prod::aicloud::aws:eks/nodeGroup:NodeGroup::train-ng"
    group = {
        "instanceTypes": ["p5.48xlarge"],
        "scalingConfig": {"minSize": 0, "maxSize": 2},
        "clusterName": UNKNOWN_STRING_VALUE,
        "labels": {"aicloud.dev/pool": "train"},
        "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}],
    }
    resource = analyzer_pb2.AnalyzerResource(
        type="aws:eks/nodeGroup:NodeGroup",
        properties=_struct(group),
        urn=urn,
        name="train-ng",
        options=analyzer_pb2.AnalyzerResourceOptions(protect=False),
    )
    resp = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[resource]), timeout=30)
    found = [(d.policyName, d.urn, d.enforcementLevel) for d in resp.diagnostics]
    assert ("aicloud-gpus-per-pool-ceiling", urn, analyzer_pb2.ADVISORY) in found
    # No device plugin in this one-resource stack: the EKS GPU pool is reported too.
    assert ("aicloud-gpu-device-plugin-present", urn, analyzer_pb2.MANDATORY) in found
    # Nor a node autoscaler: a 0..2 managed node group would never leave 0.
    assert ("aicloud-eks-node-autoscaler-installed", urn, analyzer_pb2.MANDATORY) in found
    assert len(found) == 3
