"""Barcode symbols as module patterns, from well-kept encoders.

1D symbols (Code 128, GS1-128) come from python-barcode and the GS1 DataMatrix from
zxing-cpp; lotrack only lays their modules out on a label.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lotrack import gs1

QUIET_MODULES = 10  # Code 128 needs a quiet zone of at least 10 modules each side
_DARK = bytes(ord("1") if value < 128 else ord("0") for value in range(256))  # pixel -> module
_RUN = re.compile("1+")


def linear_modules(symbol: str, fields: list[tuple[str, str]] | None, text: str | None) -> str:
    """'1'/'0' modules of a Code 128 (`text`) or GS1-128 (`fields`) symbol, no quiet zone."""
    import barcode

    if symbol == "gs1-128":
        assert fields is not None
        # python-barcode adds the leading FNC1; FNC1 after each variable field but the last.
        data = gs1.element_string(fields, separator=gs1.FNC1)
        code = barcode.get_barcode_class("gs1_128")(data)
    else:
        assert text is not None
        code = barcode.get_barcode_class("code128")(text)
    return str(code.build()[0])


@lru_cache(maxsize=4096)
def _matrix(content: str, is_gs1: bool) -> tuple[str, ...]:
    import zxingcpp

    # Square symbols only: a label's DataMatrix box is square, and zxing-cpp otherwise
    # picks a long rectangular symbol for some lengths.
    kwargs = {"gs1": True, "force_square": True} if is_gs1 else {"force_square": True}
    symbol = zxingcpp.create_barcode(content, zxingcpp.BarcodeFormat.DataMatrix, **kwargs)
    image = memoryview(symbol.to_image(scale=1, add_quiet_zones=False))
    rows, cols = image.shape
    modules = image.tobytes().translate(_DARK).decode("ascii")
    return tuple(modules[r * cols:(r + 1) * cols] for r in range(rows))


@lru_cache(maxsize=4096)
def _check_field(ai: str, value: str) -> None:
    # Validates each field as the 1D path does; once per value, as a lot's GTIN, batch and
    # expiry are the same on all its labels.
    gs1.element_string([(ai, value)])


def datamatrix_modules(fields: list[tuple[str, str]] | None, text: str | None) -> tuple[str, ...]:
    """Rows of '1'/'0' modules of a (GS1) DataMatrix, no quiet zone."""
    if fields is not None:
        return datamatrix_rows(gs1.hri(fields), fields)
    assert text is not None
    return _matrix(text, False)


def datamatrix_rows(content: str, fields: list[tuple[str, str]] | None) -> tuple[str, ...]:
    """As datamatrix_modules, for a caller that has the content already: the GS1
    element string's HRI form `gs1.hri(fields)` when `fields` is given, else the text."""
    if fields is not None:
        for ai, value in fields:
            _check_field(ai, value)
    return _matrix(content, fields is not None)


def runs(modules: str) -> list[tuple[int, int]]:
    """(start, length) of each run of dark modules: one rectangle per bar."""
    return [(m.start(), m.end() - m.start()) for m in _RUN.finditer(modules)]
