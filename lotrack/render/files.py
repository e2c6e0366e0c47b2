"""Where a report or export is written: checked before anything is written, so that a
path that cannot be a file (empty, a folder, under a file) is one clear error and a
failed command leaves no file behind."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from lotrack.errors import InvalidInput


def prepare_output(path: Path) -> None:
    """Make the folder of the file `path`, or refuse the path."""
    if not path.name:
        raise InvalidInput(f"cannot write {str(path)!r}: give a file name")
    if path.is_dir():
        raise InvalidInput(f"cannot write {path}: it is a folder")
    prepare_folder(path.parent)


def prepare_folder(folder: Path) -> None:
    """Make `folder` and any missing parents, or refuse it."""
    for existing in (folder, *folder.parents):
        if existing.exists():
            if not existing.is_dir():
                raise InvalidInput(f"cannot write in {folder}: {existing} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot make folder {folder}: {exc.strerror or exc}") from None


@contextmanager
def written_whole(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Temporary paths to write `paths` through: each takes its own name only once all
    are written, so that a write that fails half way (a lost connection, a full disk)
    leaves no partial file behind, nor replaces an earlier file with one."""
    partial = [path.with_name(f".{path.name}.partial") for path in paths]
    try:
        yield partial
        for done, path in zip(partial, paths, strict=True):
            os.replace(done, path)
    finally:
        for done in partial:
            done.unlink(missing_ok=True)
