"""S3 under moto with IAM enforced, as a role holding a policy document the components render, and
with S3's answer to a GET/HEAD of a *missing* key planted: 403 (not 404) for a caller without an
unconditioned ``s3:ListBucket`` on the bucket.

The planted rule is S3's documented behaviour (S3 API reference, GetObject and HeadObject,
"Permissions": "If you don't have the s3:ListBucket permission, Amazon S3 returns an HTTP status
code 403 Forbidden error"; aws/aws-cli#2041). moto 5.2 answers 404 whatever the policy, so
``missing_is_forbidden`` wraps moto's key handler: on a 404 for a GET or HEAD of a key of an
existing bucket, it asks moto's own policy evaluator (``IAMPolicyStatement``) whether the caller's
policies allow ``s3:ListBucket`` on the bucket through a statement without a ``Condition`` (a GET
carries no ``s3:prefix``, so a prefix-conditioned ListBucket does not apply to it), and answers 403
``AccessDenied`` when they do not. Everything else (actions, resources) is moto's evaluation.
Caveat kept from moto: it does not evaluate ``s3:prefix`` conditions on a listing itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws, settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import IAMPolicyStatement, PermissionResult, create_access_key
from moto.s3.responses import S3Response

from workloads import storage

ACCOUNT = "123456789012"
_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
)


def role_session(role: str, *, inline: Sequence[dict[str, Any]] = (), managed: Sequence[str] = ()) -> boto3.Session:
    """Inside moto: create IAM role `role` (trusted by the account), attach the `managed` policy
    ARNs and put the `inline` documents on it, assume it, and return a session with its
    credentials. Its setup is 2 + len(managed) + len(inline) API calls, in that order (for
    `set_initial_no_auth_action_count`)."""
    iam = boto3.client("iam", region_name="us-east-1")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    for arn in managed:
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    for i, doc in enumerate(inline):
        iam.put_role_policy(RoleName=role, PolicyName=f"inline-{i}", PolicyDocument=json.dumps(doc))
    creds = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName=role
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )


def outcomes(calls: dict[str, Callable[[], Any]]) -> dict[str, str]:
    """Make each call; name -> "allowed", or the error code the refusal carries."""
    out = {}
    for name, call in calls.items():
        try:
            call()
            out[name] = "allowed"
        except Exception as exc:  # botocore ClientError: the code names the refusal
            out[name] = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    return out


def _statements(doc: Any) -> list[dict[str, Any]]:
    doc = json.loads(doc) if isinstance(doc, str) else doc
    if isinstance(doc, dict) and "policy_document" in doc:  # attached policies, as moto lists them
        doc = json.loads(doc["policy_document"])
    st = doc["Statement"]
    return st if isinstance(st, list) else [st]


def lists_bucket_unconditioned(policies: list[Any], bucket: str) -> bool:
    """Whether `policies` allow `s3:ListBucket` on `bucket` to a request without `s3:prefix`."""
    arn = f"arn:aws:s3:::{bucket}"
    allowed = False
    for doc in policies:
        for st in _statements(doc):
            if "Condition" in st:
                continue
            result = IAMPolicyStatement(st).is_action_permitted("s3:ListBucket", arn)
            if result == PermissionResult.DENIED:
                return False
            allowed = allowed or result == PermissionResult.PERMITTED
    return allowed


def _enforced() -> bool:
    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def missing_is_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plant S3's 403-for-a-missing-key answer into moto (see the module docstring)."""
    original = S3Response.key_response

    def key_response(self: S3Response, request: Any, full_url: str, headers: Any) -> Any:
        status, out_headers, body = original(self, request, full_url, headers)
        if status != 404 or request.method not in ("GET", "HEAD") or not _enforced():
            return status, out_headers, body
        bucket = self.parse_bucket_name_from_url(request, full_url)
        try:
            self.backend.get_bucket(bucket)
        except Exception:  # noqa: BLE001 - NoSuchBucket stays a 404
            return status, out_headers, body
        auth = request.headers.get("Authorization", "")
        key_id = auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else ""
        caller = create_access_key(ACCOUNT, "aws", key_id, dict(request.headers))
        if lists_bucket_unconditioned(caller.collect_policies(), bucket):
            return status, out_headers, body
        return 403, {"Content-Type": "application/xml"}, (b"" if request.method == "HEAD" else _DENIED)

    monkeypatch.setattr(S3Response, "key_response", key_response)


@contextmanager
def as_role(
    monkeypatch: pytest.MonkeyPatch, policy: dict[str, Any], buckets: dict[str, dict[str, bytes]]
) -> Iterator[Any]:
    """moto S3 with `buckets` (name -> key -> bytes) created, then IAM enforced for every call made
    as a role holding `policy`; `workloads.storage` uses that role's credentials. Yields a boto3 S3
    client of the role."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    missing_is_forbidden(monkeypatch)
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 10**9)  # setup runs unchecked
    storage._s3_client_for.cache_clear()
    with mock_aws():
        admin = boto3.client("s3", region_name="us-east-1")
        for bucket, objects in buckets.items():
            admin.create_bucket(Bucket=bucket)
            for key, body in objects.items():
                admin.put_object(Bucket=bucket, Key=key, Body=body)
        creds = role_session("workload", inline=[policy]).get_credentials()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds.secret_key)
        monkeypatch.setenv("AWS_SESSION_TOKEN", creds.token)
        storage._s3_client_for.cache_clear()
        monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # every call from here is checked
        try:
            yield storage.s3_client()
        finally:
            monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 10**9)
            storage._s3_client_for.cache_clear()
