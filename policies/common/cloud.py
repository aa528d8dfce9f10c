"""Cloud helpers: catalog machine types, AWS GPU counts, IAM policy documents."""

from __future__ import annotations

import json
import re
from typing import Any

from components.catalog import MachineType, load_catalog

# --------------------------------------------------------------------------- cloud helpers


def machine(cloud: str, type_: Any) -> MachineType | None:
    return load_catalog().machine(cloud, type_) if isinstance(type_, str) else None


_AWS_GPU_FAMILY = re.compile(r"^(p\d+[a-z]*|g\d+[a-z]*|gr\d+[a-z]*)\.")


def aws_gpus(instance_type: Any) -> int | None:
    """GPUs per node of an EC2 type: the catalog's count; None for a GPU family not in the catalog."""
    m = machine("aws", instance_type)
    if m is not None:
        return m.gpus
    if isinstance(instance_type, str) and _AWS_GPU_FAMILY.match(instance_type):
        return None
    return 0


def policy_json(value: Any) -> dict[str, Any] | None:
    """An IAM-style policy document from a JSON string or an object; None when unknown or invalid."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except json.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None
    return None
