"""Pod Security Admission: would the API server admit a pod into a namespace at its enforced level?

The checks of the Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards),
`baseline` and `restricted`, on a pod spec as the workload's template gives it. A `privileged`
namespace admits everything; a namespace without an `enforce` label is `privileged` unless the
cluster's admission configuration says otherwise (aicloud labels every namespace it creates).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
LEVELS = ("privileged", "baseline", "restricted")

BASELINE_CAPABILITIES = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
     "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)  # fmt: skip
"""Capabilities `baseline` allows to add."""
SAFE_SYSCTLS = frozenset(
    {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
     "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
     "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
     "net.ipv4.tcp_keepalive_probes"}
)  # fmt: skip
"""Sysctls `baseline` allows (the safe set, as of Kubernetes 1.29+)."""
RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
"""Volume types `restricted` allows."""


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(_l(pod.get(key))):
            if isinstance(c, dict):
                yield f"{key}[{i}]", c


def violations(pod: dict[str, Any], level: str) -> list[tuple[str, str]]:
    """(path in the pod spec, what breaks `level`) for every Pod Security check the pod fails."""
    if level not in ("baseline", "restricted"):
        return []
    out: list[tuple[str, str]] = []
    psc = _d(pod.get("securityContext"))
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key) is True:
            out.append((key, f"{key}: true is not allowed at {level}"))
    for i, v in enumerate(_l(pod.get("volumes"))):
        if "hostPath" in _d(v):
            out.append((f"volumes[{i}]", "hostPath volumes are not allowed"))
    for i, s in enumerate(_l(psc.get("sysctls"))):
        name = _d(s).get("name")
        if name not in SAFE_SYSCTLS:
            out.append((f"securityContext.sysctls[{i}]", f"sysctl {name} is not in the safe set"))
    if _d(psc.get("seccompProfile")).get("type") == "Unconfined":
        out.append(("securityContext.seccompProfile.type", "seccomp profile Unconfined is not allowed"))
    for where, c in _containers(pod):
        sc = _d(c.get("securityContext"))
        if sc.get("privileged") is True:
            out.append((f"{where}.securityContext.privileged", "privileged containers are not allowed"))
        added = [str(x) for x in _l(_d(sc.get("capabilities")).get("add"))]
        extra = sorted(set(added) - BASELINE_CAPABILITIES)
        if extra:
            out.append(
                (f"{where}.securityContext.capabilities.add", f"capabilities {', '.join(extra)} are not allowed")
            )
        if _d(sc.get("seccompProfile")).get("type") == "Unconfined":
            out.append((f"{where}.securityContext.seccompProfile.type", "seccomp profile Unconfined is not allowed"))
        for j, p in enumerate(_l(c.get("ports"))):
            if _d(p).get("hostPort") not in (None, 0):
                out.append((f"{where}.ports[{j}].hostPort", "host ports are not allowed"))
    if level == "baseline":
        return out
    for i, v in enumerate(_l(pod.get("volumes"))):
        kinds = [k for k in _d(v) if k != "name"]
        bad = [k for k in kinds if k not in RESTRICTED_VOLUMES and k != "hostPath"]
        if bad:
            out.append((f"volumes[{i}]", f"volume type {bad[0]} is not allowed at restricted"))
    pod_non_root = psc.get("runAsNonRoot") is True
    pod_seccomp = _d(psc.get("seccompProfile")).get("type") in ("RuntimeDefault", "Localhost")
    if psc.get("runAsUser") == 0:
        out.append(("securityContext.runAsUser", "runAsUser 0 is not allowed at restricted"))
    for where, c in _containers(pod):
        sc = _d(c.get("securityContext"))
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append((f"{where}.securityContext.allowPrivilegeEscalation", "allowPrivilegeEscalation must be false"))
        if sc.get("runAsNonRoot") is False or (not pod_non_root and sc.get("runAsNonRoot") is not True):
            out.append((f"{where}.securityContext.runAsNonRoot", "runAsNonRoot must be true (pod or container)"))
        if sc.get("runAsUser") == 0:
            out.append((f"{where}.securityContext.runAsUser", "runAsUser 0 is not allowed at restricted"))
        if not pod_seccomp and _d(sc.get("seccompProfile")).get("type") not in ("RuntimeDefault", "Localhost"):
            out.append(
                (
                    f"{where}.securityContext.seccompProfile",
                    "a seccomp profile (RuntimeDefault or Localhost) must be set on the pod or the container",
                )
            )
        caps = _d(sc.get("capabilities"))
        if "ALL" not in [str(x) for x in _l(caps.get("drop"))]:
            out.append((f"{where}.securityContext.capabilities.drop", "capabilities must drop ALL"))
        added = [str(x) for x in _l(caps.get("add"))]
        if [x for x in added if x != "NET_BIND_SERVICE"]:
            out.append((f"{where}.securityContext.capabilities.add", "only NET_BIND_SERVICE may be added"))
    return out
