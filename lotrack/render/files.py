"""Where a report or export is written: checked before anything is written, so that a
path that cannot be a file (empty, a folder, under a file) is one clear error and a
failed command leaves no file behind."""

from __future__ import annotations

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
