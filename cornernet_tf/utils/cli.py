"""What every command line shares: a quiet start, `--verbose`, and user errors as one line.

Quiet start. TensorFlow writes C++ log lines to stderr when it is imported (absl's "All log
messages before absl::InitializeLog()", oneDNN, "Could not find cuda drivers", CPU features) and
when it first runs (cuInit, oneDNN fallbacks, grappler's PredictCost), before and between a
command's own lines. `python -m cornernet_tf.<command>` imports this package before the
command's module, while `sys.argv[0]` is still "-m" (documented Python behaviour), and the
package calls `start_quietly()`: it sets TF_CPP_MIN_LOG_LEVEL=3, which hides TensorFlow's C++
INFO (1), WARNING (2) and ERROR (3) lines, and holds back stderr until the command's `main`
starts, because the lines absl writes while TensorFlow loads ignore that level. What was held
back is dropped, or written out at exit if the command never got to `main` (an import error).
A TF_CPP_MIN_LOG_LEVEL the user set is kept; a non-zero one (most users set 3 to silence
TensorFlow) still holds stderr back, since absl's start-up lines ignore it. Nothing changes when
the command has `--verbose`, when TF_CPP_MIN_LOG_LEVEL is 0 (the user wants the log), or when
cornernet_tf is imported as a library: a library user's TensorFlow logging is theirs.

Errors. `@command` wraps a command's `main(argv) -> int`: a user error (a bad config, a missing
file, an impossible value: ValueError, of which ConfigError is one, or OSError) becomes one
`error: ...` line on stderr and exit status 2, Ctrl-C outside training 130. `--verbose` adds the
traceback. Only the standard library is imported here, since the package imports this module.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import BinaryIO

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LOG_LEVEL = "3"  # ERROR too ("failed call to cuInit" without a GPU); real failures raise in Python
VERBOSE_FLAG = "--verbose"
USER_ERRORS = (ValueError, OSError)
EXIT_USER_ERROR, EXIT_INTERRUPTED = 2, 130
# what --weights takes, in every command that loads weights
WEIGHTS_HELP = (
    "a preset name (python -m cornernet_tf.presets lists them), an original checkpoint (.pkl/.pth), a .weights.h5 "
    "file, a model_dir, its checkpoints folder or a checkpoint prefix"
)

_held_stderr: tuple[int, BinaryIO] | None = None  # (saved fd 2, the file holding what was written)


def command_module(argv: Sequence[str], orig_argv: Sequence[str]) -> str | None:
    """The module `python -m` is starting while it is being located (argv[0] is "-m" then; the
    module name stands in `orig_argv` just before the arguments), else None."""
    if not argv or argv[0] != "-m" or len(orig_argv) < len(argv):
        return None
    name = orig_argv[-len(argv)]
    return name[2:] if name.startswith("-m") else name


def wants_quiet_start(argv: Sequence[str], orig_argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """True for `python -m cornernet_tf.<command>` without --verbose, unless the user's own
    TF_CPP_MIN_LOG_LEVEL asks for TensorFlow's log (0)."""
    ours = (command_module(argv, orig_argv) or "").startswith("cornernet_tf.")
    wants_log = environ.get(LOG_LEVEL_VARIABLE, "").strip() == "0"
    return ours and VERBOSE_FLAG not in argv[1:] and not wants_log


def start_quietly() -> None:
    """Raise TensorFlow's C++ log level and hold back stderr until `main`, when wanted."""
    global _held_stderr
    if not wants_quiet_start(sys.argv, getattr(sys, "orig_argv", []), os.environ):
        return
    os.environ.setdefault(LOG_LEVEL_VARIABLE, QUIET_LOG_LEVEL)
    sys.stderr.flush()
    held = tempfile.TemporaryFile()
    _held_stderr = (os.dup(2), held)
    os.dup2(held.fileno(), 2)
    atexit.register(_stop_holding_stderr, replay=True)


def _stop_holding_stderr(replay: bool) -> None:
    """Point stderr back where it went; write out what was held back when `replay`."""
    global _held_stderr
    if _held_stderr is None:
        return
    (saved, held), _held_stderr = _held_stderr, None
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    with held:
        if replay:
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            sys.stderr.flush()


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """The --verbose every command accepts (read from the command line before TensorFlow loads)."""
    parser.add_argument(
        VERBOSE_FLAG,
        action="store_true",
        help="show TensorFlow's start-up and C++ log lines, and the traceback of an error",
    )


def add_override_flag(parser: argparse.ArgumentParser, example: str, applies_to: str = "") -> None:
    """The repeatable `--set KEY=VALUE` config override of every command building a config,
    collected in `args.overrides` in the order given; `applies_to` prefixes the help."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{applies_to}override a config field, e.g. --set {example} (repeatable)",
    )


def add_flip_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """`--flip / --no-flip`: None when neither is given, so the config's detection.flip applies."""
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help=help)


def command(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """`main(argv)` of a command line, with the exit statuses every command shares."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        _stop_holding_stderr(replay=False)
        try:
            return main(argv) or 0
        except USER_ERRORS as err:
            if VERBOSE_FLAG in (sys.argv[1:] if argv is None else argv):
                traceback.print_exc()
            print(f"error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return run
