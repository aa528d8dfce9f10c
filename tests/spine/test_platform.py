"""Day one on a real cloud (issue 12): node autoscaling, cluster foundations, access entries and the
deploy path, under the mock engine; each rule that guards them sees its problem planted.

Component tests build one region; plan tests run the shipped dev stack (or a copy of it with one
change) and read what the plan, its sections and the policy pack say.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pytest
import yaml

from components.autoscaling import (
    INTERRUPTION_EVENTS,
    KARPENTER_CHART,
    karpenter_controller_policy,
    node_class_manifest,
    node_pool_manifest,
    pool_limits,
)
from components.base import DataSafety
from components.deploy import DeploySpec, cluster_reach
from components.monitoring import MonitoringSpec, prometheus_stack_values, with_storage_class
from components.nodepool import NodePoolSpec
from components.platform import RegionalPlatform, RegionSpec
from policies.common import StackView
from policies.platform import deployer_reaches_cluster, node_autoscaler_installed
from stacks.config import STACKS_DIR
from stacks.plan import run_plan
from stacks.plan.model import Plan
from stacks.plan.policy import policy_resources
from stacks.steps.platform import pool_scaling, volume_claims
from tests.endpoints.endpoint_helpers import stack_plan
from tests.stack_helpers import config_errors, raw_stack

HELM = "kubernetes:helm.sh/v3:Release"
NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
NODECLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
ADMIN_ROLE = "arn:aws:iam::123456789012:role/platform-admins"
DEPLOY_ROLE = "arn:aws:iam::123456789012:role/aicloud-deploy"


def region(cloud: str = "aws", *, cluster: dict | None = None, pools: list[dict] | None = None) -> RegionSpec:
    aws_pools = [
        {"name": "system", "machineType": "m6i.large", "minNodes": 1, "maxNodes": 3},
        {"name": "train", "machineType": "g6.12xlarge", "role": "training", "minNodes": 0, "maxNodes": 4},
        {"name": "serve", "machineType": "g6e.xlarge", "role": "inference", "minNodes": 2, "maxNodes": 12},
        {
            "name": "spot",
            "machineType": "g6.xlarge",
            "role": "training",
            "maxNodes": 2,
            "spot": True,
            "interruptible": True,
        },
    ]
    gcp_pools = [{"name": "system", "machineType": "e2-standard-4", "minNodes": 1, "maxNodes": 2}]
    return RegionSpec.model_validate(
        {
            "name": "aws-usw2" if cloud == "aws" else "gcp-usc1",
            "cloud": cloud,
            "region": "us-west-2" if cloud == "aws" else "us-central1",
            "primary": True,
            "network": {"cidr": "10.1.0.0/16", "zones": 3},
            "cluster": cluster or {},
            "nodePools": pools or (aws_pools if cloud == "aws" else gcp_pools),
        },
        context={},
    )


def build(spec: RegionSpec, deploy: DeploySpec | None = None, **kwargs):
    if spec.cloud == "aws":
        provider = aws.Provider("aws-aws-usw2", region=spec.region)
    else:
        import pulumi_gcp as gcp

        provider = gcp.Provider("gcp-gcp-usc1", project="acme-test-1", region=spec.region)
        kwargs.setdefault("gcp_project", "acme-test-1")
    RegionalPlatform(
        spec.name,
        spec,
        safety=DataSafety(),
        tags={"owner": "t"},
        deploy=deploy,
        opts=pulumi.ResourceOptions(providers=[provider]),
        **kwargs,
    )


def pool(name: str, **kw) -> NodePoolSpec:
    spec = {p.name: p for p in region().node_pools}[name]
    return spec.model_copy(update=kw)


# ----------------------------------------------------------------------------- Karpenter, rendered


def test_nodepool_limits_are_the_pools_burst_times_the_machines_resources():
    serve = pool("serve")  # g6e.xlarge: 4 vCPU, 32 GiB, 1 GPU; 2 managed + up to 10 more
    assert pool_limits(serve, 10) == {"cpu": "40", "memory": "320Gi", "nodes": "10", "nvidia.com/gpu": "10"}
    manifest = node_pool_manifest(serve, zones=["us-west-2a", "us-west-2b"])
    assert manifest["apiVersion"] == "karpenter.sh/v1" and manifest["kind"] == "NodePool"
    assert manifest["spec"]["limits"]["nodes"] == "10"


def test_nodepool_nodes_look_like_the_pool_and_keep_non_gpu_pods_off():
    spec = node_pool_manifest(pool("spot"), zones=["us-west-2a", "us-west-2b", "us-west-2c"])["spec"]
    template = spec["template"]
    labels = template["metadata"]["labels"]
    assert labels["aicloud.dev/pool"] == "spot" and labels["aicloud.dev/gpu"] == "true"
    assert labels["aicloud.dev/interruptible"] == "true"
    assert template["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
        {"key": "aicloud.dev/interruptible", "value": "true", "effect": "NoSchedule"},
    ]
    reqs = {r["key"]: r["values"] for r in template["spec"]["requirements"]}
    assert reqs["node.kubernetes.io/instance-type"] == ["g6.xlarge"]
    assert reqs["karpenter.sh/capacity-type"] == ["spot"]
    assert reqs["topology.kubernetes.io/zone"] == ["us-west-2a", "us-west-2b", "us-west-2c"]
    assert template["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "spot"}
    # A running training job is never packed elsewhere: training pools consolidate only when empty.
    assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"
    serve = node_pool_manifest(pool("serve"), zones=["us-west-2a"])["spec"]
    assert serve["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    assert "aicloud.dev/interruptible" not in serve["template"]["metadata"]["labels"]


def test_ec2nodeclass_uses_our_profile_imdsv2_and_an_encrypted_root_volume():
    doc = node_class_manifest(
        pool("train", disk_size_gb=800),
        cluster_name="c1",
        instance_profile="c1-profile",
        subnet_ids=["subnet-1a", "subnet-1b"],
        security_group_ids=["sg-1"],
    )
    spec = doc["spec"]
    assert doc["apiVersion"] == "karpenter.k8s.aws/v1" and doc["kind"] == "EC2NodeClass"
    assert spec["instanceProfile"] == "c1-profile" and "role" not in spec
    assert spec["subnetSelectorTerms"] == [{"id": "subnet-1a"}, {"id": "subnet-1b"}]
    assert spec["securityGroupSelectorTerms"] == [{"id": "sg-1"}]
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    ebs = spec["blockDeviceMappings"][0]["ebs"]
    assert ebs == {"volumeSize": "800Gi", "volumeType": "gp3", "encrypted": True, "deleteOnTermination": True}


def test_controller_may_only_touch_instances_of_its_own_cluster():
    doc = karpenter_controller_policy(
        cluster_name="c1", cluster_arn="arn:c1", region="us-west-2", node_role_arn="arn:node", queue_arn="arn:q"
    )
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    delete = by_sid["AllowScopedDeletion"]
    assert delete["Condition"]["StringEquals"] == {"aws:ResourceTag/kubernetes.io/cluster/c1": "owned"}
    assert by_sid["AllowPassingInstanceRole"]["Resource"] == "arn:node"
    assert by_sid["AllowInterruptionQueueActions"]["Resource"] == "arn:q"
    assert not any(a.startswith("iam:Create") for s in doc["Statement"] for a in json.dumps(s["Action"]).split('"'))
    # Only reads are unscoped (Describe/Get, and upstream's iam:ListInstanceProfiles, which the
    # EC2NodeClass finalizer calls).
    assert all(s["Resource"] != "*" or any(verb in json.dumps(s["Action"]) for verb in ("Describe", "Get", "List"))
               for s in doc["Statement"])  # fmt: skip
    assert not any(a.startswith(("iam:Delete", "iam:Add", "iam:Remove", "iam:Tag"))
                   for s in doc["Statement"] for a in json.dumps(s["Action"]).split('"'))  # fmt: skip


# ----------------------------------------------------------------------------- Karpenter, planned


def test_eks_installs_karpenter_with_its_role_queue_and_rules(record):
    regs = record(lambda: build(region()))
    release = regs.one(HELM, "aws-usw2-karpenter-release")
    assert release.inputs["chart"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert release.inputs["version"] == KARPENTER_CHART["version"] == "1.14.1"
    assert "repositoryOpts" not in release.inputs
    values = release.inputs["values"]
    assert values["settings"]["interruptionQueue"] == "${aws-usw2-karpenter-interruption.name}"
    assert values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("${")
    assert values["nodeSelector"]["aicloud.dev/pool"] == "system"
    trust = json.loads(regs.one("aws:iam/role:Role", "aws-usw2-karpenter-controller").inputs["assumeRolePolicy"])
    assert json.dumps(trust).count("system:serviceaccount:kube-system:karpenter") == 1
    queue = regs.one("aws:sqs/queue:Queue")
    assert queue.inputs["messageRetentionSeconds"] == 300 and queue.inputs["sqsManagedSseEnabled"] is True
    policy = json.loads(regs.one("aws:sqs/queuePolicy:QueuePolicy").inputs["policy"])
    allow, deny = policy["Statement"]
    assert allow["Principal"]["Service"] == ["events.amazonaws.com", "sqs.amazonaws.com"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    patterns = [json.loads(r.inputs["eventPattern"]) for r in regs.of_type("aws:cloudwatch/eventRule:EventRule")]
    assert sorted(p["detail-type"][0] for p in patterns) == sorted(d for _, d in INTERRUPTION_EVENTS.values())
    assert {"EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation",
            "EC2 Instance State-change Notification", "AWS Health Event"} <= {p["detail-type"][0] for p in patterns}  # fmt: skip  # noqa: E501
    targets = regs.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert len(targets) == len(patterns) and {t.inputs["arn"] for t in targets} == {
        "${aws-usw2-karpenter-interruption.arn}"
    }
    entry = regs.one("aws:eks/accessEntry:AccessEntry", "aws-usw2-karpenter-node-access")
    assert entry.inputs["type"] == "EC2_LINUX"
    assert regs.one("aws:iam/instanceProfile:InstanceProfile").inputs["role"] == "${aws-usw2-karpenter-node-role.name}"
    assert regs.of_type(HELM) and not [r for r in regs.of_type(HELM) if "cluster-autoscaler" in r.inputs["chart"]]


def test_karpenter_pools_keep_their_floor_as_a_fixed_managed_group(record):
    regs = record(lambda: build(region()))
    groups = {r.name: r.inputs["scalingConfig"] for r in regs.of_type("aws:eks/nodeGroup:NodeGroup")}
    # System pods and Karpenter run on the floors; pools without a floor have no node group at all.
    assert groups == {
        "aws-usw2-system-ng": {"minSize": 1, "desiredSize": 1, "maxSize": 1},
        "aws-usw2-serve-ng": {"minSize": 2, "desiredSize": 2, "maxSize": 2},
    }
    limits = {r.name: r.inputs["spec"]["limits"]["nodes"] for r in regs.of_type(NODEPOOL)}
    assert limits == {
        "aws-usw2-system-nodepool": "2",
        "aws-usw2-train-nodepool": "4",
        "aws-usw2-serve-nodepool": "10",
        "aws-usw2-spot-nodepool": "2",
    }
    release = regs.one(HELM, "aws-usw2-karpenter-release")
    for np in regs.of_type(NODEPOOL) + regs.of_type(NODECLASS):
        assert release.urn in np.depends_on  # the CRDs come with the chart
        assert regs.one("pulumi:providers:kubernetes").urn == np.provider


def test_cluster_autoscaler_where_a_stack_asks_for_it(record):
    regs = record(lambda: build(region(cluster={"autoscaler": "cluster-autoscaler"})))
    assert regs.of_type(NODEPOOL) == [] and regs.of_type("aws:sqs/queue:Queue") == []
    release = regs.one(HELM, "aws-usw2-cluster-autoscaler-release")
    values = release.inputs["values"]
    assert release.inputs["chart"] == "cluster-autoscaler"
    assert release.inputs["repositoryOpts"] == {"repo": "https://kubernetes.github.io/autoscaler"}
    assert values["autoDiscovery"]["clusterName"] == "${aws-usw2-cluster-eks.name}"
    assert values["image"]["tag"] == "v1.33.0" and values["awsRegion"] == "us-west-2"
    sa = values["rbac"]["serviceAccount"]
    assert sa["name"] == "cluster-autoscaler" and sa["annotations"]["eks.amazonaws.com/role-arn"].startswith("${")
    policy = json.loads(
        regs.one("aws:iam/rolePolicy:RolePolicy", "aws-usw2-cluster-autoscaler-policy").inputs["policy"]
    )
    resize = policy["Statement"][1]
    assert resize["Condition"]["StringEquals"] == {
        "aws:ResourceTag/k8s.io/cluster-autoscaler/${aws-usw2-cluster-eks.name}": "owned"
    }
    train = regs.one("aws:eks/nodeGroup:NodeGroup", "aws-usw2-train-ng")
    assert train.inputs["scalingConfig"] == {"minSize": 0, "desiredSize": 0, "maxSize": 4}


@pytest.mark.parametrize(
    ("cloud", "autoscaler", "fragment"),
    [
        ("gcp", "karpenter", "'karpenter' works on EKS only; on gcp use 'gke'"),
        ("gcp", "cluster-autoscaler", "'cluster-autoscaler' works on EKS only"),
        ("aws", "gke", "'gke' works on GKE only; on aws use 'karpenter' or 'cluster-autoscaler'"),
    ],
)
def test_an_autoscaler_the_cloud_cannot_run_fails_at_plan_time_naming_the_key(cloud, autoscaler, fragment):
    raw = raw_stack("staging")
    index = next(i for i, r in enumerate(raw["regions"]) if r["cloud"] == cloud)

    def mutate(r):
        r["regions"][index].setdefault("cluster", {})["autoscaler"] = autoscaler

    errors = config_errors(raw, mutate, "staging")
    name = raw["regions"][index]["name"]
    assert any(e.startswith(f"aicloud:regions[{index}]({name}).cluster.autoscaler:") and fragment in e for e in errors)


def test_eks_access_entries_cannot_be_asked_of_gke():
    raw = raw_stack("staging")
    index = next(i for i, r in enumerate(raw["regions"]) if r["cloud"] == "gcp")

    def mutate(r):
        r["regions"][index].setdefault("cluster", {})["admins"] = [ADMIN_ROLE]

    errors = config_errors(raw, mutate, "staging")
    assert any(".cluster.admins:" in e and "roles/container.admin" in e for e in errors)


def test_gke_keeps_its_own_autoscaler(record):
    regs = record(lambda: build(region("gcp")))
    pool_ = regs.one("gcp:container/nodePool:NodePool")
    assert pool_.inputs["autoscaling"]["totalMaxNodeCount"] == 2
    assert regs.of_type(HELM) == [] and regs.of_type(NODEPOOL) == []


# ----------------------------------------------------------------------------- foundations


def test_eks_gets_the_ebs_csi_addon_with_its_own_role_and_a_default_encrypted_gp3_class(record):
    regs = record(lambda: build(region()))
    addon = regs.one("aws:eks/addon:Addon", "aws-usw2-foundations-aws-ebs-csi-driver")
    assert addon.inputs["serviceAccountRoleArn"] == "${aws-usw2-foundations-ebs-csi.arn}"
    trust = regs.one("aws:iam/role:Role", "aws-usw2-foundations-ebs-csi").inputs["assumeRolePolicy"]
    assert "system:serviceaccount:kube-system:ebs-csi-controller-sa" in trust
    attach = regs.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "aws-usw2-foundations-ebs-csi-policy")
    assert attach.inputs["policyArn"].endswith("service-role/AmazonEBSCSIDriverPolicy")
    sc = regs.one("kubernetes:storage.k8s.io/v1:StorageClass")
    assert sc.inputs["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert sc.inputs["provisioner"] == "ebs.csi.aws.com"
    assert sc.inputs["parameters"]["type"] == "gp3" and sc.inputs["parameters"]["encrypted"] == "true"
    assert sc.inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    assert addon.urn in sc.depends_on
    metrics = regs.one(HELM, "aws-usw2-foundations-metrics-server")
    assert metrics.inputs["chart"] == "metrics-server" and metrics.inputs["version"] == "3.13.1"


def test_prometheus_names_the_clusters_storage_class():
    values = with_storage_class(prometheus_stack_values(MonitoringSpec()), "gp3")
    claim = values["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "gp3"


def test_metric_autoscaling_gets_prometheus_adapter_serving_the_metric(record):
    regs = record(
        lambda: build(
            region(),
            custom_metrics=["aicloud_server_requests_per_second"],
            prometheus_url="http://prometheus-operated.monitoring.svc:9090",
        )
    )
    adapter = regs.one(HELM, "aws-usw2-foundations-prometheus-adapter")
    values = adapter.inputs["values"]
    assert values["prometheus"] == {"url": "http://prometheus-operated.monitoring.svc", "port": 9090}
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == "aicloud_server_requests_per_second"
    assert rule["seriesQuery"].startswith("aicloud_server_requests_total{")


def test_metric_autoscaling_without_prometheus_fails_naming_the_key():
    def mutate(r):
        r.pop("monitoring")
        r["serving"]["autoscaling"] = {"mode": "metric", "requestsPerSecond": 20}

    errors = config_errors(raw_stack("dev"), mutate, "dev")
    assert any(e.startswith("aicloud:serving.autoscaling.mode:") and "prometheus-adapter" in e for e in errors)


def test_admins_and_the_deploy_identity_get_admin_access_entries(record):
    deploy = DeploySpec(runner="self-hosted", runs_on=["self-hosted"], egress_cidrs=["203.0.113.7/32"],
                        aws_role_arn=DEPLOY_ROLE)  # fmt: skip
    regs = record(lambda: build(region(cluster={"admins": [ADMIN_ROLE]}), deploy))
    entries = {r.name: r.inputs["principalArn"] for r in regs.of_type("aws:eks/accessEntry:AccessEntry")}
    assert entries["aws-usw2-cluster-admin-0"] == DEPLOY_ROLE and entries["aws-usw2-cluster-admin-1"] == ADMIN_ROLE
    assocs = regs.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert {a.inputs["policyArn"] for a in assocs} == {
        "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    }
    assert all(a.inputs["accessScope"] == {"type": "cluster"} for a in assocs) and len(assocs) == 2
    cluster = regs.one("aws:eks/cluster:Cluster")
    # The deploy role has its own entry, so EKS's implicit creator entry is off (they would collide).
    assert cluster.inputs["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False
    vpc = cluster.inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["endpointPublicAccess"] is True and vpc["publicAccessCidrs"] == ["203.0.113.7/32"]


def test_without_a_deploy_identity_the_creator_keeps_its_bootstrap_entry(record):
    regs = record(lambda: build(region()))
    cluster = regs.one("aws:eks/cluster:Cluster")
    assert cluster.inputs["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is True
    assert cluster.inputs["vpcConfig"]["endpointPublicAccess"] is False


# ----------------------------------------------------------------------------- deploy path


@pytest.mark.parametrize(
    ("kwargs", "route"),
    [
        ({"public": False, "public_cidrs": [], "runner": "github-hosted", "egress_cidrs": [], "network": None}, "unreachable"),  # noqa: E501
        ({"public": False, "public_cidrs": [], "runner": "self-hosted", "egress_cidrs": ["203.0.113.7/32"], "network": None}, "unreachable"),  # noqa: E501
        ({"public": False, "public_cidrs": [], "runner": "self-hosted", "egress_cidrs": [], "network": "r1"}, "private"),  # noqa: E501
        ({"public": True, "public_cidrs": ["203.0.113.0/24"], "runner": "self-hosted", "egress_cidrs": ["203.0.113.7/32"], "network": None}, "allow-listed"),  # noqa: E501
        ({"public": True, "public_cidrs": ["198.51.100.0/24"], "runner": "self-hosted", "egress_cidrs": ["203.0.113.7/32"], "network": None}, "unreachable"),  # noqa: E501
        ({"public": True, "public_cidrs": ["203.0.113.7/32"], "runner": "github-hosted", "egress_cidrs": [], "network": None}, "unreachable"),  # noqa: E501
        ({"public": False, "public_cidrs": [], "runner": "self-hosted", "egress_cidrs": [], "network": "r2"}, "unreachable"),  # noqa: E501
    ],
)  # fmt: skip
def test_cluster_reach(kwargs, route):
    assert cluster_reach(region_key="r1", private_access=True, **kwargs).route == route


def test_deploy_settings_that_cannot_work_fail_naming_the_key():
    cases = {
        "deploy.egressCidrs": {"runner": "self-hosted", "runsOn": ["self-hosted"], "egressCidrs": ["0.0.0.0/0"]},
        "deploy": {"runner": "github-hosted", "egressCidrs": ["203.0.113.7/32"]},
        "deploy.network": {"runner": "self-hosted", "runsOn": ["self-hosted"], "network": "aws-nowhere"},
    }
    for key, deploy in cases.items():

        def mutate(r, deploy=deploy):
            r["deploy"] = deploy

        errors = config_errors(raw_stack("dev"), mutate, "dev")
        assert any(e.startswith(f"aicloud:{key}") for e in errors), (key, errors)


def _plan_with(tmp_path: Path, change) -> Plan:
    doc = yaml.safe_load((STACKS_DIR / "Pulumi.dev.yaml").read_text())
    change(doc["config"])
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    return run_plan("dev", tmp_path)


def _view(plan: Plan, drop=lambda reg: False) -> StackView:
    return StackView([res for reg, res in policy_resources(plan) if not drop(reg)])


def _messages(check, view: StackView) -> list[str]:
    found: list[str] = []
    check(view, {}, lambda message, urn=None: found.append(message))
    return found


def test_the_shipped_stacks_reach_every_cluster_they_configure():
    for name in ("dev", "staging", "prod"):
        plan = stack_plan(name)
        assert _messages(deployer_reaches_cluster, _view(plan)) == [], name
        routes = [r.outputs["apiAccess"]["route"] for r in plan.of_type("aicloud:platform:RegionalPlatform")]
        assert routes and set(routes) == {"allow-listed"}, name


def test_a_hosted_runner_and_a_private_api_are_flagged_before_up(tmp_path):
    plan = _plan_with(tmp_path, lambda c: c.pop("aicloud:deploy"))
    findings = [f for f in plan.findings if f["policy"] == "aicloud-deployer-reaches-cluster-api"]
    assert [f["name"] for f in findings] == ["aws-use1-cluster-eks"]
    assert "GitHub-hosted runner" in findings[0]["message"] and "private API endpoint only" in findings[0]["message"]
    assert {f["level"] for f in findings} == {"mandatory"}
    access = next(s for k, s in plan.to_json()["sections"].items() if k == "access")
    assert access["rows"][0][4].startswith("unreachable")


def test_a_runner_inside_the_network_needs_no_public_endpoint(tmp_path):
    def inside(c):
        c["aicloud:deploy"] = {"runner": "self-hosted", "runsOn": ["self-hosted"], "network": "aws-use1"}

    plan = _plan_with(tmp_path, inside)
    vpc = next(r for r in plan.resources if r.type == "aws:eks/cluster:Cluster").inputs["vpcConfig"]
    assert vpc["endpointPublicAccess"] is False
    assert [f for f in plan.findings if f["policy"] == "aicloud-deployer-reaches-cluster-api"] == []


# ----------------------------------------------------------------------------- figures, planted


def test_no_shipped_pool_waits_without_an_autoscaler_and_every_volume_has_a_provisioner():
    for name in ("dev", "staging", "prod"):
        plan = stack_plan(name)
        rows = pool_scaling(plan)
        assert rows and [r for r in rows if r["stuck"]] == [], name
        # Every pool's autoscaler can reach its maximum.
        assert all(r["reachable"] == r["maxNodes"] for r in rows), name
        claims = volume_claims(plan)
        assert claims and all(c["served"] for c in claims), name
    dev = {r["pool"]: r for r in pool_scaling(stack_plan("dev"))}
    assert dev["gpu"]["demand"] == 2 and dev["gpu"]["autoscaler"] == "karpenter" and dev["gpu"]["reachable"] == 2


def test_a_pool_without_its_autoscaler_is_reported_stuck():
    plan = stack_plan("dev")
    without = replace(plan, resources=[r for r in plan.resources if "karpenter" not in str(r.inputs.get("chart", ""))])
    stuck = [r["pool"] for r in pool_scaling(without) if r["stuck"]]
    assert stuck == ["gpu"]
    messages = _messages(
        node_autoscaler_installed, _view(plan, lambda reg: "karpenter" in str(reg.inputs.get("chart", "")))
    )
    assert messages and all("has no Karpenter controller in its cluster" in m for m in messages)


def test_a_resizable_node_group_without_cluster_autoscaler_is_reported(tmp_path):
    def classic(c):
        c["aicloud:regions"][0]["cluster"]["autoscaler"] = "cluster-autoscaler"

    plan = _plan_with(tmp_path, classic)
    assert [f for f in plan.findings if f["level"] == "mandatory"] == []
    assert [r for r in pool_scaling(plan) if r["stuck"]] == []
    messages = _messages(
        node_autoscaler_installed, _view(plan, lambda reg: "cluster-autoscaler" in str(reg.inputs.get("chart", "")))
    )
    assert len(messages) == 2 and all("no node autoscaler runs in its cluster" in m for m in messages)


def test_a_volume_without_a_provisioner_is_reported():
    plan = stack_plan("dev")
    no_driver = replace(plan, resources=[r for r in plan.resources if r.type != "aws:eks/addon:Addon"])
    assert [c["served"] for c in volume_claims(no_driver)] == [False]
    no_class = replace(
        plan, resources=[r for r in plan.resources if r.type != "kubernetes:storage.k8s.io/v1:StorageClass"]
    )
    assert [c["provisioner"] for c in volume_claims(no_class)] == [None]


def test_the_plan_shows_autoscaler_foundations_and_access_per_cluster():
    sections = stack_plan("prod").to_json()["sections"]
    platform = {row[0]: row for row in sections["platform"]["rows"]}
    assert platform["aws-use1"][1] == "karpenter" and platform["gcp-usc1"][1] == "gke"
    assert platform["aws-use1"][3] == "gp3 (ebs.csi.aws.com)"
    assert platform["gcp-usc1"][3] == "standard-rwo (pd.csi.storage.gke.io)"
    access = {row[0]: row for row in sections["access"]["rows"]}
    assert set(access) == {r.name for r in stack_plan("prod").config.regions}
    assert all("self-hosted runner" in row[3] and row[4] == "allow-listed" for row in access.values())


# ----------------------------------------------------------------------------- waiting for nodes


def components_before_nodes(plan: Plan) -> list[str]:
    """Cluster components whose pods must run for `pulumi up` to finish (an EKS add-on's create
    waits while it is DEGRADED, a Helm release waits up to 300 s for its pods) but that do not
    wait for their region's system node pool: a race with node creation on every first `up`."""
    floors = {
        r.urn
        for r in plan.resources
        if (r.type, r.name.rsplit("-", 2)[-2:])
        in (("aws:eks/nodeGroup:NodeGroup", ["system", "ng"]), ("gcp:container/nodePool:NodePool", ["system", "np"]))
    }
    kinds = (
        "aicloud:platform:ClusterFoundations",
        "aicloud:compute:Karpenter",
        "aicloud:observability:Monitoring",
        "aicloud:serving:InferenceEndpoint",
        "aicloud:training:RegionalTraining",
    )
    return [r.name for r in plan.resources if r.type in kinds and not floors & set(r.depends_on)]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_cluster_components_wait_for_the_system_nodes(stack):
    plan = stack_plan(stack)
    assert [r for r in plan.resources if r.type == "aicloud:platform:ClusterFoundations"]
    assert components_before_nodes(plan) == []


def test_a_planted_foundations_without_nodes_is_reported():
    plan = stack_plan("staging")
    planted = replace(plan, resources=[
        replace(r, depends_on=[]) if r.type == "aicloud:platform:ClusterFoundations" else r for r in plan.resources
    ])  # fmt: skip
    assert sorted(components_before_nodes(planted)) == ["aws-usw2-foundations", "gcp-usc1-foundations"]
