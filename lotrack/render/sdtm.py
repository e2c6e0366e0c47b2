"""SDTM datasets as CSV files, one per domain, named after it (EX.csv, AE.csv, ...)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING

from lotrack.errors import InvalidInput
from lotrack.render.files import prepare_folder, written_whole

if TYPE_CHECKING:
    from lotrack.services.sdtm import Dataset, Record


def write_datasets(folder: Path, datasets: list[Dataset]) -> list[Path]:
    """Every dataset, header row included even when it has no records."""
    write_records(folder, [(d.name, d.columns) for d in datasets],
                  ((d.name, row) for d in datasets for row in d.rows))
    return [folder / f"{d.name}.csv" for d in datasets]


def write_records(folder: Path, datasets: Sequence[tuple[str, tuple[str, ...]]],
                  records: Iterable[Record]) -> dict[str, int]:
    """Write each record to its dataset's file as it comes; return the rows per dataset.

    Every file has its header row, even with no records. The files are written under
    temporary names and take their own names only once every record is written: an
    export that fails half way (a lost connection) leaves no file behind, nor replaces
    a previous export's."""
    prepare_folder(folder)  # before the try: a refused folder has no partial file to remove
    names = [name for name, _ in datasets]
    counts = dict.fromkeys(names, 0)
    try:
        with written_whole([folder / f"{name}.csv" for name in names]) as paths, \
                ExitStack() as files:
            partial = dict(zip(names, paths, strict=True))
            writers = {}
            for name, columns in datasets:
                handle = files.enter_context(partial[name].open("w", newline="",
                                                                encoding="utf-8"))
                writer = csv.writer(handle)
                writer.writerow(columns)
                # The values in the columns' order: what csv.DictWriter writes, at a
                # fraction of its cost per row (half the export's time).
                values = itemgetter(*columns)
                writers[name] = (writer.writerow, values)
            for name, row in records:
                write, values = writers[name]
                write(values(row))
                counts[name] += 1
    except OSError as exc:  # a full disk, a folder named EX.csv, no permission
        raise InvalidInput(f"cannot write in {folder}: {exc.strerror or exc}") from None
    return counts
