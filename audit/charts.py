"""Server-rendered inline SVG line charts: no JavaScript, no CDN, nothing to vendor.

The machine is offline and the admin pages must work without a build step, so charts are
plain SVG strings (every label escaped) that render in any browser and in screenshots.

Readable by construction: y ticks are "nice" numbers (1, 2, 2.5, 5 x 10^n), whole numbers for
counts; the legend is HTML beside the chart (it wraps instead of overlapping, and each entry
links to the records behind that series); every point links to the records of its bucket.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#6b7280")


def _fmt(value: float, unit: str) -> str:
    if unit == "$":
        if value >= 1000:
            return f"${value / 1000:.1f}k"
        return f"${value:.2f}" if value >= 1 or value == 0 else f"${value:.3g}"
    if value >= 1_000_000:
        text = f"{value / 1_000_000:.1f}M"
    elif value >= 10_000:
        text = f"{value / 1000:.0f}k"
    elif value >= 1000:
        text = f"{value / 1000:.1f}k"
    else:
        text = f"{value:.0f}" if value == int(value) else f"{value:.2g}"
    return text + unit


def nice_ticks(peak: float, *, integer: bool, count: int = 4) -> list[float]:
    """0 .. top in `count` or fewer equal steps of 1, 2, 2.5 or 5 x 10^n (whole steps for
    integer quantities, so an axis of requests never reads 0.5)."""
    if peak <= 0:
        return [0.0, 1.0]
    raw = peak / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, math.ceil(step))
    steps = math.ceil(peak / step - 1e-9)
    return [step * i for i in range(steps + 1)]


@dataclass(slots=True)
class Chart:
    title: str
    svg: SafeString
    legend: list[tuple[str, str, str]] = field(default_factory=list)  # (label, color, href)
    chart_id: str = ""

    def __html__(self) -> str:
        """`{{ chart }}` in a template: the SVG and its legend (the dashboard lays them out itself)."""
        items = "".join(
            f'<li><span class="sw" style="background:{color};display:inline-block;width:10px;height:10px"></span> '
            + (f'<a href="{escape(href)}">{escape(name)}</a>' if href else escape(name))
            + "</li>"
            for name, color, href in self.legend
        )
        style = "list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:2px 14px"
        legend = f'<ul class="chart-legend" style="{style}">{items}</ul>'
        return str(self.svg) + (legend if self.legend else "")

    def __str__(self) -> str:
        # Django's template engine calls str() before escaping: keep it marked safe (every
        # label inside is escaped above).
        return mark_safe(self.__html__())


def line_chart(
    *,
    title: str,
    x: list[datetime],
    series: dict[str, list[float]],
    unit: str = "",
    hourly: bool = True,
    integer: bool = True,
    zero_is_data: bool = False,
    link: Callable[[str | None, int | None], str] | None = None,
    chart_id: str = "",
    width: int = 560,
    height: int = 200,
) -> Chart:
    """`link(series_label, bucket_index)` gives the drill-down address of a series (index
    None) or of one of its points."""
    left, right, top, bottom = 52, 16, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((max(v) for v in series.values() if v), default=0.0)
    ticks = nice_ticks(peak, integer=integer)
    top_value = ticks[-1] or 1.0
    n = max(len(x), 1)

    def px(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def py(v: float) -> float:
        return top + plot_h - plot_h * v / top_value

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="100%" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
    ]
    for v in ticks:  # horizontal grid with value labels
        y = py(v)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{left - 5}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#555">'
            f"{escape(_fmt(v, unit))}</text>"
        )
    step = max(1, math.ceil(n / 6))
    for i in range(0, len(x), step):  # x labels: the date where it changes, else the hour
        t = x[i]
        new_day = i == 0 or x[i - step].date() != t.date()
        label = (t.strftime("%m-%d %H:00") if new_day else t.strftime("%H:00")) if hourly else t.strftime("%m-%d")
        parts.append(
            f'<text x="{px(i):.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle" fill="#555">'
            f"{label}</text>"
        )
    # A flat zero line is news for error rates ("none"), but means "nothing" for volumes.
    if not series or (not zero_is_data and not any(any(v) for v in series.values())):
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" font-size="12" text-anchor="middle" '
            f'fill="#888">no data in this range</text>'
        )
    legend = []
    for k, (name, values) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{points}"/>')
        for i, v in enumerate(values):
            if not v and not zero_is_data:
                continue
            dot = (
                f'<circle cx="{px(i):.1f}" cy="{py(v):.1f}" r="3" fill="{color}">'
                f"<title>{escape(name)}: {escape(_fmt(v, unit))} at {x[i]:%Y-%m-%d %H:00}</title></circle>"
            )
            href = link(None if name == "other" else name, i) if link else ""
            parts.append(f'<a href="{escape(href)}">{dot}</a>' if href else dot)
        legend.append((name, color, link(name, None) if link and name != "other" else ""))
    parts.append("</svg>")
    return Chart(title=title, svg=mark_safe("".join(parts)), legend=legend, chart_id=chart_id)  # labels escaped
