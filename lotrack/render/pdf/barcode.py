"""A Code 128 barcode as a platypus flowable, painted as vector bars."""

from __future__ import annotations

from reportlab.lib.units import mm
from reportlab.platypus import Flowable

from lotrack.render.labels.symbols import QUIET_MODULES, linear_modules, runs


class Code128(Flowable):
    """The subject of a document (a serial, a lot, a participant) as a scannable barcode."""

    def __init__(self, text: str, height: float = 10 * mm, module: float = 0.3 * mm) -> None:
        super().__init__()
        self.text = text
        self.modules = linear_modules("code128", None, text)
        self.module = module
        self.bar_height = height
        self.width = (len(self.modules) + 2 * QUIET_MODULES) * module
        self.height = height + 4 * mm

    def draw(self) -> None:
        c = self.canv
        path = c.beginPath()
        left = QUIET_MODULES * self.module
        for start, length in runs(self.modules):
            path.rect(left + start * self.module, 4 * mm, length * self.module, self.bar_height)
        c.drawPath(path, stroke=0, fill=1)
        c.setFont("Helvetica", 8)
        c.drawCentredString(self.width / 2, 1 * mm, self.text)
