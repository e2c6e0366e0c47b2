"""What the demo leaves in its folder: the documents lotrack produces."""

from __future__ import annotations

from lotrack.demo.core import Demo


def write_outputs(demo: Demo) -> None:
    """Written as each document's issue lands: CoAs, accountability, labels, custody PDFs."""
    demo.say(f"Documents written to {demo.out}/")
