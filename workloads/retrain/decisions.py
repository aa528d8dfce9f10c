"""The decision log: one JSON object per decision, each at its own timestamped URI, never rewritten.

Every run of the retraining trigger records what it saw and what it decided (no drift, drift not
confirmed, training launched, still training, training failed, gate rejected, canary started...)
as ``<prefix>/<UTC time>-<kind>-<token>.json`` through ``workloads.storage`` (local, S3, GCS).
Names sort chronologically, so the newest decision is the last name. An existing object is never
written again: a name that is taken (two writers in the same microsecond) gets a new token.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from workloads import storage

__all__ = ["SCHEMA", "DecisionLog"]

SCHEMA = "aicloud-retrain-decision/1"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DecisionLog:
    """Append-only decisions under ``prefix`` (any ``workloads.storage`` URI)."""

    def __init__(self, prefix: str, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.prefix = prefix
        self._clock = clock

    def append(self, kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        """Record one decision; returns its URI and the record as written."""
        if not kind or not kind.replace("-", "").isalnum():
            raise ValueError(f"decision kind must be letters, digits and '-', got {kind!r}")
        now = self._clock().astimezone(UTC)
        record = {"schema": SCHEMA, "time": now.isoformat(timespec="microseconds"), "kind": kind, **fields}
        data = (json.dumps(record, sort_keys=True, default=_jsonable) + "\n").encode()
        stamp = now.strftime("%Y%m%dT%H%M%S.%fZ")
        for _ in range(8):
            uri = storage.join(self.prefix, f"{stamp}-{kind}-{secrets.token_hex(4)}.json")
            if not storage.exists(uri):
                storage.write_bytes(uri, data)
                return uri, json.loads(data)
        raise RuntimeError(f"could not find a free decision name under {self.prefix} after 8 tries")

    def uris(self) -> list[str]:
        """Every decision URI, oldest first (only objects directly under the prefix: the regional
        agents' reports and outcomes live below it, under ``regions/``)."""
        leaf = self.prefix.rstrip("/").rsplit("/", 1)[-1]
        return [
            u for u in storage.list_prefix(self.prefix) if u.endswith(".json") and u.rsplit("/", 2)[-2:-1] == [leaf]
        ]

    def read(self, uri: str) -> dict[str, Any]:
        return json.loads(storage.read_bytes(uri))

    def entries(self) -> list[dict[str, Any]]:
        """Every decision, oldest first."""
        return [self.read(u) for u in self.uris()]

    def latest(self) -> dict[str, Any] | None:
        """The newest decision, or None for an empty log."""
        uris = self.uris()
        return self.read(uris[-1]) if uris else None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot record {type(value).__name__} in a decision")
