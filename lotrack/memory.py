"""Python's cyclic garbage collector around bulk work."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch of long-lived rows is built.

    A results file or a label sheet holds a hundred thousand small objects that live until
    the end: every collection walks all of them again to free nothing (a fifth of a
    100,000-row import, a tenth of a 2,000-label sheet). Reference counting still frees
    everything else; the collector resumes afterwards, even on an error."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_own_process = False
# Until the first use of the database, the youngest generation is collected only after this
# many allocations: start-up (imports, declarative models, mappers, the protocol schema)
# allocates some 130,000 objects that live until exit and next to no garbage, and the
# default (700) ran about 190 collections over them, a tenth of a dispense's CPU time. A
# command that never opens the database still gets collections, only rarer.
STARTUP_THRESHOLD = 200_000
_thresholds: tuple[int, ...] | None = None


def own_process() -> None:
    """Say that lotrack runs as its own short-lived process (the installed script)."""
    global _own_process, _thresholds
    _own_process = True
    if _thresholds is None:
        _thresholds = gc.get_threshold()
        gc.set_threshold(STARTUP_THRESHOLD, *_thresholds[1:])


def freeze_loaded() -> None:
    """Move everything loaded by now (modules, classes, tables, mappers) out of the cycle
    collector's way: it lives until exit, and the collector's passes during a command and
    at exit walked all of it again (a tenth of a dispense); then collect as usual again.
    Only in lotrack's own process: embedded (in tests) frozen objects would never be freed."""
    global _thresholds
    if _own_process:
        gc.freeze()
        if _thresholds is not None:
            gc.set_threshold(*_thresholds)
            _thresholds = None
