"""Will a pod fit a node: resource quantities (`quantity`, from policies.common), a machine's
allocatable resources, and the replicas a workload can reach at its maximum (autoscaler max,
rollout surge, gang size)."""

from __future__ import annotations

import math
from typing import Any

from policies.common import GPU_RESOURCE, UNKNOWN, as_dict, as_list, containers, dig, quantity

Resources = dict[str, float]
"""`cpu` (cores), `memory` (bytes), `nvidia.com/gpu` (devices)."""
RESOURCE_NAMES = ("cpu", "memory", GPU_RESOURCE)


def pod_requests(pod: dict[str, Any]) -> Resources:
    """What the scheduler reserves for one pod: the sum of its containers' requests (a limit
    stands in for a missing request, as the API server defaults it), or the largest init
    container's when that is more."""

    def one(c: dict[str, Any]) -> Resources:
        res = as_dict(c.get("resources"))
        req, lim = as_dict(res.get("requests")), as_dict(res.get("limits"))
        return {n: quantity(req.get(n, lim.get(n))) or 0.0 for n in RESOURCE_NAMES}

    total = {n: 0.0 for n in RESOURCE_NAMES}
    for c in containers(pod, init=False):
        for n, v in one(c).items():
            total[n] += v
    for c in as_list(pod.get("initContainers")):
        if isinstance(c, dict):
            for n, v in one(c).items():
                total[n] = max(total[n], v)
    return total


def allocatable(cloud: str, vcpus: int, memory_gib: float, gpus: int) -> Resources:
    """A node's allocatable resources: capacity minus the kubelet's reservations.

    CPU (both clouds; GKE "node allocatable" and the EKS AMI use the same steps): 6% of the first
    core, 1% of the next, 0.5% of the next 2, 0.25% above 4. Memory on GKE: 25% of the first 4 GiB,
    20% of the next 4, 10% of the next 8, 6% of the next 112, 2% above 128. Memory on EKS (AMI
    kubeReserved): 255 MiB + 11 MiB per pod of max-pods (58 up to 8 vCPUs, else 110), of the
    memory the kernel reports (about 97% of the nominal size). Both: 100 MiB eviction threshold.
    """
    cores = float(vcpus)
    cpu_reserved = (
        0.06 * min(cores, 1)
        + 0.01 * max(0, min(cores, 2) - 1)
        + 0.005 * max(0, min(cores, 4) - 2)
        + 0.0025 * max(0, cores - 4)
    )
    gib = float(memory_gib)
    if cloud == "aws":
        max_pods = 58 if vcpus <= 8 else 110
        memory = gib * 0.97 - (255 + 11 * max_pods) / 1024
    else:
        memory = gib - (
            0.25 * min(gib, 4)
            + 0.20 * max(0, min(gib, 8) - 4)
            + 0.10 * max(0, min(gib, 16) - 8)
            + 0.06 * max(0, min(gib, 128) - 16)
            + 0.02 * max(0, gib - 128)
        )
    return {"cpu": cores - cpu_reserved, "memory": memory * 2**30 - 100 * 2**20, GPU_RESOURCE: float(gpus)}


def pods_per_node(free: Resources, request: Resources) -> int:
    """How many pods asking `request` fit in `free` (0 when one does not)."""
    fits = math.inf
    for n in RESOURCE_NAMES:
        need = request.get(n, 0.0)
        if need > 0:
            fits = min(fits, math.floor(free.get(n, 0.0) / need + 1e-9))
    if fits == math.inf:
        return 110  # the kubelet's default maxPods bounds pods that request nothing
    return max(0, int(fits))


def surge(strategy: Any, replicas: int) -> int:
    """Extra pods a Deployment rollout creates (maxSurge; default 25%, rounded up)."""
    if dig(strategy, "type") == "Recreate":
        return 0
    value = dig(strategy, "rollingUpdate.maxSurge", "25%")
    if isinstance(value, str) and value.endswith("%"):
        try:
            return math.ceil(replicas * float(value[:-1]) / 100)
        except ValueError:
            return 0
    return int(value) if isinstance(value, int | float) else 0
