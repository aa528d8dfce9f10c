"""Run the real stack program under Pulumi's mock runtime and record what it registers.

`PlanMocks` plays the providers: every resource echoes its inputs, and values a cloud would only
compute at apply time (ids, ARNs, endpoints, e-mails) are filled with a placeholder of the form
`${<logical name>.<attribute>}`, so later resources that use them stay readable and policy checks
can still tell `"Resource": "${lake.arn}/*"` from `"Resource": "*"`.

`RecordingMonitor` plays the engine: it records every registration with its parent, provider,
protect/retainOnDelete, aliases and ignoreChanges (which Pulumi's mocks alone do not expose), and
the outputs components register.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import empty_pb2
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _sync_await

UNKNOWN = re.compile(r"^\$\{[^}]+\}$")
"""A value that is only known after apply (a whole placeholder string)."""

ACCOUNT = "123456789012"


def after_apply(name: str, attr: str) -> str:
    """Placeholder for an attribute the cloud computes at apply time."""
    return "${" + f"{name}.{attr}" + "}"


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Attributes a real provider would add to the inputs of a resource of type `typ`."""
    u = lambda attr: after_apply(name, attr)  # noqa: E731
    out: dict[str, Any] = {}
    if typ.startswith("aws:"):
        out["arn"] = u("arn")
    if typ == "aws:eks/cluster:Cluster":
        out.update(
            name=inputs.get("name", u("name")),
            endpoint=u("endpoint"),
            certificateAuthority={"data": u("certificateAuthority")},
            identities=[{"oidcs": [{"issuer": u("oidcIssuer")}]}],
            vpcConfig={**(inputs.get("vpcConfig") or {}), "clusterSecurityGroupId": u("clusterSecurityGroupId")},
        )
    elif typ == "aws:sqs/queue:Queue":
        out["url"] = u("url")
    elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
        out["latestVersion"] = 1
    elif typ == "aws:eks/nodeGroup:NodeGroup":
        out["nodeGroupName"] = inputs.get("nodeGroupName", u("nodeGroupName"))
    elif typ == "gcp:container/cluster:Cluster":
        out.update(endpoint=u("endpoint"), masterAuth={"clusterCaCertificate": u("caCertificate")})
    elif typ == "gcp:serviceaccount/account:Account":
        out["email"] = u("email")
    elif typ == "gcp:bigquery/connection:Connection":
        out["cloudResource"] = {"serviceAccountId": u("serviceAccountId")}
    elif typ == "docker-build:index:Image":
        out["digest"] = u("digest")  # `sha256:...` once pushed
    elif typ in ("aws:lb/loadBalancer:LoadBalancer", "aws:globalaccelerator/accelerator:Accelerator"):
        out.update(dnsName=u("dnsName"), zoneId=u("zoneId"), hostedZoneId=u("hostedZoneId"))
    elif typ == "gcp:compute/globalAddress:GlobalAddress":
        out.update(address=u("address"), selfLink=u("selfLink"))
    elif typ.startswith("gcp:"):
        out["selfLink"] = u("selfLink")
    if "name" not in inputs and "name" not in out and not typ.startswith("pulumi:providers:"):
        out["name"] = u("name")
    return out


class PlanMocks(pulumi_mocks.Mocks):
    """Providers that echo inputs and fill apply-time attributes with placeholders."""

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = {**args.inputs, **_computed(args.typ, args.name, args.inputs)}
        return after_apply(args.name, "id"), state

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        # The second element lists check failures; the mock monitor iterates it, so never None.
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/plan", "userId": "plan"}, []
        if args.token == "gcp:organizations/getProject:getProject":
            return {"number": after_apply("project", "number"), "projectId": args.args.get("projectId")}, []
        return {}, []


@dataclass
class Registration:
    """One resource as the engine would see it."""

    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    provider: str | None
    inputs: dict[str, Any]
    protect: bool
    retain_on_delete: bool
    aliases: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


_WORKER_LOOPS: dict[int, asyncio.AbstractEventLoop] = {}
_LOOPS: dict[int, asyncio.AbstractEventLoop] = {}
"""The loop `open_event_loop` last gave each thread."""


def open_event_loop() -> asyncio.AbstractEventLoop:
    """The calling thread's event loop, replaced by a new one when missing or closed.

    Threads outlive a plan (the runtime's worker pool, the main thread in a test session), and
    code that ran before may have closed the loop it left set as current.
    """
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        # `asyncio.run` (a server test, a client) unsets the thread's loop when it ends; the loop
        # the runtime used before is still open and its worker threads still hand work to it.
        loop = _LOOPS.get(threading.get_ident())
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    _LOOPS[threading.get_ident()] = loop
    return loop


def close_worker_loops() -> None:
    """Close the event loops of the runtime's worker threads before the process exits.

    Left open, they are garbage-collected during interpreter shutdown and print spurious
    errors. Only call this when no more plans will run in the process.
    """
    for loop in _WORKER_LOOPS.values():
        if not loop.is_running() and not loop.is_closed():
            loop.close()
    _WORKER_LOOPS.clear()


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A mock engine that keeps every registration, in order, with real-engine URNs."""

    def __init__(self, mocks: pulumi_mocks.Mocks, stack: str, project: str) -> None:
        super().__init__(mocks)
        self.stack = stack
        self.project = project
        self.registrations: dict[str, Registration] = {}
        self._types: dict[str, str] = {}  # urn -> qualified type chain

    def _loop(self) -> None:
        """Ensure the calling (worker) thread has an open event loop, and remember it."""
        loop = open_event_loop()
        if threading.current_thread() is not threading.main_thread():
            _WORKER_LOOPS[threading.get_ident()] = loop

    def urn(self, parent: str | None, type_: str, name: str) -> str:
        """URNs as the engine makes them: children of the stack carry no parent type."""
        qualified = type_
        if parent and parent in self._types:
            qualified = f"{self._types[parent]}${type_}"
        return f"urn:pulumi:{self.stack}::{self.project}::{qualified}::{name}"

    def _alias_urns(self, request: Any, parent: str | None) -> list[str]:
        urns = list(request.aliasURNs)
        for alias in request.aliases:
            if alias.urn:
                urns.append(alias.urn)
                continue
            spec = alias.spec
            alias_parent = None if spec.noParent else (spec.parentUrn or parent)
            urns.append(self.urn(alias_parent, spec.type or request.type, spec.name or request.name))
        return urns

    def Invoke(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        self._loop()  # data sources (getCallerIdentity, getProject) also run on worker threads
        return super().Invoke(request)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        if request.type == "pulumi:pulumi:Stack":
            urn = f"urn:pulumi:{self.stack}::{self.project}::pulumi:pulumi:Stack::{self.project}-{self.stack}"
            self._types[urn] = ""
            return resource_pb2.RegisterResourceResponse(urn=urn)
        self._loop()
        parent = request.parent if request.parent and self._types.get(request.parent) != "" else None
        urn = self.urn(parent, request.type, request.name)
        self._types[urn] = f"{self._types[parent]}${request.type}" if parent and parent in self._types else request.type
        inputs = _numbers(rpc.deserialize_properties(request.object))
        reg = Registration(
            urn=urn,
            type=request.type,
            name=request.name,
            parent=parent,
            custom=bool(request.custom),
            provider=_provider_urn(request.provider),
            inputs=inputs,
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            aliases=self._alias_urns(request, parent),
            ignore_changes=list(request.ignoreChanges),
            depends_on=list(request.dependencies),
        )
        self.registrations[urn] = reg
        if not request.custom:
            return resource_pb2.RegisterResourceResponse(urn=urn)
        id_, state = self.mocks.new_resource(
            pulumi_mocks.MockResourceArgs(
                typ=request.type,
                name=request.name,
                inputs=inputs,
                provider=request.provider,
                resource_id=request.importId,
                custom=True,
            )
        )
        reg.id = id_
        reg.outputs = state
        obj = _sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, id_, state)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj)

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        reg = self.registrations.get(request.urn)
        if reg is not None:
            self._loop()
            reg.outputs = _numbers(rpc.deserialize_properties(request.outputs))
        return empty_pb2.Empty()


def _numbers(value: Any) -> Any:
    """Protobuf carries every number as a double: give whole numbers back their int type."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _provider_urn(ref: str) -> str | None:
    """`urn::id` provider reference -> the provider's URN."""
    if not ref:
        return None
    urn, _, _ = ref.rpartition("::")
    return urn or ref
