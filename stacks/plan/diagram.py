"""A diagram of a planned stack as SVG, in pure Python (no graphviz): the global front doors on top,
one column per region below with its cluster, node pools (GPUs, scaling, spot), storage, inference
endpoints and training jobs, and a line from each front door to the regions it sends traffic to.

`aicloud plan STACK --diagram PATH` writes it; any browser or `rsvg-convert` renders it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from components.base import DATA_HOLDING
from stacks.plan.model import Plan

COLUMN = 300
GAP = 24
MARGIN = 24
ROW = 20
FONT = 11
CHAR = FONT * 0.6
"""Approximate width of one character of the sans-serif font at FONT px."""

CLOUD_COLOURS = {"aws": "#ff9900", "gcp": "#4285f4"}
KINDS = {
    "gpu": ("#e6f4ea", "#34a853"),
    "cpu": ("#f1f3f4", "#9aa0a6"),
    "storage": ("#fff4e5", "#f29900"),
    "endpoint": ("#e8f0fe", "#1a73e8"),
    "training": ("#fce8e6", "#d93025"),
    "cluster": ("#ffffff", "#5f6368"),
    "global": ("#ede7f6", "#7e57c2"),
}
STORAGE_SKIP = ("aws:kms/key:Key", "gcp:kms/keyRing:KeyRing", "gcp:kms/cryptoKey:CryptoKey")
"""Keys hold no data themselves; the diagram shows where data lives."""
MAX_STORAGE_ROWS = 8


def _fit(text: str, width: float) -> str:
    room = int(width / CHAR)
    return text if len(text) <= room else text[: max(room - 1, 1)] + "…"


@dataclass
class Svg:
    """An SVG document under construction."""

    parts: list[str] = field(default_factory=list)

    def rect(self, x: float, y: float, w: float, h: float, fill: str, stroke: str, radius: int = 4) -> None:
        self.parts.append(
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{h:.0f}" rx="{radius}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.2"/>'
        )

    def text(
        self,
        x: float,
        y: float,
        text: str,
        *,
        size: int = FONT,
        weight: str = "normal",
        fill: str = "#202124",
        anchor: str = "start",
    ) -> None:
        self.parts.append(
            f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" font-weight="{weight}" fill="{fill}" '
            f'text-anchor="{anchor}">{escape(text)}</text>'
        )

    def line(self, x1: float, y1: float, x2: float, y2: float, colour: str, label: str = "") -> None:
        mid = (y1 + y2) / 2
        self.parts.append(
            f'<path d="M{x1:.0f},{y1:.0f} C{x1:.0f},{mid:.0f} {x2:.0f},{mid:.0f} {x2:.0f},{y2:.0f}" '
            f'fill="none" stroke="{colour}" stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
        if label:
            self.text(x2 + 5, y2 - 8, label, size=10, fill=colour)

    def render(self, width: float, height: float) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif">'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#7e57c2"/></marker></defs>'
            f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>'
        )
        return head + "".join(self.parts) + "</svg>\n"


@dataclass
class Box:
    """A titled list box inside a region column."""

    kind: str
    title: str
    rows: list[str]

    @property
    def height(self) -> int:
        return ROW + ROW * len(self.rows) + 6


def _fronts(plan: Plan) -> list[dict[str, Any]]:
    """Global front doors: aicloud's GlobalEndpoint components, else the raw global resources."""
    fronts = []
    for reg in plan.resources:
        if reg.type.endswith(":GlobalEndpoint"):
            out = reg.outputs
            domain = out.get("domain") or ", ".join(out.get("domains") or []) or reg.name
            mode = {
                "accelerator": "Global Accelerator",
                "route53": "Route 53 latency",
                "global-external-alb": "global HTTPS LB",
            }
            fronts.append(
                {
                    "title": f"{reg.name}: {mode.get(out.get('mode'), out.get('mode') or 'front door')}",
                    "detail": domain,
                    "targets": {
                        r["regionKey"]: r.get("dial", 100)
                        for r in out.get("regions") or []
                        if isinstance(r, dict) and "regionKey" in r
                    },
                }
            )
    if fronts:
        return fronts
    for reg in plan.resources:
        if reg.type == "aws:globalaccelerator/accelerator:Accelerator":
            fronts.append({"title": f"{reg.name}: Global Accelerator", "detail": "", "targets": {}})
        elif reg.type == "gcp:compute/globalForwardingRule:GlobalForwardingRule":
            fronts.append({"title": f"{reg.name}: global forwarding rule", "detail": "", "targets": {}})
    return fronts


def _region_boxes(plan: Plan) -> dict[str, list[Box]]:
    boxes: dict[str, list[Box]] = defaultdict(list)
    for spec in plan.config.regions:
        cluster = f"{'EKS' if spec.cloud == 'aws' else 'GKE'} {spec.cluster.version}"
        cluster += " · public API" if spec.cluster.public_endpoint else " · private API"
        boxes[spec.name].append(Box("cluster", cluster, [f"network {spec.network.cidr} · {len(spec.zones)} zones"]))
        for p in plan.pools:
            if p["regionKey"] != spec.name:
                continue
            gpus = f"{p['gpusPerNode']}×{p['gpu']}" if p["gpu"] else "no GPU"
            rows = [
                f"{p['machineType']} · {gpus}",
                f"{p['minNodes']}-{p['maxNodes']} nodes · {'spot' if p['spot'] else 'on-demand'} · "
                f"${p['costPerHourMax']:,.2f}/h max",
            ]
            boxes[spec.name].append(Box("gpu" if p["gpu"] else "cpu", f"pool {p['pool']} ({p['role']})", rows))
    storage: dict[str, list[str]] = defaultdict(list)
    for reg in plan.resources:
        region = plan.region_of(reg)
        if reg.custom and reg.type in DATA_HOLDING and reg.type not in STORAGE_SKIP:
            storage[region].append(f"{DATA_HOLDING[reg.type]} {reg.name}")
        elif reg.type.endswith(":InferenceEndpoint"):
            out = reg.outputs
            rows = [f"{out.get('strategy', '?')} · pool {out.get('pool', '?')} · dial {out.get('dial', 100)}%"]
            rows += [
                f"{t.get('name', 'track')} {t.get('replicas', '')} replicas"
                for t in out.get("tracks") or []
                if isinstance(t, dict)
            ]
            boxes[region].append(Box("endpoint", f"endpoint {out.get('model', reg.name)}", rows))
        elif reg.type.endswith(":TrainingJob"):
            out = reg.outputs
            size = f"{out.get('nodes', '?')} nodes × {out.get('gpusPerNode', '?')} {out.get('gpu') or 'GPU'}"
            boxes[region].append(
                Box("training", f"training {out.get('job', reg.name)}", [f"{out.get('backend', '?')} · {size}"])
            )
    for region, items in storage.items():
        rows = sorted(items)[:MAX_STORAGE_ROWS]
        if len(items) > MAX_STORAGE_ROWS:
            rows.append(f"+{len(items) - MAX_STORAGE_ROWS} more")
        boxes[region].append(Box("storage", f"storage ({len(items)})", rows))
    return boxes


def render_svg(plan: Plan) -> str:
    """The stack diagram as an SVG document."""
    svg = Svg()
    regions = plan.config.regions
    boxes = _region_boxes(plan)
    fronts = _fronts(plan)
    width = MARGIN * 2 + len(regions) * COLUMN + (len(regions) - 1) * GAP
    svg.text(MARGIN, MARGIN + 8, f"aicloud stack {plan.stack} ({plan.config.environment})", size=16, weight="bold")
    s = plan.summary()
    svg.text(
        MARGIN,
        MARGIN + 26,
        f"{s['resources']} resources · {len(regions)} regions · ${s['costPerHour']['min']:,.2f}-"
        f"${s['costPerHour']['max']:,.2f} per hour · policy: {s['policy']['mandatory']} mandatory, "
        f"{s['policy']['advisory']} advisory",
        fill="#5f6368",
    )
    y = MARGIN + 44
    front_boxes: list[tuple[float, float, dict[str, Any]]] = []
    order = {spec.name: i for i, spec in enumerate(regions)}
    fronts.sort(key=lambda f: sum(order.get(k, 0) for k in f["targets"]) / max(len(f["targets"]), 1))
    if fronts:
        fw = min(COLUMN, (width - 2 * MARGIN - GAP * (len(fronts) - 1)) / len(fronts))
        total = len(fronts) * fw + (len(fronts) - 1) * GAP
        x = (width - total) / 2
        fill, stroke = KINDS["global"]
        for front in fronts:
            svg.rect(x, y, fw, 44, fill, stroke)
            svg.text(x + 8, y + 17, _fit(front["title"], fw - 16), weight="bold")
            svg.text(x + 8, y + 34, _fit(front["detail"], fw - 16), fill="#5f6368")
            front_boxes.append((x + fw / 2, y + 44, front))
            x += fw + GAP
        y += 44 + 64
    top = y
    bottoms = []
    anchors: dict[str, tuple[float, float]] = {}
    for i, spec in enumerate(regions):
        x = MARGIN + i * (COLUMN + GAP)
        colour = CLOUD_COLOURS.get(spec.cloud, "#5f6368")
        svg.rect(x, top, COLUMN, 40, colour, colour)
        title = f"{spec.name} · {spec.cloud.upper()} {spec.region}" + (" · primary" if spec.primary else "")
        svg.text(x + 10, top + 17, _fit(title, COLUMN - 20), weight="bold", fill="#ffffff")
        svg.text(x + 10, top + 33, "serving region" if spec.serving else "no serving", fill="#ffffff", size=10)
        anchors[spec.name] = (x + COLUMN / 2, top)
        cy = top + 48
        for box in boxes.get(spec.name, []):
            fill, stroke = KINDS[box.kind]
            svg.rect(x + 6, cy, COLUMN - 12, box.height, fill, stroke)
            svg.text(x + 14, cy + 15, _fit(box.title, COLUMN - 28), weight="bold")
            for j, row in enumerate(box.rows):
                svg.text(x + 14, cy + 15 + ROW * (j + 1), _fit(row, COLUMN - 28), fill="#3c4043")
            cy += box.height + 8
        bottoms.append(cy)
    for fx, fy, front in front_boxes:
        targets = front["targets"] or {r.name: None for r in regions if r.serving}
        for key, dial in targets.items():
            if key in anchors:
                ax, ay = anchors[key]
                svg.line(fx, fy, ax, ay - 2, KINDS["global"][1], f"{dial}%" if dial is not None else "")
    height = max(bottoms, default=top) + MARGIN
    return svg.render(width, height)
