"""Config exactly as the Pulumi CLI writes it, every problem in one pass, and the plan found the
way the Pulumi CLI finds a project."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stacks.cli import main
from stacks.config import ConfigError, find_project, load_stack, parse_stack_config
from stacks.plan import run_plan
from tests.stack_helpers import raw_stack

ROOT = Path(__file__).resolve().parents[2]
STACKS = ROOT / "stacks"
SECURE = {"secure": "v1:3hW8VtkQWmcF9c1t:Ep2oqwBf4dOCq3AZ9ZLWQxYq4nkhAQ=="}


def write_stack(folder: Path, name: str, config: dict) -> Path:
    path = folder / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return path


def shipped(env: str) -> dict:
    return yaml.safe_load((STACKS / f"Pulumi.{env}.yaml").read_text())["config"]


def errors_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw, "t")
    return info.value.errors


@pytest.mark.parametrize("spelling", ["false", "False", "FALSE", "no", "No", "off", "OFF", "0", "f", "n", False])
def test_allow_spot_false_in_every_spelling_forbids_spot_pools(spelling):
    raw = raw_stack("dev")
    raw["allowSpot"] = spelling
    assert errors_of(raw) == [
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).spot: spot capacity is forbidden in this stack "
        "(allowSpot: false); set spot: false or allow spot for the stack (got True)"
    ]


@pytest.mark.parametrize("spelling", ["true", "True", "TRUE", "yes", "on", "1", "t", "y", True])
def test_allow_spot_true_in_every_spelling_allows_them(spelling):
    raw = raw_stack("dev")
    raw["allowSpot"] = spelling
    assert parse_stack_config(raw, "t").allow_spot is True


def test_scalars_set_without_path_arrive_as_strings(tmp_path: Path):
    # `pulumi config set aicloud:allowSpot false` writes the string "false"; `--path` writes typed
    # values (`pulumi config set --path 'aicloud:monitoring.storageGib' 20` -> 20).
    config = shipped("dev")
    config["aicloud:allowSpot"] = "true"
    config["aicloud:monitoring"]["storageGib"] = "20"
    config["aicloud:regions"][0]["nodePools"][1]["maxNodes"] = "2"
    write_stack(tmp_path, "cli", config)
    _, cfg = load_stack("cli", tmp_path)
    assert cfg.allow_spot is True and cfg.monitoring.storage_gib == 20 and cfg.regions[0].node_pools[1].max_nodes == 2


def test_secure_values_are_secret_unknowns_in_the_plan(tmp_path: Path):
    config = shipped("prod")
    config["aicloud:gcpProject"] = SECURE  # pulumi config set --secret aicloud:gcpProject ...
    config["aicloud:serving"]["global"]["aws"]["hostedZoneId"] = SECURE  # ... --secret --path
    config["aicloud:tags"]["cost-center"] = SECURE
    write_stack(tmp_path, "secret", config)
    plan = run_plan("secret", tmp_path, policies=False)
    providers = [r for r in plan.resources if r.type == "pulumi:providers:gcp"]
    assert providers and all(r.inputs["project"] == "[secret]" for r in providers)
    assert plan.config.tags["cost-center"] == "[secret]"


def test_a_secret_where_the_plan_needs_a_number_is_an_error_not_a_crash():
    raw = raw_stack("dev")
    raw["monitoring"]["storageGib"] = "[secret]"
    (error,) = errors_of(raw)
    assert error.startswith("aicloud:monitoring.storageGib: a secret (secure:) value cannot be planned here")


@pytest.mark.parametrize(
    "content,phrase",
    [
        (b"", "aicloud:environment: required key is missing"),
        (b"config:\n", "aicloud:regions: required key is missing"),
        (b"just a string\n", "a stack file is a mapping"),
        (b"config:\n  aicloud:owner: a\n  aicloud:owner: b\n", "duplicate key 'aicloud:owner' (line 3)"),
        (b"\xff\xfe\x00binary", "not a text file"),
    ],
)
def test_whatever_the_file_holds_the_cli_exits_2_without_traceback(tmp_path: Path, capsys, content, phrase):
    (tmp_path / "Pulumi.odd.yaml").write_bytes(content)
    assert main(["plan", "odd", "--stacks-dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err


# --------------------------------------------------------------------------- one pass, no follow-ons


def test_stack_level_checks_survive_field_errors_elsewhere():
    raw = raw_stack("prod")
    raw["owner"] = ""  # a field error...
    raw.pop("gcpProject")  # ...does not hide the stack-level ones
    raw["regions"][1]["primary"] = True
    raw["serving"]["pool"] = "serv"
    errors = errors_of(raw)
    paths = {e.split(": ", 1)[0] for e in errors}
    assert {"aicloud:owner", "aicloud:gcpProject", "aicloud:regions"} <= paths, errors


def test_a_check_on_an_invalid_section_says_nothing_about_it():
    raw = raw_stack("prod")
    raw["storage"]["streaming"]["bufferSeconds"] = 5000  # storage present but invalid
    raw["regions"] = [{"name": "x", "cloud": "azure"}] + raw["regions"][1:]  # a broken region
    errors = errors_of(raw)
    assert not any("retraining needs aicloud:storage" in e for e in errors), errors
    assert not any("Filestore" in e for e in errors), errors
    assert any(e.startswith("aicloud:storage.streaming.bufferSeconds:") for e in errors)


def test_an_aws_only_stack_gets_no_gcp_size_rules():
    raw = raw_stack("dev")
    raw["storage"]["scratch"] = {"sizeGib": 2400}
    raw["regions"][0]["region"] = "us-east-9"  # the region is wrong: still no Filestore error
    errors = errors_of(raw)
    assert [e.split(": ", 1)[0] for e in errors] == ["aicloud:regions[0](aws-use1).region"], errors


# --------------------------------------------------------------------------- cloud rules in the plan


def test_gke_gpu_pools_use_only_zones_that_offer_their_accelerator():
    plan = run_plan("prod", policies=False)
    pools = {r.name: r for r in plan.resources if r.type == "gcp:container/nodePool:NodePool"}
    # us-central1 network zones a, b, c; H100 (a3-highgpu-8g) is offered in a and c only.
    # The train pool is a capacity chain: its flex tier spreads like any pool, its reservation tier
    # sits in the reservation's zone.
    assert pools["gcp-usc1-train-flex-np"].inputs["nodeLocations"] == ["us-central1-a", "us-central1-c"]
    assert pools["gcp-usc1-train-res0-np"].inputs["nodeLocations"] == ["us-central1-a"]
    assert pools["gcp-usc1-serve-np"].inputs["nodeLocations"] == ["us-central1-a", "us-central1-b", "us-central1-c"]


def test_a_custom_serving_namespace_holds_the_endpoint_and_its_identity(tmp_path: Path):
    config = shipped("dev")
    config["aicloud:serving"]["namespace"] = "ml-serving"
    write_stack(tmp_path, "ns", config)
    plan = run_plan("ns", tmp_path, policies=False)
    namespaces = {r.inputs["metadata"]["name"] for r in plan.resources if r.type == "kubernetes:core/v1:Namespace"}
    assert "ml-serving" in namespaces and "aicloud-serving" not in namespaces
    role = next(r for r in plan.resources if r.type == "aws:iam/role:Role" and r.name.endswith("-server-role"))
    assert "system:serviceaccount:ml-serving:aicloud-server" in str(role.inputs)


# --------------------------------------------------------------------------- project discovery


def test_the_project_is_found_from_the_working_directory_like_the_pulumi_cli(tmp_path: Path):
    project = tmp_path / "infra"
    (project / "envs").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: ml\nruntime: python\nstackConfigDir: envs\n")
    config = copy.deepcopy(shipped("dev"))
    config["aicloud:owner"] = ""
    write_stack(project / "envs", "qa", config)
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    assert find_project(deep) == (project / "Pulumi.yaml", project / "envs")
    # A separate process in that repository, with aicloud importable but not installed from it.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "stacks.cli", "plan", "qa"],
        cwd=deep,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "aicloud:owner:" in proc.stderr and "Traceback" not in proc.stderr
    shutil.rmtree(project / "envs")
    proc = subprocess.run(
        [sys.executable, "-m", "stacks.cli", "plan", "qa"],
        cwd=deep,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and f"{project / 'envs'}" in proc.stderr and "--stacks-dir" in proc.stderr


def test_endpoint_and_job_pool_references_are_checked_while_another_region_is_invalid():
    raw = raw_stack("prod")
    raw["regions"][2]["region"] = "eu-west-9"  # aws-euw1 is now invalid
    raw["serving"]["pool"] = "serv"
    raw["training"]["jobs"][0]["pool"] = "trian"  # runs in aws-use1, which is valid
    paths = {e.split(": ", 1)[0] for e in errors_of(raw)}
    assert paths == {"aicloud:regions[2](aws-euw1).region", "aicloud:serving.pool", "aicloud:training.jobs"}
