"""A TF Serving model base path: numbered version folders, each written whole or not at all.

`write_version` writes a new version under a temporary name TF Serving ignores (`.tmp-<version>-*`)
and renames it in when complete, so a server polling the base path never sees half an export and
a failed export leaves nothing; an existing version is never overwritten.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable

from cornernet_tf.utils.write_errors import WRITE_ERRORS, reason

TEMP_PREFIX = ".tmp-"  # not a number: TF Serving and `serve` skip it


def numeric_versions(export_dir: pathlib.Path) -> list[int]:
    """Version numbers present in `export_dir` (numeric folder names, complete or not)."""
    if not export_dir.is_dir():
        return []
    return sorted(int(p.name) for p in export_dir.iterdir() if p.name.isascii() and p.name.isdigit())


def write_version(
    export_dir: str | os.PathLike, write: Callable[[pathlib.Path], None], version: int | None = None
) -> pathlib.Path:
    """Run `write(temp_dir)`, then rename temp_dir to `<export_dir>/<version>` in one step.

    version None: the highest existing + 1 (1 for a new export_dir). An existing version is
    refused (FileExistsError); any failure removes the temporary folder and re-raises. The
    rename is atomic on one local file system, which is why the temporary folder lives in
    export_dir itself. Returns the version folder.
    """
    export_dir = pathlib.Path(export_dir).expanduser()
    export_dir.mkdir(parents=True, exist_ok=True)
    if version is None:
        version = max(numeric_versions(export_dir), default=0) + 1
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    target = export_dir / str(version)
    refusal = f"{target} already exists; export to another --version or remove it first"
    if target.exists():
        raise FileExistsError(refusal)
    temp = pathlib.Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{version}-", dir=export_dir))
    try:
        try:
            write(temp)
        except WRITE_ERRORS as err:
            raise OSError(
                f"could not write version {version} of {export_dir} ({reason(err)}); nothing was written"
            ) from None
        temp.chmod(0o755)  # mkdtemp's 0700 would hide the version from a server running as another user
        try:
            os.rename(temp, target)  # fails if another export created a non-empty one meanwhile
        except OSError as err:
            raise FileExistsError(f"{refusal} ({err.strerror})") from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return target
