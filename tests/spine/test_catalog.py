"""The catalog is consistent, knows GPU zones and MIG profiles, and rebuilds its GCP zones from
the cloud's own listing (`components/catalog/refresh.py`)."""

from __future__ import annotations

import yaml

from components.catalog import load_catalog
from components.catalog.refresh import HERE, check, gcp_zones, main, write_zones


def test_the_catalog_files_are_consistent(capsys):
    assert main(["--check"]) == 0
    assert "0 problem(s)" in capsys.readouterr().out


def test_check_finds_a_zone_outside_its_region():
    gpus = yaml.safe_load((HERE / "gpus.yaml").read_text())
    regions = yaml.safe_load((HERE / "regions.yaml").read_text())
    a3 = next(m for m in gpus["machines"] if m["type"] == "a3-highgpu-8g")
    a3["zones"]["us-central1"].append("us-central1-z")
    assert check(gpus, regions) == [
        "gcp/a3-highgpu-8g: zone us-central1-z is not a zone of us-central1 in regions.yaml"
    ]


def test_gcp_zones_are_rebuilt_from_the_accelerator_listing():
    text = (HERE / "gpus.yaml").read_text()
    gpus = yaml.safe_load(text)
    listing = [
        {"name": "nvidia-h100-80gb", "zone": "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-b"},
        {"name": "nvidia-h100-80gb", "zone": "projects/p/zones/europe-west4-c"},
        {"name": "nvidia-l4", "zone": "projects/p/zones/us-central1-a"},
    ]
    zones = gcp_zones(gpus, listing)
    assert zones["a3-highgpu-8g"]["us-central1"] == ["us-central1-b"]
    assert zones["a3-highgpu-8g"]["europe-west4"] == ["europe-west4-c"]
    assert zones["g2-standard-8"]["us-central1"] == ["us-central1-a"]
    rewritten = yaml.safe_load(write_zones(text, zones))
    a3 = next(m for m in rewritten["machines"] if m["type"] == "a3-highgpu-8g")
    assert a3["zones"]["us-central1"] == ["us-central1-b"] and a3["price_per_hour"] == 88.2494


def test_zones_and_mig_profiles_per_gpu():
    catalog = load_catalog()
    h100 = catalog.machine("gcp", "a3-highgpu-8g")
    assert h100.zones_in("us-central1", ("us-central1-a", "us-central1-b", "us-central1-c")) == [
        "us-central1-a",
        "us-central1-c",
    ]
    assert catalog.machine("aws", "p5.48xlarge").zones_in("us-east-1", ("us-east-1a", "us-east-1b")) == [
        "us-east-1a",
        "us-east-1b",
    ]  # AWS: regions only (zone names differ per account)
    assert "1g.10gb" not in catalog.accelerators["nvidia-a100-40gb"].mig_profiles
    assert "3g.20gb" not in catalog.accelerators["nvidia-h100"].mig_profiles
