"""Small charts as inline SVG, rendered on the server (no chart library, no JavaScript).

Each function takes plain numbers and returns SVG markup for a template. Every chart is an
``role="img"`` with an ``aria-label`` that says what it shows, and each bar carries a ``<title>``
(the tooltip and what a screen reader reads) with its exact figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Colours of api/ui/static/anvil.css (WCAG AA on white).
OK, BAD, WARN, LINE, MUTED = "#116329", "#a40e26", "#7d4e00", "#d0d7de", "#57606a"


def _svg(width: int, height: int, label: str, body: str, css_class: str) -> Markup:
    return Markup(
        f'<svg class="chart {css_class}" role="img" aria-label="{escape(label)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"{body}</svg>"
    )


def sparkline(values: Sequence[float], *, label: str, width: int = 240, height: int = 40) -> Markup:
    """A line through ``values`` (oldest first), one point each, the last one marked."""
    if not values:
        return Markup("")
    pad = 3
    low, high = min(values), max(values)
    spread = (high - low) or 1.0
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    points = [
        (pad + i * step, height - pad - (v - low) / spread * (height - 2 * pad)) for i, v in enumerate(values)
    ]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    last_x, last_y = points[-1]
    body = (
        f'<polyline points="{line}" fill="none" stroke="{OK}" stroke-width="1.5"/>'
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2.5" fill="{OK}"/>'
    )
    return _svg(width, height, label, body, "sparkline")


@dataclass(frozen=True)
class Bar:
    """One bar: its label under the axis, its height as a share of the highest (0..1), its colour,
    and the sentence its tooltip says."""

    label: str
    share: float
    colour: str
    title: str


def column_chart(
    bars: Sequence[Bar], *, label: str, top_label: str, width: int = 720, height: int = 160
) -> Markup:
    """Vertical bars side by side (e.g. one a day) on a base line, with a dashed line at the top of
    the scale (``top_label``, e.g. 100 %), the first and last bars' labels under them."""
    if not bars:
        return Markup("")
    top, bottom, left = 8, 20, 44
    plot = height - top - bottom
    slot = min((width - left) / len(bars), 40.0)  # a few days stay bars, not a wall
    gap = max(min(4.0, slot / 4), 0.5)
    parts = [
        f'<line x1="{left}" y1="{top + plot}" x2="{width}" y2="{top + plot}" stroke="{LINE}"/>',
        f'<line x1="{left}" y1="{top}" x2="{width}" y2="{top}" stroke="{LINE}" stroke-dasharray="4 3"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" font-size="11" fill="{MUTED}">'
        f"{escape(top_label)}</text>",
        f'<text x="{left - 4}" y="{top + plot}" text-anchor="end" font-size="11" fill="{MUTED}">0</text>',
    ]
    for i, bar in enumerate(bars):
        h = max(min(bar.share, 1.0), 0.0) * plot
        parts.append(
            f'<rect class="bar" x="{left + i * slot + gap / 2:.1f}" y="{top + plot - h:.1f}" '
            f'width="{slot - gap:.1f}" height="{h:.1f}" fill="{bar.colour}">'
            f"<title>{escape(bar.title)}</title></rect>"
        )
    last_x = left + len(bars) * slot
    ends = [(left, "start", bars[0].label)] + ([(last_x, "end", bars[-1].label)] if len(bars) > 1 else [])
    for x, anchor, text in ends:
        parts.append(
            f'<text x="{x:.1f}" y="{height - 5}" text-anchor="{anchor}" font-size="11" fill="{MUTED}">'
            f"{escape(text)}</text>"
        )
    return _svg(width, height, label, "".join(parts), "columns")


def bar_list(bars: Sequence[Bar], *, label: str, width: int = 480) -> Markup:
    """Horizontal bars, one a row, each labelled on its left and titled with its figure."""
    if not bars:
        return Markup("")
    row, name_w = 24, 150
    parts = []
    for i, bar in enumerate(bars):
        y = i * row
        w = max(min(bar.share, 1.0), 0.0) * (width - name_w - 4)
        parts.append(
            f'<text x="0" y="{y + 16}" font-size="12" fill="{MUTED}">{escape(bar.label)}</text>'
            f'<rect class="bar" x="{name_w}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
            f'fill="{bar.colour}"><title>{escape(bar.title)}</title></rect>'
        )
    return _svg(width, row * len(bars), label, "".join(parts), "bars")
