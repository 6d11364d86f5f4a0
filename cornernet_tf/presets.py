"""`python -m cornernet_tf.presets`: the named COCO presets (`api.pretrained`), their published AP,
size and whether each is cached.

The preset folders of `ObjectDetector` live in `cornernet_tf.api.presets`; their names are still
found here for a release, with a DeprecationWarning.
"""

from __future__ import annotations

import argparse
import sys

from cornernet_tf.api import pretrained
from cornernet_tf.utils import cli, moved_modules


@cli.command
def main(argv: list[str] | None = None) -> int:
    """List the presets: name, box AP as published, size, cached or not, the model."""
    argparse.ArgumentParser(
        prog="python -m cornernet_tf.presets",
        description="List the pretrained COCO presets that --weights, --init_weights, Detector.from_weights and "
        "ObjectDetector.from_preset accept by name.",
    ).parse_args(argv)
    rows = pretrained.describe()
    width = max(len(str(row["name"])) for row in rows)
    print(f"{'preset':<{width}}  {'box AP':>6}  {'size':>7}  {'cached':<6}  model")
    for row in rows:
        print(
            f"{row['name']:<{width}}  {row['box_ap']:>6.1f}  {row['size_mb']:>4} MB  "
            f"{'yes' if row['cached'] else 'no':<6}  {row['description']} [{row['ap_note']}]"
        )
    print(f"cache: {pretrained.home()} (set {pretrained.HOME_VARIABLE} to move it)")
    return 0


# the functions that lived here before cornernet_tf.api.presets, for a release
__getattr__ = moved_modules.names_moved_to("cornernet_tf.presets", "cornernet_tf.api.presets")


if __name__ == "__main__":
    sys.exit(main())
