"""Upstream truth is vendored with provenance, refreshable, and is what custom resources are
validated against (never a schema written here)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components import upstream
from components.k8s_schema import crd_json_schema, validate_object

HERE = Path(upstream.__file__).parent
MIRROR = Path("/work/.mirror")


def test_every_vendored_file_is_named_in_a_sources_file():
    named = set()
    for sources in HERE.rglob("SOURCES.yaml"):
        doc = yaml.safe_load(sources.read_text())
        for entry in doc["files"]:
            assert entry["repository"] and entry["ref"] and entry["path"], entry
            named.add((sources.parent / Path(entry["file"]).name).resolve())
    vendored = {
        p.resolve()
        for top in ("charts", "crds", "manifests", "LICENSES", "gcp-roles")
        for p in (HERE / top).rglob("*")
        if p.is_file() and p.name not in ("SOURCES.yaml", "INDEX.json")
    }
    assert vendored - named == set()


def test_verbatim_files_match_the_sha256_their_sources_file_records():
    verbatim = [*(HERE / "charts").rglob("SOURCES.yaml"), *(HERE / "manifests").rglob("SOURCES.yaml")]
    for sources in [*verbatim, HERE / "LICENSES" / "SOURCES.yaml"]:
        for entry in yaml.safe_load(sources.read_text())["files"]:
            if "sha256" not in entry:
                continue
            path = sources.parent / Path(entry["file"]).name
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], path


def test_every_repository_we_vendor_from_has_its_licence():
    licensed = {e["repository"] for e in yaml.safe_load((HERE / "LICENSES" / "SOURCES.yaml").read_text())["files"]}
    pins = upstream.pins()
    used = {p["source"] for p in pins["charts"].values()} | {c["source"] for c in pins["crds"]}
    used |= {c["source"] for p in pins["charts"].values() for c in p.get("crds", []) if "source" in c}
    used |= {m["source"] for bundle in (pins.get("manifests") or {}).values() for m in bundle}
    assert used <= licensed


@pytest.mark.parametrize("chart", sorted(upstream.pins()["charts"]))
def test_every_pinned_chart_version_is_published(chart):
    truth = upstream.chart_truth(chart)
    assert truth is not None
    assert truth.version in truth.published_versions
    assert truth.values, f"{chart} has no default values"


def test_components_read_their_chart_pins_from_the_one_pin_file():
    from components.endpoint import KEDA_CHART
    from components.global_endpoint import AWS_LBC_CHART
    from components.monitoring import DCGM_EXPORTER_CHART, KUBE_PROMETHEUS_STACK_CHART, OTEL_COLLECTOR_CHART
    from components.platform import NVIDIA_DEVICE_PLUGIN_CHART

    for pin in (KEDA_CHART, AWS_LBC_CHART, DCGM_EXPORTER_CHART, KUBE_PROMETHEUS_STACK_CHART, OTEL_COLLECTOR_CHART,
                NVIDIA_DEVICE_PLUGIN_CHART):  # fmt: skip
        assert pin == upstream.chart_pin(pin["chart"])


@pytest.mark.skipif(not MIRROR.is_dir(), reason="no upstream git mirrors on this machine")
def test_refresh_reproduces_every_vendored_file_from_upstream():
    script = HERE / "refresh.py"
    done = subprocess.run([sys.executable, str(script), "--check", "--mirror", str(MIRROR)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------- CRD schemas, read strictly


def test_int_or_string_preserve_unknown_and_nullable_read_as_the_api_server_does():
    schema = crd_json_schema(
        {
            "type": "object",
            "description": "dropped",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
                "maybe": {"type": "string", "nullable": True},
            },
        }
    )
    assert schema["additionalProperties"] is False
    assert schema["properties"]["port"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert "additionalProperties" not in schema["properties"]["free"]
    assert schema["properties"]["maybe"]["type"] == ["string", "null"]
    assert "description" not in schema


def _monitor(**spec):
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "m", "namespace": "monitoring"},
        "spec": {"selector": {}, "podMetricsEndpoints": [{"port": "http"}], **spec},
    }


def test_a_custom_resource_that_fits_its_upstream_crd_is_valid():
    assert validate_object(_monitor(), "1.33") == []


def test_an_unknown_custom_resource_field_is_reported_with_its_path():
    problems = validate_object(_monitor(podMetricsEndpoint=[]), "1.33")
    assert len(problems) == 1 and "PodMonitor/m at .spec" in problems[0] and "podMetricsEndpoint" in problems[0]


def test_a_value_outside_the_upstream_enum_is_reported():
    bad = _monitor(podMetricsEndpoints=[{"port": "http", "relabelings": [{"action": "rename"}]}])
    problems = validate_object(bad, "1.33")
    assert any(".spec.podMetricsEndpoints[0].relabelings[0].action" in p for p in problems), problems


def test_a_missing_required_field_is_reported():
    tgb = {
        "apiVersion": "elbv2.k8s.aws/v1beta1",
        "kind": "TargetGroupBinding",
        "metadata": {"name": "t", "namespace": "serving"},
        "spec": {"targetGroupARN": "arn:aws:elasticloadbalancing:x"},
    }
    problems = validate_object(tgb, "1.33")
    assert any("'serviceRef' is a required property" in p for p in problems), problems


def test_embedded_pod_templates_are_checked_strictly():
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "j", "namespace": "training"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Worker": {"replicas": 1, "template": {"spec": {"containers": [{"name": "t", "imag": "x"}]}}}
            }
        },
    }
    problems = validate_object(job, "1.33")
    assert any("imag" in p and "containers[0]" in p for p in problems), problems


def test_the_crds_issue_12_renders_are_vendored():
    for api_version, kind in [
        ("karpenter.sh/v1", "NodePool"),
        ("karpenter.k8s.aws/v1", "EC2NodeClass"),
        ("trainer.kubeflow.org/v1alpha1", "TrainJob"),
        ("trainer.kubeflow.org/v1alpha1", "ClusterTrainingRuntime"),
        ("jobset.x-k8s.io/v1alpha2", "JobSet"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ]:
        truth = upstream.crd(api_version, kind)
        assert truth is not None and truth.installed_by, (api_version, kind)
