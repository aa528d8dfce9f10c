"""The serving artifact: what the trainer exports and the model server loads.

An artifact is a directory (prefix) at any ``workloads.storage`` URI::

    model.pt              fp32 state_dict (torch.save; loads with torch.load(weights_only=True))
    heldout.pt            {"x": FP32 [N, F], "y": INT64 [N]} (weights_only loadable)
    reference_stats.json  drift reference from workloads.drift.compute_reference
    manifest.json         written LAST: the commit marker, with the sha256 of every other file

A prefix without ``manifest.json`` is not an artifact (an export died half way).

``manifest["model"]`` names how to rebuild the module: ``{"arch": "mlp", "kwargs": {...}}`` for a
model of ``workloads.models``, or ``{"factory": "pkg.mod:build", "kwargs": {...}, "package":
{"name": "pkg-dist", "version": "1.2.0"}}`` for a team's own model (:func:`rebuild_model`). Files
are written group-readable (0640 locally), so a serving or evaluation job in the owner's group can
read them.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from torch import nn

from workloads import storage
from workloads.models import FactoryError, build_factory, build_model, factory_package

__all__ = [
    "FORMAT",
    "MANIFEST",
    "Artifact",
    "ArtifactError",
    "save_artifact",
    "load_artifact",
    "rebuild_model",
    "model_spec",
    "serving_precision",
]

FORMAT = "aicloud-model/1"
MANIFEST = "manifest.json"
_MODEL, _HELDOUT, _REFERENCE = "model.pt", "heldout.pt", "reference_stats.json"


class ArtifactError(Exception):
    """The artifact is missing, incomplete, corrupt or of an unknown format."""


@dataclass(slots=True)
class Artifact:
    """A loaded artifact: the model is in eval mode, fp32, on CPU."""

    manifest: dict[str, Any]
    """The parsed manifest.json."""
    model: nn.Module
    """The rebuilt model with the exported weights."""
    heldout_x: torch.Tensor
    """Held-out inputs, FP32 ``[N, F]``."""
    heldout_y: torch.Tensor
    """Held-out labels, INT64 ``[N]``."""
    reference: dict[str, Any]
    """Drift reference statistics (see workloads.drift)."""
    name: str
    """Model name."""
    version: str
    """Model version."""
    input_spec: dict[str, Any]
    """The single input tensor: ``{"name": "input__0", "datatype": "FP32", "shape": [-1, F]}``."""
    output_spec: dict[str, Any]
    """The single output tensor: ``{"name": "output__0", "datatype": "FP32", "shape": [-1, C]}``."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        for attr in ("module", "_orig_mod"):
            inner = getattr(model, attr, None)
            if isinstance(inner, nn.Module):
                model = inner
                break
        else:
            return model


def model_spec(*, arch: str | None, factory: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``model`` entry: ``arch`` for a built-in model, else the factory, its
    arguments and the installed package (name and version) that provides it."""
    if factory is not None:
        return {"factory": factory, "kwargs": kwargs, "package": factory_package(factory)}
    if arch is None:
        raise ValueError("model_spec needs arch or factory")
    return {"arch": arch, "kwargs": kwargs}


def rebuild_model(spec: dict[str, Any]) -> nn.Module:
    """A freshly initialised module from a manifest's ``model`` entry (built-in arch or factory).

    Raises ArtifactError naming the missing factory or package, and the version the artifact was
    trained with, so a server image without the team's package says what to install.
    """
    kwargs = spec.get("kwargs", {})
    if "factory" in spec:
        try:
            return build_factory(spec["factory"], kwargs)
        except FactoryError as exc:
            package = spec.get("package") or {}
            trained = (
                f" (the artifact was trained with {package['name']}=={package['version']})"
                if package.get("name")
                else ""
            )
            raise ArtifactError(f"{exc}{trained}") from exc
    try:
        return build_model(spec["arch"], **kwargs)
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"manifest model entry {spec!r} cannot be rebuilt: {exc}") from exc


def serving_precision(model: nn.Module, requested: str, resolved: str) -> str:
    """The precision to serve ``model`` at: ``resolved`` unless the request was ``auto`` and it
    resolved to ``int8`` for a model with no ``nn.Linear`` layer (dynamic int8 quantizes only
    Linear layers, so such a model is served in fp32 and reported as such)."""
    if requested == "auto" and resolved == "int8" and not any(isinstance(m, nn.Linear) for m in model.modules()):
        return "fp32"
    return resolved


def save_artifact(
    uri: str,
    *,
    model: nn.Module,
    arch: str | None,
    kwargs: dict[str, Any],
    factory: str | None = None,
    heldout_x: torch.Tensor | np.ndarray,
    heldout_y: torch.Tensor | np.ndarray,
    reference: dict[str, Any],
    name: str,
    version: str | int,
    metrics: dict[str, Any] | None = None,
) -> str:
    """Export ``model`` as an artifact at ``uri`` and return ``uri``.

    ``arch`` (or ``factory``, which wins) and ``kwargs`` must rebuild the model (see
    :func:`rebuild_model`); the input width ``F`` is ``kwargs["in_features"]`` and the output
    width ``kwargs["num_classes"]``.
    The manifest is written last, after every file it lists.
    """
    x = torch.as_tensor(heldout_x).detach().to("cpu", torch.float32).contiguous()
    y = torch.as_tensor(heldout_y).detach().to("cpu", torch.int64).contiguous()
    in_features, num_classes = int(kwargs["in_features"]), int(kwargs["num_classes"])
    if x.ndim != 2 or x.shape[1] != in_features:
        raise ValueError(f"heldout_x must be [N, {in_features}], got {list(x.shape)}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"heldout_y must be [{x.shape[0]}], got {list(y.shape)}")
    state = {
        k: (v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu())
        for k, v in _unwrap(model).state_dict().items()
    }
    files = {
        _MODEL: _torch_bytes(state),
        _HELDOUT: _torch_bytes({"x": x, "y": y}),
        _REFERENCE: json.dumps(reference, indent=1).encode(),
    }
    for filename, data in files.items():
        storage.write_bytes(storage.join(uri, filename), data)
    manifest = {
        "format": FORMAT,
        "name": name,
        "version": str(version),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model_spec(arch=arch, factory=factory, kwargs=kwargs),
        "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [-1, in_features]}],
        "outputs": [{"name": "output__0", "datatype": "FP32", "shape": [-1, num_classes]}],
        "metrics": dict(metrics or {}),
        "files": {filename: _sha256(data) for filename, data in files.items()},
    }
    storage.write_bytes(storage.join(uri, MANIFEST), json.dumps(manifest, indent=2).encode())
    return uri


def load_artifact(uri: str) -> Artifact:
    """Load and verify the artifact at ``uri`` (sha256 of every file listed in the manifest)."""
    manifest_uri = storage.join(uri, MANIFEST)
    try:
        manifest = json.loads(storage.read_bytes(manifest_uri))
    except FileNotFoundError as exc:
        raise ArtifactError(
            f"no artifact at {uri}: {MANIFEST} is missing (it is written last, so an export "
            "that did not finish has none)"
        ) from exc
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{manifest_uri}: format {manifest.get('format')!r} is not supported; allowed: {FORMAT!r}")
    blobs: dict[str, bytes] = {}
    for filename in (_MODEL, _HELDOUT, _REFERENCE):
        expected = manifest.get("files", {}).get(filename)
        if expected is None:
            raise ArtifactError(f"{manifest_uri}: files has no entry for {filename}")
        try:
            data = storage.read_bytes(storage.join(uri, filename))
        except FileNotFoundError as exc:
            raise ArtifactError(f"{uri}: {filename} is listed in the manifest but missing") from exc
        if _sha256(data) != expected:
            raise ArtifactError(f"{uri}: {filename} does not match its sha256 in the manifest")
        blobs[filename] = data
    model = rebuild_model(manifest["model"])
    try:
        model.load_state_dict(torch.load(io.BytesIO(blobs[_MODEL]), weights_only=True))
    except RuntimeError as exc:  # the factory builds a different shape than the one trained
        raise ArtifactError(f"{uri}: the weights do not fit the rebuilt model {manifest['model']}: {exc}") from exc
    model.float().eval()
    heldout = torch.load(io.BytesIO(blobs[_HELDOUT]), weights_only=True)
    return Artifact(
        manifest=manifest,
        model=model,
        heldout_x=heldout["x"],
        heldout_y=heldout["y"],
        reference=json.loads(blobs[_REFERENCE]),
        name=manifest["name"],
        version=manifest["version"],
        input_spec=manifest["inputs"][0],
        output_spec=manifest["outputs"][0],
    )
