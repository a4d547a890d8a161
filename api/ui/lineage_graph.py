"""The execution page's small lineage graph: ancestors, the execution, and what it spawned, as
inline SVG drawn on the server (no script, readable by a screen reader through its links' labels).

One column per level, root on the left; each node is a link coloured by status; an edge joins an
execution to its parent. A level shows at most ``PER_LEVEL`` nodes, then "+N more".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from html import escape

from markupsafe import Markup
from sqlalchemy.orm import Session

from db import lineage
from db.models import Execution

UP, DOWN, PER_LEVEL = 4, 3, 8
COLUMN, ROW, BOX_W, BOX_H, PAD = 200, 40, 176, 30, 6
COLOURS = {
    "PASSED": "#116329",
    "FAILED": "#a40e26", "ERROR": "#a40e26", "TIMEOUT": "#a40e26", "ABORTED": "#a40e26",
    "CANCELLED": "#7d4e00", "SKIPPED": "#7d4e00", "RETRYING": "#7d4e00", "PAUSED": "#7d4e00",
}  # fmt: skip
ACTIVE = "#0b57d0"


@dataclass(frozen=True)
class Node:
    execution: Execution
    level: int  # 0 = the execution shown; ancestors negative


def _label(execution: Execution) -> str:
    name = str((execution.case_snapshot or {}).get("name") or execution.id)
    return name if len(name) <= 20 else name[:19] + "…"


def _nodes(session: Session, execution: Execution) -> list[Node]:
    up = lineage.ancestors(session, execution, depth=UP)
    nodes = [Node(a, i - len(up)) for i, a in enumerate(up)]
    nodes.append(Node(execution, 0))
    nodes += [Node(d, level) for d, level in lineage.descendants(session, execution, depth=DOWN)]
    return nodes


def lineage_svg(session: Session, execution: Execution) -> Markup | None:
    """The graph, or None when the execution stands alone (no parent, nothing spawned)."""
    nodes = _nodes(session, execution)
    if len(nodes) == 1:
        return None
    levels: dict[int, list[Node]] = {}
    for node in nodes:
        levels.setdefault(node.level, []).append(node)
    first = min(levels)
    place: dict[uuid.UUID, tuple[int, int]] = {}
    parts: list[str] = []
    rows = 0
    for level, members in sorted(levels.items()):
        x = (level - first) * COLUMN + PAD
        for row, node in enumerate(members[:PER_LEVEL]):
            place[node.execution.id] = (x, row * ROW + PAD)
        if len(members) > PER_LEVEL:
            more = len(members) - PER_LEVEL
            y = PER_LEVEL * ROW + PAD + BOX_H // 2 + 4
            parts.append(f'<text x="{x + 8}" y="{y}" class="lg-more">+{more} more</text>')
        rows = max(rows, min(len(members), PER_LEVEL) + (len(members) > PER_LEVEL))
    edges = []
    for node in nodes:
        parent = node.execution.parent_execution_id
        if node.execution.id in place and parent in place:
            (px, py), (cx, cy) = place[parent], place[node.execution.id]
            x1, y1, x2, y2 = px + BOX_W, py + BOX_H // 2, cx, cy + BOX_H // 2
            mid = (x1 + x2) // 2
            edges.append(f'<path d="M{x1} {y1} C{mid} {y1} {mid} {y2} {x2} {y2}" class="lg-edge"/>')
    for node in nodes:
        if node.execution.id not in place:
            continue
        x, y = place[node.execution.id]
        e = node.execution
        colour = COLOURS.get(e.status, ACTIVE)
        here = ' class="lg-here"' if node.level == 0 else ""
        title = f"{(e.case_snapshot or {}).get('name') or e.id}: {e.status} ({e.trigger_kind})"
        parts.append(
            f'<a href="/ui/executions/{e.id}" aria-label="{escape(title)}"{here}>'
            f"<title>{escape(title)}</title>"
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="5" stroke="{colour}"/>'
            f'<circle cx="{x + 11}" cy="{y + BOX_H // 2}" r="5" fill="{colour}"/>'
            f'<text x="{x + 22}" y="{y + 13}">{escape(_label(e))}</text>'
            f'<text x="{x + 22}" y="{y + 25}" class="lg-sub">{e.trigger_kind} · {e.status}</text></a>'
        )
    width = (max(levels) - first) * COLUMN + BOX_W + 2 * PAD
    height = rows * ROW + PAD
    return Markup(
        f'<svg class="lineage-graph" role="group" aria-label="Lineage graph" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">{"".join(edges)}{"".join(parts)}</svg>'
    )
