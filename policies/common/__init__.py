"""What every rule module shares: reading props safely, the stack as a graph, pods, pools, config.

Rules read only what a real `pulumi preview` gives a policy pack (type, props, options, provider,
URN, parent, dependencies) plus the pack's config, so the same code runs under the Pulumi CLI and
inside `aicloud plan`. Two kinds of "not known yet" reach a rule:

- under the CLI, props computed at apply time are sentinels that raise `UnknownValueError` when read;
- in the offline plan they are placeholders such as `${lake-bucket.arn}`.

`plain()` turns either into the `UNKNOWN` marker, so a rule sees plain dicts and lists. A rule treats
`UNKNOWN` as "the cloud fills this in": a key that will exist counts as set, a value it cannot read is
not judged now (policies run again at `pulumi up`, when every input of a resource is known).

One job per module: `values` (reading props), `rule` (the `Rule` wrapper), `stack` (`Res`,
`StackView`), `cloud` (catalog and IAM helpers), `pods` (pod templates and scheduling), `pools`
(node pools). Every name is importable from `policies.common`.
"""

from __future__ import annotations

from policies.common.cloud import aws_gpus, machine, policy_json
from policies.common.pods import (
    PodTemplate,
    Taint,
    containers,
    gpu_request,
    pod_templates,
    requests_gpu,
    schedulable_on,
    selects_nodes,
    taint,
    tolerates,
)
from policies.common.pools import (
    KARPENTER_NODEPOOL,
    Pool,
    PoolGroup,
    karpenter_pool,
    money,
    pool_groups,
    pool_of,
    pools,
)
from policies.common.rule import Check, Rule
from policies.common.stack import CLUSTER_COMPONENTS, REGION_COMPONENT, Res, StackView
from policies.common.values import (
    ENVIRONMENTS,
    GPU_LABEL,
    GPU_RESOURCE,
    GPU_TAINT_KEY,
    INTERRUPTIBLE_LABEL,
    POOL_LABEL,
    ROLE_LABEL,
    UNKNOWN,
    as_dict,
    as_list,
    dig,
    environment,
    is_unknown,
    plain,
    quantity,
    quote_list,
    stack_of,
    truthy,
)

__all__ = [
    "CLUSTER_COMPONENTS",
    "Check",
    "ENVIRONMENTS",
    "KARPENTER_NODEPOOL",
    "GPU_LABEL",
    "GPU_RESOURCE",
    "GPU_TAINT_KEY",
    "INTERRUPTIBLE_LABEL",
    "POOL_LABEL",
    "PodTemplate",
    "Pool",
    "PoolGroup",
    "REGION_COMPONENT",
    "ROLE_LABEL",
    "Res",
    "Rule",
    "StackView",
    "Taint",
    "UNKNOWN",
    "as_dict",
    "as_list",
    "aws_gpus",
    "containers",
    "dig",
    "environment",
    "gpu_request",
    "is_unknown",
    "machine",
    "money",
    "plain",
    "quantity",
    "pod_templates",
    "policy_json",
    "karpenter_pool",
    "pool_groups",
    "pool_of",
    "pools",
    "quote_list",
    "requests_gpu",
    "schedulable_on",
    "selects_nodes",
    "stack_of",
    "taint",
    "tolerates",
    "truthy",
]
