"""Lakehouse URIs: `lake://<zone>/<key>` names an object in a zone without knowing its bucket.

The stack sets `AICLOUD_LAKE_<ZONE>` (the zone's real base URI) on the pods it deploys; the
workloads resolve lake URIs through it (`workloads.storage`), and the components validate and
render them (`components.endpoint`, `components.retraining`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

LAKE_SCHEME = "lake"
LAKE_ENV_PREFIX = "AICLOUD_LAKE_"
"""``lake://<zone>/...`` resolves through ``AICLOUD_LAKE_<ZONE>`` (zone upper-cased)."""


def lake_env(zone: str) -> str:
    """The environment variable that holds the base URI of lakehouse zone ``zone``."""
    return LAKE_ENV_PREFIX + zone.upper().replace("-", "_")


def split_lake(uri: str) -> tuple[str, str] | None:
    """``(zone, key)`` of a ``lake://<zone>/<key>`` URI (key may be empty), else None."""
    prefix = f"{LAKE_SCHEME}://"
    if not isinstance(uri, str) or not uri.startswith(prefix):
        return None
    zone, _, key = uri[len(prefix) :].partition("/")
    return zone, key


def join(base_uri: str, *parts: str) -> str:
    """Join ``parts`` onto ``base_uri`` with ``/`` (slashes at the seams are collapsed).

    ``join("s3://b/runs", "r1", "ckpt/")`` is ``"s3://b/runs/r1/ckpt"``.
    """
    pieces = [base_uri.rstrip("/") or base_uri]
    pieces += [p.strip("/") for p in parts if p.strip("/")]
    return "/".join(pieces)


def resolve(uri: str, bases: Mapping[str, str] | None = None) -> str:
    """``uri`` with a ``lake://<zone>/<key>`` reference replaced by the zone's real URI; any other
    URI unchanged. The zone's base URI comes from ``bases`` (zone -> URI) when given, else from
    ``AICLOUD_LAKE_<ZONE>``. Raises ``ValueError`` naming what is missing."""
    parts = split_lake(uri)
    if parts is None:
        return uri
    zone, key = parts
    if not zone:
        raise ValueError(f"lake URI has no zone: {uri!r} (expected lake://<zone>/<key>)")
    if bases is not None:
        base = bases.get(zone, "")
        if not base:
            raise ValueError(f"cannot resolve {uri!r}: known zones are {', '.join(sorted(bases))}")
    else:
        base = os.environ.get(lake_env(zone), "").strip()
        if not base:
            raise ValueError(
                f"cannot resolve {uri!r}: {lake_env(zone)} is not set (the stack sets it on pods with "
                f"access to the {zone!r} zone; locally, export it, e.g. {lake_env(zone)}=file:///tmp/lake/{zone})"
            )
        if split_lake(base) is not None:
            raise ValueError(f"{lake_env(zone)} must be a real URI, not another lake URI: {base!r}")
    return join(base, key) if key else base
