"""Progress bars for long work (rendering scenes, indexing videos), through rich.

Bars go to stderr and only when it is a terminal, so logs, CI output and workers stay clean.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import track

T = TypeVar("T")


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate `items`, showing a bar on an interactive stderr."""
    if not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console

    yield from track(items, description=description, total=total, console=Console(stderr=True),
                     transient=True)
