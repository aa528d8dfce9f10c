"""Front doors listen with TLS only: AWS serves nothing on port 80 (an NLB cannot redirect), GCP
answers port 80 with a redirect to HTTPS; the model server's metrics are never behind them."""

from __future__ import annotations

import pytest

from components.global_endpoint import AwsRegionalLoadBalancer, nlb_listener_ports
from stacks.plan import run_plan
from tests.stack_helpers import config_errors, raw_stack


def test_nlb_listens_on_443_only():
    assert nlb_listener_ports() == [443]


def test_an_aws_front_door_without_certificates_is_refused():
    errors = config_errors(
        raw_stack("staging"), lambda r: r["serving"]["global"]["aws"].pop("certificateArns"), "staging"
    )
    assert errors == [
        "aicloud:serving.global.aws.certificateArns: needs one certificate for each AWS serving region (aws-usw2): "
        "the front door listens with TLS only (got [])"
    ]


def test_a_regional_load_balancer_without_a_certificate_is_refused():
    with pytest.raises(ValueError, match="TLS only and needs an ACM certificate"):
        AwsRegionalLoadBalancer(
            "lb",
            service="clf",
            namespace="aicloud-serving",
            target_port=8080,
            vpc_id="vpc-1",
            vpc_cidr="10.0.0.0/16",
            subnet_ids=["subnet-a"],
            internal=True,
            certificate_arn=None,
        )


@pytest.fixture(scope="module")
def prod():
    return run_plan("prod", policies=False)


def test_prod_front_doors_serve_no_plain_text(prod):
    listeners = prod.of_type("aws:lb/listener:Listener")
    assert listeners and {(r.inputs["port"], r.inputs["protocol"]) for r in listeners} == {(443, "TLS")}
    (ga,) = prod.of_type("aws:globalaccelerator/listener:Listener")
    assert ga.inputs["portRanges"] == [{"fromPort": 443, "toPort": 443}]
    maps = {r.name: r for r in prod.of_type("gcp:compute/uRLMap:URLMap")}
    for proxy in prod.of_type("gcp:compute/targetHttpProxy:TargetHttpProxy"):
        target = maps[proxy.inputs["urlMap"].split(".")[0].removeprefix("${")]
        assert target.inputs["defaultUrlRedirect"]["httpsRedirect"] is True


def test_entry_services_carry_no_metrics_port(prod):
    services = prod.of_type("kubernetes:core/v1:Service")
    assert services
    for svc in services:
        names = {p.get("name") for p in svc.inputs["spec"]["ports"]}
        assert "metrics" not in names, svc.name
