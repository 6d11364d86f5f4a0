"""The layering of docs/design.md, checked on the source: who may read a Config, who may import whom.

Walks every module of the package with `ast` (nothing is imported), so a new module is checked
the day it is added.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "cornernet_tf"
# The import levels of docs/design.md, lowest first: a module imports its own level or lower ones,
# never a higher one (the package's face, `__init__`, re-exports the API lazily and is exempt).
LEVELS = (
    ("utils",),
    ("model_types", "detection.settings", "detection.saccade_settings"),
    ("config",),
    ("ops",),
    ("models",),
    ("objective",),
    ("data",),
    ("detection",),
    ("training",),
    ("serving",),
    ("portable",),
    ("tasks",),
    ("api",),
    ("train", "evaluate", "export", "predict", "serve", "convert", "presets", "data.convert", "data.inspect"),
)
COMMANDS = set(LEVELS[-1])
# Command lines (`python -m cornernet_tf.<name>`) and the user-facing API: entry points, which may
# read a Config.
ENTRY_POINTS = COMMANDS | {"api", "data.tfrecord", "data.shapes"}
# The root holds the commands, the config and the model-type records; everything else is in a
# sub-package named for its role.
ROOT_MODULES = {name for name in COMMANDS if "." not in name} | {"__init__", "config", "model_types"}
# Names kept importable from their old home for a release: (importing module, imported module).
DEPRECATED_ALIASES = {("models", "tasks.model")}
CONFIG_SECTIONS = {"model", "data", "train", "detection", "eval", "export"}
# Siblings that stay apart whatever their levels: layer -> what it must not import.
FORBIDDEN = {
    "models": ("data", "objective", "detection", "training", "serving", "portable"),
    "objective": ("models", "data", "detection", "training", "serving", "portable"),
    "data": ("models", "detection", "training", "serving", "portable"),
    "detection": ("models", "data.pipeline", "training", "serving", "portable"),
    "training": ("data", "detection", "serving", "portable"),
    "serving": ("models", "data.pipeline", "objective", "detection", "training", "portable"),
    "utils": ("config", "model_types", "ops", "models", "objective", "data", "detection", "training", "serving"),
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
    # config.py and the model-type records validate a Config; the task layer and entry points read one
    return name in ("config", "model_types") or any(_within(name, layer) for layer in ("tasks", *ENTRY_POINTS))


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_walk_sees_the_package():
    assert {"config", "tasks", "tasks.data", "data.pipeline", "models.cornernet", "training.loop", "train"} <= set(
        MODULES
    )
    assert {"detection.decode", "api.detector", "utils.files", "objective.losses"} <= set(MODULES)


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
        entry = [point for point in ENTRY_POINTS if _within(module, point)]
        assert not entry, f"{name} imports the entry point {module}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_what_the_design_allows(layer):
    members = [name for name in MODULES if _within(name, layer)]
    assert members, f"no module in layer {layer}"
    for name in members:
        for module, _ in _imports(MODULES[name], name):
            for forbidden in FORBIDDEN[layer]:
                assert not _within(module, forbidden), f"{name} ({layer}) imports {module}"


def _level(name: str) -> int:
    """The index in LEVELS of a module's most specific layer."""
    found = [(len(layer), index) for index, layers in enumerate(LEVELS) for layer in layers if _within(name, layer)]
    assert found, f"{name} belongs to no level of LEVELS (docs/design.md)"
    return max(found)[1]


def _runtime_imports(tree: ast.Module, name: str) -> list[str]:
    """The package modules a module imports outside `if TYPE_CHECKING:` blocks."""
    checking = [
        node for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
    ]
    hidden = {id(inner) for block in checking for node in block.body for inner in ast.walk(node)}
    visible = ast.Module(
        body=[
            node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in hidden
        ],
        type_ignores=[],
    )
    found = []
    for module, names in _imports(visible, name):
        submodules = [f"{module}.{imported}" for imported in names if f"{module}.{imported}" in MODULES]
        found += submodules if submodules and len(submodules) == len(names) else [module]
    return found


def _resolve(module: str) -> str:
    """An imported module's name in MODULES (`cornernet_tf.data.augment` -> data.augment; a name
    imported from the package that is no module, `from cornernet_tf import __version__` -> __init__)."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or "__init__"


def test_the_root_holds_the_commands_the_config_and_the_model_types():
    root = {name for name in MODULES if "." not in name and (PACKAGE / f"{name}.py").is_file()}
    root |= {"__init__"}
    assert root == ROOT_MODULES, (
        f"modules at the package root besides {sorted(ROOT_MODULES)}: {sorted(root - ROOT_MODULES)}"
    )


def test_every_sub_package_says_what_lives_there_and_what_it_may_import():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc.split("\n")[0].strip(), f"{init.parent.name}/__init__.py has no first docstring line"
        assert "import" in doc.lower(), f"{init.parent.name}/__init__.py does not say what it may import"


@pytest.mark.parametrize("name", sorted(name for name in MODULES if name != "__init__"))
def test_imports_point_to_the_same_level_or_a_lower_one(name):
    for module in _runtime_imports(MODULES[name], name):
        if (name, module) in DEPRECATED_ALIASES or module == "__init__" or module == "":
            continue
        target = _resolve(module)
        if target == "__init__":
            continue
        assert _level(target) <= _level(name), (
            f"{name} (level {_level(name)}) imports {module} (level {_level(target)})"
        )


def test_no_import_cycles_outside_type_checking():
    graph = {
        name: {_resolve(module) for module in _runtime_imports(tree, name)} - {name, "__init__", ""}
        for name, tree in MODULES.items()
        if name != "__init__"
    }
    graph = {
        name: {target for target in targets if (name, target) not in DEPRECATED_ALIASES}
        for name, targets in graph.items()
    }
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph.get(name, ())):
            assert state.get(target) != 1, f"import cycle: {' -> '.join([*path, name, target])}"
            if target not in state:
                visit(target, [*path, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


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
