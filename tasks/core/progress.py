"""Progress of long steps (over a minute on the full dataset): a bar in a terminal (tqdm, hidden
when the output is not a terminal, e.g. a log file) and, through ``report``, a progress artifact
that the Prefect UI shows on the run. Steps call ``advance(n)`` with the items they finished."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

Advance = Callable[[int], None]
REPORT_STEP = 0.05  # report every 5 %: a few dozen API calls for a long step, not one per item


@contextmanager
def progress(
    total: int, description: str, unit: str = "img", report: Callable[[float], None] | None = None
) -> Iterator[Advance]:
    """``advance`` for a step of ``total`` items; ``report`` gets the finished fraction (0..1)."""
    bar = tqdm(total=total, desc=description, unit=unit, leave=False, disable=None, mininterval=1.0)
    done, reported = 0, 0.0

    def advance(count: int) -> None:
        nonlocal done, reported
        bar.update(count)
        done += count
        fraction = min(1.0, done / total) if total else 1.0
        if report is not None and (fraction - reported >= REPORT_STEP or (fraction == 1.0 and reported < 1.0)):
            report(fraction)
            reported = fraction

    try:
        yield advance
    finally:
        bar.close()
