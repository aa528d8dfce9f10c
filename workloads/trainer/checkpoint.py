"""Checkpoint files: one self-verifying object per step under ``<out>/checkpoints/``.

Layout of ``ckpt-000000120.pt``::

    b"AICLOUD-CKPT/1\\n" + sha256(payload) as 64 hex digits + b"\\n" + payload

where ``payload`` is ``torch.save`` of a plain dict of tensors and Python scalars (loadable with
``weights_only=True``). Writes go through ``workloads.storage.write_bytes`` and are atomic; the
checksum additionally catches objects torn or damaged by anything else, so resume can skip them.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from typing import Any

import torch

from workloads import storage

__all__ = [
    "CheckpointCorrupt",
    "Checkpoint",
    "checkpoint_uri",
    "encode",
    "decode",
    "list_checkpoints",
    "load_latest",
    "save",
]

_MAGIC = b"AICLOUD-CKPT/1\n"
_NAME = re.compile(r"/ckpt-(\d{9})\.pt$")


class CheckpointCorrupt(Exception):
    """The object is not a complete, intact checkpoint."""


@dataclass(slots=True)
class Checkpoint:
    """A decoded checkpoint and where it came from."""

    step: int
    uri: str
    state: dict[str, Any]
    skipped: list[str]
    """Newer checkpoint URIs that were skipped as corrupt before this one was found."""


def checkpoint_uri(root: str, step: int) -> str:
    """The URI of the checkpoint for ``step`` under ``root``."""
    return storage.join(root, f"ckpt-{step:09d}.pt")


def encode(state: dict[str, Any]) -> bytes:
    """Serialise ``state`` with its checksum header."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def decode(blob: bytes) -> dict[str, Any]:
    """Verify and load a blob from :func:`encode` (tensors on CPU); raises CheckpointCorrupt."""
    header_len = len(_MAGIC) + 65
    if not blob.startswith(_MAGIC) or len(blob) < header_len:
        raise CheckpointCorrupt("missing checkpoint header")
    digest, payload = blob[len(_MAGIC) : header_len - 1].decode(errors="replace"), blob[header_len:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointCorrupt("checksum mismatch (truncated or damaged)")
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def list_checkpoints(root: str) -> list[tuple[int, str]]:
    """``(step, uri)`` of every checkpoint object under ``root``, oldest first."""
    found = []
    for uri in storage.list_prefix(root):
        match = _NAME.search(uri)
        if match:
            found.append((int(match.group(1)), uri))
    return sorted(found)


def load_latest(root: str) -> Checkpoint | None:
    """The newest checkpoint that verifies, skipping corrupt or vanished newer ones; or None."""
    skipped: list[str] = []
    for step, uri in reversed(list_checkpoints(root)):
        try:
            state = decode(storage.read_bytes(uri))
        except (CheckpointCorrupt, FileNotFoundError):
            skipped.append(uri)
            continue
        return Checkpoint(step=step, uri=uri, state=state, skipped=skipped)
    return None


def save(root: str, step: int, state: dict[str, Any], keep_last: int) -> tuple[str, list[str]]:
    """Write the checkpoint for ``step`` and prune; returns its URI and the URIs deleted.

    Pruning keeps the ``keep_last`` newest checkpoints up to ``step`` and deletes any with a
    higher step: those belong to an abandoned timeline (e.g. a corrupt newest one skipped on
    resume) and would otherwise count against ``keep_last``.
    """
    uri = checkpoint_uri(root, step)
    storage.write_bytes(uri, encode(state))
    existing = list_checkpoints(root)
    kept = [u for s, u in existing if s <= step][-keep_last:]
    deleted = [u for _, u in existing if u not in kept]
    for stale in deleted:
        storage.delete(stale)
    return uri, deleted
