"""The progress interface the training loop reports each finished step to, as a stopwatch: the
benchmarks that time the train command's own loop hand it to `Trainer.fit` in place of the bar."""

from __future__ import annotations

import sys
import time


class StepClock:
    """Records `time.perf_counter()` at every step the loop reports."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def start(self) -> None:
        """Mark the moment before the first step."""
        self.times.append(time.perf_counter())

    def update(self, *args, **kwargs) -> None:
        self.times.append(time.perf_counter())

    def message(self, text: str) -> None:
        print(text, file=sys.stderr)
