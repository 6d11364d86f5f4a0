"""Several replicas and several workers give the training of one device on the same batch."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

from .conftest import REPO_ROOT, run_module, tiny_overrides

MIRRORED_VS_ONE_DEVICE = textwrap.dedent(
    """
    import json, sys
    import keras
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from cornernet_tf.config import load_config
    from cornernet_tf.tasks.data import train_dataset
    from cornernet_tf.tasks.training import build_trainer
    from cornernet_tf.training.strategy import make_strategy

    config = load_config("shapes_tiny", json.loads(sys.argv[1]))
    # Fixed initial weights: a random draw can put a ReLU input or a pooled maximum within
    # rounding of a kink, where one device and two replicas then take different branches.
    keras.utils.set_random_seed(config.train.seed)
    images, targets = next(iter(train_dataset(config)))
    samples = tf.data.Dataset.from_tensor_slices((images, targets))

    def run(strategy, directory):
        def dataset_fn(ctx, start, skipped):
            return samples.batch(ctx.get_per_replica_batch_size(config.train.batch_size)).repeat()

        trainer = build_trainer(config, strategy, directory, dataset_fn=dataset_fn)
        return trainer

    one = run(tf.distribute.OneDeviceStrategy("/cpu:0"), sys.argv[2] + "/one")
    two = run(make_strategy("mirrored"), sys.argv[2] + "/two")
    assert two.strategy.num_replicas_in_sync == 2
    two.model.set_weights(one.model.get_weights())

    def gradients(trainer):
        strategy = trainer.strategy
        variables = trainer.model.trainable_variables

        def replica(images, targets):
            with tf.GradientTape() as tape:
                losses = trainer.compute_losses(images, targets, training=True)
            return losses, tape.gradient(losses["total"], variables)

        @tf.function
        def step(iterator):
            losses, grads = strategy.run(replica, args=next(iterator))
            total = lambda v: strategy.reduce("SUM", v, axis=None)
            return {k: total(v) for k, v in losses.items()}, [total(g) for g in grads]

        dataset = strategy.distribute_datasets_from_function(lambda ctx: trainer.dataset_fn(ctx, 0, 0))
        losses, grads = step(iter(dataset))
        return {k: float(v) for k, v in losses.items()}, [g.numpy() for g in grads]

    loss_one, grads_one = gradients(one)
    loss_two, grads_two = gradients(two)
    worst = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12)) for a, b in zip(grads_one, grads_two))
    print(json.dumps({"one": loss_one, "two": loss_two, "worst_relative_gradient_error": worst}))
    """
)


def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path, shapes_dir):
    overrides = tiny_overrides(shapes_dir) + ["train.sync_batchnorm=true"]
    result = run_module(["-c", MIRRORED_VS_ONE_DEVICE, json.dumps(overrides), str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for name, value in report["one"].items():
        assert abs(report["two"][name] - value) <= 1e-4 * max(1.0, abs(value)), report
    assert report["worst_relative_gradient_error"] < 1e-3, report


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _write_shapes(shapes_dir: str) -> None:
    """Generate the dataset once, so that the workers do not race to create it."""
    command = ["-m", "cornernet_tf.data.shapes", "--out", shapes_dir, "--train", "24", "--val", "4", "--size", "64"]
    assert run_module(command).returncode == 0


def test_two_multi_worker_processes_train_in_step(tmp_path, shapes_dir):
    _write_shapes(shapes_dir)
    processes = _start_workers(tmp_path, shapes_dir, steps=3, extra=[])
    outputs = _finish(processes)
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "on 2 replica(s) (multi_worker)" in out
    losses = [re.findall(r"step \d+/3 .*? total ([\d.]+)", out) for out, _ in outputs]
    assert len(losses[0]) == 3 and losses[0] == losses[1]
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("ckpt-3.*"))
    assert not list((tmp_path / ".workers").glob("*/ckpt-*"))


def _start_workers(model_dir, shapes_dir: str, steps: int, extra: list[str]) -> list[subprocess.Popen]:
    """Two `--strategy multi_worker` train processes on localhost ports."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    sets = [arg for item in tiny_overrides(shapes_dir, steps=steps) + extra for arg in ("--set", item)]
    processes = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CPP_MIN_LOG_LEVEL="2",
            PYTHONUNBUFFERED="1",
            TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        )
        args = ["-m", "cornernet_tf.train", "--strategy", "multi_worker", "--model_dir", str(model_dir), "--no_eval"]
        processes.append(
            subprocess.Popen(
                [sys.executable, *args, *sets],
                cwd=REPO_ROOT,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    return processes


def _finish(processes: list[subprocess.Popen], timeout: float = 300) -> list[tuple[str, str]]:
    try:
        return [process.communicate(timeout=timeout) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def _checkpoint(model_dir, step: int) -> dict:
    import numpy as np
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(model_dir / "checkpoints" / f"ckpt-{step}"))
    return {name: np.asarray(reader.get_tensor(name)) for name in reader.get_variable_to_shape_map()}


def test_a_killed_worker_stops_its_peer_with_one_line_and_a_restart_resumes_exactly(tmp_path, shapes_dir):
    import time

    import numpy as np
    import tensorflow as tf

    _write_shapes(shapes_dir)
    extra = ["train.checkpoint_every=4", "train.lr_schedule=constant", "train.log_every=100"]
    run = tmp_path / "killed"
    processes = _start_workers(run, shapes_dir, steps=2000, extra=extra)
    try:
        deadline = time.monotonic() + 240
        while (
            not (state := tf.train.get_checkpoint_state(str(run / "checkpoints")))
            or len(state.all_model_checkpoint_paths) < 2
        ):
            assert processes[0].poll() is None and time.monotonic() < deadline, "no second checkpoint"
            time.sleep(0.1)
        processes[1].kill()
        killed_at = time.monotonic()
        out, err = processes[0].communicate(timeout=120)
        waited = time.monotonic() - killed_at
    finally:
        _finish(processes)
    assert processes[0].returncode == 1, err[-3000:]
    errors = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "/job:worker/replica:0/task:1 stopped responding" in errors[0], out + err
    assert "restart every worker with the same command" in errors[0] and "Traceback" not in err
    assert waited < 30, f"the surviving worker took {waited:.1f} s to stop (documented: about 10 s)"

    saved = int(tf.train.latest_checkpoint(str(run / "checkpoints")).rsplit("-", 1)[1])
    final = saved + 3
    restarted = _finish(_start_workers(run, shapes_dir, steps=final, extra=extra))
    assert all(f"resuming at step {saved}" in out for out, _ in restarted), restarted[0][1][-2000:]
    straight = tmp_path / "straight"
    outputs = _finish(_start_workers(straight, shapes_dir, steps=final, extra=extra))
    assert all("finished at step" in out for out, _ in outputs), outputs[0][1][-2000:]
    ours, reference = _checkpoint(run, final), _checkpoint(straight, final)
    different = [name for name in reference if not np.array_equal(ours[name], reference[name])]
    assert sorted(ours) == sorted(reference) and not different, different[:5]


def test_sigterm_to_one_worker_makes_every_worker_save_the_same_step_and_stop(tmp_path, shapes_dir):
    import signal
    import time

    import tensorflow as tf

    _write_shapes(shapes_dir)
    extra = ["train.checkpoint_every=1000", "train.lr_schedule=constant", "train.log_every=1"]
    run = tmp_path / "preempted"
    processes = _start_workers(run, shapes_dir, steps=2000, extra=extra)
    try:
        deadline = time.monotonic() + 240
        progress = processes[1].stdout
        while not re.search(r"step [3-9]/2000", line := progress.readline()):
            assert line and time.monotonic() < deadline, "worker 1 did not start training"
        processes[1].send_signal(signal.SIGTERM)  # the non-chief: the chief must save too
        outputs = _finish(processes, timeout=120)
    finally:
        _finish(processes)
    stopped = []
    for index, (process, (out, err)) in enumerate(zip(processes, outputs)):
        assert process.returncode == 128 + signal.SIGTERM, f"worker {index}: {err[-3000:]}"
        lines = [line for line in out.splitlines() if line.startswith("stopped at step")]
        assert len(lines) == 1 and "a worker of the cluster received SIGTERM" in lines[0], out[-2000:]
        assert "restart every worker with the same command" in lines[0] and "Traceback" not in err
        stopped.append(int(lines[0].split()[3].rstrip(":")))
    assert stopped[0] == stopped[1] >= 3, stopped
    saved = tf.train.latest_checkpoint(str(run / "checkpoints"))
    assert saved is not None and saved.endswith(f"ckpt-{stopped[0]}"), saved
    assert not list((run / ".workers").glob("**/ckpt-*")), "a worker left its scratch checkpoint"

    final = stopped[0] + 2
    restarted = _finish(_start_workers(run, shapes_dir, steps=final, extra=extra))
    for out, err in restarted:
        assert f"resuming at step {stopped[0]}" in out and f"finished at step {final}" in out, err[-2000:]
