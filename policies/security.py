"""Security guardrails: customer-key encryption, no public data, TLS only, no admin ports open to the
internet, private (or allow-listed) Kubernetes API endpoints, IMDSv2 on nodes, non-root containers,
rotating keys."""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation

from policies.common import (
    UNKNOWN,
    Res,
    Rule,
    StackView,
    as_dict,
    as_list,
    containers,
    dig,
    pod_templates,
    policy_json,
    truthy,
)

S3_BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
S3_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
S3_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_ACCOUNT_PUBLIC_ACCESS_BLOCK = "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock"
S3_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
GCS_BUCKET = "gcp:storage/bucket:Bucket"

PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
OPEN_CIDRS = ("0.0.0.0/0", "::/0")
ADMIN_PORTS = {
    22: "SSH",
    2379: "etcd",
    2380: "etcd peers",
    3389: "RDP",
    6443: "Kubernetes API",
    10250: "kubelet API",
    10255: "kubelet read-only API",
}
"""Ports that administer a machine or a cluster: never open to the whole internet."""


def k8s_name(res: Res) -> str:
    """A Kubernetes object's metadata.name when known, else its Pulumi name."""
    name = dig(res.props, "metadata.name")
    return name if isinstance(name, str) else res.name


# --------------------------------------------------------------------------- S3 / GCS encryption


def _sse_problem(rule: Any) -> str | None:
    """What is wrong with one S3 encryption rule, or None (also when it is not known yet)."""
    default = dig(rule, "applyServerSideEncryptionByDefault")
    if default is UNKNOWN or rule is UNKNOWN:
        return None
    algorithm = dig(default, "sseAlgorithm")
    if algorithm is UNKNOWN:
        return None
    if algorithm not in ("aws:kms", "aws:kms:dsse"):
        return (
            f"is encrypted with {algorithm or 'no default algorithm'} instead of a customer-managed KMS key. "
            "Set sseAlgorithm to 'aws:kms' and kmsMasterKeyId to your KMS key."
        )
    if dig(default, "kmsMasterKeyId") in (None, ""):
        return (
            "uses aws:kms with the AWS-managed aws/s3 key. Set kmsMasterKeyId to a customer-managed KMS "
            "key so you control its key policy and rotation."
        )
    return None


def s3_encryption(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    buckets = view.of_type(*S3_BUCKETS)
    verdict: dict[str, str | None] = {}
    for sse in view.of_type(*S3_ENCRYPTION):
        rules = sse.props.get("rules")
        if rules is UNKNOWN:
            problem = None
        elif not as_list(rules):
            problem = (
                "has an encryption configuration without rules. Add a rule with sseAlgorithm "
                "'aws:kms' and kmsMasterKeyId set to your KMS key."
            )
        else:
            problem = next((p for p in map(_sse_problem, as_list(rules)) if p), None)
        for bucket in view.referenced(sse, "bucket", buckets):
            verdict[bucket.urn] = problem
    for bucket in buckets:
        inline = bucket.props.get("serverSideEncryptionConfiguration")
        if bucket.urn in verdict:
            problem = verdict[bucket.urn]
        elif inline is UNKNOWN or isinstance(inline, dict):
            problem = _sse_problem(dig(inline, "rule"))
        else:
            problem = (
                "has no server-side encryption configuration with a customer-managed KMS key. Add an "
                "aws.s3.BucketServerSideEncryptionConfiguration with sseAlgorithm 'aws:kms' and "
                "kmsMasterKeyId set to your KMS key."
            )
        if problem:
            report(f"S3 bucket '{bucket.name}' {problem}", bucket.urn)


def gcs_encryption(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    if dig(res.props, "encryption.defaultKmsKeyName") in (None, ""):
        report(
            f"GCS bucket '{res.name}' has no default customer-managed encryption key. Set "
            "encryption.defaultKmsKeyName to a Cloud KMS key and grant the Cloud Storage service agent "
            "the Encrypter/Decrypter role on it."
        )


# --------------------------------------------------------------------------- public access


def s3_public_access(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    buckets = view.of_type(*S3_BUCKETS)
    account_blocks = view.of_type(S3_ACCOUNT_PUBLIC_ACCESS_BLOCK)
    if any(all(truthy(b.props.get(f)) in (True, UNKNOWN) for f in PUBLIC_ACCESS_FLAGS) for b in account_blocks):
        return
    blocks: dict[str, list[Res]] = {}
    for block in view.of_type(S3_PUBLIC_ACCESS_BLOCK):
        for bucket in view.referenced(block, "bucket", buckets):
            blocks.setdefault(bucket.urn, []).append(block)
    for bucket in buckets:
        found = blocks.get(bucket.urn)
        if not found:
            report(
                f"S3 bucket '{bucket.name}' has no public access block. Add an aws.s3.BucketPublicAccessBlock "
                "with blockPublicAcls, blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets all true.",
                bucket.urn,
            )
            continue
        off = [f for f in PUBLIC_ACCESS_FLAGS if all(truthy(b.props.get(f)) in (False, None) for b in found)]
        if off:
            report(
                f"The public access block of S3 bucket '{bucket.name}' leaves {', '.join(off)} off. Set all four "
                "of blockPublicAcls, blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets to true.",
                bucket.urn,
            )


def gcs_public_access(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    value = res.props.get("publicAccessPrevention")
    if value is UNKNOWN or value == "enforced":
        return
    report(
        f"GCS bucket '{res.name}' does not enforce public access prevention (publicAccessPrevention is "
        f"'{value or 'inherited'}'). Set publicAccessPrevention to 'enforced'."
    )


# --------------------------------------------------------------------------- TLS only


def _denies_plain_http(doc: dict[str, Any]) -> bool:
    statements = doc.get("Statement")
    for st in statements if isinstance(statements, list) else [statements]:
        if not isinstance(st, dict) or st.get("Effect") != "Deny":
            continue
        condition = as_dict(st.get("Condition"))
        for op in ("Bool", "BoolIfExists"):
            value = as_dict(condition.get(op)).get("aws:SecureTransport")
            if value in ("false", False, ["false"], [False]):
                return True
    return False


def s3_tls_only(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    buckets = view.of_type(*S3_BUCKETS)
    docs: dict[str, list[Any]] = {}
    for policy in view.of_type(S3_POLICY):
        for bucket in view.referenced(policy, "bucket", buckets):
            docs.setdefault(bucket.urn, []).append(policy.props.get("policy"))
    for bucket in buckets:
        found = [*docs.get(bucket.urn, [])]
        if bucket.props.get("policy") not in (None, ""):
            found.append(bucket.props["policy"])
        if not found:
            report(
                f"S3 bucket '{bucket.name}' has no bucket policy, so it accepts plain-HTTP requests. Add an "
                "aws.s3.BucketPolicy with a Deny statement on s3:* when aws:SecureTransport is false.",
                bucket.urn,
            )
            continue
        if any(d is UNKNOWN for d in found):
            continue  # computed at apply time; the rule runs again at `pulumi up`
        parsed = [policy_json(d) for d in found]
        if not any(doc is not None and _denies_plain_http(doc) for doc in parsed):
            report(
                f"The bucket policy of S3 bucket '{bucket.name}' does not deny requests without TLS. Add a Deny "
                "statement on s3:* with the condition Bool aws:SecureTransport = false.",
                bucket.urn,
            )


# --------------------------------------------------------------------------- network exposure


def _admin_ports(protocol: Any, low: Any, high: Any) -> list[int]:
    proto = str(protocol).lower()
    if proto in ("-1", "all"):
        return sorted(ADMIN_PORTS)
    if proto not in ("tcp", "6") or not isinstance(low, int) or not isinstance(high, int):
        return []
    return [p for p in sorted(ADMIN_PORTS) if low <= p <= high]


def _ports_text(ports: list[int]) -> str:
    return ", ".join(f"{p} ({ADMIN_PORTS[p]})" for p in ports)


def security_group_admin_ports(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    p = res.props
    entries: list[tuple[list[int], list[str]]] = []
    if res.type == "aws:ec2/securityGroup:SecurityGroup":
        for rule in as_list(p.get("ingress")):
            ports = _admin_ports(dig(rule, "protocol"), dig(rule, "fromPort"), dig(rule, "toPort"))
            entries.append((ports, [*as_list(dig(rule, "cidrBlocks")), *as_list(dig(rule, "ipv6CidrBlocks"))]))
    elif res.type == "aws:ec2/securityGroupRule:SecurityGroupRule" and p.get("type") == "ingress":
        ports = _admin_ports(p.get("protocol"), p.get("fromPort"), p.get("toPort"))
        entries.append((ports, [*as_list(p.get("cidrBlocks")), *as_list(p.get("ipv6CidrBlocks"))]))
    elif res.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        ports = _admin_ports(p.get("ipProtocol"), p.get("fromPort"), p.get("toPort"))
        entries.append((ports, [c for c in (p.get("cidrIpv4"), p.get("cidrIpv6")) if isinstance(c, str)]))
    what = "Security group" if res.type.endswith(":SecurityGroup") else "Security group rule"
    for ports, cidrs in entries:
        for cidr in (c for c in cidrs if c in OPEN_CIDRS):
            if ports:
                report(
                    f"{what} '{res.name}' opens admin port(s) {_ports_text(ports)} to {cidr}. Restrict the source "
                    "to your administrators' networks, or reach nodes through SSM Session Manager."
                )


def _firewall_ports(spec: str) -> tuple[int, int] | None:
    low, _, high = spec.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        return None


def firewall_admin_ports(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    if res.props.get("direction", "INGRESS") != "INGRESS":
        return
    sources = [c for c in as_list(res.props.get("sourceRanges")) if c in OPEN_CIDRS]
    exposed: set[int] = set()
    for allow in as_list(res.props.get("allows")):
        protocol = dig(allow, "protocol")
        ranges = [r for r in map(_firewall_ports, [s for s in as_list(dig(allow, "ports")) if isinstance(s, str)]) if r]
        if not as_list(dig(allow, "ports")):
            exposed.update(_admin_ports("all" if protocol in ("all", "tcp") else protocol, None, None))
            continue
        for low, high in ranges:
            exposed.update(_admin_ports(protocol, low, high))
    for cidr in sources:
        if exposed:
            report(
                f"Firewall '{res.name}' allows ingress from {cidr} to admin port(s) {_ports_text(sorted(exposed))}. "
                "Restrict sourceRanges to your administrators' networks, or use IAP TCP forwarding."
            )


def eks_public_endpoint(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    vpc = res.props.get("vpcConfig")
    if vpc is UNKNOWN:
        return
    public = truthy(as_dict(vpc).get("endpointPublicAccess"))
    if public is UNKNOWN or public is False:
        return  # EKS makes the endpoint public when endpointPublicAccess is not set
    cidrs = as_dict(vpc).get("publicAccessCidrs")
    if cidrs is UNKNOWN:
        return
    if not as_list(cidrs):
        report(
            f"EKS cluster '{res.name}' exposes its API endpoint publicly without an allow-list (an empty "
            "publicAccessCidrs means 0.0.0.0/0). Set vpcConfig.endpointPublicAccess to false, or list the "
            "networks that may reach the API in vpcConfig.publicAccessCidrs."
        )
    elif any(c in OPEN_CIDRS for c in as_list(cidrs)):
        report(
            f"EKS cluster '{res.name}' exposes its API endpoint to the whole internet (publicAccessCidrs "
            "contains 0.0.0.0/0). List only the networks that need the API, or make the endpoint private."
        )


def gke_public_endpoint(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    private = truthy(dig(res.props, "privateClusterConfig.enablePrivateEndpoint"))
    if private is UNKNOWN or private is True:
        return
    networks = res.props.get("masterAuthorizedNetworksConfig")
    if networks is UNKNOWN:
        return
    cidrs = [dig(b, "cidrBlock") for b in as_list(dig(networks, "cidrBlocks"))]
    if UNKNOWN in cidrs:
        return
    if not cidrs:
        report(
            f"GKE cluster '{res.name}' exposes its control plane publicly without authorized networks. Set "
            "privateClusterConfig.enablePrivateEndpoint to true, or list the networks that may reach the API "
            "in masterAuthorizedNetworksConfig.cidrBlocks."
        )
    elif any(c in OPEN_CIDRS for c in cidrs):
        report(
            f"GKE cluster '{res.name}' authorizes 0.0.0.0/0 on its public control plane endpoint. List only the "
            "networks that need the API in masterAuthorizedNetworksConfig.cidrBlocks, or make the endpoint private."
        )


# --------------------------------------------------------------------------- nodes and pods

IMDS_DEFAULT_V2_AMIS = ("AL2023", "BOTTLEROCKET")
"""EKS AMI families whose nodes require IMDSv2 even without a launch template."""


def require_imdsv2(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    if res.type in ("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance"):
        options = res.props.get("metadataOptions")
        tokens, endpoint = dig(options, "httpTokens"), dig(options, "httpEndpoint")
        if UNKNOWN in (options, tokens, endpoint) or tokens == "required" or endpoint == "disabled":
            return
        what = "Launch template" if res.type.endswith("LaunchTemplate") else "EC2 instance"
        state = f"is '{tokens}'" if tokens else "is not set"
        report(
            f"{what} '{res.name}' allows IMDSv1 (metadataOptions.httpTokens {state}), so any process on the node "
            "can read its instance credentials without a session token. Set metadataOptions.httpTokens to "
            "'required' and httpPutResponseHopLimit to 1."
        )
    elif res.type == "aws:eks/nodeGroup:NodeGroup":
        ami = res.props.get("amiType")
        if res.props.get("launchTemplate") not in (None, {}) or ami is UNKNOWN:
            return
        if isinstance(ami, str) and ami.startswith(IMDS_DEFAULT_V2_AMIS):
            return
        report(
            f"EKS node group '{res.name}' has no launch template and its AMI type ({ami or 'AL2 default'}) "
            "allows IMDSv1 on its nodes. Give it a launch template with metadataOptions.httpTokens 'required', "
            "or use an AL2023 or Bottlerocket AMI type."
        )


def gke_workload_metadata(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    mode = dig(res.props, "nodeConfig.workloadMetadataConfig.mode")
    if mode is UNKNOWN or mode == "GKE_METADATA":
        return
    report(
        f"GKE node pool '{res.name}' lets pods reach the node's metadata server (workloadMetadataConfig.mode "
        f"is {repr(mode) if mode else 'not set'}). Set nodeConfig.workloadMetadataConfig.mode to 'GKE_METADATA' "
        "so pods use Workload Identity instead of the node's service account."
    )


def non_root(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    for tpl in pod_templates(res):
        pod_ctx = as_dict(tpl.spec.get("securityContext"))
        for c in containers(tpl.spec):
            ctx = as_dict(c.get("securityContext"))
            flag = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
            user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
            if UNKNOWN in (flag, user):
                continue
            where = f"container '{c.get('name', '?')}' of {res.kind} '{k8s_name(res)}' ({tpl.where})"
            if user == 0:
                report(
                    f"The {where} runs as root (runAsUser: 0). Run it as a non-root user ID and set "
                    "securityContext.runAsNonRoot: true."
                )
            elif truthy(flag) is not True:
                report(
                    f"The {where} may run as root. Set securityContext.runAsNonRoot: true on the pod or the "
                    "container, and build the image with a non-root USER."
                )


def key_rotation(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    p = res.props
    if res.type == "aws:kms/key:Key":
        spec = p.get("customerMasterKeySpec") or p.get("keySpec") or "SYMMETRIC_DEFAULT"
        if spec != "SYMMETRIC_DEFAULT" or p.get("enableKeyRotation") is UNKNOWN:
            return  # AWS rotates only symmetric encryption keys
        if truthy(p.get("enableKeyRotation")) is not True:
            report(
                f"KMS key '{res.name}' does not rotate its key material. Set enableKeyRotation: true "
                "(optionally rotationPeriodInDays)."
            )
    elif res.type == "gcp:kms/cryptoKey:CryptoKey":
        if p.get("purpose", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT" or p.get("rotationPeriod") is UNKNOWN:
            return
        if not p.get("rotationPeriod"):
            report(
                f"Cloud KMS key '{res.name}' has no rotationPeriod. Set rotationPeriod (for example '7776000s', "
                "90 days) so its key material rotates."
            )


RULES = [
    Rule(
        "aws-s3-bucket-disallow-unencrypted",
        "S3 buckets are encrypted with a customer-managed KMS key (aws:kms and a key).",
        "security",
        s3_encryption,
        stack=True,
    ),
    Rule(
        "gcp-storage-bucket-disallow-unencrypted",
        "GCS buckets are encrypted with a customer-managed Cloud KMS key.",
        "security",
        gcs_encryption,
        types=(GCS_BUCKET,),
    ),
    Rule(
        "aws-s3-bucket-disallow-public-access",
        "S3 buckets block every form of public access (all four public access block settings on).",
        "security",
        s3_public_access,
        stack=True,
    ),
    Rule(
        "gcp-storage-bucket-disallow-public-access",
        "GCS buckets enforce public access prevention.",
        "security",
        gcs_public_access,
        types=(GCS_BUCKET,),
    ),
    Rule(
        "aws-s3-bucket-require-tls",
        "S3 bucket policies deny requests that do not use TLS (aws:SecureTransport = false).",
        "security",
        s3_tls_only,
        stack=True,
    ),
    Rule(
        "aws-ec2-security-group-disallow-public-admin-ports",
        "No security group opens admin ports (SSH, RDP, Kubernetes API, kubelet, etcd) to 0.0.0.0/0 or ::/0.",
        "security",
        security_group_admin_ports,
        types=(
            "aws:ec2/securityGroup:SecurityGroup",
            "aws:ec2/securityGroupRule:SecurityGroupRule",
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        ),
    ),
    Rule(
        "gcp-compute-firewall-disallow-public-admin-ports",
        "No firewall opens admin ports (SSH, RDP, Kubernetes API, kubelet, etcd) to 0.0.0.0/0 or ::/0.",
        "security",
        firewall_admin_ports,
        types=("gcp:compute/firewall:Firewall",),
    ),
    Rule(
        "aws-eks-cluster-disallow-public-endpoint",
        "EKS API endpoints are private, or public only to an allow-list without 0.0.0.0/0.",
        "security",
        eks_public_endpoint,
        types=("aws:eks/cluster:Cluster",),
    ),
    Rule(
        "gcp-container-cluster-disallow-public-endpoint",
        "GKE control planes are private, or public only to authorized networks without 0.0.0.0/0.",
        "security",
        gke_public_endpoint,
        types=("gcp:container/cluster:Cluster",),
    ),
    Rule(
        "aws-ec2-require-imdsv2",
        "Nodes require IMDSv2 (launch templates and instances set metadataOptions.httpTokens 'required').",
        "security",
        require_imdsv2,
        types=("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance", "aws:eks/nodeGroup:NodeGroup"),
    ),
    Rule(
        "gcp-container-node-pool-require-gke-metadata",
        "GKE node pools hide the node's metadata server from pods (workloadMetadataConfig GKE_METADATA).",
        "security",
        gke_workload_metadata,
        types=("gcp:container/nodePool:NodePool",),
    ),
    Rule(
        "kubernetes-pod-require-non-root",
        "Containers of Kubernetes workloads (Deployments, Jobs, PyTorchJobs, ...) run as non-root.",
        "security",
        non_root,
        types=("kubernetes:*",),
    ),
    Rule(
        "aicloud-kms-key-rotation-enabled",
        "Customer-managed encryption keys (AWS KMS, Cloud KMS) rotate their key material.",
        "security",
        key_rotation,
        types=("aws:kms/key:Key", "gcp:kms/cryptoKey:CryptoKey"),
    ),
]
