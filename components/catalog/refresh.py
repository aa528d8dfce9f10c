"""How the catalog is rebuilt, and a check that it is consistent.

The catalog (`gpus.yaml`, `regions.yaml`, `prices.yaml`) is hand-maintained from the clouds' own
listings; every file names its sources and the date they were recorded (`references` in
`gpus.yaml`). Last rebuilt: 2025-07 (prices, regions, zones), see `references`. Rebuild it when
a cloud launches a GPU type or region aicloud should offer, and at least every six months
(prices change; AWS cut P4/P5 prices in June 2025).

1. GCP zones per GPU machine type (the zones of a region that offer the accelerator):

       gcloud compute accelerator-types list --format=json > gcp-accelerators.json
       python -m components.catalog.refresh --gcp-accelerators gcp-accelerators.json [--write]

   Each GCP GPU machine's `zones:` becomes the zones listing its accelerator (`gke_type` of its
   GPU in `accelerators`), restricted to the regions in its `regions:` and in `regions.yaml`.

2. AWS regions per instance type (AWS zone names differ per account, so aicloud records regions):

       for r in $(aws ec2 describe-regions --query 'Regions[].RegionName' --output text); do
         aws ec2 describe-instance-type-offerings --region $r --location-type region \\
           --query 'InstanceTypeOfferings[].InstanceType' --output json > aws-offerings/$r.json
       done
       python -m components.catalog.refresh --aws-offerings aws-offerings/   # prints the differences

3. Prices: AWS Price List Query API (`aws pricing get-products --service-code AmazonEC2
   --filters Type=TERM_MATCH,Field=instanceType,Value=<type> Type=TERM_MATCH,Field=regionCode,
   Value=us-east-1 ...`, Linux, shared tenancy, on-demand) and the GCP Cloud Billing Catalog API
   (`services/6F81-5844-456A/skus`, us-central1). Update `price_per_hour`, `price_factors` and
   `prices.yaml`, and the `recorded` dates.

`python -m components.catalog.refresh --check` (run by the tests) verifies that every region and
zone the catalog names exists in `regions.yaml`, that zones lie in the machine's regions, that
every GPU machine names a known accelerator and every MIG profile fits its GPU's memory.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
_MIG = re.compile(r"^([1-7])g\.(\d+)gb$")


def check(gpus: dict[str, Any], regions: dict[str, Any]) -> list[str]:
    """Inconsistencies of the catalog files (empty when consistent)."""
    problems = []
    accelerators = gpus["accelerators"]
    for m in gpus["machines"]:
        where = f"{m['cloud']}/{m['type']}"
        known = regions[m["cloud"]]
        offered = list(known) if m["regions"] == "all" else m["regions"]
        for r in offered:
            if r not in known:
                problems.append(f"{where}: region {r} is not in regions.yaml")
        for r, zones in (m.get("zones") or {}).items():
            for z in zones:
                if r in known and z not in known[r]:
                    problems.append(f"{where}: zone {z} is not a zone of {r} in regions.yaml")
        if r_missing := [r for r in offered if m.get("zones") is not None and r not in m["zones"]]:
            problems.append(f"{where}: no zones recorded for {', '.join(r_missing)}")
        if m["gpus"] and m.get("gpu") not in accelerators:
            problems.append(f"{where}: unknown accelerator {m.get('gpu')!r}")
    for name, a in accelerators.items():
        memory = next((m["gpu_memory_gib"] for m in gpus["machines"] if m.get("gpu") == name), None)
        for profile in a.get("mig_profiles", []):
            match = _MIG.match(profile)
            if match is None or (memory is not None and int(match.group(2)) > memory + 1):
                problems.append(f"accelerator {name}: MIG profile {profile!r} does not fit {memory} GiB")
    for cloud, factors in gpus.get("price_factors", {}).items():
        for r in factors:
            if r not in regions[cloud]:
                problems.append(f"price_factors.{cloud}: region {r} is not in regions.yaml")
    return problems


def gcp_zones(gpus: dict[str, Any], listing: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """New `zones:` of each GCP GPU machine type from `gcloud compute accelerator-types list`."""
    by_type: dict[str, set[str]] = {}
    for item in listing:
        zone = str(item.get("zone", "")).rsplit("/", 1)[-1]
        by_type.setdefault(str(item.get("name")), set()).add(zone)
    out = {}
    for m in gpus["machines"]:
        if m["cloud"] != "gcp" or not m["gpus"]:
            continue
        gke_type = gpus["accelerators"][m["gpu"]].get("gke_type")
        zones = sorted(by_type.get(gke_type, ()))
        out[m["type"]] = {r: [z for z in zones if z.rsplit("-", 1)[0] == r] for r in m["regions"]}
    return out


def _flow(zones: dict[str, list[str]]) -> str:
    return "{" + ", ".join(f"{r}: [{', '.join(z)}]" for r, z in zones.items()) + "}"


def write_zones(text: str, zones: dict[str, dict[str, list[str]]]) -> str:
    """`gpus.yaml` text with the `zones:` line of each machine in `zones` replaced."""
    lines, out, current = text.split("\n"), [], None
    for line in lines:
        found = re.search(r"type: ([\w.-]+),", line)
        if found:
            current = found.group(1)
        if current in zones and line.lstrip().startswith("zones:"):
            indent = line[: len(line) - len(line.lstrip())]
            line = f"{indent}zones: {_flow(zones[current])}}}"
        out.append(line)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.catalog.refresh", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the catalog files are consistent")
    parser.add_argument("--gcp-accelerators", metavar="JSON", help="`gcloud compute accelerator-types list` output")
    parser.add_argument("--aws-offerings", metavar="DIR", help="<region>.json instance type lists per region")
    parser.add_argument("--write", action="store_true", help="rewrite gpus.yaml with the new GCP zones")
    args = parser.parse_args(argv)
    text = (HERE / "gpus.yaml").read_text()
    gpus, regions = yaml.safe_load(text), yaml.safe_load((HERE / "regions.yaml").read_text())
    status = 0
    if args.check or not (args.gcp_accelerators or args.aws_offerings):
        problems = check(gpus, regions)
        for p in problems:
            print(p, file=sys.stderr)
        refs = "; ".join(f"{c}: {r['recorded']} ({r['source']})" for c, r in gpus["references"].items())
        print(f"catalog: {len(gpus['machines'])} machine types; recorded {refs}; {len(problems)} problem(s)")
        status = 1 if problems else 0
    if args.gcp_accelerators:
        zones = gcp_zones(gpus, json.loads(Path(args.gcp_accelerators).read_text()))
        for machine, new in zones.items():
            old = next(m.get("zones") for m in gpus["machines"] if m["type"] == machine)
            if old != new:
                print(f"{machine}: zones change: {_flow(old or {})} -> {_flow(new)}")
        if args.write:
            (HERE / "gpus.yaml").write_text(write_zones(text, zones))
    if args.aws_offerings:
        for m in gpus["machines"]:
            if m["cloud"] != "aws" or m["regions"] == "all":
                continue
            offered = sorted(
                f.stem for f in Path(args.aws_offerings).glob("*.json") if m["type"] in json.loads(f.read_text())
            )
            known = [r for r in offered if r in regions["aws"]]
            if sorted(m["regions"]) != known:
                print(f"{m['type']}: regions {sorted(m['regions'])} -> {known}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
