"""Progress a person can follow: a one-line bar (or periodic lines when not a terminal) and
TensorBoard scalars."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TextIO

import tensorflow as tf


def _format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class ProgressLogger:
    """Prints `step/total [bar] loss parts lr img/s ETA` and writes the same scalars to TensorBoard.

    Averages the loss parts over the steps since the last print, so the numbers shown are
    smoother than single-step values. img/s is that of the steps since the last print. The ETA
    is what the run still needs: the steps left at the rate of every step since the first print
    (the first window holds tracing and warm-up), plus one evaluation's time for each of
    `eval_steps` still ahead, once one has run. Time spent `paused()` (evaluations) counts in
    neither rate.
    """

    def __init__(
        self,
        total_steps: int,
        global_batch: int,
        start_step: int = 0,
        every: int = 20,
        log_dir: str | None = None,
        stream: TextIO = sys.stdout,
        eval_steps: Iterable[int] = (),
        clock: Callable[[], float] = time.perf_counter,
    ):
        """Start the first averaging window now (at `start_step`).

        Args:
            total_steps: The step the run trains to.
            global_batch: Images per step, for img/s.
            start_step: The step the run starts (or resumes) from.
            every: Print and log every this many steps, and at the last one.
            log_dir: TensorBoard folder; None writes no summaries.
            stream: Where the progress goes; a terminal gets a bar redrawn in place.
            eval_steps: Steps after which an evaluation runs, for the ETA.
            clock: Returns the current time in seconds (monotonic).
        """
        self.total_steps = total_steps
        self.global_batch = global_batch
        self.every = every
        self.stream = stream
        self.interactive = stream.isatty()
        self.writer = tf.summary.create_file_writer(log_dir) if log_dir else None
        self._sums: dict[str, float] = {}
        self._count = 0
        self._clock = clock
        self._window_start = clock()
        self._window_step = start_step
        self._throughput = 0.0
        self._eval_steps = sorted(set(eval_steps))
        self._eval_seconds: float | None = None  # the last evaluation's duration
        self._steady: tuple[float, int] | None = None  # (time, step) at the first print: the ETA's rate starts there
        self._paused_since_steady = 0.0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside (an evaluation) is left out of img/s and the ETA's rate; its
        duration is the ETA's estimate of each evaluation still ahead."""
        start = self._clock()
        try:
            yield
        finally:
            seconds = self._clock() - start
            self._eval_seconds = seconds
            self._window_start += seconds
            self._paused_since_steady += seconds if self._steady else 0.0

    def eta_seconds(self, step: int) -> float:
        """Seconds the run still needs after `step` (0 before a rate is known)."""
        if self._steady is not None and step > self._steady[1]:
            since, since_step = self._steady
            seconds_per_step = (self._clock() - since - self._paused_since_steady) / (step - since_step)
        elif self._throughput:
            seconds_per_step = self.global_batch / self._throughput
        else:
            return 0.0
        evaluations = sum(1 for s in self._eval_steps if s > step) if self._eval_seconds is not None else 0
        return (self.total_steps - step) * seconds_per_step + evaluations * (self._eval_seconds or 0.0)

    def update(self, step: int, losses: Mapping[str, float], learning_rate: float, skipped_samples: int = 0) -> None:
        """Record the losses of `step`, and print and log the window's means when it is due.

        Args:
            step: The 1-based count of finished steps.
            losses: Loss part name to its value at this step.
            learning_rate: The learning rate of this step.
            skipped_samples: The run's count of undecodable samples so far; shown when not 0, and
                logged.

        Returns:
            None; the output is the printed line and the TensorBoard scalars.
        """
        for name, value in losses.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value)
        self._count += 1
        if step % self.every and step != self.total_steps:
            return
        now = self._clock()
        steps = step - self._window_step
        if steps > 0:
            self._throughput = steps * self.global_batch / max(now - self._window_start, 1e-9)
        if self._steady is None:
            self._steady = (now, step)
        means = {name: total / self._count for name, total in self._sums.items()}
        self._print(step, means, learning_rate, skipped_samples)
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for name, value in means.items():
                    tf.summary.scalar(f"loss/{name}", value)
                tf.summary.scalar("learning_rate", learning_rate)
                tf.summary.scalar("images_per_second", self._throughput)
                tf.summary.scalar("data/skipped_samples", skipped_samples)
        self._sums, self._count = {}, 0
        self._window_start, self._window_step = now, step

    def _print(self, step: int, means: Mapping[str, float], learning_rate: float, skipped_samples: int) -> None:
        width = 20
        filled = int(width * step / max(self.total_steps, 1))
        bar = "=" * filled + "." * (width - filled)
        eta = self.eta_seconds(step)
        parts = " ".join(f"{name} {value:.4f}" for name, value in means.items())
        line = (
            f"step {step}/{self.total_steps} [{bar}] {parts} lr {learning_rate:.2e} "
            f"{self._throughput:.1f} img/s ETA {_format_duration(eta)}"
            + (f" skipped {skipped_samples}" if skipped_samples else "")
        )
        if self.interactive:
            end = "\n" if step == self.total_steps else ""
            self.stream.write("\r" + line + end)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line without breaking an interactive bar."""
        self.stream.write(("\n" if self.interactive else "") + text + "\n")
        self.stream.flush()

    def scalars(self, step: int, values: Mapping[str, float], prefix: str) -> None:
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for name, value in values.items():
                    tf.summary.scalar(f"{prefix}/{name}", value)

    def images(self, step: int, paths, name: str) -> None:
        """Log PNG files (e.g. pictures of detections) as one TensorBoard image summary."""
        if self.writer is None or not paths:
            return
        pictures = [tf.io.decode_png(tf.io.read_file(str(path)), channels=3) for path in paths]
        height = max(int(p.shape[0]) for p in pictures)
        width = max(int(p.shape[1]) for p in pictures)
        batch = tf.stack([tf.image.resize_with_crop_or_pad(p, height, width) for p in pictures])
        with self.writer.as_default(step=step):
            tf.summary.image(name, batch, max_outputs=len(pictures))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
