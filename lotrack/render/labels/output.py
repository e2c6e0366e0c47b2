"""Write laid-out labels in the format asked for, all or nothing.

Files are written to a staging folder beside the destination while the print is being
recorded, and moved into place only when the transaction has committed: a label file
never exists without its audited print, nor a print without its file.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lotrack.errors import InvalidInput
from lotrack.render.labels.layout import Drawing
from lotrack.schemas.labels import LabelTemplate, SheetSpec

FORMATS = ("pdf", "png", "svg", "zpl")


def output_format(fmt: str | None, out: Path) -> str:
    if fmt:
        return fmt
    suffix = out.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    raise InvalidInput("give --format pdf|png|svg|zpl, or an --out path ending in one of them")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "label"


@dataclass
class Staged:
    """Files written to a staging folder, waiting to be moved to their destinations."""

    staging: Path
    moves: list[tuple[Path, Path]] = field(default_factory=list)

    def commit(self) -> list[Path]:
        try:
            for temp, final in self.moves:
                final.parent.mkdir(parents=True, exist_ok=True)
                temp.replace(final)
        except OSError as exc:
            # The print is committed by now: say so, rather than fail with a traceback.
            raise InvalidInput(f"the labels were recorded but could not be written: {exc}; "
                               "print them again with --reason") from exc
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
        return [final for _, final in self.moves]

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def stage_labels(out: Path, fmt: str, drawings: list[Drawing], copies: int,
                 template: LabelTemplate, sheet: SheetSpec | None, title: str,
                 watermark: str | None = None, dpi: int = 600, dpmm: int = 12) -> Staged:
    # Staged beside the destination when its folder exists (a file there is refused below).
    parent = out.parent if out.parent.is_dir() else Path.cwd()
    staged = Staged(Path(tempfile.mkdtemp(prefix=".lotrack-labels-", dir=parent)))
    try:
        _write(staged, out, fmt, drawings, copies, template, sheet, title, watermark, dpi, dpmm)
        for _, final in staged.moves:
            _check_destination(final)
    except BaseException:
        staged.discard()
        raise
    return staged


def _check_destination(final: Path) -> None:
    """Refuse, before the print is recorded, a destination the move could not fill: a
    folder where the file goes, or a file where a folder must be."""
    if final.is_dir():
        raise InvalidInput(f"cannot write {final}: it is a folder")
    for parent in final.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InvalidInput(f"cannot write {final}: {parent} is a file, not a folder")
            return


def _repeat(drawings: list[Drawing], copies: int) -> Iterable[Drawing]:
    for drawing in drawings:
        for _ in range(copies):
            yield drawing


def _write(staged: Staged, out: Path, fmt: str, drawings: list[Drawing], copies: int,
           template: LabelTemplate, sheet: SheetSpec | None, title: str, watermark: str | None,
           dpi: int, dpmm: int) -> None:
    if fmt in ("pdf", "zpl"):
        temp = staged.staging / f"labels.{fmt}"
        if fmt == "pdf":
            from lotrack.render.labels.pdf import write_pdf

            write_pdf(temp, _repeat(drawings, copies), template, sheet, title, watermark)
        else:
            from lotrack.render.labels.zpl import write_zpl

            write_zpl(temp, _repeat(drawings, copies), dpmm)
        staged.moves.append((temp, out))
        return
    single = len(drawings) == 1 and copies == 1 and out.suffix.lower() == f".{fmt}"
    for drawing in drawings:
        name = f"{_safe(drawing.subject)}.{fmt}"
        temp = staged.staging / name
        if fmt == "png":
            from lotrack.render.labels.raster import write_png

            write_png(temp, drawing, dpi)
        else:
            from lotrack.render.labels.svg import write_svg

            write_svg(temp, drawing)
        # One file per label (copies are a printer setting for images).
        staged.moves.append((temp, out if single else out / name))
