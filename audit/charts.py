"""Server-rendered inline SVG line charts: no JavaScript, no CDN, nothing to vendor.

The machine is offline and the admin pages must work without a build step, so charts are
plain SVG strings (every label escaped) that render in any browser and in screenshots.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#6b7280")


def _fmt(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2f}".rstrip("0")


def line_chart(
    *,
    title: str,
    x: list[datetime],
    series: dict[str, list[float]],
    unit: str = "",
    hourly: bool = True,
    zero_is_data: bool = False,
    width: int = 560,
    height: int = 220,
) -> SafeString:
    left, right, top, bottom = 48, 26, 26, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((max(v) for v in series.values() if v), default=0.0) or 1.0
    n = max(len(x), 1)

    def px(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def py(v: float) -> float:
        return top + plot_h - plot_h * v / peak

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="100%" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="16" font-size="13" font-weight="600" fill="#111">{escape(title)}</text>',
    ]
    for k in range(5):  # horizontal grid with value labels
        v = peak * k / 4
        y = py(v)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#555">'
            f"{_fmt(v)}{escape(unit)}</text>"
        )
    step = max(1, n // 6)
    for i in range(0, n, step):  # x labels
        label = x[i].strftime("%d %H:00" if hourly else "%m-%d") if x else ""
        parts.append(
            f'<text x="{px(i):.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="middle" fill="#555">'
            f"{label}</text>"
        )
    # A flat zero line is news for error rates ("none"), but means "nothing" for volumes.
    if not series or (not zero_is_data and not any(any(v) for v in series.values())):
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" font-size="12" text-anchor="middle" '
            f'fill="#888">no data in this range</text>'
        )
    for k, (name, values) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{points}"/>')
        if len(values) == 1:
            parts.append(f'<circle cx="{px(0):.1f}" cy="{py(values[0]):.1f}" r="3" fill="{color}"/>')
        lx = left + (k % 4) * (plot_w / 4)
        ly = height - 16 + (k // 4) * 12 - (6 if len(series) > 4 else 0)
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 8:.1f}" width="9" height="9" fill="{color}"/>')
        parts.append(f'<text x="{lx + 12:.1f}" y="{ly:.1f}" font-size="10" fill="#222">{escape(name[:28])}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated label is escaped above
