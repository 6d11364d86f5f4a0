"""The progress line: throughput per window, and an ETA that counts the evaluations still ahead."""

from __future__ import annotations

import io

from cornernet_tf.config import TrainConfig
from cornernet_tf.train import evaluation_steps
from cornernet_tf.training.progress import ProgressLogger


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_steps(progress: ProgressLogger, clock: FakeClock, steps: range, seconds_per_step: float) -> None:
    for step in steps:
        clock.now += seconds_per_step
        progress.update(step, {"total": 1.0}, 1e-3)


def test_eta_is_the_steady_rate_plus_the_evaluations_ahead():
    clock, out = FakeClock(), io.StringIO()
    progress = ProgressLogger(100, global_batch=4, every=10, stream=out, eval_steps=[50, 100], clock=clock)
    run_steps(progress, clock, range(1, 11), seconds_per_step=3.0)  # first window: tracing, slow
    run_steps(progress, clock, range(11, 31), seconds_per_step=1.0)
    # rate since the first print only: 1 s/step; no evaluation has run yet, so none is counted
    assert progress.eta_seconds(30) == 70.0
    assert "4.0 img/s ETA 01:10" in out.getvalue().splitlines()[-1]

    with progress.paused():  # an evaluation of 15 s
        clock.now += 15.0
    run_steps(progress, clock, range(31, 41), seconds_per_step=1.0)
    # the pause counts in neither rate; the evaluations at 50 and 100 are ahead, 15 s each
    assert progress.eta_seconds(40) == 60.0 + 2 * 15.0
    assert "4.0 img/s ETA 01:30" in out.getvalue().splitlines()[-1]


def test_eta_before_the_first_print_uses_the_window_rate():
    clock = FakeClock()
    progress = ProgressLogger(10, global_batch=2, every=5, stream=io.StringIO(), clock=clock)
    assert progress.eta_seconds(0) == 0.0
    run_steps(progress, clock, range(1, 6), seconds_per_step=2.0)
    assert progress.eta_seconds(5) == 5 * 2.0


def test_evaluation_steps():
    train = TrainConfig(steps=3000, eval_every=1000)
    assert evaluation_steps(train, final=True) == [1000, 2000, 3000]
    assert evaluation_steps(train, final=False) == [1000, 2000]
    assert evaluation_steps(TrainConfig(steps=10, eval_every=0), final=True) == [10]
