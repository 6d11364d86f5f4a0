"""`python -m cornernet_tf.convert`: an official CornerNet / CenterNet / CornerNet-Squeeze /
CornerNet-Saccade checkpoint, or mmdetection's CornerNet, into a Keras weights file.

The key mapping lives in `cornernet_tf.tasks.official_weights`; its names are still found here for
a release, with a DeprecationWarning.

    python -m cornernet_tf.convert --config configs/cornernet_hg104_coco.yaml \\
        --checkpoint CornerNet_500000.pkl --out hg104.weights.h5
    python -m cornernet_tf.convert --config centernet_hg104_coco \\
        --checkpoint CenterNet-104_480000.pkl --out centernet104.weights.h5
    python -m cornernet_tf.convert --config squeeze_coco \\
        --checkpoint CornerNet_Squeeze_500000.pkl --out squeeze.weights.h5
    python -m cornernet_tf.convert --config saccade_coco \\
        --checkpoint CornerNet_Saccade_500000.pkl --out saccade.weights.h5
    python -m cornernet_tf.convert --config cornernet_hg104_mmdet_coco \\
        --checkpoint cornernet_hourglass104_mstest_8x6_210e_coco_20200825_150618-79b44c30.pth \\
        --out hg104_mmdet.weights.h5
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from cornernet_tf.config import load_config
from cornernet_tf.tasks.model import build_model
from cornernet_tf.tasks.official_weights import load_official_weights
from cornernet_tf.utils import cli, moved_modules
from cornernet_tf.utils.files import atomic_path


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cornernet_tf.convert",
        description="Convert an official CornerNet, CenterNet, CornerNet-Squeeze or CornerNet-Saccade checkpoint, "
        "or an mmdetection CornerNet checkpoint, into Keras weights (.weights.h5).",
    )
    parser.add_argument("--config", default="cornernet_hg104_coco", help="YAML config or bundled config name")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="official or mmdetection checkpoint: .pkl/.pth/.pt (read without PyTorch) or .npz",
    )
    parser.add_argument("--out", required=True, help="output file, must end with .weights.h5")
    cli.add_override_flag(parser, "model.num_classes=20")
    cli.add_verbose_flag(parser)
    return parser.parse_args(argv)


@cli.command
def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 bad input)."""
    args = _parse_args(argv)
    out = pathlib.Path(args.out)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"--out {args.out!r} must end with .weights.h5 (Keras weights file)")
    config = load_config(args.config, args.overrides)
    model = build_model(config.model, corner_pool="vectorized")
    load_official_weights(model, args.checkpoint)
    with atomic_path(out, suffix=".weights.h5") as temp:  # Keras saves weights only under this suffix
        model.save_weights(temp)
    print(f"wrote {out} ({sum(int(np.prod(w.shape)) for w in model.weights)} values)")
    return 0


# the functions that lived here before cornernet_tf.tasks.official_weights, for a release
__getattr__ = moved_modules.names_moved_to("cornernet_tf.convert", "cornernet_tf.tasks.official_weights")


if __name__ == "__main__":
    sys.exit(main())
