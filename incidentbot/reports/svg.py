"""Bar charts as inline SVG, drawn by our own code.

The report's HTML is one standalone file: it renders with no network (no script, no font, no
CDN) in any browser, prints, and is byte-for-byte the same for the same figures. A plotting
library would bring a large dependency (matplotlib and numpy) or a JavaScript runtime for a few
bar charts; these are a hundred lines that escape every label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

ROW = 26  # px per bar
LABEL_W = 170
BAR_W = 380
VALUE_W = 110
COLOURS = ("#3b6fb6", "#d9822b", "#2f8f5b", "#b03a48", "#7b5ea7", "#8a8a8a")


@dataclass(frozen=True)
class Bar:
    label: str
    value: float  # what the bar's length shows
    text: str  # what is written beside it ("1h 05m", "3")
    colour: int = 0  # index into COLOURS


HEAD = Markup(
    '<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{w}" height="{h}" '
    'viewBox="0 0 {w} {h}" aria-label="{title}"><title>{title}</title>'
    '<text x="0" y="18" class="chart-title">{title}</text>'
)
EMPTY = Markup('<text x="0" y="{y}" class="chart-empty">{text}</text>')
BAR = Markup(
    '<text x="{lx}" y="{ty}" text-anchor="end" class="chart-label">{label}</text>'
    '<rect class="bar" x="{bx}" y="{by}" width="{bw}" height="{bh}" fill="{colour}">'
    "<title>{label}: {text}</title></rect>"
    '<text x="{vx}" y="{ty}" class="chart-value">{text}</text>'
)


def bars(title: str, rows: Sequence[Bar], *, empty: str = "no data") -> Markup:
    """A horizontal bar chart with a title, a label per bar and its value written beside it.
    Every text is escaped (``Markup.format``)."""
    height = 34 + max(1, len(rows)) * ROW + 8
    width = LABEL_W + BAR_W + VALUE_W
    top = max((r.value for r in rows), default=0.0)
    parts = [HEAD.format(w=width, h=height, title=title)]
    if not rows or top <= 0:
        parts.append(EMPTY.format(y=34 + ROW // 2 + 4, text=empty))
    else:
        for n, r in enumerate(rows):
            y = 34 + n * ROW
            w = max(2.0, BAR_W * r.value / top) if r.value > 0 else 0.0
            parts.append(
                BAR.format(
                    lx=LABEL_W - 8, ty=y + 17, label=r.label, bx=LABEL_W, by=y + 4,
                    bw=f"{w:.1f}", bh=ROW - 8, colour=COLOURS[r.colour % len(COLOURS)],
                    text=r.text, vx=f"{LABEL_W + w + 6:.1f}",
                )
            )  # fmt: skip
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)
