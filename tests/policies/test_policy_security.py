"""Security guardrails: each starts from a happy-path resource, changes one field, asserts the message."""

from __future__ import annotations

import json

import pytest
from policy_harness import DELETE, Spec, change, check_resource, messages, put, without
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234"
TLS_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::acme-lake", "arn:aws:s3:::acme-lake/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
)


def s3_stack() -> list[Spec]:
    """A bucket with a customer-key encryption config, a full public access block and a TLS-only policy."""
    return [
        Spec("aws:s3/bucket:Bucket", "lake", {"bucket": "acme-lake"}),
        Spec(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "lake-sse",
            {
                "bucket": "acme-lake",
                "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY}}],
            },
            parent="lake",
            deps=["lake"],
        ),
        Spec(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "lake-pab",
            {
                "bucket": "acme-lake",
                "blockPublicAcls": True,
                "blockPublicPolicy": True,
                "ignorePublicAcls": True,
                "restrictPublicBuckets": True,
            },
            parent="lake",
            deps=["lake"],
        ),
        Spec(
            "aws:s3/bucketPolicy:BucketPolicy",
            "lake-policy",
            {"bucket": "acme-lake", "policy": TLS_POLICY},
            deps=["lake"],
        ),
    ]


# --------------------------------------------------------------------------- S3 encryption


def test_s3_bucket_with_customer_key_passes():
    assert messages("aws-s3-bucket-disallow-unencrypted", s3_stack()) == []


def test_s3_bucket_with_sse_s3_is_reported():
    stack = change(s3_stack(), "lake-sse", "rules[0].applyServerSideEncryptionByDefault.sseAlgorithm", "AES256")
    assert messages("aws-s3-bucket-disallow-unencrypted", stack) == [
        "S3 bucket 'lake' is encrypted with AES256 instead of a customer-managed KMS key. Set sseAlgorithm to "
        "'aws:kms' and kmsMasterKeyId to your KMS key."
    ]


def test_s3_bucket_with_aws_managed_key_is_reported():
    stack = change(s3_stack(), "lake-sse", "rules[0].applyServerSideEncryptionByDefault.kmsMasterKeyId", DELETE)
    assert messages("aws-s3-bucket-disallow-unencrypted", stack) == [
        "S3 bucket 'lake' uses aws:kms with the AWS-managed aws/s3 key. Set kmsMasterKeyId to a customer-managed "
        "KMS key so you control its key policy and rotation."
    ]


def test_s3_bucket_without_encryption_config_is_reported():
    assert messages("aws-s3-bucket-disallow-unencrypted", without(s3_stack(), "lake-sse")) == [
        "S3 bucket 'lake' has no server-side encryption configuration with a customer-managed KMS key. Add an "
        "aws.s3.BucketServerSideEncryptionConfiguration with sseAlgorithm 'aws:kms' and kmsMasterKeyId set to "
        "your KMS key."
    ]


def test_s3_key_known_only_after_apply_passes():
    """A key ARN computed at apply time (a new KMS key) counts as set."""
    stack = change(
        s3_stack(), "lake-sse", "rules[0].applyServerSideEncryptionByDefault.kmsMasterKeyId", UNKNOWN_STRING_VALUE
    )
    assert messages("aws-s3-bucket-disallow-unencrypted", stack) == []


def test_s3_inline_encryption_counts():
    stack = [
        Spec(
            "aws:s3/bucket:Bucket",
            "lake",
            {
                "serverSideEncryptionConfiguration": {
                    "rule": {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY}}
                }
            },
        )
    ]
    assert messages("aws-s3-bucket-disallow-unencrypted", stack) == []


# --------------------------------------------------------------------------- public access, TLS


def test_s3_public_access_block_passes():
    assert messages("aws-s3-bucket-disallow-public-access", s3_stack()) == []


def test_s3_public_access_block_with_a_flag_off_is_reported():
    stack = change(s3_stack(), "lake-pab", "restrictPublicBuckets", False)
    assert messages("aws-s3-bucket-disallow-public-access", stack) == [
        "The public access block of S3 bucket 'lake' leaves restrictPublicBuckets off. Set all four of "
        "blockPublicAcls, blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets to true."
    ]


def test_s3_without_public_access_block_is_reported_on_the_bucket():
    found = messages("aws-s3-bucket-disallow-public-access", without(s3_stack(), "lake-pab"))
    assert found == [
        "S3 bucket 'lake' has no public access block. Add an aws.s3.BucketPublicAccessBlock with blockPublicAcls, "
        "blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets all true."
    ]


def test_s3_tls_only_policy_passes():
    assert messages("aws-s3-bucket-require-tls", s3_stack()) == []


def test_s3_policy_without_tls_deny_is_reported():
    doc = json.loads(TLS_POLICY)
    doc["Statement"][0]["Condition"] = {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
    stack = change(s3_stack(), "lake-policy", "policy", json.dumps(doc))
    assert messages("aws-s3-bucket-require-tls", stack) == [
        "The bucket policy of S3 bucket 'lake' does not deny requests without TLS. Add a Deny statement on s3:* "
        "with the condition Bool aws:SecureTransport = false."
    ]


def test_s3_without_policy_is_reported():
    assert messages("aws-s3-bucket-require-tls", without(s3_stack(), "lake-policy")) == [
        "S3 bucket 'lake' has no bucket policy, so it accepts plain-HTTP requests. Add an aws.s3.BucketPolicy with "
        "a Deny statement on s3:* when aws:SecureTransport is false."
    ]


def test_s3_policy_known_only_after_apply_is_not_judged_in_preview():
    stack = change(s3_stack(), "lake-policy", "policy", UNKNOWN_STRING_VALUE)
    assert messages("aws-s3-bucket-require-tls", stack) == []


def test_s3_rules_pair_each_bucket_with_its_own_config():
    """Two buckets: the second has nothing; only it is reported, linked by dependencies alone."""
    stack = [*s3_stack(), Spec("aws:s3/bucket:Bucket", "logs", {"bucket": "acme-logs"})]
    assert [m[:25] for m in messages("aws-s3-bucket-disallow-unencrypted", stack)] == ["S3 bucket 'logs' has no s"]


GCS = {
    "location": "US-CENTRAL1",
    "encryption": {"defaultKmsKeyName": "projects/p/locations/us-central1/keyRings/lake/cryptoKeys/lake"},
    "publicAccessPrevention": "enforced",
    "uniformBucketLevelAccess": True,
    "versioning": {"enabled": True},
}


def test_gcs_bucket_passes_security_rules():
    for rule in ("gcp-storage-bucket-disallow-unencrypted", "gcp-storage-bucket-disallow-public-access"):
        assert check_resource(rule, "gcp:storage/bucket:Bucket", GCS, name="lake") == []


def test_gcs_bucket_without_customer_key_is_reported():
    props = put(GCS, "encryption", DELETE)
    assert check_resource(
        "gcp-storage-bucket-disallow-unencrypted", "gcp:storage/bucket:Bucket", props, name="lake"
    ) == [
        "GCS bucket 'lake' has no default customer-managed encryption key. Set encryption.defaultKmsKeyName to a "
        "Cloud KMS key and grant the Cloud Storage service agent the Encrypter/Decrypter role on it."
    ]


def test_gcs_bucket_without_public_access_prevention_is_reported():
    props = put(GCS, "publicAccessPrevention", "inherited")
    assert check_resource(
        "gcp-storage-bucket-disallow-public-access", "gcp:storage/bucket:Bucket", props, name="lake"
    ) == [
        "GCS bucket 'lake' does not enforce public access prevention (publicAccessPrevention is 'inherited'). Set "
        "publicAccessPrevention to 'enforced'."
    ]


# --------------------------------------------------------------------------- network exposure

SG = {
    "ingress": [
        {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]},
        {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/8"]},
    ]
}


def test_https_open_to_the_internet_is_fine():
    assert (
        check_resource(
            "aws-ec2-security-group-disallow-public-admin-ports", "aws:ec2/securityGroup:SecurityGroup", SG, name="lb"
        )
        == []
    )


def test_ssh_open_to_the_internet_is_reported():
    props = put(SG, "ingress[1].cidrBlocks", ["0.0.0.0/0"])
    assert check_resource(
        "aws-ec2-security-group-disallow-public-admin-ports", "aws:ec2/securityGroup:SecurityGroup", props, name="lb"
    ) == [
        "Security group 'lb' opens admin port(s) 22 (SSH) to 0.0.0.0/0. Restrict the source to your "
        "administrators' networks, or reach nodes through SSM Session Manager."
    ]


def test_all_traffic_rule_over_ipv6_is_reported():
    props = {"type": "ingress", "protocol": "-1", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]}
    found = check_resource(
        "aws-ec2-security-group-disallow-public-admin-ports",
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        props,
        name="all",
    )
    assert found == [
        "Security group rule 'all' opens admin port(s) 22 (SSH), 2379 (etcd), 2380 (etcd peers), 3389 (RDP), "
        "6443 (Kubernetes API), 10250 (kubelet API), 10255 (kubelet read-only API) to ::/0. Restrict the source "
        "to your administrators' networks, or reach nodes through SSM Session Manager."
    ]


def test_vpc_ingress_rule_with_a_port_range_covering_the_kubelet_is_reported():
    props = {"ipProtocol": "tcp", "fromPort": 10000, "toPort": 10300, "cidrIpv4": "0.0.0.0/0"}
    found = check_resource(
        "aws-ec2-security-group-disallow-public-admin-ports",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        props,
        name="nodes",
    )
    assert found == [
        "Security group rule 'nodes' opens admin port(s) 10250 (kubelet API), 10255 (kubelet read-only API) to "
        "0.0.0.0/0. Restrict the source to your administrators' networks, or reach nodes through SSM Session Manager."
    ]


FIREWALL = {
    "direction": "INGRESS",
    "sourceRanges": ["35.235.240.0/20"],
    "allows": [{"protocol": "tcp", "ports": ["22", "8000-8100"]}],
}


def test_firewall_with_iap_range_passes():
    assert (
        check_resource(
            "gcp-compute-firewall-disallow-public-admin-ports", "gcp:compute/firewall:Firewall", FIREWALL, name="ssh"
        )
        == []
    )


def test_firewall_open_to_the_internet_on_ssh_is_reported():
    props = put(FIREWALL, "sourceRanges", ["0.0.0.0/0"])
    assert check_resource(
        "gcp-compute-firewall-disallow-public-admin-ports", "gcp:compute/firewall:Firewall", props, name="ssh"
    ) == [
        "Firewall 'ssh' allows ingress from 0.0.0.0/0 to admin port(s) 22 (SSH). Restrict sourceRanges to your "
        "administrators' networks, or use IAP TCP forwarding."
    ]


EKS = {"vpcConfig": {"subnetIds": ["subnet-1"], "endpointPrivateAccess": True, "endpointPublicAccess": False}}


def test_private_eks_endpoint_passes():
    assert check_resource("aws-eks-cluster-disallow-public-endpoint", "aws:eks/cluster:Cluster", EKS, name="eks") == []


def test_public_eks_endpoint_with_an_allow_list_passes():
    props = put(put(EKS, "vpcConfig.endpointPublicAccess", True), "vpcConfig.publicAccessCidrs", ["203.0.113.0/24"])
    assert (
        check_resource("aws-eks-cluster-disallow-public-endpoint", "aws:eks/cluster:Cluster", props, name="eks") == []
    )


@pytest.mark.parametrize(
    ("public", "cidrs", "message"),
    [
        (
            True,
            [],
            "EKS cluster 'eks' exposes its API endpoint publicly without an allow-list (an empty publicAccessCidrs "
            "means 0.0.0.0/0). Set vpcConfig.endpointPublicAccess to false, or list the networks that may reach "
            "the API in vpcConfig.publicAccessCidrs.",
        ),
        (
            DELETE,  # EKS defaults to a public endpoint
            DELETE,
            "EKS cluster 'eks' exposes its API endpoint publicly without an allow-list (an empty publicAccessCidrs "
            "means 0.0.0.0/0). Set vpcConfig.endpointPublicAccess to false, or list the networks that may reach "
            "the API in vpcConfig.publicAccessCidrs.",
        ),
        (
            True,
            ["203.0.113.0/24", "0.0.0.0/0"],
            "EKS cluster 'eks' exposes its API endpoint to the whole internet (publicAccessCidrs contains "
            "0.0.0.0/0). List only the networks that need the API, or make the endpoint private.",
        ),
    ],
)
def test_public_eks_endpoint_without_a_real_allow_list_is_reported(public, cidrs, message):
    props = put(EKS, "vpcConfig.endpointPublicAccess", public)
    if cidrs is not DELETE:
        props = put(props, "vpcConfig.publicAccessCidrs", cidrs)
    assert check_resource("aws-eks-cluster-disallow-public-endpoint", "aws:eks/cluster:Cluster", props, name="eks") == [
        message
    ]


GKE = {
    "privateClusterConfig": {"enablePrivateNodes": True, "enablePrivateEndpoint": True},
    "masterAuthorizedNetworksConfig": {"cidrBlocks": []},
}


def test_private_gke_endpoint_passes():
    assert (
        check_resource(
            "gcp-container-cluster-disallow-public-endpoint", "gcp:container/cluster:Cluster", GKE, name="gke"
        )
        == []
    )


def test_public_gke_endpoint_without_authorized_networks_is_reported():
    props = put(GKE, "privateClusterConfig.enablePrivateEndpoint", False)
    assert check_resource(
        "gcp-container-cluster-disallow-public-endpoint", "gcp:container/cluster:Cluster", props, name="gke"
    ) == [
        "GKE cluster 'gke' exposes its control plane publicly without authorized networks. Set "
        "privateClusterConfig.enablePrivateEndpoint to true, or list the networks that may reach the API in "
        "masterAuthorizedNetworksConfig.cidrBlocks."
    ]


def test_public_gke_endpoint_open_to_everyone_is_reported():
    props = put(
        put(GKE, "privateClusterConfig.enablePrivateEndpoint", False),
        "masterAuthorizedNetworksConfig.cidrBlocks",
        [{"cidrBlock": "0.0.0.0/0", "displayName": "all"}],
    )
    assert check_resource(
        "gcp-container-cluster-disallow-public-endpoint", "gcp:container/cluster:Cluster", props, name="gke"
    ) == [
        "GKE cluster 'gke' authorizes 0.0.0.0/0 on its public control plane endpoint. List only the networks that "
        "need the API in masterAuthorizedNetworksConfig.cidrBlocks, or make the endpoint private."
    ]


# --------------------------------------------------------------------------- nodes

LAUNCH_TEMPLATE = {
    "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}
}


def test_launch_template_requiring_imdsv2_passes():
    assert (
        check_resource("aws-ec2-require-imdsv2", "aws:ec2/launchTemplate:LaunchTemplate", LAUNCH_TEMPLATE, name="lt")
        == []
    )


def test_launch_template_allowing_imdsv1_is_reported():
    props = put(LAUNCH_TEMPLATE, "metadataOptions.httpTokens", "optional")
    assert check_resource("aws-ec2-require-imdsv2", "aws:ec2/launchTemplate:LaunchTemplate", props, name="lt") == [
        "Launch template 'lt' allows IMDSv1 (metadataOptions.httpTokens is 'optional'), so any process on the node "
        "can read its instance credentials without a session token. Set metadataOptions.httpTokens to 'required' "
        "and httpPutResponseHopLimit to 1."
    ]


def test_node_group_without_launch_template_on_al2_is_reported():
    props = {"amiType": "AL2_x86_64_GPU", "instanceTypes": ["g5.xlarge"]}
    assert check_resource("aws-ec2-require-imdsv2", "aws:eks/nodeGroup:NodeGroup", props, name="ng") == [
        "EKS node group 'ng' has no launch template and its AMI type (AL2_x86_64_GPU) allows IMDSv1 on its nodes. "
        "Give it a launch template with metadataOptions.httpTokens 'required', or use an AL2023 or Bottlerocket "
        "AMI type."
    ]
    assert (
        check_resource(
            "aws-ec2-require-imdsv2",
            "aws:eks/nodeGroup:NodeGroup",
            put(props, "amiType", "AL2023_x86_64_NVIDIA"),
            name="ng",
        )
        == []
    )


def test_gke_node_pool_exposing_the_metadata_server_is_reported():
    good = {"nodeConfig": {"workloadMetadataConfig": {"mode": "GKE_METADATA"}}}
    assert (
        check_resource(
            "gcp-container-node-pool-require-gke-metadata", "gcp:container/nodePool:NodePool", good, name="np"
        )
        == []
    )
    bad = put(good, "nodeConfig.workloadMetadataConfig.mode", "GCE_METADATA")
    assert check_resource(
        "gcp-container-node-pool-require-gke-metadata", "gcp:container/nodePool:NodePool", bad, name="np"
    ) == [
        "GKE node pool 'np' lets pods reach the node's metadata server (workloadMetadataConfig.mode is "
        "'GCE_METADATA'). Set nodeConfig.workloadMetadataConfig.mode to 'GKE_METADATA' so pods use Workload "
        "Identity instead of the node's service account."
    ]


# --------------------------------------------------------------------------- pods

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "server", "namespace": "serving"},
    "spec": {
        "template": {
            "metadata": {"labels": {"app": "server"}},
            "spec": {
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                "initContainers": [{"name": "fetch", "image": "fetch:1"}],
                "containers": [{"name": "server", "image": "server:1"}],
            },
        }
    },
}


def test_deployment_running_as_non_root_passes():
    assert check_resource("kubernetes-pod-require-non-root", "kubernetes:apps/v1:Deployment", DEPLOYMENT) == []


def test_container_without_run_as_non_root_is_reported():
    props = put(DEPLOYMENT, "spec.template.spec.securityContext", {})
    assert check_resource("kubernetes-pod-require-non-root", "kubernetes:apps/v1:Deployment", props) == [
        "The container 'fetch' of Deployment 'server' (spec.template.spec) may run as root. Set "
        "securityContext.runAsNonRoot: true on the pod or the container, and build the image with a non-root USER.",
        "The container 'server' of Deployment 'server' (spec.template.spec) may run as root. Set "
        "securityContext.runAsNonRoot: true on the pod or the container, and build the image with a non-root USER.",
    ]


def test_container_overriding_to_root_is_reported():
    props = put(DEPLOYMENT, "spec.template.spec.containers[0].securityContext", {"runAsUser": 0})
    assert check_resource("kubernetes-pod-require-non-root", "kubernetes:apps/v1:Deployment", props) == [
        "The container 'server' of Deployment 'server' (spec.template.spec) runs as root (runAsUser: 0). Run it as a "
        "non-root user ID and set securityContext.runAsNonRoot: true."
    ]


def test_pytorchjob_replicas_are_checked():
    def pod():
        return {"securityContext": {"runAsNonRoot": True}, "containers": [{"name": "pytorch", "image": "trainer:1"}]}

    job = {
        "kind": "PyTorchJob",
        "metadata": {"name": "pretrain"},
        "spec": {
            "pytorchReplicaSpecs": {"Master": {"template": {"spec": pod()}}, "Worker": {"template": {"spec": pod()}}}
        },
    }
    assert check_resource("kubernetes-pod-require-non-root", "kubernetes:kubeflow.org/v1:PyTorchJob", job) == []
    bad = put(job, "spec.pytorchReplicaSpecs.Worker.template.spec.securityContext", {})
    assert check_resource("kubernetes-pod-require-non-root", "kubernetes:kubeflow.org/v1:PyTorchJob", bad) == [
        "The container 'pytorch' of PyTorchJob 'pretrain' (spec.pytorchReplicaSpecs.Worker.template.spec) may run as "
        "root. Set securityContext.runAsNonRoot: true on the pod or the container, and build the image with a "
        "non-root USER."
    ]


# --------------------------------------------------------------------------- keys


def test_kms_key_rotation():
    assert (
        check_resource("aicloud-kms-key-rotation-enabled", "aws:kms/key:Key", {"enableKeyRotation": True}, name="k")
        == []
    )
    assert check_resource(
        "aicloud-kms-key-rotation-enabled", "aws:kms/key:Key", {"enableKeyRotation": False}, name="k"
    ) == [
        "KMS key 'k' does not rotate its key material. Set enableKeyRotation: true (optionally rotationPeriodInDays)."
    ]
    asymmetric = {"customerMasterKeySpec": "RSA_2048", "keyUsage": "SIGN_VERIFY"}
    assert check_resource("aicloud-kms-key-rotation-enabled", "aws:kms/key:Key", asymmetric, name="k") == []


def test_cloud_kms_key_rotation():
    good = {"keyRing": "projects/p/locations/us/keyRings/r", "rotationPeriod": "7776000s"}
    assert check_resource("aicloud-kms-key-rotation-enabled", "gcp:kms/cryptoKey:CryptoKey", good, name="k") == []
    assert check_resource(
        "aicloud-kms-key-rotation-enabled", "gcp:kms/cryptoKey:CryptoKey", put(good, "rotationPeriod", DELETE), name="k"
    ) == [
        "Cloud KMS key 'k' has no rotationPeriod. Set rotationPeriod (for example '7776000s', 90 days) so its key "
        "material rotates."
    ]
