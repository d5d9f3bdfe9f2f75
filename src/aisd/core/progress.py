"""Progress reporting for long work, decoupled from any UI.

Library code calls ``progress(iterable, total=..., desc=...)``; the CLI installs a rich progress bar with
``use_rich_progress()``; libraries and tests get a silent pass-through by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

ProgressFn = Callable[[Iterable[T], int | None, str], Iterator[T]]


def _silent(items: Iterable[T], total: int | None, desc: str) -> Iterator[T]:
    yield from items


_current: ProgressFn = _silent


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterator[T]:
    """Iterate ``items`` while reporting progress through whatever reporter is installed."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    return _current(items, total, desc)


def _rich(items: Iterable[T], total: int | None, desc: str) -> Iterator[T]:
    from rich.progress import track

    yield from track(items, total=total, description=desc or "working", transient=True)


@contextmanager
def use_rich_progress() -> Iterator[None]:
    """Show a rich progress bar for every ``progress()`` call inside the block (the CLI does this)."""
    global _current
    previous, _current = _current, _rich
    try:
        yield
    finally:
        _current = previous


def set_progress(fn: ProgressFn) -> None:
    """Install a custom reporter (for example one that feeds a server-sent-events stream)."""
    global _current
    _current = fn
