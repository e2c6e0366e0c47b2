"""Labels as SVG, one file per label, in millimetres."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from lotrack.render.labels.layout import Bars, Drawing, Matrix, Text
from lotrack.render.labels.symbols import runs
from lotrack.schemas.labels import PT_TO_MM

ANCHOR = {"left": "start", "center": "middle", "right": "end"}


def _rect(x: float, y: float, w: float, h: float) -> str:
    return f'<rect x="{x:.4f}" y="{y:.4f}" width="{w:.4f}" height="{h:.4f}"/>'


def to_svg(drawing: Drawing) -> str:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{drawing.width:g}mm" '
        f'height="{drawing.height:g}mm" viewBox="0 0 {drawing.width:g} {drawing.height:g}">',
        f"<title>{escape(drawing.subject)}</title>",
        f'<rect width="{drawing.width}" height="{drawing.height}" fill="#fff"/>',
        '<g fill="#000" shape-rendering="crispEdges">',
    ]
    for item in drawing.items:
        if isinstance(item, Text):
            x = item.x + {"left": 0.0, "center": item.width / 2, "right": item.width}[item.align]
            weight = ' font-weight="bold"' if item.bold else ""
            parts.append(
                f'<text x="{x:.3f}" y="{item.baseline:.3f}" font-family="Helvetica, Arial, sans-serif" '
                f'font-size="{item.size * PT_TO_MM:.3f}" text-anchor="{ANCHOR[item.align]}"{weight}>'
                f"{escape(item.text)}</text>")
        elif isinstance(item, Bars):
            parts.append(f"<g data-content={quoteattr(item.content)}>")
            parts += [_rect(item.x + s * item.module, item.y, n * item.module, item.height)
                      for s, n in runs(item.modules)]
            parts.append("</g>")
        elif isinstance(item, Matrix):
            parts.append(f"<g data-content={quoteattr(item.content)}>")
            for r, row in enumerate(item.rows):
                parts += [_rect(item.x + s * item.module, item.y + r * item.module,
                                n * item.module, item.module) for s, n in runs(row)]
            parts.append("</g>")
    parts += ["</g>", "</svg>", ""]
    return "\n".join(parts)


def write_svg(path: Path, drawing: Drawing) -> None:
    path.write_text(to_svg(drawing), encoding="utf-8")
