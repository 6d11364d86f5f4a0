"""The layering of docs/design.md, checked on the source: who may read a Config, who may import whom.

Walks every module of the package with `ast` (nothing is imported), so a new module is checked
the day it is added.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "cornernet_tf"
# Command lines (`python -m cornernet_tf.<name>`) and the `Detector` factory: entry points, which
# may read a Config and import anything.
ENTRY_POINTS = {
    "train",
    "evaluate",
    "export",
    "serve",
    "convert",
    "predict",
    "detector",
    "object_detector",
    "presets",
    "pretrained",
    "data.tfrecord",
    "data.shapes",
}
# Names kept importable from their old home for a release: (importing module, imported module).
DEPRECATED_ALIASES = {("models", "tasks.model")}
CONFIG_SECTIONS = {"model", "data", "train", "detection", "eval", "export"}
# layer -> packages it must not import (besides the task layer and entry points, which no layer imports)
FORBIDDEN = {
    "models": ("data", "training", "inference", "decode", "losses", "targets", "export", "serving", "portable"),
    "data": ("models", "training", "inference", "decode", "losses", "serving", "portable"),
    "ops": ("models", "data", "training", "inference", "decode", "losses", "targets", "serving", "portable"),
    "losses": ("models", "data", "training", "inference", "serving", "portable"),
    "targets": ("models", "data", "training", "inference", "serving", "portable"),
    "decode": ("models", "data.pipeline", "training", "serving", "portable"),
    "saccade": ("models", "data", "training", "inference", "serving", "portable"),
    "saccade_settings": ("models", "data", "training", "inference", "decode", "losses", "targets", "serving"),
    "inference": ("models", "data.pipeline", "training", "serving", "portable"),
    "training": ("data", "inference", "decode", "serving", "portable"),
    "serving": ("models", "data.pipeline", "training", "inference", "decode", "losses", "targets", "portable"),
}


def _modules() -> dict[str, ast.Module]:
    """{dotted name below the package ("data.pipeline", "train"): parsed source}."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"
        modules[name] = ast.parse(path.read_text(), filename=str(path))
    return modules


MODULES = _modules()


def _imports(tree: ast.Module, name: str) -> list[tuple[str, list[str]]]:
    """(imported module below the package, imported names) of every import, relative ones resolved."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = ["cornernet_tf", *name.split(".")][: -node.level or None]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names]))
    prefix = "cornernet_tf."
    result = []
    for module, names in found:
        if module == "cornernet_tf":  # `from cornernet_tf import export` names modules
            result += [(imported, []) for imported in names]
        elif module.startswith(prefix):
            result.append((module[len(prefix) :], names))
    return result


def _may_read_config(name: str) -> bool:
    return name == "config" or name == "tasks" or name.startswith("tasks.") or name in ENTRY_POINTS


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_walk_sees_the_package():
    assert {"config", "tasks", "tasks.data", "data.pipeline", "models.cornernet", "training.loop", "train"} <= set(
        MODULES
    )


def _config_reads(tree: ast.Module, name: str) -> list[str]:
    """What in a module reads a Config: imports from cornernet_tf.config (but its error type),
    and `config.<section>` expressions."""
    reads = [
        f"imports {', '.join(sorted(set(names) - {'ConfigError'}))} from cornernet_tf.config"
        for module, names in _imports(tree, name)
        if module == "config" and set(names) - {"ConfigError"}
    ]
    return reads + sorted(
        {
            f"reads {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("config", "cfg")
            and node.attr in CONFIG_SECTIONS
        }
    )


@pytest.mark.parametrize("name", [name for name in MODULES if not _may_read_config(name)])
def test_only_the_task_layer_and_entry_points_read_a_config(name):
    assert not _config_reads(MODULES[name], name), f"{name}: {_config_reads(MODULES[name], name)}"


def test_the_check_catches_a_config_read():
    source = (
        "from cornernet_tf.config import Config, ConfigError\n\ndef f(config):\n    return config.data.input_size\n"
    )
    assert _config_reads(ast.parse(source), "decode") == [
        "imports Config from cornernet_tf.config",
        "reads config.data",
    ]
    relative = ast.parse("from ..config import ModelConfig\n")
    assert _config_reads(relative, "models.cornernet") == ["imports ModelConfig from cornernet_tf.config"]


@pytest.mark.parametrize("name", [name for name in MODULES if not _may_read_config(name)])
def test_libraries_import_neither_the_task_layer_nor_command_lines(name):
    for module, _ in _imports(MODULES[name], name):
        if (name, module) in DEPRECATED_ALIASES:
            continue
        assert not _within(module, "tasks"), f"{name} imports the task layer ({module})"
        allowed = {"detector"} if name == "__init__" else set()  # the package's face re-exports Detector
        assert module not in ENTRY_POINTS - allowed, f"{name} imports the command line {module}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_what_the_design_allows(layer):
    members = [name for name in MODULES if _within(name, layer)]
    assert members, f"no module in layer {layer}"
    for name in members:
        for module, _ in _imports(MODULES[name], name):
            for forbidden in FORBIDDEN[layer]:
                assert not _within(module, forbidden), f"{name} ({layer}) imports {module}"


BENCHMARKS = PACKAGE.parent / "benchmarks"


@pytest.mark.parametrize("script", sorted(path.name for path in BENCHMARKS.glob("*.py")))
def test_benchmarks_set_up_the_cpu_runtime_before_tensorflow(script):
    """A benchmark measures what a user of the package gets only if `cornernet_tf` is imported
    before TensorFlow starts (runtime.py chooses the CPU allocator then); import sorting must not
    move it below `import tensorflow`."""
    tree = ast.parse((BENCHMARKS / script).read_text())
    lines = {"tf": [], "package": []}
    for node in ast.walk(tree):
        names = (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        for module in names:
            root = module.split(".")[0]
            if root in ("tensorflow", "keras"):
                lines["tf"].append(node.lineno)
            elif root == "cornernet_tf":
                lines["package"].append(node.lineno)
    if lines["tf"] and lines["package"]:
        assert min(lines["package"]) < min(lines["tf"]), f"{script} imports TensorFlow before cornernet_tf"
