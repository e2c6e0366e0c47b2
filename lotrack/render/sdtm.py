"""SDTM datasets as CSV files, one per domain, named after it (EX.csv, AE.csv, ...)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from lotrack.render.files import prepare_folder

if TYPE_CHECKING:
    from lotrack.services.sdtm import Dataset


def write_datasets(folder: Path, datasets: list[Dataset]) -> list[Path]:
    """Every dataset, header row included even when it has no records."""
    prepare_folder(folder)
    written = []
    for dataset in datasets:
        path = folder / f"{dataset.name}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, dataset.columns)
            writer.writeheader()
            writer.writerows(dataset.rows)
        written.append(path)
    return written
