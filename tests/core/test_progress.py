"""Progress of long steps: reported in 5 % steps and once at the end, never more often."""

from __future__ import annotations

from itertools import pairwise

from tasks.core.progress import progress


def test_progress_reports_every_five_percent_and_the_end() -> None:
    reported: list[float] = []
    with progress(1000, "measuring", report=reported.append) as advance:
        for _ in range(333):
            advance(3)
        advance(1)  # 1000 of 1000
    assert reported[-1] == 1.0
    assert len(reported) == 20  # 0.051, 0.102, ..., 0.969 and 1.0: not one per call (334 calls)
    steps = [later - earlier for earlier, later in pairwise(reported[:-1])]
    assert all(step >= 0.05 - 1e-9 for step in steps)  # the last report, at the end, may be closer


def test_progress_of_an_empty_step_ends_at_once() -> None:
    reported: list[float] = []
    with progress(0, "nothing", report=reported.append) as advance:
        advance(0)
    assert reported == [1.0]
