"""The control chart as SVG, with no plotting library: the report must render on any driver.

x is the campaign's dispatch order, y the objective; one series per control node (the baseline,
later each parent whose blocks re-ran it), a reference line at each series' first-window mean,
and a dashed marker at every detected drift. The output is a pure function of its input (same
series, same bytes), so a regenerated report differs only where the campaign did.

A long campaign has far more controls than the chart has pixels: each series is reduced to the
lowest and highest point of every pixel column before drawing, so a single outlier stays visible
while the file stays small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

WIDTH = 900
HEIGHT = 420
MARGIN_LEFT = 78
MARGIN_RIGHT = 170  # the legend
MARGIN_TOP = 44
MARGIN_BOTTOM = 52
PLOT_WIDTH = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
PLOT_HEIGHT = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
DOTS_UP_TO = 200  # drawn points per series up to which each point gets a dot as well as the line
# Colour-blind-safe (Okabe-Ito), the baseline first.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


@dataclass(frozen=True)
class Series:
    """One control node's values in dispatch order, and the mean its drift is measured from."""

    name: str
    points: Sequence[tuple[float, float]]  # (dispatch order, objective value)
    reference: float | None = None  # mean of its first drift window


@dataclass(frozen=True)
class Marker:
    """A drift detection: where on the dispatch axis, and what to call it."""

    at: float
    label: str


@dataclass(frozen=True)
class Frame:
    """The data ranges the plot area shows."""

    x_low: float
    x_high: float
    y_low: float
    y_high: float

    def x(self, value: float) -> float:
        return MARGIN_LEFT + (value - self.x_low) / (self.x_high - self.x_low) * PLOT_WIDTH

    def y(self, value: float) -> float:
        return MARGIN_TOP + (self.y_high - value) / (self.y_high - self.y_low) * PLOT_HEIGHT


@dataclass
class _Svg:
    parts: list[str] = field(default_factory=list)

    def add(self, element: str, text: str | None = None, **attrs: object) -> None:
        rendered = "".join(
            f" {name.rstrip('_').replace('_', '-')}={quoteattr(_attr(value))}" for name, value in attrs.items()
        )
        if text is None:
            self.parts.append(f"<{element}{rendered}/>")
        else:
            self.parts.append(f"<{element}{rendered}>{escape(text)}</{element}>")


def _attr(value: object) -> str:
    return _num(value) if isinstance(value, float) else str(value)


def _num(value: float) -> str:
    """Coordinates to 0.01 px: enough for any screen, and the same text on every platform."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def downsample(
    points: Sequence[tuple[float, float]], x_low: float, x_high: float, columns: int
) -> list[tuple[float, float]]:
    """The points to draw: all of them when they fit, else the lowest and the highest point of
    each of `columns` pixel columns, in x order (at most 2 x columns points).

    Averaging or striding would drop a one-trial spike; min and max per column keep it.
    """
    if len(points) <= 2 * columns:
        return list(points)
    span = x_high - x_low
    kept: list[tuple[float, float]] = []
    column = -1
    low = high = points[0]
    for point in points:
        index = min(columns - 1, int((point[0] - x_low) / span * columns)) if span > 0 else 0
        if index != column:
            if column >= 0:
                kept.extend(_column(low, high))
            column, low, high = index, point, point
        elif point[1] < low[1]:
            low = point
        elif point[1] > high[1]:
            high = point
    kept.extend(_column(low, high))
    return kept


def _column(low: tuple[float, float], high: tuple[float, float]) -> list[tuple[float, float]]:
    if low is high:
        return [low]
    return [low, high] if low[0] <= high[0] else [high, low]


def ticks(low: float, high: float, count: int = 6, integer: bool = False) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(low / step - 1e-9) * step
    values = []
    k = 0
    while first + k * step <= high + step * 1e-9:
        values.append(first + k * step)
        k += 1
    return values


def _tick_label(value: float, step: float) -> str:
    if abs(value) < step * 1e-9:
        return "0"
    if step >= 1 and abs(value) < 1e15:
        return str(round(value))
    decimals = max(0, -math.floor(math.log10(step)) + 1) if step > 0 else 3
    if abs(value) >= 1e6 or decimals > 8:
        return f"{value:.4g}"
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".")


def _frame(series: Sequence[Series], markers: Sequence[Marker]) -> Frame:
    xs = [x for s in series for x, _ in s.points] + [m.at for m in markers]
    ys = [y for s in series for _, y in s.points] + [s.reference for s in series if s.reference is not None]
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y_low, y_high = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if x_high <= x_low:  # one dispatch: a range around it
        x_low, x_high = x_low - 1, x_high + 1
    if y_high <= y_low:  # constant values: a band around them
        pad = abs(y_low) * 0.05 or 1.0
        y_low, y_high = y_low - pad, y_high + pad
    else:
        pad = (y_high - y_low) * 0.05
        y_low, y_high = y_low - pad, y_high + pad
    return Frame(x_low, x_high, y_low, y_high)


def control_chart(
    series: Sequence[Series],
    markers: Sequence[Marker] = (),
    *,
    title: str,
    y_label: str,
    x_label: str = "dispatch order (trials started)",
) -> str:
    """The SVG document of a control chart; series are drawn in the order given."""
    # Undefined values cannot be placed; the rest are drawn in dispatch order whatever order they came in.
    cleaned = [
        Series(
            s.name,
            sorted((float(x), float(y)) for x, y in s.points if math.isfinite(x) and math.isfinite(y)),
            s.reference if s.reference is not None and math.isfinite(s.reference) else None,
        )
        for s in series
    ]
    markers = sorted((m for m in markers if math.isfinite(m.at)), key=lambda m: (m.at, m.label))
    frame = _frame(cleaned, markers)
    svg = _Svg()
    svg.parts.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">'
    )
    svg.add("title", title)
    svg.add("rect", x=0, y=0, width=WIDTH, height=HEIGHT, fill="#ffffff")
    svg.add("text", title, x=float(WIDTH / 2), y=24.0, text_anchor="middle", font_size=15, font_weight="bold")
    _axes(svg, frame, x_label, y_label)
    if not any(s.points for s in cleaned):
        svg.add(
            "text",
            "no controls have completed yet",
            x=float(MARGIN_LEFT + PLOT_WIDTH / 2),
            y=float(MARGIN_TOP + PLOT_HEIGHT / 2),
            text_anchor="middle",
            fill="#666666",
        )
    for index, s in enumerate(cleaned):
        _series(svg, frame, s, PALETTE[index % len(PALETTE)])
    for index, marker in enumerate(markers):
        x = frame.x(marker.at)
        svg.add(
            "line",
            class_="drift",
            x1=x,
            y1=float(MARGIN_TOP),
            x2=x,
            y2=float(MARGIN_TOP + PLOT_HEIGHT),
            stroke="#B00020",
            stroke_width=1.5,
            stroke_dasharray="6 4",
        )
        # Labels step down so that detections close together stay legible, and turn left near
        # the right edge so that they stay inside the plot.
        right = x > MARGIN_LEFT + 0.7 * PLOT_WIDTH
        svg.add(
            "text",
            marker.label,
            class_="drift-label",
            x=x - 3 if right else x + 3,
            y=float(MARGIN_TOP + 12 + 13 * (index % 3)),
            text_anchor="end" if right else "start",
            fill="#B00020",
            font_size=11,
        )
    _legend(svg, cleaned, bool(markers))
    svg.parts.append("</svg>")
    return "\n".join(svg.parts) + "\n"


def _axes(svg: _Svg, frame: Frame, x_label: str, y_label: str) -> None:
    bottom, right = float(MARGIN_TOP + PLOT_HEIGHT), float(MARGIN_LEFT + PLOT_WIDTH)
    svg.add(
        "rect",
        x=float(MARGIN_LEFT),
        y=float(MARGIN_TOP),
        width=PLOT_WIDTH,
        height=PLOT_HEIGHT,
        fill="none",
        stroke="#888888",
    )
    x_ticks = ticks(frame.x_low, frame.x_high, integer=True)
    x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    for value in x_ticks:
        x = frame.x(value)
        svg.add("line", x1=x, y1=bottom, x2=x, y2=bottom + 5, stroke="#444444")
        svg.add("text", _tick_label(value, x_step), class_="tick", x=x, y=bottom + 18, text_anchor="middle")
    y_ticks = ticks(frame.y_low, frame.y_high)
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else abs(frame.y_high - frame.y_low) or 1.0
    for value in y_ticks:
        y = frame.y(value)
        svg.add("line", x1=float(MARGIN_LEFT), y1=y, x2=right, y2=y, stroke="#eeeeee")
        svg.add("line", x1=float(MARGIN_LEFT - 5), y1=y, x2=float(MARGIN_LEFT), y2=y, stroke="#444444")
        svg.add("text", _tick_label(value, y_step), class_="tick", x=float(MARGIN_LEFT - 8), y=y + 4, text_anchor="end")
    svg.add("text", x_label, x=float(MARGIN_LEFT + PLOT_WIDTH / 2), y=float(HEIGHT - 12), text_anchor="middle")
    middle = float(MARGIN_TOP + PLOT_HEIGHT / 2)
    svg.add("text", y_label, x=16.0, y=middle, text_anchor="middle", transform=f"rotate(-90 16 {_num(middle)})")


def _series(svg: _Svg, frame: Frame, series: Series, colour: str) -> None:
    if not series.points:
        return
    drawn = downsample(series.points, frame.x_low, frame.x_high, PLOT_WIDTH)
    coords = " ".join(f"{_num(frame.x(x))},{_num(frame.y(y))}" for x, y in drawn)
    svg.add(
        "polyline", class_="series", data_node=series.name, points=coords, fill="none", stroke=colour, stroke_width=1.2
    )
    if len(drawn) <= DOTS_UP_TO:
        svg.parts.append(f'<g class="dots" fill={quoteattr(colour)}>')
        for x, y in drawn:
            svg.add("circle", cx=frame.x(x), cy=frame.y(y), r=2.5)
        svg.parts.append("</g>")
    if series.reference is not None:
        y = frame.y(series.reference)
        svg.add(
            "line",
            class_="reference",
            data_node=series.name,
            x1=frame.x(series.points[0][0]),
            y1=y,
            x2=float(MARGIN_LEFT + PLOT_WIDTH),
            y2=y,
            stroke=colour,
            stroke_width=1,
            stroke_dasharray="2 3",
            opacity=0.8,
        )


def _legend(svg: _Svg, series: Sequence[Series], drift: bool) -> None:
    x = float(MARGIN_LEFT + PLOT_WIDTH + 16)
    y = float(MARGIN_TOP + 8)
    for index, s in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        svg.add("line", x1=x, y1=y, x2=x + 18, y2=y, stroke=colour, stroke_width=2.5)
        svg.add("text", f"{s.name} ({len(s.points)})", class_="legend", x=x + 24, y=y + 4)
        y += 18
    if any(s.reference is not None for s in series):
        svg.add("line", x1=x, y1=y, x2=x + 18, y2=y, stroke="#444444", stroke_dasharray="2 3")
        svg.add("text", "first-window mean", class_="legend", x=x + 24, y=y + 4)
        y += 18
    if drift:
        svg.add("line", x1=x, y1=y, x2=x + 18, y2=y, stroke="#B00020", stroke_dasharray="6 4")
        svg.add("text", "drift detected", class_="legend", x=x + 24, y=y + 4)
