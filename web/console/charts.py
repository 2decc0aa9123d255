"""Inline SVG charts, rendered on the server: nothing to vendor, nothing to run in the browser, and
a partial swap redraws them. Only numbers and escaped labels go into the markup."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

W, H = 960, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


def _steps_path(
    values: Sequence[float | None], x0: float, dx: float, to_y: Callable[[float], float]
) -> str:
    """An SVG path drawing ``values`` as a step line (gaps where a value is None)."""
    parts: list[str] = []
    pen_down = False
    for i, v in enumerate(values):
        if v is None:
            pen_down = False
            continue
        py = to_y(v)
        xa, xb = x0 + i * dx, x0 + (i + 1) * dx
        parts.append(f"{'L' if pen_down else 'M'}{xa:.1f},{py:.1f}L{xb:.1f},{py:.1f}")
        pen_down = True
    return "".join(parts)


def power_chart(
    start: datetime,
    step: timedelta,
    metered: Sequence[float | None],
    planned: Sequence[float | None],
    cap: Sequence[float | None],
    now: datetime,
    tz: str,
) -> Markup:
    """Site power over a day: metered (filled), planned (line) and the cap (dashed), per step."""
    n = max(len(metered), len(planned), len(cap), 1)
    top = max([v for v in (*metered, *planned, *cap) if v is not None] or [1.0]) * 1.1 or 1.0
    dx = (W - LEFT - RIGHT) / n
    plot_h = H - TOP - BOTTOM

    def y(kw: float) -> float:
        return TOP + plot_h * (1 - kw / top)

    out = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
        'aria-label="site power: metered, planned and cap" xmlns="http://www.w3.org/2000/svg">'
    ]
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        kw = top * frac
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y(kw):.1f}" y2="{y(kw):.1f}"/>'
            f'<text class="axis" x="{LEFT - 4}" y="{y(kw) + 4:.1f}" text-anchor="end">'
            f"{kw:.0f}</text>"
        )
    zone = ZoneInfo(tz)
    every = max(1, round(timedelta(hours=3) / step))
    for i in range(0, n + 1, every):
        x = LEFT + i * dx
        label = (start + step * i).astimezone(zone).strftime("%H:%M")
        out.append(
            f'<text class="axis" x="{x:.1f}" y="{H - 8}" text-anchor="middle">{label}</text>'
        )
    metered_path = _steps_path(metered, LEFT, dx, y)
    if metered_path:
        # close the step line down to 0 for each run of data, as one filled path
        runs: list[list[tuple[int, float]]] = []
        cur: list[tuple[int, float]] = []
        for i, v in enumerate(metered):
            if v is None:
                if cur:
                    runs.append(cur)
                cur = []
            else:
                cur.append((i, v))
        if cur:
            runs.append(cur)
        for run in runs:
            pts = "".join(
                f"L{LEFT + i * dx:.1f},{y(v):.1f}L{LEFT + (i + 1) * dx:.1f},{y(v):.1f}"
                for i, v in run
            )
            i0, i1 = run[0][0], run[-1][0] + 1
            out.append(
                f'<path class="metered" d="M{LEFT + i0 * dx:.1f},{y(0):.1f}{pts}'
                f'L{LEFT + i1 * dx:.1f},{y(0):.1f}Z"/>'
            )
    out.append(f'<path class="planned" d="{_steps_path(planned, LEFT, dx, y)}"/>')
    out.append(f'<path class="cap" d="{_steps_path(cap, LEFT, dx, y)}"/>')
    k_now = (now - start) / step
    if 0 <= k_now <= n:
        x = LEFT + k_now * dx
        out.append(f'<line class="now" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{H - BOTTOM}"/>')
    out.append(f'<text class="axis" x="{LEFT}" y="{TOP - 2 + 10}" dx="4">kW</text></svg>')
    return Markup("".join(out))


def heatmap(
    labels: Sequence[str],
    rows: Sequence[Sequence[float]],
    start: datetime,
    step: timedelta,
    tz: str,
    now: datetime | None = None,
) -> Markup:
    """Planned kW per session (rows) per step (columns), darker for more power."""
    steps = max((len(r) for r in rows), default=0)
    if not rows or steps == 0:
        return Markup('<p class="muted">No session is planned.</p>')
    left, row_h = 140, 16
    dx = max(3.0, (W - left - RIGHT) / steps)
    width = left + dx * steps + RIGHT
    height = TOP + row_h * len(rows) + BOTTOM
    top = max((v for r in rows for v in r), default=0.0) or 1.0
    out = [
        f'<svg class="heatmap" viewBox="0 0 {width:.0f} {height}" role="img" '
        'aria-label="planned power per session per step" xmlns="http://www.w3.org/2000/svg">'
    ]
    for r, (label, values) in enumerate(zip(labels, rows, strict=True)):
        y = TOP + r * row_h
        out.append(
            f'<text class="axis" x="{left - 6}" y="{y + row_h - 4}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        for k, kw in enumerate(values):
            if kw <= 0:
                continue
            out.append(
                f'<rect x="{left + k * dx:.1f}" y="{y + 1}" width="{dx:.1f}" height="{row_h - 2}" '
                f'fill-opacity="{0.15 + 0.85 * kw / top:.2f}"><title>{escape(label)} '
                f"{(start + step * k).astimezone(ZoneInfo(tz)):%H:%M}: {kw:.1f} kW</title></rect>"
            )
    every = max(1, round(timedelta(hours=3) / step))
    for k in range(0, steps + 1, every):
        label = (start + step * k).astimezone(ZoneInfo(tz)).strftime("%H:%M")
        out.append(
            f'<text class="axis" x="{left + k * dx:.1f}" y="{height - 8}" '
            f'text-anchor="middle">{label}</text>'
        )
    if now is not None:
        k_now = (now - start) / step
        if 0 <= k_now <= steps:
            x = left + k_now * dx
            out.append(
                f'<line class="now" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{height - BOTTOM}"/>'
            )
    out.append("</svg>")
    return Markup("".join(out))
