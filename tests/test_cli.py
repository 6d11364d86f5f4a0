"""cli.py: commands start quiet, `--verbose` shows TensorFlow's lines, a user error is one line."""

from __future__ import annotations

import os
import pathlib
import re
import socket
import subprocess
import sys

import pytest
import yaml

from cornernet_tf import evaluate, export, serve, train
from cornernet_tf.data import shapes, tfrecord
from cornernet_tf.utils import cli

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# TensorFlow's C++ log lines (absl / glog format) and absl's note about them
TF_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ .*\] |WARNING: All log messages before absl)", re.MULTILINE
)
TINY = {
    "model": {
        "num_classes": 3,
        "depth": 2,
        "nstack": 1,
        "dims": [8, 8, 8],
        "modules": [1, 1, 1],
        "cnv_dim": 8,
        "pre_dims": [8, 8],
        "pool_dim": 8,
    },
    "data": {
        "shapes_train": 8,
        "shapes_val": 2,
        "shapes_image_size": 64,
        "input_size": [64, 64],
        "deterministic": True,
    },
    "train": {"batch_size": 2, "steps": 1, "warmup_steps": 0, "log_every": 1},
}


def run_command(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m cornernet_tf...` as a user starts it: no TF_CPP_MIN_LOG_LEVEL, stderr merged in
    order into stdout."""
    env = {key: value for key, value in os.environ.items() if key != cli.LOG_LEVEL_VARIABLE}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.fixture()
def tiny_config(tmp_path) -> pathlib.Path:
    path = tmp_path / "tiny.yaml"
    data = {**TINY["data"], "shapes_dir": str(tmp_path / "shapes")}
    path.write_text(yaml.safe_dump({**TINY, "data": data}))
    return path


@pytest.mark.parametrize(
    "argv, orig_argv, environ, quiet",
    [
        (["-m", "--x"], ["python", "-m", "cornernet_tf.train", "--x"], {}, True),
        (["-m"], ["python", "-u", "-mcornernet_tf.data.shapes"], {}, True),
        (["-m", "--verbose"], ["python", "-m", "cornernet_tf.train", "--verbose"], {}, False),
        (["-m"], ["python", "-m", "cornernet_tf.train"], {"TF_CPP_MIN_LOG_LEVEL": "0"}, False),
        # the user's own quieting: absl's start-up lines ignore it, so they are held back too
        (["-m"], ["python", "-m", "cornernet_tf.train"], {"TF_CPP_MIN_LOG_LEVEL": "3"}, True),
        (["-m"], ["python", "-m", "cornernet_tf.train"], {"TF_CPP_MIN_LOG_LEVEL": "2"}, True),
        (["-m"], ["python", "-m", "other_tool"], {}, False),  # another command importing cornernet_tf
        (["script.py"], ["python", "script.py"], {}, False),  # a library import
        (["-c"], ["python", "-c", "import cornernet_tf"], {}, False),
    ],
)
def test_only_our_commands_start_quietly(argv, orig_argv, environ, quiet):
    assert cli.wants_quiet_start(argv, orig_argv, environ) is quiet


def test_a_user_error_is_one_line_with_the_users_own_quiet_log_level():
    """With TF_CPP_MIN_LOG_LEVEL=3, as most users set it, the error is the only output: absl's
    "All log messages before absl::InitializeLog()" and cudart lines ignore that level."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [sys.executable, "-m", "cornernet_tf.evaluate", "--weights", "/no/such/run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        "error: --weights '/no/such/run': not found (no file, folder or checkpoint prefix of that name)"
    ], done.stdout


def test_a_command_starts_with_its_own_first_line_and_verbose_shows_tensorflows(tiny_config, tmp_path):
    quiet = run_command(
        ["cornernet_tf.train", "--config", str(tiny_config), "--no_eval", "--model_dir", str(tmp_path / "run")]
    )
    assert quiet.returncode == 0, quiet.stdout
    # the first line is ours: the dataset is made before the trainer says what it trains
    assert quiet.stdout.startswith("shapes: generating 8 train + 2 val images"), quiet.stdout[:2000]
    assert "\ntraining tiny on 1 replica(s)" in quiet.stdout
    assert not TF_LOG_LINE.search(quiet.stdout), quiet.stdout
    verbose = run_command(
        ["cornernet_tf.train", "--config", str(tiny_config), "--set", "train.batch_sise=2", "--verbose"]
    )
    assert verbose.returncode == 2
    assert TF_LOG_LINE.search(verbose.stdout), verbose.stdout  # TensorFlow's start-up lines
    assert "Traceback" in verbose.stdout
    assert "unknown key(s) ['batch_sise']" in verbose.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    "command, args, says",
    [
        ("cornernet_tf.train", ["--set", "train.batch_sise=2"], "unknown key(s) ['batch_sise']"),
        (
            "cornernet_tf.export",
            ["--weights", "missing/ckpt-1", "--export_dir", "{tmp}"],
            "--weights 'missing/ckpt-1': not found",
        ),
    ],
)
def test_a_user_error_is_the_only_line_of_a_quiet_command(command, args, says, tmp_path):
    result = run_command([command, *(arg.format(tmp=tmp_path) for arg in args)])
    assert result.returncode == 2
    (line,) = result.stdout.splitlines()
    assert line.startswith("error: ") and says in line, line


def _busy_port() -> socket.socket:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return taken


@pytest.mark.parametrize("name", ["train", "evaluate", "export", "serve", "tfrecord", "shapes"])
def test_every_command_turns_a_user_error_into_one_line(name, tiny_config, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with _busy_port() as taken:
        port = str(taken.getsockname()[1])
        main, argv, says = {
            "train": (
                train.main,
                ["--config", str(tiny_config), "--strategy", "multi_worker", "--model_dir", str(tmp_path / "run")],
                "TF_CONFIG",
            ),
            "evaluate": (evaluate.main, ["--weights", str(tmp_path)], "pass --config"),
            "export": (export.main, ["--random_weights", "--export_dir", str(tmp_path)], "needs --config"),
            "serve": (
                serve.main,
                [
                    "--model_base_path",
                    str(tmp_path),
                    "--rest_api_host",
                    "127.0.0.1",
                    "--rest_api_port",
                    port,
                    "--file_system_poll_wait_seconds",
                    "0",
                ],
                port,
            ),
            "tfrecord": (
                tfrecord.main,
                [
                    "--coco",
                    str(tmp_path / "missing.json"),
                    "--images",
                    str(tmp_path),
                    "--out",
                    str(tmp_path / "records"),
                ],
                "missing.json",
            ),
            "shapes": (shapes.main, ["--out", str(a_file / "shapes"), "--train", "1", "--val", "1"], "a_file"),
        }[name]
        assert main(argv) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert says in line and "Traceback" not in err, err


def test_command_exit_statuses():
    def failing(error: BaseException):
        def main(argv):
            raise error

        return cli.command(main)

    assert cli.command(lambda argv: None)([]) == 0
    assert failing(FileNotFoundError("x.yaml: no such file"))([]) == cli.EXIT_USER_ERROR
    assert failing(KeyboardInterrupt())([]) == cli.EXIT_INTERRUPTED
    with pytest.raises(RuntimeError):  # a bug keeps its traceback
        failing(RuntimeError("bug"))([])
